//! Range descriptors: what a range covers, which nodes replicate it, and its epoch;
//! and [`RangeIndex`], a node's map from keys to the ranges it holds.
//!
//! A range's descriptor is one of its own replicated keys
//! ([`shoal_storage::keys::DESCRIPTOR_SUFFIX`]): it changes only through the range's
//! log, so every replica holds the same one at the same index. The state machine
//! rewrites it in the batch of the entry itself: a membership entry bumps `conf_ver`,
//! a split bumps `version` on both halves. The meta range keeps a copy of every
//! descriptor as the cluster's routing table ([`shoal_storage::keys::range_descriptor_key`]),
//! reported by each range's leader and only ever replaced by a newer epoch. A request
//! that names an older epoch than the range's current one was routed with stale
//! knowledge.

use std::ops::Bound;

use serde::{Deserialize, Serialize};
use shoal_storage::KeySpan;

use crate::types::StoredMembership;

/// Changes of a range's span (`version`) and of its replicas (`conf_ver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RangeEpoch {
    pub version: u64,
    pub conf_ver: u64,
}

/// One replica of a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDescriptor {
    pub node_id: u64,
    /// A voter, or a learner catching up.
    pub voter: bool,
}

/// A range: `[start, end)` of the user key space (an empty `end` is unbounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDescriptor {
    pub range_id: u64,
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub epoch: RangeEpoch,
    pub replicas: Vec<ReplicaDescriptor>,
}

impl RangeDescriptor {
    /// A range's first descriptor, before any membership was applied.
    pub fn new(range_id: u64, span: &KeySpan) -> Self {
        Self {
            range_id,
            start: span.start.clone(),
            end: span.end.clone(),
            epoch: RangeEpoch {
                version: 1,
                conf_ver: 0,
            },
            replicas: Vec::new(),
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// Whether the span `[start, end)` (an empty `end` is unbounded) falls in the range.
    pub fn contains_span(&self, start: &[u8], end: &[u8]) -> bool {
        start >= self.start.as_slice()
            && (self.end.is_empty() || (!end.is_empty() && end <= self.end.as_slice()))
    }

    /// Whether `key` falls strictly inside the range: a key the range can split at.
    pub fn splits_at(&self, key: &[u8]) -> bool {
        key > self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// The span the range covers.
    pub fn span(&self) -> KeySpan {
        KeySpan {
            start: self.start.clone(),
            end: self.end.clone(),
        }
    }

    /// Whether this descriptor is newer than `other` (of the same range): neither
    /// part of its epoch older, and not the same.
    pub fn supersedes(&self, other: &RangeDescriptor) -> bool {
        self.epoch.version >= other.epoch.version
            && self.epoch.conf_ver >= other.epoch.conf_ver
            && self != other
    }

    /// The two halves of a split at `key`: this range keeps `[start, key)`, the new
    /// range `right_id` takes `[key, end)` on the same replicas. Both get the next
    /// `version`.
    pub fn split(&self, key: &[u8], right_id: u64) -> (Self, Self) {
        let epoch = RangeEpoch {
            version: self.epoch.version + 1,
            conf_ver: self.epoch.conf_ver,
        };
        let left = Self {
            end: key.to_vec(),
            epoch,
            ..self.clone()
        };
        let right = Self {
            range_id: right_id,
            start: key.to_vec(),
            end: self.end.clone(),
            epoch,
            replicas: self.replicas.clone(),
        };
        (left, right)
    }

    /// Whether `[start, end)` (empty `end`: unbounded) overlaps the range.
    pub fn overlaps(&self, start: &[u8], end: &[u8]) -> bool {
        let starts_before_our_end = self.end.is_empty() || start < self.end.as_slice();
        let ends_after_our_start = end.is_empty() || end > self.start.as_slice();
        starts_before_our_end && ends_after_our_start
    }

    /// The descriptor once `membership` is applied: its voters and learners, and the
    /// next `conf_ver`.
    pub fn with_membership(&self, membership: &StoredMembership) -> Self {
        let m = membership.membership();
        let voters: std::collections::BTreeSet<u64> = m.voter_ids().collect();
        let mut replicas: Vec<ReplicaDescriptor> = m
            .nodes()
            .map(|(id, _)| ReplicaDescriptor {
                node_id: *id,
                voter: voters.contains(id),
            })
            .collect();
        replicas.sort_by_key(|r| r.node_id);
        Self {
            epoch: RangeEpoch {
                version: self.epoch.version,
                conf_ver: self.epoch.conf_ver + 1,
            },
            replicas,
            ..self.clone()
        }
    }
}

/// A node's heartbeat to the meta range's leader, once a second: it is alive, and
/// what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: u64,
    /// The ranges it holds a replica of, and those it leads.
    pub ranges: Vec<u64>,
    pub leading: Vec<u64>,
    /// Its data disk (zero: unknown).
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    /// The size in bytes of each range of `leading`, in the same order, as its leader
    /// last measured it. Last on the wire: a node of an earlier version sends a
    /// report without it (see [`NodeReport::decode`]).
    pub leading_bytes: Vec<u64>,
}

/// [`NodeReport`] as nodes sent it before `leading_bytes`.
#[derive(Deserialize)]
struct NodeReportV1 {
    node_id: u64,
    ranges: Vec<u64>,
    leading: Vec<u64>,
    capacity_bytes: u64,
    available_bytes: u64,
}

impl NodeReport {
    /// Decodes a report of this version or of the one before it (a node not yet
    /// upgraded, during a rolling upgrade, still counts as alive).
    pub fn decode(bytes: &[u8]) -> std::io::Result<Self> {
        crate::codec::decode::<Self>(bytes).or_else(|e| {
            let v1: NodeReportV1 = crate::codec::decode(bytes).map_err(|_| e)?;
            Ok(Self {
                node_id: v1.node_id,
                ranges: v1.ranges,
                leading: v1.leading,
                capacity_bytes: v1.capacity_bytes,
                available_bytes: v1.available_bytes,
                leading_bytes: Vec::new(),
            })
        })
    }

    /// The ranges it leads, each with its size (zero where the report has none).
    pub fn led(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.leading
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, self.leading_bytes.get(i).copied().unwrap_or(0)))
    }
}

/// What the placement driver asks of a range's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaChange {
    /// Adds a replica on `node`: created empty, filled as a learner, and made a voter
    /// once caught up, in the same joint change that removes `replacing` (if any).
    Add { node: u64, replacing: Option<u64> },
    /// Removes the replica on `node`.
    Remove { node: u64 },
    /// Moves the range's leadership to `to`.
    TransferLeader { to: u64 },
}

/// A [`ReplicaChange`] of range `range_id`, planned at its `conf_ver`: refused if the
/// range's replicas changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeReplicas {
    pub range_id: u64,
    pub conf_ver: u64,
    pub change: ReplicaChange,
}

/// A node's ranges by span: which of its replicas holds a key. Kept up to date by the
/// state machines as their descriptors change.
#[derive(Debug, Default)]
pub struct RangeIndex {
    inner: std::sync::RwLock<IndexInner>,
}

#[derive(Debug, Default)]
struct IndexInner {
    /// start -> (end, range id)
    by_start: std::collections::BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    /// range id -> start
    starts: std::collections::HashMap<u64, Vec<u8>>,
}

impl RangeIndex {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// Records (or, with `None`, forgets) the span of `range_id`.
    pub fn set(&self, range_id: u64, d: Option<&RangeDescriptor>) {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
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

    /// The range holding `key`, if this node holds one.
    pub fn lookup(&self, key: &[u8]) -> Option<u64> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let (_, (end, id)) = g
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        (end.is_empty() || key < end.as_slice()).then_some(*id)
    }

    /// The range holding the keys just before `end` (an empty `end`: the last keys),
    /// if this node holds it: for scans in descending order.
    pub fn lookup_before(&self, end: &[u8]) -> Option<u64> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let (_, (range_end, id)) = if end.is_empty() {
            g.by_start.iter().next_back()?
        } else {
            g.by_start
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(end)))
                .next_back()?
        };
        let holds = if end.is_empty() {
            range_end.is_empty()
        } else {
            range_end.is_empty() || end <= range_end.as_slice()
        };
        holds.then_some(*id)
    }

    /// The ranges whose spans overlap `[start, end)`, in key order.
    pub fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        g.by_start
            .iter()
            .filter(|(s, (e, _))| {
                (e.is_empty() || start < e.as_slice()) && (end.is_empty() || end > s.as_slice())
            })
            .map(|(_, (_, id))| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_of_the_version_before_sizes_still_decodes() {
        #[derive(Serialize)]
        struct V1 {
            node_id: u64,
            ranges: Vec<u64>,
            leading: Vec<u64>,
            capacity_bytes: u64,
            available_bytes: u64,
        }
        let old = crate::codec::encode(&V1 {
            node_id: 4,
            ranges: vec![1, 2, 3],
            leading: vec![2, 3],
            capacity_bytes: 100,
            available_bytes: 60,
        })
        .unwrap();
        let r = NodeReport::decode(&old).unwrap();
        assert_eq!((r.node_id, r.ranges.clone()), (4, vec![1, 2, 3]));
        assert_eq!(r.led().collect::<Vec<_>>(), vec![(2, 0), (3, 0)]);
        assert_eq!((r.capacity_bytes, r.available_bytes), (100, 60));

        let now = NodeReport {
            leading_bytes: vec![512, 9],
            ..r
        };
        let back = NodeReport::decode(&crate::codec::encode(&now).unwrap()).unwrap();
        assert_eq!(back, now);
        assert_eq!(back.led().collect::<Vec<_>>(), vec![(2, 512), (3, 9)]);
        assert!(NodeReport::decode(&old[..old.len() - 1]).is_err());
    }

    #[test]
    fn an_empty_end_is_unbounded() {
        let d = RangeDescriptor::new(
            1,
            &KeySpan {
                start: b"b".to_vec(),
                end: Vec::new(),
            },
        );
        assert!(!d.contains(b"a"));
        assert!(d.contains(b"b") && d.contains(b"\xff\xff"));
        let d = RangeDescriptor {
            end: b"m".to_vec(),
            ..d
        };
        assert!(d.contains(b"lzz") && !d.contains(b"m"));
        assert!(d.contains_span(b"b", b"m") && d.contains_span(b"c", b"d"));
        assert!(!d.contains_span(b"c", b"") && !d.contains_span(b"c", b"n"));
        assert!(!d.contains_span(b"a", b"c"));
    }

    #[test]
    fn a_split_cuts_the_span_and_bumps_both_versions() {
        let d = RangeDescriptor::new(1, &KeySpan::all());
        assert!(!d.splits_at(b"") && d.splits_at(b"m"));
        let (l, r) = d.split(b"m", 7);
        assert_eq!(
            (l.start.as_slice(), l.end.as_slice()),
            (&b""[..], &b"m"[..])
        );
        assert_eq!(
            (r.range_id, r.start.as_slice(), r.end.as_slice()),
            (7, &b"m"[..], &b""[..])
        );
        assert_eq!(l.epoch.version, 2);
        assert_eq!(l.epoch, r.epoch);
        assert!(l.supersedes(&d) && !d.supersedes(&l) && !l.supersedes(&l));
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
        idx.set(7, None);
        assert_eq!(idx.lookup(b"z"), None);
        assert!(r.overlaps(b"a", b"") && !r.overlaps(b"a", b"m") && r.overlaps(b"l", b"n"));
    }
}
