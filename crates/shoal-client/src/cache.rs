//! [`RangeCache`]: the client's descriptors of the cluster's ranges by start key, each
//! with the address of its leader when known. Filled by `RangeLookup`, refreshed from
//! the descriptors a node sends with `EPOCH_MISMATCH` and `KEY_NOT_IN_RANGE`, and
//! trimmed of what a refusal proved stale.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use shoal_proto::span;
use shoal_proto::v1 as pb;

/// A range as the cache knows it.
#[derive(Debug, Clone)]
pub struct CachedRange {
    /// Shared: every request routed through the cache takes a copy of its entry.
    pub desc: Arc<pb::RangeDescriptor>,
    pub leader: Option<String>,
}

impl CachedRange {
    /// How a request names this range.
    pub fn target(&self) -> pb::RangeTarget {
        pb::RangeTarget {
            range_id: self.desc.range_id,
            epoch: self.desc.epoch,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        span::contains(&self.desc.start, &self.desc.end, key)
    }

    /// Whether the range holds the keys just before `end` (empty: the last range).
    pub fn holds_before(&self, end: &[u8]) -> bool {
        span::holds_before(&self.desc.start, &self.desc.end, end)
    }

    fn version(&self) -> u64 {
        self.desc.epoch.map_or(0, |e| e.version)
    }
}

/// Descriptors by start key; spans in the cache never overlap.
#[derive(Debug, Default)]
pub struct RangeCache {
    by_start: Mutex<BTreeMap<Vec<u8>, CachedRange>>,
}

impl RangeCache {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, CachedRange>> {
        self.by_start.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached range holding `key` (with `before`: the keys just before it).
    pub fn get(&self, key: &[u8], before: bool) -> Option<CachedRange> {
        let map = self.map();
        let upto = match (before, key.is_empty()) {
            (false, _) => Bound::Included(key),
            (true, false) => Bound::Excluded(key),
            (true, true) => Bound::Unbounded,
        };
        map.range::<[u8], _>((Bound::Unbounded, upto))
            .next_back()
            .map(|(_, c)| c)
            .filter(|c| {
                if before {
                    c.holds_before(key)
                } else {
                    c.contains(key)
                }
            })
            .cloned()
    }

    /// Records `desc`, dropping the entries it overlaps; unless a newer epoch of the
    /// same range is cached (details that arrived late). Returns the entry.
    pub fn insert(&self, desc: pb::RangeDescriptor, leader: Option<String>) -> CachedRange {
        let entry = CachedRange {
            desc: Arc::new(desc),
            leader,
        };
        let mut map = self.map();
        let d = &entry.desc;
        if map
            .values()
            .any(|c| c.desc.range_id == d.range_id && c.version() > entry.version())
        {
            return entry;
        }
        map.retain(|_, c| !span::overlaps(&c.desc.start, &c.desc.end, &d.start, &d.end));
        map.insert(d.start.clone(), entry.clone());
        entry
    }

    /// Forgets range `range_id`.
    pub fn evict(&self, range_id: u64) {
        self.map().retain(|_, c| c.desc.range_id != range_id);
    }

    /// Records (or, with `None`, forgets) the leader of range `range_id`.
    pub fn set_leader(&self, range_id: u64, leader: Option<String>) {
        for c in self.map().values_mut() {
            if c.desc.range_id == range_id {
                c.leader = leader.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(id: u64, start: &str, end: &str, version: u64) -> pb::RangeDescriptor {
        pb::RangeDescriptor {
            range_id: id,
            start: start.into(),
            end: end.into(),
            epoch: Some(pb::RangeEpoch {
                version,
                conf_ver: 1,
            }),
            replicas: Vec::new(),
        }
    }

    fn id(c: Option<CachedRange>) -> Option<u64> {
        c.map(|c| c.desc.range_id)
    }

    #[test]
    fn lookups_find_the_range_holding_a_key_or_the_keys_before_it() {
        let cache = RangeCache::default();
        cache.insert(desc(1, "", "m", 2), None);
        cache.insert(desc(2, "m", "", 2), Some("n2:7070".into()));
        assert_eq!(id(cache.get(b"a", false)), Some(1));
        assert_eq!(id(cache.get(b"m", false)), Some(2));
        assert_eq!(id(cache.get(b"m", true)), Some(1));
        assert_eq!(id(cache.get(b"", true)), Some(2));
        assert_eq!(
            cache.get(b"z", false).unwrap().leader.as_deref(),
            Some("n2:7070")
        );
        // A hole: nothing is guessed.
        cache.evict(1);
        assert_eq!(id(cache.get(b"a", false)), None);
        assert_eq!(id(cache.get(b"m", true)), None);
    }

    #[test]
    fn a_newer_descriptor_replaces_those_it_overlaps_and_an_older_one_is_ignored() {
        let cache = RangeCache::default();
        cache.insert(desc(1, "", "", 1), None);
        // Range 1 split at "m": its new left half and the right half replace it.
        cache.insert(desc(1, "", "m", 2), None);
        cache.insert(desc(5, "m", "", 2), None);
        assert_eq!(id(cache.get(b"x", false)), Some(5));
        assert_eq!(id(cache.get(b"a", false)), Some(1));
        // Late details of range 1 before the split change nothing.
        cache.insert(desc(1, "", "", 1), None);
        assert_eq!(id(cache.get(b"x", false)), Some(5));
        assert_eq!(cache.get(b"a", false).unwrap().desc.end, b"m".to_vec());
    }

    #[test]
    fn leaders_are_recorded_and_forgotten_per_range() {
        let cache = RangeCache::default();
        cache.insert(desc(1, "", "m", 2), None);
        cache.set_leader(1, Some("n1:7070".into()));
        assert_eq!(
            cache.get(b"a", false).unwrap().leader.as_deref(),
            Some("n1:7070")
        );
        cache.set_leader(1, None);
        assert_eq!(cache.get(b"a", false).unwrap().leader, None);
        let t = cache.get(b"a", false).unwrap().target();
        assert_eq!((t.range_id, t.epoch.unwrap().version), (1, 2));
    }
}
