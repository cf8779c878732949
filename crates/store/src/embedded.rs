//! The embedded backend: an MVCC log on `redb`, laid out as etcd lays out bbolt.
//!
//! Every write is one row of the `log` table, keyed by its revision: the key,
//! whether it was a put or a delete, the key's create revision, the revision of
//! the key's previous version, and the value. An in-memory index maps each key
//! to the revisions of its versions (etcd's `treeIndex`), rebuilt from the log
//! at open. Reads find the version they need in the index and fetch its row.
//!
//! One writer thread owns every write. It takes all the requests waiting in its
//! queue, checks each against the index (and against the earlier requests of
//! the same batch), writes the batch in one redb transaction with one fsync,
//! and only then publishes it: to the index, to live watchers, and to the
//! callers. Concurrent writers therefore share one fsync (group commit), and no
//! reader ever sees a write that is not yet durable.
//!
//! Watchers receive each committed batch through a broadcast channel. One that
//! falls behind is not dropped: it catches up by reading the log, which holds
//! every revision since the last compaction; only compaction past its position
//! ends it (with [`Error::Compacted`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, oneshot};
use tracing::{debug, warn};

use crate::{
    Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream,
    check_start,
};

/// revision → encoded [`Record`].
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Store-wide facts; today only [`COMPACTED`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const COMPACTED: &str = "compacted";

/// How many rows a watcher reads from the log per step when catching up.
const REPLAY_CHUNK: usize = 1024;

/// How to open an [`Embedded`] store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// The database file; created if missing.
    pub path: PathBuf,
    /// redb's page cache, in bytes.
    pub cache_size: usize,
    /// The most writes committed together in one transaction (one fsync).
    pub max_batch: usize,
    /// How many committed batches a watcher may fall behind before it switches
    /// to catching up from the log.
    pub watch_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            path: PathBuf::from("store.redb"),
            cache_size: 16 << 20,
            max_batch: 1024,
            watch_buffer: 256,
        }
    }
}

/// The embedded store. Cheap to share behind an `Arc`; dropping the last
/// handle stops the writer thread and closes the database.
pub struct Embedded {
    shared: Arc<Shared>,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What readers, the writer and watchers share.
struct Shared {
    db: Database,
    index: RwLock<Index>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

/// What the writer has done since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions committed (one fsync each).
    pub commits: u64,
    /// Writes (creates, updates, deletes) made durable by those commits.
    pub writes: u64,
}

/// The in-memory index: every key's versions since the last compaction.
#[derive(Default)]
struct Index {
    keys: BTreeMap<String, Vec<Version>>,
    current: Revision,
    compacted: Revision,
}

/// One version of a key, as the index knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    revision: Revision,
    create_revision: Revision,
    deleted: bool,
}

/// One row of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    key: String,
    deleted: bool,
    create_revision: Revision,
    /// The revision of the key's previous live version, 0 if none.
    prev_revision: Revision,
    value: Bytes,
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

enum Outcome {
    Written(Revision),
    Deleted(Revision, KeyValue),
    Compacted,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// A write accepted into the current batch, waiting for the commit.
struct Staged {
    reply: oneshot::Sender<Result<Outcome>>,
    outcome: Outcome,
    key: String,
    version: Version,
    event: Event,
}

impl Embedded {
    /// Opens (or creates) the store at `options.path` and rebuilds its index
    /// from the log.
    pub fn open(options: EmbeddedOptions) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(&options.path)
            .map_err(|e| Error::backend(format!("opening {}", options.path.display()), e))?;
        let index = load_index(&db)?;
        debug!(
            path = %options.path.display(),
            revision = index.current,
            compacted = index.compacted,
            keys = index.keys.len(),
            "opened embedded store"
        );
        let shared = Arc::new(Shared {
            db,
            index: RwLock::new(index),
            stats: Counters::default(),
        });
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let (tx, rx) = mpsc::channel();
        let writer = {
            let shared = shared.clone();
            let events = events.clone();
            let max_batch = options.max_batch.max(1);
            std::thread::Builder::new()
                .name("skiff-store-writer".into())
                .spawn(move || writer_loop(&shared, &rx, &events, max_batch))
                .map_err(|e| Error::backend("starting the writer thread", e))?
        };
        Ok(Embedded {
            shared,
            requests: Mutex::new(Some(tx)),
            events,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Stops the writer after the writes already queued, and waits for it.
    /// Later writes fail; reads keep working until the store is dropped.
    pub fn close(&self) {
        self.requests.lock().unwrap().take();
        if let Some(writer) = self.writer.lock().unwrap().take() {
            let _ = writer.join();
        }
    }

    /// Counts of commits and writes: `writes / commits` is the group-commit
    /// factor.
    pub fn stats(&self) -> Stats {
        Stats {
            commits: self.shared.stats.commits.load(Ordering::Relaxed),
            writes: self.shared.stats.writes.load(Ordering::Relaxed),
        }
    }

    async fn submit(&self, op: Op) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let sent = match &*self.requests.lock().unwrap() {
            Some(tx) => tx.send(Request { op, reply }).is_ok(),
            None => false,
        };
        if !sent {
            return Err(closed());
        }
        answer.await.map_err(|_| closed())?
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait::async_trait]
impl Store for Embedded {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let (found, txn) = {
            let index = self.shared.index.read().unwrap();
            let found = index.latest_live(key);
            // Begin the read while holding the index, so that the snapshot holds
            // every row the index points at (see `Shared` readers' rule).
            (found, self.shared.begin_read()?)
        };
        let Some(version) = found else {
            return Ok(None);
        };
        let table = txn.open_table(LOG).map_err(db_err)?;
        let record =
            read_record(&table, version.revision)?.ok_or_else(|| missing_row(version.revision))?;
        Ok(Some(record.into_kv(version.revision)))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        match self
            .submit(Op::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            Outcome::Written(rev) => Ok(rev),
            _ => unreachable!("a create answers with its revision"),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        match self
            .submit(Op::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?
        {
            Outcome::Written(rev) => Ok(rev),
            _ => unreachable!("an update answers with its revision"),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        match self
            .submit(Op::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            Outcome::Deleted(rev, kv) => Ok((rev, kv)),
            _ => unreachable!("a delete answers with the deleted value"),
        }
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        check_start(prefix, &options.start)?;
        let (revision, found, remaining, next_key, txn) = {
            let index = self.shared.index.read().unwrap();
            let revision = index.readable_revision(options.revision)?;
            let start = options.start.as_deref().unwrap_or(prefix);
            let mut found = Vec::new();
            let mut remaining = 0u64;
            let mut next_key = None;
            let under_prefix = index
                .keys
                .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix));
            for (key, versions) in under_prefix {
                let Some(version) = version_at(versions, revision) else {
                    continue;
                };
                if options.limit > 0 && found.len() == options.limit {
                    if next_key.is_none() {
                        next_key = Some(key.clone());
                    }
                    remaining += 1;
                } else {
                    found.push((key.clone(), version));
                }
            }
            (
                revision,
                found,
                remaining,
                next_key,
                self.shared.begin_read()?,
            )
        };
        let table = txn.open_table(LOG).map_err(db_err)?;
        let mut items = Vec::with_capacity(found.len());
        for (_, version) in found {
            let record = read_record(&table, version.revision)?
                .ok_or_else(|| missing_row(version.revision))?;
            items.push(record.into_kv(version.revision));
        }
        Ok(ListResult {
            items,
            revision,
            next_key,
            remaining,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before reading the position, so that no batch committed
        // after the position was read can be missed: it is either in the log
        // already (replayed) or still to come (received), or both (skipped).
        let live = self.events.subscribe();
        let position = {
            let index = self.shared.index.read().unwrap();
            if after == 0 {
                index.current
            } else if after < index.compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted: index.compacted,
                });
            } else {
                after
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let watcher = Watcher {
            shared: self.shared.clone(),
            prefix: prefix.to_owned(),
            position,
            tx,
        };
        tokio::spawn(watcher.run(live));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.index.read().unwrap().current)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.submit(Op::Compact { revision }).await? {
            Outcome::Compacted => Ok(()),
            _ => unreachable!("a compaction answers Compacted"),
        }
    }
}

impl Shared {
    /// Readers' rule: look a version up in the index and begin the redb read
    /// while still holding the index lock. The writer publishes to the index
    /// only after its commit, and compaction deletes rows only after removing
    /// them from the index, so the snapshot holds every row the lookup found.
    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        self.db.begin_read().map_err(db_err)
    }
}

impl Index {
    fn latest(&self, key: &str) -> Option<Version> {
        self.keys.get(key).and_then(|v| v.last().copied())
    }

    fn latest_live(&self, key: &str) -> Option<Version> {
        self.latest(key).filter(|v| !v.deleted)
    }

    /// The revision a read at `requested` (0 = latest) sees, if it can be served.
    fn readable_revision(&self, requested: Revision) -> Result<Revision> {
        if requested == 0 {
            return Ok(self.current);
        }
        if requested < self.compacted {
            return Err(Error::Compacted {
                requested,
                compacted: self.compacted,
            });
        }
        if requested > self.current {
            return Err(Error::FutureRevision {
                requested,
                current: self.current,
            });
        }
        Ok(requested)
    }

    fn push(&mut self, key: String, version: Version) {
        self.keys.entry(key).or_default().push(version);
    }

    /// Removes every version that no read at or after `revision` needs, and
    /// answers the revisions of the rows to delete.
    fn compact(&mut self, revision: Revision) -> Vec<Revision> {
        let mut dead = Vec::new();
        self.keys.retain(|_, versions| {
            // The version a read at `revision` sees stays (unless it is a
            // deletion); everything older goes.
            let visible = versions.partition_point(|v| v.revision <= revision);
            if visible == 0 {
                return true;
            }
            let keep_from = if versions[visible - 1].deleted {
                visible
            } else {
                visible - 1
            };
            dead.extend(versions.drain(..keep_from).map(|v| v.revision));
            !versions.is_empty()
        });
        self.compacted = revision;
        dead
    }
}

/// The version of a key a read at `revision` sees, if the key was live then.
fn version_at(versions: &[Version], revision: Revision) -> Option<Version> {
    let visible = versions.partition_point(|v| v.revision <= revision);
    versions[..visible].last().copied().filter(|v| !v.deleted)
}

impl Record {
    const PUT: u8 = 1;
    const DELETE: u8 = 2;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + self.key.len() + self.value.len());
        out.push(if self.deleted {
            Self::DELETE
        } else {
            Self::PUT
        });
        out.extend_from_slice(&(self.create_revision as u64).to_le_bytes());
        out.extend_from_slice(&(self.prev_revision as u64).to_le_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let kind = *bytes.first()?;
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let create_revision = u64_at(1)? as Revision;
        let prev_revision = u64_at(9)? as Revision;
        let key_len = u32::from_le_bytes(bytes.get(17..21)?.try_into().ok()?) as usize;
        let key = std::str::from_utf8(bytes.get(21..21 + key_len)?).ok()?;
        let deleted = match kind {
            Self::PUT => false,
            Self::DELETE => true,
            _ => return None,
        };
        Some(Record {
            key: key.to_owned(),
            deleted,
            create_revision,
            prev_revision,
            value: Bytes::copy_from_slice(&bytes[21 + key_len..]),
        })
    }

    fn into_kv(self, revision: Revision) -> KeyValue {
        KeyValue {
            key: self.key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: revision,
        }
    }
}

fn read_record(
    table: &impl ReadableTable<u64, &'static [u8]>,
    rev: Revision,
) -> Result<Option<Record>> {
    let Some(row) = table.get(rev as u64).map_err(db_err)? else {
        return Ok(None);
    };
    Record::decode(row.value())
        .map(Some)
        .ok_or_else(|| corrupt(rev))
}

fn load_index(db: &Database) -> Result<Index> {
    let txn = db.begin_write().map_err(db_err)?;
    // Make sure both tables exist, so that readers never find them missing.
    txn.open_table(LOG).map_err(db_err)?;
    let compacted = txn
        .open_table(META)
        .map_err(db_err)?
        .get(COMPACTED)
        .map_err(db_err)?
        .map(|v| v.value() as Revision)
        .unwrap_or(0);
    txn.commit().map_err(db_err)?;

    let mut index = Index {
        compacted,
        current: compacted,
        ..Index::default()
    };
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(LOG).map_err(db_err)?;
    for row in table.range::<u64>(..).map_err(db_err)? {
        let (rev, bytes) = row.map_err(db_err)?;
        let rev = rev.value() as Revision;
        let record = Record::decode(bytes.value()).ok_or_else(|| corrupt(rev))?;
        index.push(
            record.key,
            Version {
                revision: rev,
                create_revision: record.create_revision,
                deleted: record.deleted,
            },
        );
        index.current = index.current.max(rev);
    }
    Ok(index)
}

fn writer_loop(
    shared: &Shared,
    requests: &mpsc::Receiver<Request>,
    events: &broadcast::Sender<Arc<Vec<Event>>>,
    max_batch: usize,
) {
    let mut batch = Vec::new();
    while let Ok(first) = requests.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // Writes commit together; a compaction runs alone, after the writes
        // queued before it.
        let mut writes = Vec::new();
        for request in batch.drain(..) {
            match request.op {
                Op::Compact { revision } => {
                    commit_writes(shared, events, std::mem::take(&mut writes));
                    let result = compact(shared, revision).map(|()| Outcome::Compacted);
                    let _ = request.reply.send(result);
                }
                _ => writes.push(request),
            }
        }
        commit_writes(shared, events, writes);
    }
}

fn commit_writes(
    shared: &Shared,
    events: &broadcast::Sender<Arc<Vec<Event>>>,
    writes: Vec<Request>,
) {
    if writes.is_empty() {
        return;
    }
    let staged = match stage_and_commit(shared, writes) {
        Ok(staged) => staged,
        Err(replies) => {
            for (reply, error) in replies {
                let _ = reply.send(Err(error));
            }
            return;
        }
    };
    let mut batch_events = Vec::with_capacity(staged.len());
    {
        let mut index = shared.index.write().unwrap();
        for s in staged.iter().flatten() {
            index.push(s.key.clone(), s.version);
            index.current = s.version.revision;
        }
    }
    let mut replies = Vec::with_capacity(staged.len());
    for s in staged {
        match s {
            Ok(s) => {
                batch_events.push(s.event);
                replies.push((s.reply, Ok(s.outcome)));
            }
            Err((reply, error)) => replies.push((reply, Err(error))),
        }
    }
    if !batch_events.is_empty() && events.receiver_count() > 0 {
        let _ = events.send(Arc::new(batch_events));
    }
    for (reply, result) in replies {
        let _ = reply.send(result);
    }
}

type Failed = (oneshot::Sender<Result<Outcome>>, Error);

/// Checks each write against the index and the batch's earlier writes, writes
/// the accepted ones in one transaction and commits it. On a failed commit
/// every request fails and nothing is published.
fn stage_and_commit(
    shared: &Shared,
    writes: Vec<Request>,
) -> std::result::Result<Vec<std::result::Result<Staged, Failed>>, Vec<Failed>> {
    let txn = match shared.db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let e = db_err(e);
            return Err(writes
                .into_iter()
                .map(|w| (w.reply, clone_backend(&e)))
                .collect());
        }
    };
    let mut results = Vec::with_capacity(writes.len());
    let outcome = (|| -> Result<()> {
        let mut table = txn.open_table(LOG).map_err(db_err)?;
        let index = shared.index.read().unwrap();
        let mut next = index.current + 1;
        // The latest version of each key written earlier in this batch.
        let mut batch_latest: HashMap<String, Version> = HashMap::new();
        for Request { op, reply } in writes {
            let key = match &op {
                Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => {
                    key.clone()
                }
                Op::Compact { .. } => unreachable!("compactions run alone"),
            };
            let live = batch_latest
                .get(&key)
                .copied()
                .or_else(|| index.latest(&key))
                .filter(|v| !v.deleted);
            let checked = check(&op, &key, live, &table);
            let (value, deleted) = match (checked, op) {
                (Err(e), _) => {
                    results.push(Err((reply, e)));
                    continue;
                }
                (Ok(()), Op::Create { value, .. } | Op::Update { value, .. }) => (value, false),
                (Ok(()), _) => (Bytes::new(), true),
            };
            let prev = match live {
                Some(v) => Some(
                    read_record(&table, v.revision)?
                        .ok_or_else(|| missing_row(v.revision))?
                        .into_kv(v.revision),
                ),
                None => None,
            };
            let record = Record {
                key: key.clone(),
                deleted,
                create_revision: live.map_or(next, |v| v.create_revision),
                prev_revision: live.map_or(0, |v| v.revision),
                value,
            };
            table
                .insert(next as u64, record.encode().as_slice())
                .map_err(db_err)?;
            let version = Version {
                revision: next,
                create_revision: record.create_revision,
                deleted,
            };
            batch_latest.insert(key.clone(), version);
            let (outcome, event) = if deleted {
                let prev = prev.expect("a delete has a live previous version");
                (
                    Outcome::Deleted(next, prev.clone()),
                    Event::Delete {
                        key: key.clone(),
                        revision: next,
                        prev: Some(prev),
                    },
                )
            } else {
                (
                    Outcome::Written(next),
                    Event::Put {
                        kv: record.into_kv(next),
                        prev,
                    },
                )
            };
            results.push(Ok(Staged {
                reply,
                outcome,
                key,
                version,
                event,
            }));
            next += 1;
        }
        Ok(())
    })();
    let committed = outcome.and_then(|()| txn.commit().map_err(db_err));
    match committed {
        Ok(()) => {
            let stats = &shared.stats;
            stats.commits.fetch_add(1, Ordering::Relaxed);
            let written = results.iter().filter(|r| r.is_ok()).count() as u64;
            stats.writes.fetch_add(written, Ordering::Relaxed);
            Ok(results)
        }
        Err(e) => {
            warn!(error = %e, "store commit failed");
            Err(results
                .into_iter()
                .map(|r| match r {
                    Ok(s) => (s.reply, clone_backend(&e)),
                    Err((reply, _)) => (reply, clone_backend(&e)),
                })
                .collect())
        }
    }
}

/// The precondition of one write, given the key's live version.
fn check(
    op: &Op,
    key: &str,
    live: Option<Version>,
    table: &redb::Table<u64, &'static [u8]>,
) -> Result<()> {
    match (op, live) {
        (Op::Create { .. }, None) => Ok(()),
        (Op::Create { .. }, Some(_)) => Err(Error::AlreadyExists {
            key: key.to_owned(),
        }),
        (Op::Update { .. } | Op::Delete { .. }, None) => Err(Error::NotFound {
            key: key.to_owned(),
        }),
        (
            Op::Update {
                expected: Some(expected),
                ..
            }
            | Op::Delete {
                expected: Some(expected),
                ..
            },
            Some(live),
        ) if live.revision != *expected => Err(Error::Conflict {
            key: key.to_owned(),
            expected: *expected,
            current: Some(Box::new(
                read_record(table, live.revision)?
                    .ok_or_else(|| missing_row(live.revision))?
                    .into_kv(live.revision),
            )),
        }),
        (Op::Update { .. } | Op::Delete { .. }, Some(_)) => Ok(()),
        (Op::Compact { .. }, _) => unreachable!("compactions run alone"),
    }
}

fn compact(shared: &Shared, revision: Revision) -> Result<()> {
    let dead = {
        let mut index = shared.index.write().unwrap();
        if revision <= index.compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted: index.compacted,
            });
        }
        if revision > index.current {
            return Err(Error::FutureRevision {
                requested: revision,
                current: index.current,
            });
        }
        index.compact(revision)
    };
    let txn = shared.db.begin_write().map_err(db_err)?;
    {
        let mut table = txn.open_table(LOG).map_err(db_err)?;
        for rev in &dead {
            table.remove(*rev as u64).map_err(db_err)?;
        }
        txn.open_table(META)
            .map_err(db_err)?
            .insert(COMPACTED, revision as u64)
            .map_err(db_err)?;
    }
    txn.commit().map_err(db_err)?;
    debug!(revision, removed = dead.len(), "compacted embedded store");
    Ok(())
}

/// One watch: follows the live batches, and the log whenever it falls behind.
struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    /// Every revision up to here has been delivered (or did not match).
    position: Revision,
    tx: tokio::sync::mpsc::Sender<Result<Event>>,
}

impl Watcher {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Vec<Event>>>) {
        // Catch up with what was committed before the subscription.
        if let Err(e) = self.catch_up(None).await {
            let _ = self.tx.send(Err(e)).await;
            return;
        }
        loop {
            let batch = match live.recv().await {
                Ok(batch) => batch,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(e) = self.catch_up(None).await {
                        let _ = self.tx.send(Err(e)).await;
                        return;
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = self.tx.send(Err(closed())).await;
                    return;
                }
            };
            for event in batch.iter() {
                let rev = event.revision();
                if rev <= self.position {
                    continue;
                }
                if rev > self.position + 1 {
                    // Revisions are contiguous: a gap means this batch overtook
                    // rows this watcher has not seen. Read them from the log.
                    if let Err(e) = self.catch_up(Some(rev - 1)).await {
                        let _ = self.tx.send(Err(e)).await;
                        return;
                    }
                }
                if event.key().starts_with(&self.prefix)
                    && self.tx.send(Ok(event.clone())).await.is_err()
                {
                    return;
                }
                self.position = rev;
            }
        }
    }

    /// Delivers the logged events after `position`, up to `until` (or to the
    /// end of the log).
    async fn catch_up(&mut self, until: Option<Revision>) -> Result<()> {
        loop {
            let shared = self.shared.clone();
            let prefix = self.prefix.clone();
            let after = self.position;
            let (events, scanned) = tokio::task::spawn_blocking(move || {
                read_log(&shared, &prefix, after, until, REPLAY_CHUNK)
            })
            .await
            .map_err(|e| Error::backend("reading the log", e))??;
            for event in events {
                let rev = event.revision();
                if self.tx.send(Ok(event)).await.is_err() {
                    return Ok(());
                }
                self.position = rev;
            }
            match scanned {
                Some(last) => self.position = self.position.max(last),
                None => return Ok(()),
            }
        }
    }
}

/// Reads up to `max_rows` log rows after `after` (and up to `until`), and
/// answers the events under `prefix` among them with the last revision
/// scanned (`None` when there was nothing left to read).
fn read_log(
    shared: &Shared,
    prefix: &str,
    after: Revision,
    until: Option<Revision>,
    max_rows: usize,
) -> Result<(Vec<Event>, Option<Revision>)> {
    let txn = {
        let index = shared.index.read().unwrap();
        if after < index.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: index.compacted,
            });
        }
        shared.begin_read()?
    };
    let table = txn.open_table(LOG).map_err(db_err)?;
    let end = until.map_or(u64::MAX, |u| u as u64);
    let mut events = Vec::new();
    let mut scanned = None;
    for row in table
        .range((after as u64 + 1)..=end)
        .map_err(db_err)?
        .take(max_rows)
    {
        let (rev, bytes) = row.map_err(db_err)?;
        let rev = rev.value() as Revision;
        scanned = Some(rev);
        let record = Record::decode(bytes.value()).ok_or_else(|| corrupt(rev))?;
        if !record.key.starts_with(prefix) {
            continue;
        }
        let prev = if record.prev_revision > 0 {
            read_record(&table, record.prev_revision)?.map(|p| p.into_kv(record.prev_revision))
        } else {
            None
        };
        events.push(if record.deleted {
            Event::Delete {
                key: record.key,
                revision: rev,
                prev,
            }
        } else {
            Event::Put {
                kv: record.into_kv(rev),
                prev,
            }
        });
    }
    Ok((events, scanned))
}

fn db_err(e: impl Into<redb::Error>) -> Error {
    Error::backend("embedded store", e.into())
}

fn clone_backend(e: &Error) -> Error {
    Error::Backend {
        message: e.to_string(),
        source: None,
    }
}

fn closed() -> Error {
    Error::Backend {
        message: "the embedded store is closed".into(),
        source: None,
    }
}

fn corrupt(rev: Revision) -> Error {
    Error::Backend {
        message: format!("log row {rev} is corrupt"),
        source: None,
    }
}

fn missing_row(rev: Revision) -> Error {
    Error::Backend {
        message: format!("log row {rev} is missing though the index points at it"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(revision: Revision, deleted: bool) -> Version {
        Version {
            revision,
            create_revision: 1,
            deleted,
        }
    }

    #[test]
    fn records_survive_an_encode_decode_round_trip() {
        let record = Record {
            key: "/registry/pods/default/web".into(),
            deleted: false,
            create_revision: 7,
            prev_revision: 9,
            value: Bytes::from_static(b"{\"kind\":\"Pod\"}"),
        };
        assert_eq!(Record::decode(&record.encode()), Some(record));
    }

    #[test]
    fn a_truncated_record_does_not_decode() {
        let record = Record {
            key: "/k".into(),
            deleted: true,
            create_revision: 1,
            prev_revision: 1,
            value: Bytes::new(),
        };
        let bytes = record.encode();
        assert_eq!(Record::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Record::decode(&[]), None);
    }

    #[test]
    fn a_read_sees_the_last_version_at_or_before_its_revision() {
        let versions = [v(2, false), v(5, false), v(8, true), v(11, false)];
        assert_eq!(version_at(&versions, 1), None);
        assert_eq!(version_at(&versions, 4).map(|v| v.revision), Some(2));
        assert_eq!(version_at(&versions, 7).map(|v| v.revision), Some(5));
        assert_eq!(version_at(&versions, 9), None);
        assert_eq!(version_at(&versions, 11).map(|v| v.revision), Some(11));
    }

    #[test]
    fn compaction_keeps_the_version_visible_at_its_revision() {
        let mut index = Index::default();
        for version in [v(1, false), v(3, false), v(6, false)] {
            index.push("/a".into(), version);
        }
        for version in [v(2, false), v(4, true)] {
            index.push("/b".into(), version);
        }
        index.current = 6;
        let mut dead = index.compact(5);
        dead.sort();
        assert_eq!(dead, vec![1, 2, 4]);
        assert_eq!(index.keys["/a"], vec![v(3, false), v(6, false)]);
        assert!(!index.keys.contains_key("/b"));
        assert_eq!(index.compacted, 5);
    }
}
