//! Garbage collection of old versions, by a RocksDB compaction filter on the data
//! column family: as compactions rewrite files, a version below the safe point that a
//! newer put or delete (also at or below the safe point) of the same key hides is
//! dropped, and so are rollback marks below the safe point. No read at or above the
//! safe point can see what is dropped. A key's newest version at or below the safe
//! point stays (a delete too: a tombstone cannot be dropped without knowing that no
//! older version of its key is left in a file this compaction does not rewrite).
//!
//! Each compaction (each part of one) gets its own filter, which sees its keys in
//! order: a key's lock slot, then its versions newest first. A range's snapshot leaves
//! out the same versions ([`Pruner`]), so a replica filled from it holds no more than
//! the retention window needs.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};

use crate::keys::{self, VersionKind};

/// The safe point, and what garbage collection dropped; shared by the store and its
/// compaction filters.
#[derive(Debug)]
pub struct GcState {
    safe_point: AtomicU64,
    dropped: AtomicU64,
}

impl Default for GcState {
    fn default() -> Self {
        Self {
            // Until the node sets one, nothing is dropped: a compaction or a snapshot
            // that runs as the store opens must not take the versions a read inside
            // the retention window may still ask for, nor the rollback marks that
            // stop a late prewrite.
            safe_point: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl GcState {
    /// Versions hidden by a newer one at or below `ts` may be dropped.
    pub fn set_safe_point(&self, ts: u64) {
        self.safe_point.store(ts, Ordering::Relaxed);
    }

    pub fn safe_point(&self) -> u64 {
        self.safe_point.load(Ordering::Relaxed)
    }

    /// Version records (and rollback marks) dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Makes one [`VersionFilter`] per compaction.
pub(crate) struct VersionFilterFactory {
    pub(crate) state: Arc<GcState>,
    name: CString,
}

impl VersionFilterFactory {
    pub(crate) fn new(state: Arc<GcState>) -> Self {
        Self {
            state,
            name: c"shoal-version-gc".to_owned(),
        }
    }
}

impl CompactionFilterFactory for VersionFilterFactory {
    type Filter = VersionFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> VersionFilter {
        VersionFilter {
            pruner: Pruner::new(self.state.safe_point()),
            state: self.state.clone(),
            name: self.name.clone(),
        }
    }

    fn name(&self) -> &CStr {
        &self.name
    }
}

/// Decides, for data keys seen in key order, which versions garbage collection may
/// drop at `safe_point`: a compaction's filter and a snapshot's writer each use one.
#[derive(Debug)]
pub struct Pruner {
    safe_point: u64,
    /// The prefix of the key whose newest version at or below the safe point was
    /// already seen: every later version of that key is hidden.
    hidden_below: Option<Vec<u8>>,
}

impl Pruner {
    pub fn new(safe_point: u64) -> Self {
        Self {
            safe_point,
            hidden_below: None,
        }
    }

    /// Whether data key `key` (stored value `value`), the next in key order, may be
    /// dropped.
    pub fn prunes(&mut self, key: &[u8], value: &[u8]) -> bool {
        // System keys and ranges' own keys have one version each.
        let Some((user, ts)) = keys::parse_mvcc_key(key) else {
            return false;
        };
        if ts == keys::LOCK_TS || ts > self.safe_point {
            return false;
        }
        let prefix = &key[..key.len() - 8];
        if self.hidden_below.as_deref() == Some(prefix) {
            return true;
        }
        match keys::decode_version(value) {
            Some((VersionKind::Rollback, _, _)) => true,
            Some((VersionKind::Put | VersionKind::Delete, _, _)) => {
                self.hidden_below = Some(keys::mvcc_prefix(&user));
                false
            }
            // Not ours to judge: kept for the reader to report.
            None => false,
        }
    }
}

/// The filter of one compaction: its safe point is fixed when it starts.
pub(crate) struct VersionFilter {
    pruner: Pruner,
    state: Arc<GcState>,
    name: CString,
}

impl VersionFilter {
    /// What to do with data key `key`, whose stored value is `value`.
    pub(crate) fn decide(&mut self, key: &[u8], value: &[u8]) -> Decision {
        if self.pruner.prunes(key, value) {
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
            Decision::Remove
        } else {
            Decision::Keep
        }
    }
}

impl CompactionFilter for VersionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> Decision {
        self.decide(key, value)
    }

    fn name(&self) -> &CStr {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{encode_version, lock_key, mvcc_key};

    fn put(ts: u64) -> Vec<u8> {
        encode_version(VersionKind::Put, ts, b"v")
    }

    #[test]
    fn before_the_node_sets_a_safe_point_nothing_is_dropped() {
        let mut p = Pruner::new(GcState::default().safe_point());
        assert!(!p.prunes(&mvcc_key(b"a", 90), &put(90)));
        assert!(!p.prunes(&mvcc_key(b"a", 80), &put(80)));
        let mark = encode_version(VersionKind::Rollback, 70, b"");
        assert!(!p.prunes(&mvcc_key(b"a", 70), &mark));
    }

    #[test]
    fn versions_hidden_below_the_safe_point_are_dropped_and_counted() {
        let state = Arc::new(GcState::default());
        state.set_safe_point(100);
        let mut f = VersionFilterFactory::new(state.clone()).create(CompactionFilterContext {
            is_full_compaction: false,
            is_manual_compaction: true,
        });
        let keep = |d: Decision| matches!(d, Decision::Keep);
        // Key a: lock, a version above the safe point, the newest at or below it,
        // then older ones and a rollback mark.
        assert!(keep(f.decide(&lock_key(b"a"), b"lock")));
        assert!(keep(f.decide(&mvcc_key(b"a", 150), &put(150))));
        assert!(keep(f.decide(&mvcc_key(b"a", 90), &put(90))));
        assert!(!keep(f.decide(&mvcc_key(b"a", 80), &put(80))));
        assert!(!keep(f.decide(
            &mvcc_key(b"a", 70),
            &encode_version(VersionKind::Rollback, 70, b"")
        )));
        // Key "a\0" is another key: its newest at or below the safe point stays.
        assert!(keep(f.decide(&mvcc_key(b"a\0", 60), &put(60))));
        // A tombstone hides what is below it, and stays.
        let del = encode_version(VersionKind::Delete, 50, b"");
        assert!(keep(f.decide(&mvcc_key(b"b", 50), &del)));
        assert!(!keep(f.decide(&mvcc_key(b"b", 40), &put(40))));
        // A rollback mark below the safe point goes even as a key's first record.
        assert!(!keep(f.decide(
            &mvcc_key(b"c", 30),
            &encode_version(VersionKind::Rollback, 30, b"")
        )));
        assert!(keep(f.decide(&mvcc_key(b"c", 20), &put(20))));
        // Not user keys: kept.
        assert!(keep(f.decide(&keys::system_key(b"x"), b"1")));
        assert_eq!(state.dropped(), 4);
    }
}
