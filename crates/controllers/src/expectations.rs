//! What a controller has asked the API server for and not yet seen in its
//! cache (upstream's `UIDTrackingControllerExpectations`): after creating n
//! pods it waits for n pod additions, after deleting pods it waits for each
//! of their UIDs to go (or start terminating). Until then it does not count
//! pods again, so a slow cache can never make it create or delete twice.
//! Expectations expire after five minutes, in case an event was lost.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Upstream's `ExpectationsTimeout`.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Record {
    adds: i64,
    deletes: HashSet<String>,
    set_at: Instant,
}

/// Expectations per controller, keyed by the controller object's UID.
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    /// Whether `key`'s last creates and deletes have all been seen (or
    /// expired, or none were made): the controller may count again.
    pub fn satisfied(&self, key: &str) -> bool {
        let records = self.records.lock().expect("expectations lock");
        match records.get(key) {
            None => true,
            Some(r) => (r.adds <= 0 && r.deletes.is_empty()) || r.set_at.elapsed() > TIMEOUT,
        }
    }

    /// `key` is about to create `n` objects.
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.set(key, n as i64, HashSet::new());
    }

    /// `key` is about to delete the objects with these UIDs.
    pub fn expect_deletions(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.set(key, 0, uids.into_iter().collect());
    }

    fn set(&self, key: &str, adds: i64, deletes: HashSet<String>) {
        let mut records = self.records.lock().expect("expectations lock");
        // Records of controllers long gone are dropped here.
        records.retain(|_, r| r.set_at.elapsed() <= TIMEOUT);
        records.insert(
            key.to_owned(),
            Record {
                adds,
                deletes,
                set_at: Instant::now(),
            },
        );
    }

    /// One object of `key` appeared (or one create failed: it never will).
    pub fn creation_observed(&self, key: &str) {
        let mut records = self.records.lock().expect("expectations lock");
        if let Some(r) = records.get_mut(key) {
            r.adds -= 1;
        }
    }

    /// The object `uid` of `key` went (or its delete failed).
    pub fn deletion_observed(&self, key: &str, uid: &str) {
        let mut records = self.records.lock().expect("expectations lock");
        if let Some(r) = records.get_mut(key) {
            r.deletes.remove(uid);
        }
    }

    /// What `key` still waits for: (creations, deletions).
    #[cfg(test)]
    pub fn pending(&self, key: &str) -> (i64, usize) {
        let records = self.records.lock().expect("expectations lock");
        records
            .get(key)
            .map(|r| (r.adds, r.deletes.len()))
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_awaited_until_each_is_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("rs"));
        e.expect_creations("rs", 2);
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        assert!(e.satisfied("rs"));
        // Extra observations (pods adopted, say) do no harm.
        e.creation_observed("rs");
        assert!(e.satisfied("rs"));
    }

    #[test]
    fn deletions_are_awaited_by_uid() {
        let e = Expectations::default();
        e.expect_deletions("rs", ["a".to_owned(), "b".to_owned()]);
        e.deletion_observed("rs", "c");
        e.deletion_observed("rs", "a");
        assert!(!e.satisfied("rs"));
        assert_eq!(e.pending("rs"), (0, 1));
        e.deletion_observed("rs", "b");
        assert!(e.satisfied("rs"));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire_after_five_minutes() {
        let e = Expectations::default();
        e.expect_creations("rs", 3);
        tokio::time::advance(TIMEOUT - Duration::from_secs(1)).await;
        assert!(!e.satisfied("rs"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.satisfied("rs"));
    }
}
