//! The routing table, as this node knows it: every range's descriptor, read from its
//! replica of the meta range (`shoal_raft::meta`, which writes it) and completed with
//! its own replicas' newer descriptors; and the calls that keep it, answered by the
//! meta range's leader (range ids for splits, reported descriptors).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::Duration;

use shoal_raft::{Command, OpResult, RangeDescriptor, FIRST_RANGE_ID};

use crate::convert::{peer_message, peer_reply};
use crate::error::{Error, Result};
use crate::node::Node;

/// How long a linearizable read of the routing table waits for its read barrier.
const READ_PATIENCE: Duration = Duration::from_secs(3);

/// Every range's descriptor, in key order (`linearizable`: after a read barrier on
/// the meta range). Kept spans never overlap.
pub async fn table(node: &Node, linearizable: bool) -> Result<Vec<RangeDescriptor>> {
    let meta = node.meta()?;
    if linearizable {
        meta.linearize(READ_PATIENCE).await?;
    }
    let mut by_id: HashMap<u64, RangeDescriptor> = shoal_raft::meta::descriptors(&node.engine)
        .map_err(|e| Error::Storage(format!("reading range descriptors: {e}")))?
        .into_iter()
        .map(|d| (d.range_id, d))
        .collect();
    // Ranges whose leaders have not reported yet (a split a moment ago, a cluster just
    // founded): this node's own descriptors fill the gaps.
    for rep in node.router.all() {
        let Some(d) = rep.descriptor() else { continue };
        match by_id.get(&d.range_id) {
            Some(o) if !d.supersedes(o) => {}
            _ => {
                by_id.insert(d.range_id, d);
            }
        }
    }
    // Newest first, each kept unless a newer one of another range overlaps it (the left
    // half of a split reported before the right): kept spans never overlap.
    let mut all: Vec<RangeDescriptor> = by_id.into_values().collect();
    all.sort_by(|a, b| b.epoch.cmp(&a.epoch).then(a.range_id.cmp(&b.range_id)));
    let mut kept: BTreeMap<Vec<u8>, RangeDescriptor> = BTreeMap::new();
    for d in all {
        // Among disjoint spans, only the last one starting before `d`'s end can overlap it.
        let upto = if d.end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(d.end.as_slice())
        };
        let overlapped = kept
            .range::<[u8], _>((Bound::Unbounded, upto))
            .next_back()
            .is_some_and(|(_, o)| o.overlaps(&d.start, &d.end));
        if !overlapped {
            kept.insert(d.start.clone(), d);
        }
    }
    Ok(kept.into_values().collect())
}

/// The range of this node's routing table (no read barrier) holding `key`, or with
/// `before` the keys just before it (an empty `key`: the last range), as a reverse
/// scan ending at `key` reads.
pub async fn range_for(node: &Node, key: &[u8], before: bool) -> Result<Option<RangeDescriptor>> {
    Ok(table(node, false).await?.into_iter().find(|d| {
        if before {
            d.holds_before(key)
        } else {
            d.contains(key)
        }
    }))
}

/// On the meta range's leader: allocates a range id.
pub async fn alloc_range_id_here(node: &Node) -> Result<u64> {
    let resp = node.meta()?.propose(Command::AllocRangeId).await?;
    match resp.results.first() {
        Some(OpResult::RangeId(id)) => Ok(*id),
        other => Err(Error::Internal(format!("range id allocation: {other:?}"))),
    }
}

/// A new range id, from the meta range's leader.
pub async fn alloc_range_id(node: &Node) -> Result<u64> {
    let Some((id, addr)) = node.meta_leader()? else {
        return alloc_range_id_here(node).await;
    };
    let resp = node
        .peer(&addr)?
        .alloc_range_id(peer_message(FIRST_RANGE_ID, id, &())?)
        .await
        .map_err(Error::Remote)?;
    peer_reply(&resp.into_inner())
}

/// On the meta range's leader: records descriptors in the routing table (each only if
/// newer than the recorded one).
pub async fn record_here(node: &Node, ds: Vec<RangeDescriptor>) -> Result<()> {
    node.meta()?.propose(Command::PutDescriptors(ds)).await?;
    Ok(())
}

/// Reports descriptors to the meta range's leader.
pub async fn report(node: &Node, ds: Vec<RangeDescriptor>) -> Result<()> {
    let Some((id, addr)) = node.meta_leader()? else {
        return record_here(node, ds).await;
    };
    node.peer(&addr)?
        .report_ranges(peer_message(FIRST_RANGE_ID, id, &ds)?)
        .await
        .map_err(Error::Remote)?;
    Ok(())
}
