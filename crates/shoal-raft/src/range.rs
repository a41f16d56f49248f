//! Range descriptors: what a range covers, which nodes replicate it, and its epoch.
//!
//! A range's descriptor is one of its own replicated keys
//! ([`shoal_storage::keys::DESCRIPTOR_SUFFIX`]): it changes only through the range's
//! log, so every replica holds the same one at the same index. The state machine
//! rewrites it in the batch of the entry itself: a membership entry bumps `conf_ver`,
//! a split bumps `version` on both halves. The meta range keeps a copy of every
//! descriptor as the cluster's routing table (see [`crate::meta`]), reported by each
//! range's leader and only ever replaced by a newer epoch. A request that names an
//! older epoch than the range's current one was routed with stale knowledge.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use shoal_proto::span;
use shoal_storage::KeySpan;

/// The first range ("meta"): it covers the start of the key space and keeps the
/// cluster's system keys (the routing table of range descriptors, id counters).
pub const FIRST_RANGE_ID: u64 = 1;

/// Changes of a range's span (`version`) and of its replicas (`conf_ver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RangeEpoch {
    pub version: u64,
    pub conf_ver: u64,
}

/// A range frozen for a merge into its left neighbour `left_id`, by the merge
/// attempt `token`: it takes no request until the neighbour absorbs it (then it is
/// retired) or the attempt is abandoned (then it thaws).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frozen {
    pub left_id: u64,
    pub token: u64,
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
        span::contains(&self.start, &self.end, key)
    }

    /// Whether the span `[start, end)` (an empty `end` is unbounded) falls in the range.
    pub fn contains_span(&self, start: &[u8], end: &[u8]) -> bool {
        span::contains_span(&self.start, &self.end, start, end)
    }

    /// Whether the range holds the keys just before `key` (an empty `key`: the last
    /// keys), as a scan in descending order ending at `key` reads them.
    pub fn holds_before(&self, key: &[u8]) -> bool {
        span::holds_before(&self.start, &self.end, key)
    }

    /// Whether `key` falls strictly inside the range: a key the range can split at.
    pub fn splits_at(&self, key: &[u8]) -> bool {
        span::splits_at(&self.start, &self.end, key)
    }

    /// Whether `[start, end)` (empty `end`: unbounded) overlaps the range.
    pub fn overlaps(&self, start: &[u8], end: &[u8]) -> bool {
        span::overlaps(&self.start, &self.end, start, end)
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

    /// The range once it absorbed `right`, its right neighbour: its span runs to
    /// `right`'s end, and its epoch version is above both ranges' (a client routed by
    /// either one's descriptor is told the new one).
    pub fn merged_with(&self, right: &RangeDescriptor) -> Self {
        Self {
            end: right.end.clone(),
            epoch: RangeEpoch {
                version: self.epoch.version.max(right.epoch.version) + 1,
                conf_ver: self.epoch.conf_ver,
            },
            ..self.clone()
        }
    }

    /// Whether `node_id` holds a replica of the range (a voter or a learner).
    pub fn has_replica_on(&self, node_id: u64) -> bool {
        self.replicas.iter().any(|r| r.node_id == node_id)
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

    /// The descriptor with `members` as its replicas, those in `voters` as voters (a
    /// membership applied): the next `conf_ver`.
    pub fn with_replicas(
        &self,
        voters: &BTreeSet<u64>,
        members: impl IntoIterator<Item = u64>,
    ) -> Self {
        let mut replicas: Vec<ReplicaDescriptor> = members
            .into_iter()
            .map(|node_id| ReplicaDescriptor {
                node_id,
                voter: voters.contains(&node_id),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(l.holds_before(b"m") && !r.holds_before(b"m") && r.holds_before(b""));
        assert!(r.overlaps(b"a", b"") && !r.overlaps(b"a", b"m") && r.overlaps(b"l", b"n"));
    }
}
