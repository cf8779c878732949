//! Work spread over a few OS threads (upstream's `parallelize.Until`), with
//! `std::thread::scope` so the work may borrow the snapshot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Below this many items the work runs on the calling thread: starting a
/// thread (tens of microseconds) costs more than it saves on the cheap
/// per-node work of filters and scores.
const SERIAL_BELOW: usize = 512;

/// Calls `f(i)` for `i` in `0..n` on up to `threads` threads, in chunks.
/// `f` returns false to stop the whole run early (items not yet started are
/// skipped). Returns how many items were started.
pub fn until(n: usize, threads: usize, f: impl Fn(usize) -> bool + Sync) -> usize {
    if n == 0 {
        return 0;
    }
    if threads <= 1 || n < SERIAL_BELOW {
        for i in 0..n {
            if !f(i) {
                return i + 1;
            }
        }
        return n;
    }
    let chunk = (n / (threads * 4)).clamp(1, 64);
    let next = AtomicUsize::new(0);
    let started = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let work = || {
        while !stop.load(Ordering::Relaxed) {
            let start = next.fetch_add(chunk, Ordering::Relaxed);
            if start >= n {
                break;
            }
            for i in start..(start + chunk).min(n) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                started.fetch_add(1, Ordering::Relaxed);
                if !f(i) {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    started.load(Ordering::Relaxed)
}

/// `f(i)` for every `i` in `0..n`, collected in order.
pub fn map<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<std::sync::Mutex<Option<T>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    until(n, threads, |i| {
        *slots[i].lock().expect("slot") = Some(f(i));
        true
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().expect("slot").expect("every item ran"))
        .collect()
}

/// How many threads the scheduler uses for filters and scores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_in_parallel() {
        let seen: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        let started = until(1000, 4, |i| {
            seen[i].fetch_add(1, Ordering::Relaxed);
            true
        });
        assert_eq!(started, 1000);
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn returning_false_stops_the_run() {
        let count = AtomicUsize::new(0);
        let started = until(100_000, 2, |_| count.fetch_add(1, Ordering::Relaxed) < 10);
        assert!(started < 100_000, "{started}");
    }

    #[test]
    fn map_keeps_the_order() {
        assert_eq!(
            map(200, 3, |i| i * 2),
            (0..200).map(|i| i * 2).collect::<Vec<_>>()
        );
    }
}
