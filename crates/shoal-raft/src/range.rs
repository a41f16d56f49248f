//! Range descriptors: what a range covers, which nodes replicate it, and its epoch.
//!
//! A descriptor lives in the meta range's system keys
//! ([`shoal_storage::keys::range_descriptor_key`]). It changes only through a
//! range's own log, so every replica holds the same one at the same index: the state
//! machine rewrites it, in the batch of the entry itself, when a membership entry is
//! applied (`conf_ver` + 1). `version` will count splits and merges. A request that
//! names an older epoch than the range's current one was routed with stale
//! knowledge.

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
}
