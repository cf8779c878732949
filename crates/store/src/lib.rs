//! Skiff's storage layer: the revisioned key-value store the API server keeps
//! every object in.
//!
//! The [`Store`] trait states the semantics the Kubernetes API server needs from
//! etcd, and two backends implement it:
//!
//! - [`Embedded`] (the default for one machine, nothing to install): an
//!   in-process, crash-safe MVCC log on `redb`, with group commit so that
//!   concurrent writers share one fsync;
//! - [`Etcd`] (for clusters of machines): etcd v3 through `etcd-client`.
//!
//! The semantics, shared by both and checked by one conformance suite
//! (`tests/conformance.rs`):
//!
//! - one global revision that only grows; every write (create, update, delete)
//!   takes the next revision, and a key's `mod_revision` is the revision of its
//!   last write;
//! - [`Store::create`] succeeds only if the key is absent; [`Store::update`] and
//!   [`Store::delete`] can be guarded by the revision the caller last saw, and a
//!   mismatch is a [`Error::Conflict`] carrying the current value, never a lost
//!   update;
//! - [`Store::list`] reads every key under a prefix at one revision, in key
//!   order, with a limit and a start key for continuing;
//! - [`Store::watch`] delivers every change under a prefix after a given
//!   revision, in revision order, none missing and none twice; a watcher never
//!   silently drops events: it ends with an error instead, and the caller
//!   relists;
//! - [`Store::compact`] drops history before a revision; reads and watches that
//!   need that history fail with [`Error::Compacted`] (the API server's
//!   410 Gone).
#![forbid(unsafe_code)]

mod embedded;
mod etcd;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

pub use embedded::{Embedded, EmbeddedOptions, Stats};
pub use etcd::{Etcd, EtcdOptions};

/// A store revision: positive, and only growing (the embedded store's first
/// write takes 1, etcd's first write 2). 0 means "no revision" (for example
/// "the latest" in [`ListOptions::revision`]).
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, such as `/registry/pods/default/web`.
    pub key: String,
    /// The stored bytes (JSON for Kubernetes objects).
    pub value: Bytes,
    /// The revision at which the key was created (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the key's last write: the object's `resourceVersion`.
    pub mod_revision: Revision,
}

/// What [`Store::list`] should read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read at this revision; 0 reads at the latest revision.
    pub revision: Revision,
    /// Return at most this many items; 0 means no limit.
    pub limit: usize,
    /// Start at this key (inclusive) instead of at the prefix. It must lie under
    /// the prefix. Continuing a list passes [`ListResult::next_key`] here and
    /// [`ListResult::revision`] as `revision`.
    pub start: Option<String>,
}

/// The answer to [`Store::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// The items, in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// When the limit cut the list short: the key to start the next page at.
    pub next_key: Option<String>,
    /// How many keys under the prefix come after this page (0 when complete).
    pub remaining: u64,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created or updated. `kv.create_revision == kv.mod_revision`
    /// tells a creation from an update. `prev` is the value before the write,
    /// when there was one and its history was not compacted.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// The key was deleted at `revision`. `prev` is the value it had, when its
    /// history was not compacted.
    Delete {
        key: String,
        revision: Revision,
        prev: Option<KeyValue>,
    },
}

impl Event {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }

    /// The revision at which the change happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

/// A watch: a stream of events in revision order. It ends with one `Err` when
/// the watch cannot go on (compacted history, the backend gone); the caller
/// relists and watches again from the list's revision.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// The errors of every store operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Create found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// Update or delete found no such key.
    #[error("key {key} not found")]
    NotFound { key: String },
    /// Update or delete was guarded by a revision that is no longer the key's.
    /// `current` is the key's value now (`None` if it was deleted), so a caller
    /// can retry without another read.
    #[error("key {key} was modified: expected revision {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision's history has been compacted away.
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current: {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The arguments make no sense (for example a start key outside the prefix).
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The backend failed: I/O, a lost connection, a closed store.
    #[error("storage backend failed: {message}")]
    Backend {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    pub(crate) fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// True for [`Error::Compacted`]: the caller must relist.
    pub fn is_compacted(&self) -> bool {
        matches!(self, Error::Compacted { .. })
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The revisioned key-value store the API server keeps every object in.
///
/// Keys are UTF-8 strings (`/registry/<resource>/<namespace>/<name>`), values
/// are opaque bytes. See the crate documentation for the semantics.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the latest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Creates `key` if it is absent; answers the new key's revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replaces `key`'s value. An absent key is [`Error::NotFound`], guarded or
    /// not. With `expected = Some(rev)` the write happens only if the key's
    /// `mod_revision` is still `rev`, otherwise [`Error::Conflict`] with the
    /// current value. Answers the new revision.
    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>)
    -> Result<Revision>;

    /// Deletes `key`, guarded like [`Store::update`]. Answers the deletion's
    /// revision and the value the key had.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Lists the keys under `prefix` at one revision.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;

    /// Watches every change under `prefix` with a revision greater than
    /// `after`. `after = 0` watches from the current revision on.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The latest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Drops the history before `revision`: the state at `revision` stays
    /// readable (and watchable from), older states do not. Compacting at or
    /// below the already compacted revision is [`Error::Compacted`]; beyond the
    /// current revision, [`Error::FutureRevision`] (as etcd answers).
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// The end of the key range under `prefix`: the smallest string greater than
/// every key that starts with `prefix` (etcd's "range end" for a prefix).
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): the range has no end.
    vec![0]
}

pub(crate) fn check_start(prefix: &str, start: &Option<String>) -> Result<()> {
    match start {
        Some(s) if !s.starts_with(prefix) => Err(Error::InvalidArgument(format!(
            "start key {s:?} is not under prefix {prefix:?}"
        ))),
        _ => Ok(()),
    }
}
