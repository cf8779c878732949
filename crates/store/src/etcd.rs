//! The etcd v3 backend: the [`Store`] semantics on an etcd cluster, used the
//! way upstream's `k8s.io/apiserver/pkg/storage/etcd3` uses it (guarded
//! transactions for writes, ranged reads at a revision, one watch per call).
use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, WatchClient, WatchOptions,
};
use futures::StreamExt;

use crate::{
    Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream,
    check_start, prefix_end,
};

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs of the cluster's members, such as `http://127.0.0.1:2379`.
    /// `https://` URLs need `ca_file` (no system roots are trusted).
    pub endpoints: Vec<String>,
    /// PEM file of the CA that signed the members' serving certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate presented to etcd (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// How long [`Etcd::connect`] waits for the first answer, and how long
    /// establishing one connection may take.
    pub dial_timeout: Duration,
    /// How long one request may take, retries included, before it fails.
    /// Reads (and the creation of a watch) are retried on any member while
    /// etcd answers "unavailable", writes only when they surely were not
    /// applied; requests fail after this long while etcd is unreachable.
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive ping interval on connections with open streams; a
    /// dead connection (and the watches on it) fails after at most
    /// `keepalive_interval + keepalive_timeout`.
    pub keepalive_interval: Duration,
    /// How long a keep-alive ping may go unanswered.
    pub keepalive_timeout: Duration,
}

/// The etcd backend. Cheap to clone: clones share the connections.
///
/// Requests go to any of the endpoints (a client-side balancer); one that
/// fails where it is safe to try again is retried, on another member if one
/// answers (see [`EtcdOptions::request_timeout`]). A write that fails with an
/// ambiguous error (the connection lost under it, a leader change) fails:
/// etcd may still apply it, exactly as with upstream's client.
#[derive(Clone)]
pub struct Etcd {
    kv: KvClient,
    watch: WatchClient,
    endpoints: Vec<String>,
    request_timeout: Duration,
}

/// State of one [`Store::watch`] stream.
struct WatchState {
    /// Dropping it cancels the watch on the server.
    stream: etcd_client::WatchStream,
    /// Events (and a final error) taken from the last response, not yet
    /// handed out.
    pending: VecDeque<Result<Event>>,
    /// The revision of the last event handed out (or the watch's start).
    seen: Revision,
    /// The stream has handed out (or queued) its final error.
    done: bool,
}

/// Which failed requests [`Etcd::call`] may send again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Reads (and watch creations): any "unavailable" failure.
    Read,
    /// Writes: only failures that prove the request was not applied.
    Write,
}

/// The first pause between retries (the very first retry is at once, most
/// likely on another member).
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause between retries.
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// gRPC's code for "unavailable".
const UNAVAILABLE: i32 = 14;

/// The message etcd answers for a read or watch at a compacted revision.
const COMPACTED_MESSAGE: &str = "required revision has been compacted";
/// The message etcd answers for a read at a revision it has not reached.
const FUTURE_MESSAGE: &str = "required revision is a future revision";
/// Decoded responses may be this large (a full list of a big resource).
const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

impl Default for EtcdOptions {
    fn default() -> Self {
        // Upstream's kube-apiserver: 20 s dial timeout, 30 s keep-alive
        // pings, 10 s keep-alive timeout.
        EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            ca_file: None,
            cert_file: None,
            key_file: None,
            dial_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

impl Etcd {
    /// Connects to etcd and checks that it answers (within
    /// [`EtcdOptions::dial_timeout`]).
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        if options.endpoints.is_empty() {
            return Err(Error::InvalidArgument(
                "no etcd endpoints given".to_string(),
            ));
        }
        let https = options.endpoints.iter().any(|e| e.starts_with("https://"));
        if https && options.ca_file.is_none() {
            return Err(Error::InvalidArgument(
                "https etcd endpoints need ca_file (no system roots are trusted)".to_string(),
            ));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.dial_timeout)
            .with_keep_alive(options.keepalive_interval, options.keepalive_timeout)
            // etcd refuses pings on idle connections ("too many pings").
            .with_keep_alive_while_idle(false)
            // A member cut off from its leader cancels watches instead of
            // letting them go silent (upstream's `WithRequireLeader`).
            .with_require_leader(true);
        if let Some(tls) = tls_options(&options)? {
            connect = connect.with_tls(tls);
        }
        let client = Client::connect(&options.endpoints, Some(connect))
            .await
            .map_err(|e| {
                Error::backend(
                    format!("cannot connect to etcd at {}", options.endpoints.join(",")),
                    e,
                )
            })?;
        let etcd = Etcd {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_SIZE),
            endpoints: options.endpoints.clone(),
            request_timeout: options.dial_timeout,
        };
        // The client connects lazily: make a misconfiguration visible now.
        etcd.current_revision().await.map_err(|e| Error::Backend {
            message: format!(
                "etcd at {} does not answer: check that it runs, the endpoints and the TLS files",
                options.endpoints.join(",")
            ),
            source: Some(Box::new(e)),
        })?;
        Ok(Etcd {
            request_timeout: options.request_timeout,
            ..etcd
        })
    }

    /// Runs one request, retrying it while that is safe and time is left
    /// (the request timeout), as etcd's own Go client does: any request that
    /// never reached etcd (no connection to the member the balancer picked, or
    /// a member without a leader refused it), and reads on any "unavailable"
    /// answer. A write that may have been applied is never retried: its guard
    /// would then answer a wrong conflict.
    async fn call<T, F>(
        &self,
        what: impl Fn() -> String,
        retry: Retry,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut backoff = Duration::ZERO;
        loop {
            match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e))
                    if retry.allows(&e) && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tracing::debug!(request = what(), error = %e, "retrying an etcd request");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).clamp(RETRY_BACKOFF_MIN, RETRY_BACKOFF_MAX);
                }
                Ok(Err(e)) => return Err(Error::backend(what(), e)),
                Err(_) => {
                    return Err(Error::Backend {
                        message: format!("{} timed out after {:?}", what(), self.request_timeout),
                        source: None,
                    });
                }
            }
        }
    }

    /// A transaction, through [`Etcd::call`].
    async fn txn(&self, what: impl Fn() -> String, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let attempt = || {
            let (mut kv, txn) = (self.kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        };
        self.call(what, Retry::Write, attempt).await
    }

    /// A range read, through [`Etcd::call`].
    async fn range(
        &self,
        what: impl Fn() -> String,
        key: Vec<u8>,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse> {
        let attempt = || {
            let (mut kv, key, options) = (self.kv.clone(), key.clone(), options.clone());
            async move { kv.get(key, Some(options)).await }
        };
        self.call(what, Retry::Read, attempt).await
    }

    /// The oldest revision etcd still has history for, learned the way
    /// clients learn it: a watch from revision 1 is cancelled with the
    /// compaction revision. 0 when it cannot be told.
    async fn compacted_revision(&self) -> Revision {
        let probe = async {
            let mut watch = self.watch.clone();
            let options = WatchOptions::new().with_start_revision(1);
            let mut stream = watch.watch(vec![0u8], Some(options)).await.ok()?;
            while let Ok(Some(response)) = stream.message().await {
                if response.compact_revision() > 0 {
                    return Some(response.compact_revision());
                }
                if response.canceled() {
                    return None;
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Fails with [`Error::Compacted`] if the history after `after` is gone, as
    /// a read at `after` would. etcd itself would accept the watch and cancel
    /// it a moment later; asking first lets [`Store::watch`] fail at once.
    async fn check_watchable(&self, prefix: &str, after: Revision) -> Result<()> {
        let options = GetOptions::new().with_count_only().with_revision(after);
        let what = || format!("etcd watch {prefix}");
        match self.range(what, range_key(prefix), options).await {
            Ok(_) => Ok(()),
            Err(e) => match self.read_error(after, e).await {
                // Watching from a revision not reached yet is fine.
                Error::FutureRevision { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Turns a failed read at `requested` into the store's error.
    async fn read_error(&self, requested: Revision, error: Error) -> Error {
        let message = error_chain(&error);
        if message.contains(COMPACTED_MESSAGE) {
            Error::Compacted {
                requested,
                compacted: self.compacted_revision().await,
            }
        } else if message.contains(FUTURE_MESSAGE) {
            Error::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            }
        } else {
            error
        }
    }
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Store for Etcd {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let what = || format!("etcd get {key}");
        let mut response = self.range(what, range_key(key), GetOptions::new()).await?;
        Ok(response.take_kvs().into_iter().next().map(from_etcd))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, Vec::from(value), None)]);
        let response = self.txn(|| format!("etcd create {key}"), txn).await?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(header_revision(response.header()))
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        let txn = Txn::new()
            .when(guard(key, expected))
            .and_then([TxnOp::put(key, Vec::from(value), None)])
            .or_else(else_get(key, expected));
        let response = self.txn(|| format!("etcd update {key}"), txn).await?;
        if !response.succeeded() {
            return Err(guard_failed(key, expected, &response));
        }
        Ok(header_revision(response.header()))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let txn = Txn::new()
            .when(guard(key, expected))
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else(else_get(key, expected));
        let response = self.txn(|| format!("etcd delete {key}"), txn).await?;
        if !response.succeeded() {
            return Err(guard_failed(key, expected, &response));
        }
        let prev = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(mut d) => d.take_prev_kvs().into_iter().next(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| Error::Backend {
            message: format!("etcd deleted {key} but did not answer its previous value"),
            source: None,
        })?;
        Ok((header_revision(response.header()), from_etcd(prev)))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        check_start(prefix, &options.start)?;
        let start = options.start.as_deref().unwrap_or(prefix);
        let mut request = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_revision(options.revision.max(0));
        if options.limit > 0 {
            // One more than asked: the extra key is where the next page starts.
            let limit = options.limit.saturating_add(1);
            request = request.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let what = || format!("etcd list {prefix}");
        let mut response = match self.range(what, range_key(start), request).await {
            Ok(response) => response,
            Err(e) => return Err(self.read_error(options.revision, e).await),
        };
        let revision = match options.revision {
            r if r > 0 => r,
            _ => header_revision(response.header()),
        };
        // `count` is every key in [start, end), whatever the limit.
        let count = u64::try_from(response.count()).unwrap_or(0);
        let mut items: Vec<KeyValue> = response.take_kvs().into_iter().map(from_etcd).collect();
        let next_key = if options.limit > 0 && items.len() > options.limit {
            items.truncate(options.limit + 1);
            items.pop().map(|next| next.key)
        } else {
            None
        };
        Ok(ListResult {
            remaining: count.saturating_sub(items.len() as u64),
            items,
            revision,
            next_key,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let after = after.max(0);
        if after > 0 {
            self.check_watchable(prefix, after).await?;
        }
        let mut options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key();
        if after > 0 {
            options = options.with_start_revision(after + 1);
        }
        // Wait until etcd has registered the watch, so that every write
        // acknowledged after this call returns is seen. Until then nothing
        // was delivered, so a failed attempt can be made again.
        let attempt = || {
            let (mut client, options) = (self.watch.clone(), options.clone());
            async move {
                let mut stream = client.watch(range_key(prefix), Some(options)).await?;
                let created = stream.message().await?;
                Ok((stream, created))
            }
        };
        let what = || format!("etcd watch {prefix}");
        let (stream, created) = self.call(what, Retry::Read, attempt).await?;
        let created = created.ok_or_else(|| Error::Backend {
            message: format!("etcd closed the watch on {prefix} before creating it"),
            source: None,
        })?;
        let mut state = WatchState {
            stream,
            pending: VecDeque::new(),
            seen: after,
            done: false,
        };
        state.take(created);
        if let Some(Err(_)) = state.pending.front() {
            return Err(state.pending.pop_front().unwrap().unwrap_err());
        }
        Ok(futures::stream::unfold(state, WatchState::next).boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        // A linearizable read of one (absent) key: its header carries the
        // revision, at least that of every acknowledged write.
        let what = || "etcd current revision".to_string();
        let options = GetOptions::new().with_count_only();
        let response = self.range(what, vec![0u8], options).await?;
        Ok(header_revision(response.header()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        // Sent again only if it surely was not applied: a second compaction
        // at the same revision would fail.
        let attempt = || {
            let mut kv = self.kv.clone();
            async move { kv.compact(revision, None).await }
        };
        let what = || format!("etcd compact {revision}");
        match self.call(what, Retry::Write, attempt).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.read_error(revision, e).await),
        }
    }
}

impl WatchState {
    /// Hands out the next event, reading responses as needed.
    async fn next(mut self) -> Option<(Result<Event>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            match self.stream.message().await {
                Ok(Some(response)) => self.take(response),
                Ok(None) => self.fail(Error::Backend {
                    message: "etcd ended the watch".to_string(),
                    source: None,
                }),
                Err(e) => self.fail(Error::backend("etcd watch failed", e)),
            }
        }
    }

    /// Queues the events of one response, and the error that ends the watch
    /// if the response cancels it.
    fn take(&mut self, response: etcd_client::WatchResponse) {
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let prev = event.prev_kv().map(from_etcd_ref);
            let event = match event.event_type() {
                etcd_client::EventType::Put => Event::Put {
                    kv: from_etcd_ref(kv),
                    prev,
                },
                etcd_client::EventType::Delete => Event::Delete {
                    key: key_string(kv.key().to_vec()),
                    revision: kv.mod_revision(),
                    prev,
                },
            };
            self.seen = event.revision();
            self.pending.push_back(Ok(event));
        }
        if response.compact_revision() > 0 {
            self.fail(Error::Compacted {
                requested: self.seen,
                compacted: response.compact_revision(),
            });
        } else if response.canceled() {
            let reason = match response.cancel_reason() {
                "" => "no reason given",
                reason => reason,
            };
            self.fail(Error::Backend {
                message: format!("etcd cancelled the watch: {reason}"),
                source: None,
            });
        }
    }

    fn fail(&mut self, error: Error) {
        self.pending.push_back(Err(error));
        self.done = true;
    }
}

impl Retry {
    fn allows(self, error: &etcd_client::Error) -> bool {
        let status = match error {
            // The channel could not be used at all: nothing was sent.
            etcd_client::Error::TransportError(_) => return true,
            etcd_client::Error::GRpcStatus(status) => status,
            _ => return false,
        };
        let unavailable = status.code() as i32 == UNAVAILABLE;
        let chain = error_chain(error).to_ascii_lowercase();
        match self {
            // Also a connection lost under the request ("transport error").
            Retry::Read => unavailable || chain.contains("transport error"),
            // Refused before it was handled: no connection could be made, or
            // the member has no leader (checked before any proposal, as we
            // require a leader). A connection lost under the request is no
            // such proof: etcd may have applied it.
            Retry::Write => {
                unavailable
                    && [
                        "tcp connect error",
                        "connection refused",
                        "error trying to connect",
                        "etcdserver: no leader",
                    ]
                    .iter()
                    .any(|sign| chain.contains(sign))
            }
        }
    }
}

/// The TLS settings of `options`, if it asks for TLS.
fn tls_options(options: &EtcdOptions) -> Result<Option<etcd_client::TlsOptions>> {
    let read = |path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| Error::backend(format!("cannot read {}", path.display()), e))
    };
    let mut tls = etcd_client::TlsOptions::new();
    let mut any = false;
    if let Some(ca) = &options.ca_file {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        any = true;
    }
    match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            any = true;
        }
        (None, None) => {}
        _ => {
            return Err(Error::InvalidArgument(
                "an etcd client certificate needs both cert_file and key_file".to_string(),
            ));
        }
    }
    Ok(any.then_some(tls))
}

/// The compares guarding an update or delete: the key exists and, when
/// `expected` is given, was last written at `expected`.
fn guard(key: &str, expected: Option<Revision>) -> Vec<Compare> {
    let mut compares = vec![Compare::version(key, CompareOp::Greater, 0)];
    if let Some(expected) = expected {
        compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
    }
    compares
}

/// What a failed guard reads: the current value, for the conflict.
fn else_get(key: &str, expected: Option<Revision>) -> Vec<TxnOp> {
    match expected {
        Some(_) => vec![TxnOp::get(key, None)],
        None => vec![],
    }
}

/// The error of an update or delete whose guard failed.
fn guard_failed(
    key: &str,
    expected: Option<Revision>,
    response: &etcd_client::TxnResponse,
) -> Error {
    let current = response.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
        _ => None,
    });
    match (expected, current) {
        (Some(expected), Some(current)) => Error::Conflict {
            key: key.to_string(),
            expected,
            current: Some(Box::new(from_etcd(current))),
        },
        _ => Error::NotFound {
            key: key.to_string(),
        },
    }
}

/// The key a range starts at: etcd rejects an empty key, and `"\0"` is the
/// smallest non-empty one.
fn range_key(key: &str) -> Vec<u8> {
    if key.is_empty() {
        vec![0]
    } else {
        key.as_bytes().to_vec()
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

fn from_etcd(kv: etcd_client::KeyValue) -> KeyValue {
    let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    KeyValue {
        key: key_string(key),
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    }
}

fn from_etcd_ref(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: key_string(kv.key().to_vec()),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

/// Skiff writes only UTF-8 keys; a foreign key is shown lossily.
fn key_string(key: Vec<u8>) -> String {
    String::from_utf8(key).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The messages of an error and its sources, for matching etcd's errors.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{EtcdCluster, EtcdServer};

    fn value(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn create_update_delete_follow_revisions_and_guards() {
        let server = EtcdServer::start();
        let etcd = server.connect().await;

        let r1 = etcd
            .create("/registry/pods/default/a", value("1"))
            .await
            .unwrap();
        assert!(matches!(
            etcd.create("/registry/pods/default/a", value("x")).await,
            Err(Error::AlreadyExists { .. })
        ));
        let got = etcd.get("/registry/pods/default/a").await.unwrap().unwrap();
        assert_eq!((got.create_revision, got.mod_revision), (r1, r1));
        assert_eq!(got.value, value("1"));

        let r2 = etcd
            .update("/registry/pods/default/a", value("2"), Some(r1))
            .await
            .unwrap();
        assert!(r2 > r1);
        match etcd
            .update("/registry/pods/default/a", value("3"), Some(r1))
            .await
        {
            Err(Error::Conflict {
                expected, current, ..
            }) => {
                assert_eq!(expected, r1);
                let current = current.unwrap();
                assert_eq!((current.mod_revision, current.value), (r2, value("2")));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(matches!(
            etcd.update("/registry/pods/default/b", value("1"), None)
                .await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            etcd.update("/registry/pods/default/b", value("1"), Some(0))
                .await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            etcd.delete("/registry/pods/default/a", Some(r1)).await,
            Err(Error::Conflict { .. })
        ));
        let (r3, prev) = etcd
            .delete("/registry/pods/default/a", Some(r2))
            .await
            .unwrap();
        assert!(r3 > r2);
        assert_eq!(prev.value, value("2"));
        assert!(matches!(
            etcd.delete("/registry/pods/default/a", None).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(etcd.current_revision().await.unwrap(), r3);
        assert_eq!(etcd.get("/registry/pods/default/a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn list_pages_through_a_prefix_at_one_revision() {
        let server = EtcdServer::start();
        let etcd = server.connect().await;
        for i in 0..5 {
            etcd.create(&format!("/r/a/{i}"), value("v")).await.unwrap();
        }
        etcd.create("/r/b/0", value("v")).await.unwrap();

        let first = etcd
            .list(
                "/r/a/",
                ListOptions {
                    limit: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(first.items.len(), 2);
        assert_eq!(first.remaining, 3);
        assert_eq!(first.next_key.as_deref(), Some("/r/a/2"));
        // A write after the first page is not seen by the next ones.
        etcd.create("/r/a/9", value("v")).await.unwrap();
        let rest = etcd
            .list(
                "/r/a/",
                ListOptions {
                    revision: first.revision,
                    start: first.next_key.clone(),
                    limit: 0,
                },
            )
            .await
            .unwrap();
        let keys: Vec<_> = rest.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/r/a/2", "/r/a/3", "/r/a/4"]);
        assert_eq!((rest.remaining, rest.next_key), (0, None));
        assert_eq!(rest.revision, first.revision);

        let everything = etcd.list("", ListOptions::default()).await.unwrap();
        assert_eq!(everything.items.len(), 7);

        let current = etcd.current_revision().await.unwrap();
        match etcd
            .list(
                "/r/",
                ListOptions {
                    revision: current + 10,
                    ..Default::default()
                },
            )
            .await
        {
            Err(Error::FutureRevision {
                requested,
                current: c,
            }) => {
                assert_eq!((requested, c), (current + 10, current));
            }
            other => panic!("expected a future revision error, got {other:?}"),
        }
        etcd.compact(current).await.unwrap();
        assert!(matches!(
            etcd.compact(current).await,
            Err(Error::Compacted { requested, compacted }) if (requested, compacted) == (current, current)
        ));
        match etcd
            .list(
                "/r/",
                ListOptions {
                    revision: current - 1,
                    ..Default::default()
                },
            )
            .await
        {
            Err(Error::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (current - 1, current)),
            other => panic!("expected a compacted error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn watch_delivers_changes_in_order_and_ends_on_compaction() {
        let server = EtcdServer::start();
        let etcd = server.connect().await;
        let r1 = etcd.create("/w/a", value("1")).await.unwrap();
        let mut live = etcd.watch("/w/", 0).await.unwrap();
        let r2 = etcd.update("/w/a", value("2"), Some(r1)).await.unwrap();
        etcd.create("/x/ignored", value("1")).await.unwrap();
        let (r3, _) = etcd.delete("/w/a", None).await.unwrap();

        assert!(r1 > 1, "etcd's first write is at revision 2");
        let mut replay = etcd.watch("/w/", r1 - 1).await.unwrap();
        for stream in [&mut live, &mut replay] {
            let mut seen = vec![];
            while seen.last().map(Event::revision) != Some(r3) {
                seen.push(stream.next().await.unwrap().unwrap());
            }
            let last = seen.pop().unwrap();
            match last {
                Event::Delete {
                    key,
                    revision,
                    prev: Some(prev),
                } => assert_eq!(
                    (key.as_str(), revision, prev.value),
                    ("/w/a", r3, value("2"))
                ),
                other => panic!("expected a delete, got {other:?}"),
            }
            match seen.pop().unwrap() {
                Event::Put {
                    kv,
                    prev: Some(prev),
                } => {
                    assert_eq!((kv.mod_revision, kv.value), (r2, value("2")));
                    assert_eq!(prev.mod_revision, r1);
                }
                other => panic!("expected an update, got {other:?}"),
            }
        }
        let first = replay_first(&etcd, r1 - 1).await;
        assert!(matches!(first, Event::Put { ref kv, prev: None } if kv.mod_revision == r1));

        etcd.compact(r3).await.unwrap();
        let outcome = match etcd.watch("/w/", r1).await {
            Err(e) => e,
            Ok(mut stream) => {
                let e = stream.next().await.unwrap().unwrap_err();
                assert!(stream.next().await.is_none(), "the watch must end");
                e
            }
        };
        assert!(
            matches!(outcome, Error::Compacted { requested, compacted } if requested == r1 && compacted == r3),
            "{outcome:?}"
        );
    }

    async fn replay_first(etcd: &Etcd, after: Revision) -> Event {
        etcd.watch("/w/", after)
            .await
            .unwrap()
            .next()
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn dropping_a_watch_cancels_it_in_etcd() {
        let server = EtcdServer::start();
        let etcd = server.connect().await;
        let watchers = || server.metric("etcd_debugging_mvcc_watcher_total");
        let before = watchers();
        let stream = etcd.watch("/d/", 0).await.unwrap();
        assert_eq!(watchers(), before + 1.0);
        drop(stream);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while watchers() != before {
            assert!(
                std::time::Instant::now() < deadline,
                "the watch was not cancelled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_watch_ends_with_an_error_when_etcd_dies() {
        let mut server = EtcdServer::start();
        let etcd = server.connect().await;
        let mut stream = etcd.watch("/k/", 0).await.unwrap();
        server.kill();
        let end = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("the watch hung after etcd died");
        assert!(matches!(end, Some(Err(Error::Backend { .. }))), "{end:?}");
        assert!(stream.next().await.is_none());

        server.restart();
        // The same client reconnects once etcd is back.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match etcd.create("/k/after", value("1")).await {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no reconnection: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_three_member_cluster_keeps_serving_when_one_member_dies() {
        let mut cluster = EtcdCluster::start(3);
        let etcd = cluster.connect().await;
        etcd.create("/ha/before", value("1")).await.unwrap();

        // Member 0 may be the leader: then the others elect a new one. Reads
        // never fail: the backend retries them on another member. A write
        // may fail only while the leader is being replaced, and only with an
        // ambiguous error (etcd may yet apply it); once a new leader is in
        // place, every write succeeds again.
        cluster.members()[0].kill();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let (mut acknowledged, mut attempted, mut streak) = (vec![], 0, 0);
        while streak < 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "writes did not recover"
            );
            let key = format!("/ha/during-{attempted:03}");
            attempted += 1;
            match etcd.create(&key, value("1")).await {
                Ok(_) => {
                    acknowledged.push(key);
                    streak += 1;
                }
                Err(Error::Backend { .. }) => streak = 0,
                Err(e) => panic!("unexpected failure: {e}"),
            }
            assert!(etcd.get("/ha/before").await.unwrap().is_some());
        }
        cluster.members()[0].restart();
        let listed: Vec<String> = etcd
            .list("/ha/during-", ListOptions::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        // Every acknowledged write is there (and unacknowledged ones may be).
        assert!(acknowledged.iter().all(|key| listed.contains(key)));
        // The restarted member caught up: alone, it serves the same state.
        let alone = Etcd::connect(EtcdOptions {
            endpoints: vec![cluster.endpoints()[0].clone()],
            ..cluster.options()
        })
        .await
        .unwrap();
        let on_member_0 = alone
            .list("/ha/during-", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(on_member_0.items.len(), listed.len());
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_with_a_clear_error() {
        let options = EtcdOptions {
            endpoints: vec!["http://127.0.0.1:9".to_string()],
            dial_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let error = Etcd::connect(options).await.unwrap_err();
        assert!(error.to_string().contains("does not answer"), "{error}");
    }
}
