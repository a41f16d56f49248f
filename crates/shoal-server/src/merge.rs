//! Merges of adjacent ranges, driven by the left-hand range's leader (see
//! `shoal_raft::merge` for the steps each range applies):
//!
//! 1. the right-hand range's leader freezes it (`Freeze`): from then on it serves no
//!    request, and its clients retry until the left range holds its keys;
//! 2. every replica of it applies the freeze: each node's copy of its keys is final;
//! 3. the left range applies `Merge` and takes over the span; each node retires its
//!    right-hand replica, keeping the keys, and the routing table forgets the range.
//!
//! A merge numbers its attempt by the left range's applied index when it begins. One
//! that fails after the freeze is abandoned: the left range is fenced against the
//! attempt (`FenceMerge`), then the right range thaws. A coordinator that vanished
//! between the two leaves the right range frozen: its leader abandons the attempt
//! the same way once it has been frozen for [`FROZEN_PATIENCE`] ([`recover`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_proto::error::ErrorCode;
use shoal_proto::v1::PeerMessage;
use shoal_raft::{Command, OpResult, RangeDescriptor, Refusal, Replica, FIRST_RANGE_ID};

use crate::convert::peer_message;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::peer_call;
use crate::routing;

/// How long a range may stay frozen before its leader abandons the merge.
pub const FROZEN_PATIENCE: Duration = Duration::from_secs(15);

/// How long a step waits for its range's leader to be known.
const LEADER_PATIENCE: Duration = Duration::from_secs(3);

/// How long a replica of the right-hand range may take to apply the freeze.
const APPLY_PATIENCE: Duration = Duration::from_secs(5);

/// A step of a merge, sent to another node (`MergeStep`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Step {
    /// On the right-hand range's leader: freeze it for `left_id`'s attempt `token`.
    Freeze { left_id: u64, token: u64 },
    /// On a node holding the right-hand range: wait until its replica applied
    /// `index` (the freeze).
    Applied { index: u64 },
    /// On the left-hand range's leader: fence it against attempt `token` of
    /// `right_id`.
    Fence { right_id: u64, token: u64 },
    /// On the right-hand range's leader: thaw it (attempt `token` abandoned).
    Thaw { token: u64 },
    /// On the meta range's leader: forget `range_id`'s record, merged at
    /// `below_version`.
    Forget { range_id: u64, below_version: u64 },
}

/// A step's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Answer {
    /// The range's descriptor on the node that answered.
    pub descriptor: Option<RangeDescriptor>,
    /// `Freeze`: the log index of the freeze.
    pub index: u64,
    /// `Fence`: whether the left range had absorbed the right one.
    pub merged: bool,
}

/// Merges the range holding `key`, which this node must lead, with the range after
/// it; counted in `shoal_range_merges_total` under `reason` (idle or request).
/// Returns the merged range's descriptor.
#[tracing::instrument(skip_all)]
pub async fn merge_range(node: &Node, key: &[u8], reason: &str) -> Result<RangeDescriptor> {
    let left = node
        .router
        .lookup(key)
        .ok_or_else(|| Error::RangeNotFound("no replica of this node holds the key".into()))?;
    left.check_leader()?;
    let ld = left.ready_descriptor()?;
    if ld.end.is_empty() {
        return Err(Error::Refused(format!(
            "range {} is the last range: no range follows it",
            ld.range_id
        )));
    }
    if left.frozen().is_some() {
        return Err(Error::Refused(format!(
            "range {} is itself frozen for a merge",
            ld.range_id
        )));
    }
    let right = node.router.lookup(&ld.end).ok_or_else(|| {
        Error::Refused(format!(
            "the range after range {} has no replica on this node: the two must have the same replicas to merge",
            ld.range_id
        ))
    })?;
    let rd = right.ready_descriptor()?;
    if rd.start != ld.end {
        return Err(Error::Unavailable(format!(
            "this node's replica of the range after range {} is not up to date",
            ld.range_id
        )));
    }
    if rd.replicas != ld.replicas || rd.replicas.iter().any(|r| !r.voter) {
        return Err(Error::Refused(format!(
            "ranges {} and {} have different replicas (or learners): they merge once placement gives them the same voters",
            ld.range_id, rd.range_id
        )));
    }
    let token = left.applied_index();
    let began = Instant::now();
    let freeze = Step::Freeze {
        left_id: ld.range_id,
        token,
    };
    // A freeze whose outcome is unknown may have applied: undone like a later failure.
    let absorbed = match step_on_leader(node, &right, freeze).await {
        Ok(frozen) => {
            tracing::info!(
                left = ld.range_id,
                right = rd.range_id,
                token,
                "froze the right-hand range of a merge"
            );
            absorb(node, &left, &right, token, frozen.index, began).await
        }
        Err(e) => Err(e),
    };
    match absorbed {
        Ok(merged) => {
            // The routing table hears of it from the left range's leader as it applies
            // the merge (`RangeKeeper::retire_merged`).
            node.metrics.count_merge(reason);
            Ok(merged)
        }
        Err(e) => {
            tracing::warn!(left = ld.range_id, right = rd.range_id, error = %e, "merge failed: abandoning it (undoing any freeze)");
            if let Err(e2) = abandon(node, ld.range_id, &right, token).await {
                tracing::warn!(right = rd.range_id, error = %e2, "abandoning a merge; the frozen range's leader will");
            }
            Err(e)
        }
    }
}

/// Once the right range is frozen at `index`: waits for every replica of it to apply
/// the freeze, then has the left range take it over.
async fn absorb(
    node: &Node,
    left: &Replica,
    right: &Replica,
    token: u64,
    index: u64,
    began: Instant,
) -> Result<RangeDescriptor> {
    // Read after the freeze: the replicas it froze with (none change while frozen).
    let rd = right.ready_descriptor()?;
    for r in &rd.replicas {
        let a = step_on(node, right, r.node_id, Step::Applied { index }).await?;
        let same = a.descriptor.as_ref().is_some_and(|d| d.epoch == rd.epoch);
        if !same {
            return Err(Error::Unavailable(format!(
                "node {}'s replica of range {} applied the freeze at another epoch",
                r.node_id, rd.range_id
            )));
        }
    }
    // Well within the frozen range's patience, or its leader may be abandoning it.
    if began.elapsed() > FROZEN_PATIENCE / 2 {
        return Err(Error::Unavailable("the merge took too long".into()));
    }
    shoal_raft::failpoints::hit("merge-before-absorb")
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let resp = left
        .propose(Command::Merge {
            right: rd.clone(),
            token,
        })
        .await?;
    if let Some(Refusal::Other(why)) = resp.refusal() {
        return Err(Error::Refused(format!("merge refused: {why}")));
    }
    Ok(left.ready_descriptor()?)
}

/// Tells the routing table of a merge: the merged range's descriptor, and the right
/// range gone (a later round of the leader's upkeep reports again what fails here).
pub async fn announce(node: &Node, merged: &RangeDescriptor, right_id: u64) {
    if let Err(e) = routing::report(node, vec![merged.clone()]).await {
        tracing::info!(error = %e, "reporting a merge to the meta range; will retry");
    }
    let forget = Step::Forget {
        range_id: right_id,
        below_version: merged.epoch.version,
    };
    let done = match node.meta_leader() {
        Ok(None) => serve(node, FIRST_RANGE_ID, forget).await.map(|_| ()),
        Ok(Some((id, addr))) => call(node, &addr, FIRST_RANGE_ID, id, &forget)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = done {
        tracing::info!(range_id = right_id, error = %e, "dropping a merged range from the routing table");
    }
}

/// Abandons attempt `token` of merging `right` into `left_id`: fences the left range
/// against it, then thaws the right range unless the left one absorbed it. Returns
/// whether it was absorbed.
pub async fn abandon(node: &Node, left_id: u64, right: &Replica, token: u64) -> Result<bool> {
    let fence = Step::Fence {
        right_id: right.range_id,
        token,
    };
    let merged = match node.router.get(left_id) {
        Some(l) => step_on_leader(node, &l, fence).await?.merged,
        None => {
            return Err(Error::RangeNotFound(format!(
                "range {left_id} has no replica on this node"
            )))
        }
    };
    if !merged {
        step_on_leader(node, right, Step::Thaw { token }).await?;
        tracing::info!(
            left = left_id,
            right = right.range_id,
            token,
            "abandoned a merge: the right-hand range thawed"
        );
    }
    Ok(merged)
}

/// On the leader of a range frozen longer than [`FROZEN_PATIENCE`]: abandons the
/// merge that froze it (or finds it done).
pub async fn recover(node: &Node, r: &Replica) {
    let Some(f) = r.frozen() else {
        return;
    };
    match abandon(node, f.left_id, r, f.token).await {
        Ok(true) => tracing::info!(
            range_id = r.range_id,
            left = f.left_id,
            "a stalled merge had completed"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(range_id = r.range_id, error = %e, "abandoning a stalled merge"),
    }
}

/// Runs `step` on the leader of `r`'s range: here, or at the leader's node; while
/// the range elects one (or this replica learns of it), for up to [`LEADER_PATIENCE`].
async fn step_on_leader(node: &Node, r: &Replica, step: Step) -> Result<Answer> {
    let deadline = Instant::now() + LEADER_PATIENCE;
    loop {
        let done = if r.is_leader() {
            serve(node, r.range_id, step.clone()).await
        } else {
            match r.leader() {
                (Some(id), Some(addr)) if id != r.node_id => {
                    call(node, &addr, r.range_id, id, &step).await
                }
                _ => Err(Error::Unavailable(format!(
                    "range {} has no leader now",
                    r.range_id
                ))),
            }
        };
        match done {
            Err(e)
                if (e.is_not_leader() || matches!(e, Error::Unavailable(_)))
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Runs `step` on node `node_id`'s replica of `r`'s range.
async fn step_on(node: &Node, r: &Replica, node_id: u64, step: Step) -> Result<Answer> {
    if node_id == node.node_id() {
        return serve(node, r.range_id, step).await;
    }
    let addr = r
        .with_metrics(|m| {
            m.membership_config
                .membership()
                .get_node(&node_id)
                .map(|n| n.addr.clone())
        })
        .ok_or_else(|| Error::UnknownNode(node_id))?;
    call(node, &addr, r.range_id, node_id, &step).await
}

async fn call(node: &Node, addr: &str, range_id: u64, node_id: u64, step: &Step) -> Result<Answer> {
    let msg = peer_message(range_id, node_id, step)?;
    let resp: PeerMessage = peer_call::call(node, addr, "MergeStep", msg).await?;
    shoal_raft::codec::decode(&resp.payload)
        .map_err(|e| Error::Internal(format!("a merge step's answer: {e}")))
}

/// Serves `step` for this node's replica of `range_id`.
pub async fn serve(node: &Node, range_id: u64, step: Step) -> Result<Answer> {
    let r = node.router.get(range_id).ok_or_else(|| {
        Error::RangeNotFound(format!("range {range_id} has no replica on this node"))
    })?;
    let mut answer = Answer::default();
    match step {
        Step::Freeze { left_id, token } => {
            r.check_leader()?;
            let resp = r.freeze(left_id, token).await?;
            refused(&resp)?;
            answer.index = resp.version;
        }
        Step::Applied { index } => {
            let deadline = Instant::now() + APPLY_PATIENCE;
            while r.applied_index() < index {
                if Instant::now() > deadline {
                    return Err(Error::Unavailable(format!(
                        "range {range_id} has not applied index {index} here"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if r.frozen().is_none() {
                return Err(Error::Refused(format!(
                    "range {range_id} is not frozen here"
                )));
            }
        }
        Step::Fence { right_id, token } => {
            r.check_leader()?;
            let resp = r.propose(Command::FenceMerge { right_id, token }).await?;
            refused(&resp)?;
            answer.merged = matches!(
                resp.results.first(),
                Some(OpResult::MergeFenced { merged: true })
            );
        }
        Step::Thaw { token } => {
            r.check_leader()?;
            refused(&r.propose(Command::Thaw { token }).await?)?;
        }
        Step::Forget {
            range_id,
            below_version,
        } => {
            node.leads_meta()?;
            let cmd = Command::DropDescriptor {
                range_id,
                below_version,
            };
            refused(&node.meta()?.propose(cmd).await?)?;
        }
    }
    answer.descriptor = r.descriptor();
    Ok(answer)
}

fn refused(resp: &shoal_raft::CommandResponse) -> Result<()> {
    match resp.refusal() {
        None => Ok(()),
        Some(why) => Err(Error::invalid(
            ErrorCode::InvalidArgument,
            format!("merge step refused: {why:?}"),
        )),
    }
}
