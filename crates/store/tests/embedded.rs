//! Tests only the embedded backend needs: durability across `kill -9`,
//! reopening, bounded size under compaction, group commit, and a watcher that
//! falls far behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use skiff_store::{Embedded, EmbeddedOptions, ListOptions, Revision, Store};

fn open(path: &Path) -> Embedded {
    Embedded::open(EmbeddedOptions {
        path: path.to_owned(),
        ..Default::default()
    })
    .unwrap()
}

/// The environment variable that turns `durability_child_writer` into the
/// child process of `acknowledged_writes_survive_kill_9`.
const CHILD_DB: &str = "SKIFF_STORE_DURABILITY_CHILD_DB";

/// In the child: write forever from many tasks, printing each acknowledged
/// write as `create <key> <rev>` or `cas <n> <rev>`. Does nothing in a normal
/// test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_child_writer() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let store = Arc::new(open(Path::new(&path)));
    if store.get("/counter").await.unwrap().is_none() {
        store
            .create("/counter", Bytes::from_static(b"0"))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                if t == 0 {
                    // Compare-and-swap increments of one key.
                    let kv = store.get("/counter").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    let next = Bytes::from((n + 1).to_string());
                    if let Ok(rev) = store.update("/counter", next, Some(kv.mod_revision)).await {
                        println!("cas {} {rev}", n + 1);
                    }
                } else {
                    let key = format!("/k/{}/{t}/{i}", std::process::id());
                    let rev = store
                        .create(&key, Bytes::from(vec![b'v'; 300]))
                        .await
                        .unwrap();
                    println!("create {key} {rev}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let rounds: usize = std::env::var("SKIFF_DURABILITY_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.redb");
    let mut rng = rand::rng();
    let mut acked_creates: BTreeMap<String, Revision> = BTreeMap::new();
    let mut acked_counter = 0u64;
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "durability_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = Duration::from_millis(rng.random_range(150..900));
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => lines.push(line),
                    Err(_) => break,
                }
            }
            lines
        });
        std::thread::sleep(kill_after);
        // SIGKILL: no destructor, no flush, no goodbye.
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        for line in &lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["create", key, rev] => {
                    acked_creates.insert(key.to_string(), rev.parse().unwrap());
                }
                ["cas", n, _] => acked_counter = acked_counter.max(n.parse().unwrap()),
                // A line cut short by the kill, or libtest's own output.
                _ => {}
            }
        }

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = open(&db);
            let current = store.current_revision().await.unwrap();
            let all = store.list("/k/", ListOptions::default()).await.unwrap();
            let stored: BTreeMap<String, Revision> = all
                .items
                .iter()
                .map(|kv| (kv.key.clone(), kv.mod_revision))
                .collect();
            for (key, rev) in &acked_creates {
                assert_eq!(
                    stored.get(key),
                    Some(rev),
                    "round {round}: acknowledged write {key}@{rev} lost"
                );
            }
            // Consistency: no revision beyond the current one, every value whole.
            assert!(all.items.iter().all(|kv| kv.mod_revision <= current));
            assert!(all.items.iter().all(|kv| kv.value.len() == 300));
            let counter = store.get("/counter").await.unwrap().unwrap();
            let n: u64 = std::str::from_utf8(&counter.value)
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                n >= acked_counter,
                "round {round}: counter {n} < acknowledged {acked_counter}"
            );
            // The next write continues the revision sequence.
            let next = store.create("/probe", Bytes::new()).await;
            match next {
                Ok(rev) => assert_eq!(rev, current + 1),
                Err(skiff_store::Error::AlreadyExists { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        });
    }
    assert!(
        !acked_creates.is_empty(),
        "the child acknowledged no write at all"
    );
    eprintln!(
        "durability: {rounds} kills, {} acknowledged creates and {acked_counter} swaps all found",
        acked_creates.len()
    );
}

#[tokio::test]
async fn a_reopened_store_keeps_its_data_and_never_reuses_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let last = {
        let store = open(&path);
        let a = store.create("/a", Bytes::from_static(b"1")).await.unwrap();
        store
            .update("/a", Bytes::from_static(b"2"), Some(a))
            .await
            .unwrap();
        let (deleted, _) = store.delete("/a", None).await.unwrap();
        let b = store.create("/b", Bytes::from_static(b"1")).await.unwrap();
        // Compacting past the deletion drops the tombstone from the log.
        store.compact(deleted).await.unwrap();
        let (last, _) = store.delete("/b", None).await.unwrap();
        assert_eq!(last, b + 1);
        store.compact(last).await.unwrap();
        last
    };
    let store = open(&path);
    assert_eq!(store.current_revision().await.unwrap(), last);
    assert_eq!(store.get("/a").await.unwrap(), None);
    assert_eq!(store.create("/c", Bytes::new()).await.unwrap(), last + 1);
    let err = store
        .list(
            "/",
            ListOptions {
                revision: last - 1,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.is_compacted(),
        "the compaction survives the reopen: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("store.redb")));
    let mut tasks = Vec::new();
    for t in 0..128 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                store
                    .create(&format!("/g/{t}/{i}"), Bytes::from(vec![0; 1024]))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = store.stats();
    eprintln!("group commit: {stats:?}");
    assert_eq!(stats.writes, 128 * 20);
    assert!(
        stats.commits * 4 <= stats.writes,
        "128 concurrent writers should share fsyncs: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rewritten_forever_does_not_grow_the_file_once_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = Arc::new(open(&path));
    // 32 Leases, each renewed over and over, as kubelets renew theirs.
    let leases = 32;
    for l in 0..leases {
        store
            .create(&format!("/registry/leases/kube-node-lease/n{l}"), lease(0))
            .await
            .unwrap();
    }
    let mut sizes = Vec::new();
    let rounds = 24;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for l in 0..leases {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..60 {
                    let key = format!("/registry/leases/kube-node-lease/n{l}");
                    store
                        .update(&key, lease(round * 60 + i), None)
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // The API server compacts what is older than a few minutes; here, all
        // but the latest revision.
        let current = store.current_revision().await.unwrap();
        store.compact(current).await.unwrap();
        sizes.push(std::fs::metadata(&path).unwrap().len());
    }
    eprintln!("file size after each round of renewals and compaction: {sizes:?}");
    // redb reuses freed pages and truncates the file, so its size swings from
    // round to round (by more than half on a loaded machine); what must not
    // happen is growth with the number of writes, which would lift even the
    // smallest size of the last third above the largest of the first.
    let third = rounds as usize / 3;
    let early = *sizes[..third].iter().max().unwrap();
    let late_low = *sizes[sizes.len() - third..].iter().min().unwrap();
    let late = *sizes[sizes.len() - third..].iter().max().unwrap();
    assert!(
        late_low <= early + early / 2,
        "the file grew with the writes: peak {early} bytes early, never below {late_low} late ({sizes:?})"
    );
    let written = (rounds * 60 * leases) as u64 * lease(0).len() as u64;
    assert!(
        late < written / 2,
        "{late} bytes on disk for {written} bytes written: history is not being dropped"
    );
}

fn lease(renewal: u32) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","spec":{{"renewTime":"{renewal:020}","leaseDurationSeconds":40,"holderIdentity":"node"}}}}"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_catches_up_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // A broadcast buffer of one batch: any pause makes the watcher lag.
    let store = Arc::new(
        Embedded::open(EmbeddedOptions {
            path: dir.path().join("store.redb"),
            watch_buffer: 1,
            ..Default::default()
        })
        .unwrap(),
    );
    let mut watch = store.watch("/lag/", 0).await.unwrap();
    let writes = 3000;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..writes / 8 {
                store
                    .create(&format!("/lag/{t}/{i}"), Bytes::from_static(b"x"))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut expected = 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while expected <= writes {
        let event = tokio::time::timeout_at(deadline.into(), watch.next())
            .await
            .expect("the lagging watcher stalled")
            .expect("the watch ended")
            .expect("the watch failed though nothing was compacted");
        assert_eq!(event.revision(), expected, "no gap, no repeat");
        expected += 1;
    }
}
