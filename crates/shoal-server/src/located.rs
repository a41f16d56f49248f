//! [`LocatedRange`]: a range's descriptor with the addresses of the nodes holding its
//! replicas, as a client is told of it (in `RangeLookup`, and in the details of a
//! refusal so it can re-route).

use std::collections::BTreeMap;

use shoal_raft::RangeDescriptor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedRange {
    pub desc: RangeDescriptor,
    /// node id -> advertised address, for the nodes the cluster knows.
    pub addrs: BTreeMap<u64, String>,
}

impl LocatedRange {
    /// The address of the node holding replica `node_id`, if known.
    pub fn addr(&self, node_id: u64) -> Option<&str> {
        self.addrs.get(&node_id).map(String::as_str)
    }
}
