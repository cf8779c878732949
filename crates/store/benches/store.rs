//! Store benchmark: the embedded backend and the etcd backend, beside raw
//! `etcd-client` calls on the same etcd server (the anchor), in one run.
//!
//! `cargo bench -p skiff-store --bench store` prints one table: write
//! throughput and latency at concurrency 1, 16 and 256 (1 KiB values; the
//! store backends `create` fresh keys, the API server's write path; raw etcd
//! `put`s, and for reference raw etcd sending the backend's own guarded-create
//! transaction), the time of one full list of 10,000 keys, and the rate at
//! which one watcher receives the events of a stream of writes. Then the goal
//! ratios: etcd backend / raw etcd put (goal: within 10%) and embedded / raw
//! etcd put at concurrency 16 and up (goal: above 1), and the breakdown of the
//! first into etcd's cost of the guard (txn / put) and the backend's own
//! overhead (backend / txn). Every figure is the median of several runs; etcd
//! runs with its normal durability (an fsync per commit), and both on-disk
//! stores live in the same temporary directory (`TMPDIR`).
//!
//! Environment: `SKIFF_BENCH_SECONDS` (length of one write phase, default 1.5),
//! `SKIFF_BENCH_RUNS` (runs per figure, default 5), `SKIFF_BENCH_LIST_KEYS`
//! (default 10000), `SKIFF_BENCH_WATCH_EVENTS` (default 5000).
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::testing::EtcdServer;
use skiff_store::{Embedded, EmbeddedOptions, ListOptions, Store};

/// Concurrency levels of the write phases.
const CONCURRENCY: [usize; 3] = [1, 16, 256];
/// Writes per write phase at most, whatever its duration.
const MAX_PHASE_OPS: u64 = 200_000;
/// Concurrent writers filling the list and watch phases.
const FILL_CONCURRENCY: usize = 64;
/// Size of every value.
const VALUE_SIZE: usize = 1024;

/// What is measured: a store backend, or raw etcd-client calls.
#[derive(Clone)]
enum Target {
    Store(Arc<dyn Store>),
    Raw(etcd_client::Client),
    /// Raw etcd-client sending the etcd backend's create transaction: tells
    /// etcd's own cost of the guard from the backend's overhead.
    RawTxn(etcd_client::Client),
}

/// One target and its name in the table.
struct Bench {
    name: &'static str,
    target: Target,
}

/// The outcome of one write phase.
#[derive(Clone, Copy, Debug, Default)]
struct Writes {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Medians over the runs, for one target.
#[derive(Default)]
struct Figures {
    writes: Vec<Vec<Writes>>,
    list: Vec<Duration>,
    watch: Vec<Watch>,
}

/// The outcome of one watch phase.
#[derive(Clone, Copy, Debug, Default)]
struct Watch {
    /// Events received per second, from the first write to the last event.
    per_second: f64,
    /// How long after the last write was acknowledged its event arrived.
    lag: Duration,
}

struct Settings {
    phase: Duration,
    runs: usize,
    list_keys: usize,
    watch_events: usize,
}

impl Target {
    /// One write of a fresh key.
    async fn write(&self, key: String, value: &Bytes) {
        match self {
            Target::Store(store) => {
                store.create(&key, value.clone()).await.expect("create");
            }
            Target::Raw(client) => {
                client
                    .kv_client()
                    .put(key, value.to_vec(), None)
                    .await
                    .expect("put");
            }
            Target::RawTxn(client) => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, value.to_vec(), None)]);
                let response = client.kv_client().txn(txn).await.expect("txn");
                assert!(response.succeeded(), "txn");
            }
        }
    }

    /// One full list of `prefix`; answers how many keys it read.
    async fn list(&self, prefix: &str) -> usize {
        match self {
            Target::Store(store) => store
                .list(prefix, ListOptions::default())
                .await
                .expect("list")
                .items
                .len(),
            Target::Raw(client) | Target::RawTxn(client) => {
                let options = etcd_client::GetOptions::new().with_prefix();
                client
                    .kv_client()
                    .max_decoding_message_size(usize::MAX)
                    .get(prefix, Some(options))
                    .await
                    .expect("get")
                    .kvs()
                    .len()
            }
        }
    }

    /// Watches `prefix` from now on; answers when `count` events arrived.
    async fn watch(&self, prefix: &str, count: usize) -> tokio::task::JoinHandle<Instant> {
        match self {
            Target::Store(store) => {
                let mut stream = store.watch(prefix, 0).await.expect("watch");
                tokio::spawn(async move {
                    for _ in 0..count {
                        stream
                            .next()
                            .await
                            .expect("watch ended")
                            .expect("watch failed");
                    }
                    Instant::now()
                })
            }
            Target::Raw(client) | Target::RawTxn(client) => {
                let options = etcd_client::WatchOptions::new().with_prefix();
                let mut stream = client
                    .watch_client()
                    .watch(prefix, Some(options))
                    .await
                    .expect("watch");
                // Wait for the "created" answer, as the store backend does.
                stream
                    .message()
                    .await
                    .expect("watch")
                    .expect("watch created");
                tokio::spawn(async move {
                    let mut seen = 0;
                    while seen < count {
                        let response = stream.message().await.expect("watch").expect("watch ended");
                        seen += response.events().len();
                    }
                    Instant::now()
                })
            }
        }
    }
}

fn main() {
    let settings = Settings {
        phase: Duration::from_secs_f64(env_number("SKIFF_BENCH_SECONDS", 1.5)),
        runs: env_number("SKIFF_BENCH_RUNS", 5.0) as usize,
        list_keys: env_number("SKIFF_BENCH_LIST_KEYS", 10_000.0) as usize,
        watch_events: env_number("SKIFF_BENCH_WATCH_EVENTS", 5_000.0) as usize,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(settings));
}

async fn run(settings: Settings) {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("skiff-store-bench-")
        .tempdir()
        .expect("temporary directory");
    let embedded = Embedded::open(EmbeddedOptions {
        path: dir.path().join("store.redb"),
        ..Default::default()
    })
    .expect("open the embedded store");
    let embedded = Arc::new(embedded);
    let server = EtcdServer::start();
    let etcd = server.connect().await;
    let raw = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .expect("connect etcd-client");
    let benches = [
        Bench {
            name: "embedded",
            target: Target::Store(embedded.clone()),
        },
        Bench {
            name: "etcd backend",
            target: Target::Store(Arc::new(etcd)),
        },
        Bench {
            name: "raw etcd put",
            target: Target::Raw(raw.clone()),
        },
        Bench {
            name: "raw etcd txn",
            target: Target::RawTxn(raw),
        },
    ];
    let value = Bytes::from(
        (0..VALUE_SIZE)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut figures: Vec<Figures> = benches
        .iter()
        .map(|_| Figures {
            writes: vec![Vec::new(); CONCURRENCY.len()],
            ..Default::default()
        })
        .collect();

    eprintln!(
        "skiff-store bench: {} runs of {:?} per write phase, in {}",
        settings.runs,
        settings.phase,
        dir.path().display()
    );
    // Runs interleave the targets, so that drift (disk, other load) spreads
    // over all of them alike.
    for run in 0..settings.runs {
        for (c, &concurrency) in CONCURRENCY.iter().enumerate() {
            // Each run starts with another target, so that any effect of the
            // order (etcd's buffers, the disk) spreads over all of them.
            for b in (0..benches.len()).map(|i| (i + run) % benches.len()) {
                let bench = &benches[b];
                let prefix = format!("/registry/bench/w{run}c{concurrency}t{b}/");
                let outcome =
                    writes(&bench.target, &prefix, concurrency, settings.phase, &value).await;
                eprintln!(
                    "  run {run} concurrency {concurrency:>3} {:<16} {:>9.0} writes/s",
                    bench.name, outcome.per_second
                );
                figures[b].writes[c].push(outcome);
            }
        }
    }
    // List and watch: the raw txn target would repeat the raw put one.
    let (embedded_at, backend_at, put_at, txn_at) = (0, 1, 2, 3);
    for (b, bench) in benches.iter().enumerate().take(txn_at) {
        let prefix = format!("/registry/bench/list{b}/");
        fill(&bench.target, &prefix, settings.list_keys, &value).await;
        for _ in 0..settings.runs.max(5) {
            let start = Instant::now();
            let read = bench.target.list(&prefix).await;
            figures[b].list.push(start.elapsed());
            assert_eq!(
                read, settings.list_keys,
                "{} listed too few keys",
                bench.name
            );
        }
        eprintln!(
            "  list {:<16} {:?}",
            bench.name,
            median_duration(&figures[b].list)
        );
    }
    // Watch: the embedded store's watcher sees its own writes; the etcd
    // backend's and raw etcd-client's watchers watch the same stream of raw
    // puts at once, so they face the same load.
    let groups = [
        (embedded_at, vec![embedded_at]),
        (put_at, vec![backend_at, put_at]),
    ];
    for run in 0..settings.runs {
        for (writer, watchers) in &groups {
            let prefix = format!("/registry/bench/watch{run}w{writer}/");
            let mut done = Vec::new();
            for &w in watchers {
                done.push((
                    w,
                    benches[w]
                        .target
                        .watch(&prefix, settings.watch_events)
                        .await,
                ));
            }
            let start = Instant::now();
            fill(
                &benches[*writer].target,
                &prefix,
                settings.watch_events,
                &value,
            )
            .await;
            let written = Instant::now();
            for (w, done) in done {
                let end = tokio::time::timeout(Duration::from_secs(120), done)
                    .await
                    .expect("the watcher fell behind for two minutes")
                    .expect("watcher task");
                let watch = Watch {
                    per_second: settings.watch_events as f64 / (end - start).as_secs_f64(),
                    lag: end.saturating_duration_since(written),
                };
                eprintln!(
                    "  run {run} watch {:<16} {:>9.0} events/s, last event {:?} after the last write",
                    benches[w].name, watch.per_second, watch.lag
                );
                figures[w].watch.push(watch);
            }
        }
    }

    print_table(&settings, &benches, &figures);
    let stats = embedded.stats();
    println!(
        "embedded group commit: {} writes in {} commits ({:.1} writes per fsync)",
        stats.writes,
        stats.commits,
        stats.writes as f64 / stats.commits.max(1) as f64
    );
    println!("whole run: {:.0?}", started.elapsed());
}

/// One write phase: `concurrency` writers each create fresh keys under
/// `prefix` until `length` has passed (or [`MAX_PHASE_OPS`] writes are done).
async fn writes(
    target: &Target,
    prefix: &str,
    concurrency: usize,
    length: Duration,
    value: &Bytes,
) -> Writes {
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + length;
    let writers: Vec<_> = (0..concurrency)
        .map(|writer| {
            let (target, value, issued) = (target.clone(), value.clone(), issued.clone());
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline
                    && issued.fetch_add(1, Ordering::Relaxed) < MAX_PHASE_OPS
                {
                    let key = format!("{prefix}{writer:03}-{i:08}");
                    let begun = Instant::now();
                    target.write(key, &value).await;
                    latencies.push(begun.elapsed());
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for writer in writers {
        latencies.extend(writer.await.expect("writer task"));
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Writes {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

/// Writes `count` fresh keys under `prefix` with [`FILL_CONCURRENCY`] writers.
async fn fill(target: &Target, prefix: &str, count: usize, value: &Bytes) {
    let next = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..FILL_CONCURRENCY)
        .map(|_| {
            let (target, value, next) = (target.clone(), value.clone(), next.clone());
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count as u64 {
                        break;
                    }
                    target.write(format!("{prefix}{i:08}"), &value).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task");
    }
}

fn print_table(settings: &Settings, benches: &[Bench], figures: &[Figures]) {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    println!();
    println!(
        "skiff-store: medians of {} runs; writes: {:?} phases, {} B values (store backends: create; raw: put)",
        settings.runs, settings.phase, VALUE_SIZE
    );
    println!(
        "{:<16} {:>5} {:>10} {:>9} {:>9}",
        "backend", "conc", "writes/s", "p50 ms", "p99 ms"
    );
    for (c, concurrency) in CONCURRENCY.iter().enumerate() {
        for (bench, figures) in benches.iter().zip(figures) {
            let runs = &figures.writes[c];
            let rate = median(runs.iter().map(|w| w.per_second).collect());
            let p50 = median_duration(&runs.iter().map(|w| w.p50).collect::<Vec<_>>());
            let p99 = median_duration(&runs.iter().map(|w| w.p99).collect::<Vec<_>>());
            println!(
                "{:<16} {:>5} {:>10.0} {:>9} {:>9}",
                bench.name,
                concurrency,
                rate,
                ms(p50),
                ms(p99)
            );
        }
    }
    println!();
    println!(
        "{:<16} {:>16} {:>16} {:>14}",
        "backend",
        format!("list {} ms", settings.list_keys),
        "watch events/s",
        "watch lag ms"
    );
    for (bench, figures) in benches.iter().zip(figures) {
        if figures.list.is_empty() {
            continue;
        }
        println!(
            "{:<16} {:>16} {:>16.0} {:>14}",
            bench.name,
            ms(median_duration(&figures.list)),
            median(figures.watch.iter().map(|w| w.per_second).collect()),
            ms(median_duration(
                &figures.watch.iter().map(|w| w.lag).collect::<Vec<_>>()
            )),
        );
    }
    println!(
        "(list: one full list, median of {}; watch: one watcher while {} writers put {} keys, \
         etcd watchers on the same raw puts; lag: last event after last write)",
        settings.runs.max(5),
        FILL_CONCURRENCY,
        settings.watch_events,
    );

    let rate =
        |b: usize, c: usize| median(figures[b].writes[c].iter().map(|w| w.per_second).collect());
    let (embedded, backend, put, txn) = (0, 1, 2, 3);
    println!();
    println!("goal ratios (median writes/s):");
    for (c, concurrency) in CONCURRENCY.iter().enumerate() {
        let ratio = rate(backend, c) / rate(put, c);
        println!(
            "  etcd backend / raw etcd put  at {concurrency:>3}: {ratio:>5.2}  (goal >= 0.90: {})",
            verdict(ratio >= 0.90)
        );
    }
    for (c, concurrency) in CONCURRENCY.iter().enumerate() {
        if *concurrency < 16 {
            continue;
        }
        let ratio = rate(embedded, c) / rate(put, c);
        println!(
            "  embedded / raw etcd put      at {concurrency:>3}: {ratio:>5.2}  (goal > 1.00: {})",
            verdict(ratio > 1.0)
        );
    }
    println!("breakdown: etcd's cost of the create guard, and the backend's own overhead:");
    for (c, concurrency) in CONCURRENCY.iter().enumerate() {
        println!(
            "  raw etcd txn / raw etcd put  at {concurrency:>3}: {:>5.2}    etcd backend / raw etcd txn at {concurrency:>3}: {:>5.2}",
            rate(txn, c) / rate(put, c),
            rate(backend, c) / rate(txn, c),
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_duration(values: &[Duration]) -> Duration {
    let mut values = values.to_vec();
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn env_number(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
        Err(_) => default,
    }
}
