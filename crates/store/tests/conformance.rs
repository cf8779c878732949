//! One conformance suite, run unchanged against both backends: the semantics
//! the Kubernetes API server relies on (see the crate documentation).
//!
//! The etcd run starts a real etcd (Debian's `etcd-server`) per test; it fails
//! with a message saying what to install when the binary is missing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{Error, Event, ListOptions, Revision, Store, WatchStream};

/// Each test's own backend, and whatever keeps it alive.
struct Backend {
    store: Arc<dyn Store>,
    _keep: Box<dyn std::any::Any + Send>,
}

async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = skiff_store::Embedded::open(skiff_store::EmbeddedOptions {
        path: dir.path().join("store.redb"),
        ..Default::default()
    })
    .unwrap();
    Backend {
        store: Arc::new(store),
        _keep: Box::new(dir),
    }
}

async fn etcd() -> Backend {
    let server = skiff_store::testing::EtcdServer::start();
    let store = server.connect().await;
    Backend {
        store: Arc::new(store),
        _keep: Box::new(server),
    }
}

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

const WAIT: Duration = Duration::from_secs(10);

/// The next event of a watch, or a panic after a generous wait.
async fn next(watch: &mut WatchStream) -> Event {
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("the watch delivered no event in time")
        .expect("the watch ended")
        .expect("the watch failed")
}

/// Asserts that the watch delivers nothing more for a short while.
async fn quiet(watch: &mut WatchStream) {
    if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(300), watch.next()).await {
        panic!("the watch delivered an unexpected event: {event:?}");
    }
}

mod suite {
    use super::*;

    pub async fn creates_take_growing_revisions_and_reads_see_them(s: &dyn Store) {
        let start = s.current_revision().await.unwrap();
        let r1 = s.create("/t/a", val("1")).await.unwrap();
        let r2 = s.create("/t/b", val("2")).await.unwrap();
        assert!(r1 > start && r2 == r1 + 1, "revisions {start} {r1} {r2}");
        assert_eq!(s.current_revision().await.unwrap(), r2);
        let a = s.get("/t/a").await.unwrap().unwrap();
        assert_eq!((a.key.as_str(), a.value.as_ref()), ("/t/a", &b"1"[..]));
        assert_eq!((a.create_revision, a.mod_revision), (r1, r1));
        assert_eq!(s.get("/t/missing").await.unwrap(), None);
    }

    pub async fn create_of_an_existing_key_fails_and_changes_nothing(s: &dyn Store) {
        let rev = s.create("/t/a", val("1")).await.unwrap();
        let err = s.create("/t/a", val("2")).await.unwrap_err();
        assert!(
            matches!(err, Error::AlreadyExists { ref key } if key == "/t/a"),
            "{err:?}"
        );
        assert_eq!(s.current_revision().await.unwrap(), rev);
        assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, val("1"));
    }

    pub async fn update_keeps_create_revision_and_moves_mod_revision(s: &dyn Store) {
        let created = s.create("/t/a", val("1")).await.unwrap();
        let updated = s.update("/t/a", val("2"), Some(created)).await.unwrap();
        let unguarded = s.update("/t/a", val("3"), None).await.unwrap();
        assert_eq!((updated, unguarded), (created + 1, created + 2));
        let kv = s.get("/t/a").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (created, unguarded));
        assert_eq!(kv.value, val("3"));
    }

    pub async fn a_stale_update_or_delete_is_a_conflict_carrying_the_current_value(s: &dyn Store) {
        let created = s.create("/t/a", val("1")).await.unwrap();
        let current = s.update("/t/a", val("2"), Some(created)).await.unwrap();
        for result in [
            s.update("/t/a", val("3"), Some(created)).await.map(|_| ()),
            s.delete("/t/a", Some(created)).await.map(|_| ()),
        ] {
            match result.unwrap_err() {
                Error::Conflict {
                    key,
                    expected,
                    current: Some(kv),
                } => {
                    assert_eq!((key.as_str(), expected), ("/t/a", created));
                    assert_eq!((kv.mod_revision, kv.value.clone()), (current, val("2")));
                }
                other => panic!("expected a conflict with the current value, got {other:?}"),
            }
        }
        assert_eq!(s.current_revision().await.unwrap(), current);
        assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, val("2"));
    }

    pub async fn update_and_delete_of_an_absent_key_are_not_found(s: &dyn Store) {
        let before = s.current_revision().await.unwrap();
        for result in [
            s.update("/t/none", val("1"), None).await.map(|_| ()),
            s.update("/t/none", val("1"), Some(1)).await.map(|_| ()),
            s.delete("/t/none", None).await.map(|_| ()),
            s.delete("/t/none", Some(1)).await.map(|_| ()),
        ] {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::NotFound { ref key } if key == "/t/none"),
                "{err:?}"
            );
        }
        assert_eq!(s.current_revision().await.unwrap(), before);
    }

    pub async fn delete_answers_the_last_value_and_a_recreated_key_starts_afresh(s: &dyn Store) {
        let created = s.create("/t/a", val("1")).await.unwrap();
        let (deleted_at, last) = s.delete("/t/a", Some(created)).await.unwrap();
        assert_eq!(deleted_at, created + 1);
        assert_eq!(
            (last.key.as_str(), last.value.clone(), last.mod_revision),
            ("/t/a", val("1"), created)
        );
        assert_eq!(s.get("/t/a").await.unwrap(), None);
        let again = s.create("/t/a", val("2")).await.unwrap();
        let kv = s.get("/t/a").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (again, again));
    }

    pub async fn list_reads_only_its_prefix_in_key_order(s: &dyn Store) {
        for key in ["/p/b", "/p/a", "/p/c/x", "/pa/z", "/o/a", "/p"] {
            s.create(key, val(key)).await.unwrap();
        }
        let list = s.list("/p/", ListOptions::default()).await.unwrap();
        let keys: Vec<_> = list.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/p/a", "/p/b", "/p/c/x"]);
        assert_eq!(list.revision, s.current_revision().await.unwrap());
        assert_eq!((list.next_key, list.remaining), (None, 0));
        assert!(
            list.items
                .iter()
                .all(|kv| kv.value.as_ref() == kv.key.as_bytes())
        );
    }

    pub async fn list_pages_continue_at_one_consistent_revision(s: &dyn Store) {
        for i in 0..10 {
            s.create(&format!("/p/{i:02}"), val("old")).await.unwrap();
        }
        let first = s
            .list(
                "/p/",
                ListOptions {
                    limit: 4,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(first.items.len(), 4);
        assert_eq!(first.remaining, 6);
        // Writes after the first page must not show in the later pages.
        s.update("/p/05", val("new"), None).await.unwrap();
        s.delete("/p/09", None).await.unwrap();
        s.create("/p/10", val("new")).await.unwrap();
        let mut seen: Vec<_> = first.items.clone();
        let mut next_key = first.next_key.clone();
        while let Some(start) = next_key {
            let page = s
                .list(
                    "/p/",
                    ListOptions {
                        revision: first.revision,
                        limit: 4,
                        start: Some(start),
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.revision, first.revision);
            seen.extend(page.items);
            next_key = page.next_key;
        }
        let keys: Vec<_> = seen.iter().map(|kv| kv.key.clone()).collect();
        let expected: Vec<_> = (0..10).map(|i| format!("/p/{i:02}")).collect();
        assert_eq!(keys, expected);
        assert!(seen.iter().all(|kv| kv.value == val("old")));
    }

    pub async fn list_at_an_older_revision_sees_the_older_state(s: &dyn Store) {
        let r1 = s.create("/p/a", val("1")).await.unwrap();
        s.update("/p/a", val("2"), None).await.unwrap();
        s.create("/p/b", val("1")).await.unwrap();
        s.delete("/p/a", None).await.unwrap();
        let old = s
            .list(
                "/p/",
                ListOptions {
                    revision: r1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(old.revision, r1);
        assert_eq!(old.items.len(), 1);
        assert_eq!(
            (old.items[0].key.as_str(), old.items[0].value.clone()),
            ("/p/a", val("1"))
        );
        let now = s.list("/p/", ListOptions::default()).await.unwrap();
        let keys: Vec<_> = now.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/p/b"]);
    }

    pub async fn a_list_in_the_future_is_refused(s: &dyn Store) {
        let current = s.create("/p/a", val("1")).await.unwrap();
        let err = s
            .list(
                "/p/",
                ListOptions {
                    revision: current + 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FutureRevision { .. }), "{err:?}");
    }

    pub async fn concurrent_compare_and_swap_increments_lose_no_update(s: Arc<dyn Store>) {
        s.create("/counter", val("0")).await.unwrap();
        let successes = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let s = s.clone();
            let successes = successes.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let kv = s.get("/counter").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    match s
                        .update("/counter", val(&(n + 1).to_string()), Some(kv.mod_revision))
                        .await
                    {
                        Ok(_) => {
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let kv = s.get("/counter").await.unwrap().unwrap();
        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
        let successes = successes.load(Ordering::Relaxed);
        assert!(successes > 0);
        assert_eq!(n, successes, "every successful swap counts once");
    }

    pub async fn a_watch_sees_exactly_the_writes_after_its_revision_in_order(s: Arc<dyn Store>) {
        // Writers run before, during and after the watch starts.
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..300 {
                    let key = format!("/w/{}", i % 7);
                    let rev = match s.create(&key, val(&i.to_string())).await {
                        Ok(rev) => rev,
                        Err(Error::AlreadyExists { .. }) => {
                            s.update(&key, val(&i.to_string()), None).await.unwrap()
                        }
                        Err(e) => panic!("{e}"),
                    };
                    revs.push(rev);
                    if i % 5 == 4 {
                        revs.push(s.delete(&key, None).await.unwrap().0);
                    }
                }
                revs
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let from = s.current_revision().await.unwrap();
        let mut watch = s.watch("/w/", from).await.unwrap();
        let revs = writer.await.unwrap();
        let expected: Vec<Revision> = revs.into_iter().filter(|r| *r > from).collect();
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            seen.push(next(&mut watch).await.revision());
        }
        assert_eq!(seen, expected, "every later write, in order, none twice");
        quiet(&mut watch).await;
    }

    pub async fn watch_events_tell_creations_updates_and_deletions_apart(s: &dyn Store) {
        let from = s.current_revision().await.unwrap();
        let mut watch = s.watch("/w/", from).await.unwrap();
        let c = s.create("/w/a", val("1")).await.unwrap();
        let u = s.update("/w/a", val("2"), Some(c)).await.unwrap();
        let (d, _) = s.delete("/w/a", Some(u)).await.unwrap();
        match next(&mut watch).await {
            Event::Put { kv, prev: None } => {
                assert_eq!(
                    (kv.create_revision, kv.mod_revision, kv.value),
                    (c, c, val("1"))
                )
            }
            other => panic!("expected a creation, got {other:?}"),
        }
        match next(&mut watch).await {
            Event::Put {
                kv,
                prev: Some(prev),
            } => {
                assert_eq!(
                    (kv.create_revision, kv.mod_revision, kv.value),
                    (c, u, val("2"))
                );
                assert_eq!((prev.mod_revision, prev.value), (c, val("1")));
            }
            other => panic!("expected an update with its previous value, got {other:?}"),
        }
        match next(&mut watch).await {
            Event::Delete {
                key,
                revision,
                prev: Some(prev),
            } => {
                assert_eq!((key.as_str(), revision), ("/w/a", d));
                assert_eq!((prev.mod_revision, prev.value), (u, val("2")));
            }
            other => panic!("expected a deletion with its last value, got {other:?}"),
        }
    }

    pub async fn a_watch_sees_only_its_prefix(s: &dyn Store) {
        let mut watch = s.watch("/w/", 0).await.unwrap();
        s.create("/x/a", val("1")).await.unwrap();
        s.create("/wa", val("1")).await.unwrap();
        let rev = s.create("/w/a", val("1")).await.unwrap();
        assert_eq!(next(&mut watch).await.revision(), rev);
        quiet(&mut watch).await;
    }

    pub async fn a_watch_from_zero_starts_at_the_current_revision(s: &dyn Store) {
        s.create("/w/old", val("1")).await.unwrap();
        let mut watch = s.watch("/w/", 0).await.unwrap();
        let rev = s.create("/w/new", val("1")).await.unwrap();
        let event = next(&mut watch).await;
        assert_eq!((event.key(), event.revision()), ("/w/new", rev));
    }

    pub async fn a_slow_watcher_gets_every_event_or_an_error_never_a_gap(s: Arc<dyn Store>) {
        let from = s.current_revision().await.unwrap();
        let mut watch = s.watch("/slow/", from).await.unwrap();
        // Far more writes than any buffer holds, while the watcher reads nothing.
        let mut tasks = Vec::new();
        for t in 0..16 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..250 {
                    s.create(&format!("/slow/{t}/{i}"), Bytes::from(vec![b'x'; 512]))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let end = s.current_revision().await.unwrap();
        let mut expected = from + 1;
        while expected <= end {
            match tokio::time::timeout(WAIT, watch.next())
                .await
                .expect("watch stalled")
            {
                Some(Ok(event)) => {
                    assert_eq!(event.revision(), expected, "no gap, no repeat");
                    expected += 1;
                }
                // Ending with an error is allowed: the caller relists.
                Some(Err(_)) => return,
                None => panic!("the watch ended without an error at revision {expected}"),
            }
        }
    }

    pub async fn compaction_makes_older_reads_and_watches_too_old(s: &dyn Store) {
        let r1 = s.create("/c/a", val("1")).await.unwrap();
        let r2 = s.update("/c/a", val("2"), None).await.unwrap();
        let r3 = s.create("/c/b", val("1")).await.unwrap();
        let r4 = s.update("/c/b", val("2"), None).await.unwrap();
        s.compact(r3).await.unwrap();

        let err = s
            .list(
                "/c/",
                ListOptions {
                    revision: r1,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(err.is_compacted(), "list below the compaction: {err:?}");
        match s.watch("/c/", r1).await {
            Err(e) => assert!(e.is_compacted(), "{e:?}"),
            Ok(mut watch) => match tokio::time::timeout(WAIT, watch.next()).await.unwrap() {
                Some(Err(e)) => assert!(e.is_compacted(), "{e:?}"),
                other => panic!("a watch below the compaction must fail, got {other:?}"),
            },
        }
        // The state at the compaction revision itself stays readable.
        let at = s
            .list(
                "/c/",
                ListOptions {
                    revision: r3,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let state: BTreeMap<_, _> = at
            .items
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        assert_eq!(
            state,
            BTreeMap::from([("/c/a".into(), val("2")), ("/c/b".into(), val("1"))])
        );
        assert_eq!(at.items[0].mod_revision, r2);
        // A watch from the compaction revision still sees what came after.
        let mut watch = s.watch("/c/", r3).await.unwrap();
        assert_eq!(next(&mut watch).await.revision(), r4);
        // Compacting again at or below is refused, as etcd refuses it.
        assert!(s.compact(r3).await.unwrap_err().is_compacted());
    }
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident, shared) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let backend = super::$backend().await;
                        suite::$name(backend.store.clone()).await;
                    }
                };
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let backend = super::$backend().await;
                        suite::$name(backend.store.as_ref()).await;
                    }
                };
            }

            case!(creates_take_growing_revisions_and_reads_see_them);
            case!(create_of_an_existing_key_fails_and_changes_nothing);
            case!(update_keeps_create_revision_and_moves_mod_revision);
            case!(a_stale_update_or_delete_is_a_conflict_carrying_the_current_value);
            case!(update_and_delete_of_an_absent_key_are_not_found);
            case!(delete_answers_the_last_value_and_a_recreated_key_starts_afresh);
            case!(list_reads_only_its_prefix_in_key_order);
            case!(list_pages_continue_at_one_consistent_revision);
            case!(list_at_an_older_revision_sees_the_older_state);
            case!(a_list_in_the_future_is_refused);
            case!(
                concurrent_compare_and_swap_increments_lose_no_update,
                shared
            );
            case!(
                a_watch_sees_exactly_the_writes_after_its_revision_in_order,
                shared
            );
            case!(watch_events_tell_creations_updates_and_deletions_apart);
            case!(a_watch_sees_only_its_prefix);
            case!(a_watch_from_zero_starts_at_the_current_revision);
            case!(
                a_slow_watcher_gets_every_event_or_an_error_never_a_gap,
                shared
            );
            case!(compaction_makes_older_reads_and_watches_too_old);
        }
    };
}

conformance!(embedded);
conformance!(etcd);
