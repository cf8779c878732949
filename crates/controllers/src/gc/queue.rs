//! A work queue as client-go's: an item queued twice is processed once; an
//! item queued while being processed is processed again afterwards, never
//! by two workers at once; failed items come back after a per-item
//! exponential backoff.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

struct State<T> {
    queue: VecDeque<T>,
    /// Queued (not yet handed out), or to queue again once processed.
    dirty: HashSet<T>,
    processing: HashSet<T>,
    shut: bool,
}

/// The queue; clones share it.
pub(crate) struct Queue<T> {
    state: Arc<Mutex<State<T>>>,
    ready: Arc<Notify>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            state: self.state.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                shut: false,
            })),
            ready: Arc::new(Notify::new()),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Queue<T> {
    /// Queues `item` unless it is queued already.
    pub fn add(&self, item: T) {
        let mut s = self.state.lock().expect("queue lock");
        if s.shut || !s.dirty.insert(item.clone()) {
            return;
        }
        if !s.processing.contains(&item) {
            s.queue.push_back(item);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Queues `item` after `delay`.
    pub fn add_after(&self, item: T, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// The next item, once there is one; `None` once shut down.
    pub async fn next(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.state.lock().expect("queue lock");
                if s.shut {
                    return None;
                }
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    if !s.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return Some(item);
                }
            }
            notified.await;
        }
    }

    /// `item` is processed: if it was queued meanwhile, it is queued again.
    pub fn done(&self, item: &T) {
        let mut s = self.state.lock().expect("queue lock");
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Wakes every waiting worker with `None`.
    pub fn shut_down(&self) {
        self.state.lock().expect("queue lock").shut = true;
        self.ready.notify_waiters();
    }

    /// How many items wait.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.state.lock().expect("queue lock").queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_item_queued_twice_is_handed_out_once() {
        let q = Queue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
    }

    #[tokio::test]
    async fn an_item_queued_while_processed_comes_back_after_done() {
        let q = Queue::default();
        q.add("a");
        let a = q.next().await.unwrap();
        q.add("a");
        assert_eq!(q.len(), 0, "not handed to a second worker meanwhile");
        q.done(&a);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("a"));
    }

    #[tokio::test]
    async fn shutting_down_releases_waiting_workers() {
        let q: Queue<&str> = Queue::default();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_queues_later() {
        let q = Queue::default();
        q.add_after("a", Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(q.len(), 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.len(), 1);
    }
}
