//! The routing table, as this node knows it: every range's descriptor, read from its
//! replica of the meta range (`shoal_raft::meta`, which writes it) and completed with
//! its own replicas' newer descriptors; and the calls that keep it, answered by the
//! meta range's leader (range ids for splits, reported descriptors).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::Duration;

use shoal_proto::v1::PeerMessage;
use shoal_raft::{Command, OpResult, RangeDescriptor, FIRST_RANGE_ID};

use crate::convert::peer_message;
use crate::error::{Error, Result};
use crate::node::{lock, Node};
use crate::peer_call;

/// How long a linearizable read of the routing table waits for its read barrier.
const READ_PATIENCE: Duration = Duration::from_secs(3);

/// Every range's descriptor, in key order (`linearizable`: after a read barrier on
/// the meta range). Kept spans never overlap.
pub async fn table(node: &Node, linearizable: bool) -> Result<Vec<RangeDescriptor>> {
    let meta = node.meta()?;
    if linearizable {
        meta.linearize(READ_PATIENCE).await?;
    }
    // Read before the descriptors: a change after it moves it, and the table is read
    // again next time.
    let at = node.router.index.changes();
    // Kept while its meta replica writes no descriptor and none of its replicas'
    // descriptors changes (on the meta range's leader, the placement driver reads it
    // every second; with thousands of ranges the read, a scan and a decoding of each
    // descriptor, was the most of an idle node's work).
    if let Some((_, ranges)) = lock(&node.table).as_ref().filter(|(t, _)| *t == at) {
        return Ok(ranges.to_vec());
    }
    let ranges = read_table(node)?;
    *lock(&node.table) = Some((at, ranges.clone().into()));
    Ok(ranges)
}

/// Reads the routing table: the meta replica's descriptors, completed with this node's
/// own newer ones.
fn read_table(node: &Node) -> Result<Vec<RangeDescriptor>> {
    let mut by_id: HashMap<u64, RangeDescriptor> = shoal_raft::meta::descriptors(&node.engine)
        .map_err(|e| Error::Storage(format!("reading range descriptors: {e}")))?
        .into_iter()
        .map(|d| (d.range_id, d))
        .collect();
    // Ranges whose leaders have not reported yet (a split a moment ago, a cluster just
    // founded): this node's own descriptors fill the gaps, read in place (only one
    // that fills a gap is copied).
    for rep in node.router.all().iter() {
        let newer = rep.with_descriptor(|d| {
            d.filter(|d| by_id.get(&d.range_id).is_none_or(|o| d.supersedes(o)))
                .cloned()
        });
        if let Some(d) = newer {
            by_id.insert(d.range_id, d);
        }
    }
    Ok(tile(by_id.into_values().collect()))
}

/// The routing table from descriptors of distinct ranges, in key order, spans never
/// overlapping. Newer descriptors win: an older one is dropped where a newer one of
/// another range covers its start, and otherwise cut short where the first newer one
/// begins. A range that split keeps its id and its start, so the cut descriptor says
/// what the range's newest one will (a client routed by its old epoch is told the new
/// one): while the meta range catches up with a split, the table still tiles.
fn tile(mut all: Vec<RangeDescriptor>) -> Vec<RangeDescriptor> {
    all.sort_by(|a, b| b.epoch.cmp(&a.epoch).then(a.range_id.cmp(&b.range_id)));
    let mut kept: BTreeMap<Vec<u8>, RangeDescriptor> = BTreeMap::new();
    for mut d in all {
        // Kept spans are disjoint: only the last one starting at or before `d`'s start
        // can cover it, and the first one starting after it is where `d` is cut.
        let covered = kept
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(d.start.as_slice())))
            .next_back()
            .is_some_and(|(_, o)| o.contains(&d.start));
        if covered {
            continue;
        }
        let next = kept
            .range::<[u8], _>((Bound::Excluded(d.start.as_slice()), Bound::Unbounded))
            .next()
            .map(|(s, _)| s.clone());
        if let Some(s) = next.filter(|s| d.end.is_empty() || *s < d.end) {
            d.end = s;
        }
        kept.insert(d.start.clone(), d);
    }
    kept.into_values().collect()
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
    let msg = peer_message(FIRST_RANGE_ID, id, &())?;
    let resp: PeerMessage = peer_call::call(node, &addr, "AllocRangeId", msg).await?;
    // The meta range's leader's answer: one that does not decode is not the caller's
    // fault.
    shoal_raft::codec::decode(&resp.payload)
        .map_err(|e| Error::Internal(format!("range id allocation: {e}")))
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
    let msg = peer_message(FIRST_RANGE_ID, id, &ds)?;
    let _: PeerMessage = peer_call::call(node, &addr, "ReportRanges", msg).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_raft::RangeEpoch;

    fn d(id: u64, start: &str, end: &str, version: u64) -> RangeDescriptor {
        RangeDescriptor {
            range_id: id,
            start: start.into(),
            end: end.into(),
            epoch: RangeEpoch {
                version,
                conf_ver: 1,
            },
            replicas: Vec::new(),
        }
    }

    fn spans(t: &[RangeDescriptor]) -> Vec<(u64, String, String)> {
        t.iter()
            .map(|d| {
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (d.range_id, s(&d.start), s(&d.end))
            })
            .collect()
    }

    #[test]
    fn the_table_tiles_while_the_meta_range_catches_up_with_splits() {
        // Range 1 split at "m" (right half 2), then 2 at "t" (right half 3); only 2
        // and 3 reported their new descriptors yet: 1 is cut where 2 begins.
        let t = tile(vec![d(1, "", "", 1), d(2, "m", "t", 3), d(3, "t", "", 3)]);
        assert_eq!(
            spans(&t),
            [
                (1, "".into(), "m".into()),
                (2, "m".into(), "t".into()),
                (3, "t".into(), "".into())
            ]
        );
        // Its old epoch stays: a client routed by it is told the current one.
        assert_eq!(t[0].epoch.version, 1);
        // Only 3 reported: 1 and the old 2 share what is left in key order.
        let t = tile(vec![d(1, "", "m", 2), d(2, "m", "", 2), d(3, "t", "", 3)]);
        assert_eq!(
            spans(&t),
            [
                (1, "".into(), "m".into()),
                (2, "m".into(), "t".into()),
                (3, "t".into(), "".into())
            ]
        );
        // An older descriptor whose start a newer one covers is dropped.
        let t = tile(vec![d(4, "c", "x", 1), d(5, "a", "f", 2), d(6, "f", "", 2)]);
        assert_eq!(
            spans(&t),
            [(5, "a".into(), "f".into()), (6, "f".into(), "".into())]
        );
    }
}
