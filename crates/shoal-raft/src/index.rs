//! [`RangeIndex`]: a node's ranges by span, kept up to date by its state machines as
//! their descriptors change.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use shoal_proto::span;

use crate::range::RangeDescriptor;

/// Which of a node's replicas holds a key.
#[derive(Debug, Default)]
pub struct RangeIndex {
    inner: RwLock<IndexInner>,
    /// Counts the calls of [`RangeIndex::set`] (every change of a replica's descriptor
    /// on this node, every replica forgotten) and of [`RangeIndex::note_change`].
    changes: AtomicU64,
}

#[derive(Debug, Default)]
struct IndexInner {
    /// start -> (end, range id)
    by_start: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    /// range id -> start
    starts: HashMap<u64, Vec<u8>>,
}

impl RangeIndex {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records (or, with `None`, forgets) the span of `range_id`.
    pub fn set(&self, range_id: u64, d: Option<&RangeDescriptor>) {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        self.changes.fetch_add(1, Ordering::Release);
        if let Some(start) = g.starts.remove(&range_id) {
            if g.by_start
                .get(&start)
                .is_some_and(|(_, id)| *id == range_id)
            {
                g.by_start.remove(&start);
            }
        }
        if let Some(d) = d {
            g.starts.insert(range_id, d.start.clone());
            g.by_start
                .insert(d.start.clone(), (d.end.clone(), range_id));
        }
    }

    /// Counts a change of what this node knows of the ranges that [`RangeIndex::set`]
    /// does not see: a write of the routing table in its replica of the meta range
    /// (once it is in the store), a replica added to its router.
    pub fn note_change(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// How many times a descriptor was set or forgotten here, or the routing table
    /// written: while it stays, so do this node's replicas' descriptors and its copy
    /// of the routing table.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The range holding `key`, if this node holds one.
    pub fn lookup(&self, key: &[u8]) -> Option<u64> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let (start, (end, id)) = g
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        span::contains(start, end, key).then_some(*id)
    }

    /// The range holding the keys just before `end` (an empty `end`: the last keys),
    /// if this node holds it: for scans in descending order.
    pub fn lookup_before(&self, end: &[u8]) -> Option<u64> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let (start, (range_end, id)) = if end.is_empty() {
            g.by_start.iter().next_back()?
        } else {
            g.by_start
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(end)))
                .next_back()?
        };
        span::holds_before(start, range_end, end).then_some(*id)
    }

    /// The range holding `key`, or with `before` the keys just before it.
    pub fn locate(&self, key: &[u8], before: bool) -> Option<u64> {
        if before {
            self.lookup_before(key)
        } else {
            self.lookup(key)
        }
    }

    /// The ranges whose spans overlap `[start, end)`, in key order.
    pub fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        g.by_start
            .iter()
            .filter(|(s, (e, _))| span::overlaps(s, e, start, end))
            .map(|(_, (_, id))| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_storage::KeySpan;

    #[test]
    fn keys_and_the_keys_before_them_find_their_range() {
        let d = RangeDescriptor::new(1, &KeySpan::all());
        let (l, r) = d.split(b"m", 7);
        let idx = RangeIndex::new();
        idx.set(1, Some(&l));
        idx.set(7, Some(&r));
        assert_eq!(idx.lookup(b"a"), Some(1));
        assert_eq!(idx.lookup(b"m"), Some(7));
        assert_eq!(idx.lookup(b"\xff"), Some(7));
        assert_eq!(idx.overlapping(b"l", b"n"), vec![1, 7]);
        assert_eq!(idx.overlapping(b"m", b""), vec![7]);
        assert_eq!(idx.lookup_before(b"m"), Some(1));
        assert_eq!(idx.lookup_before(b"m\0"), Some(7));
        assert_eq!(idx.lookup_before(b""), Some(7));
        assert_eq!(idx.lookup_before(b"a"), Some(1));
        assert_eq!(idx.locate(b"m", true), Some(1));
        idx.set(7, None);
        assert_eq!(idx.lookup(b"z"), None);
    }
}
