//! What the placement driver and the nodes tell each other, in the payloads of the
//! `Peer` service's calls: a node's heartbeat ([`NodeReport`]) and a replica change
//! for a range's leader ([`ChangeReplicas`]). Encoded with the node's own codec; a
//! heartbeat of the version before still decodes (a rolling upgrade).

use serde::{Deserialize, Serialize};

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
        shoal_raft::codec::decode::<Self>(bytes).or_else(|e| {
            let v1: NodeReportV1 = shoal_raft::codec::decode(bytes).map_err(|_| e)?;
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
        let old = shoal_raft::codec::encode(&V1 {
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
        let back = NodeReport::decode(&shoal_raft::codec::encode(&now).unwrap()).unwrap();
        assert_eq!(back, now);
        assert_eq!(back.led().collect::<Vec<_>>(), vec![(2, 512), (3, 9)]);
        assert!(NodeReport::decode(&old[..old.len() - 1]).is_err());
    }
}
