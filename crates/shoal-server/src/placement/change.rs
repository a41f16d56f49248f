//! A replica change carried out on its range's leader, so that the range never goes
//! below quorum: a new replica is created empty on its node, filled by a snapshot as
//! a learner, and becomes a voter only once caught up, in the same joint change that
//! removes the replica it replaces. A leader never removes itself: it hands its
//! leadership over first, and the next leader makes the change.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use shoal_raft::{RangeDescriptor, Replica};

use crate::error::{Error, Result};
use crate::keeper::RangeKeeper;
use crate::node::Node;
use crate::placement::messages::{ChangeReplicas, ReplicaChange};
use crate::placement::plan::CAUGHT_UP_LAG;

/// How long a change may take on the range's leader (a learner's catch-up included).
pub const CHANGE_PATIENCE: Duration = Duration::from_secs(60);

/// A learner whose log has not moved for this long is asked for again (its replica
/// may have been destroyed).
const STALLED_LEARNER: Duration = Duration::from_secs(5);

/// On a range's leader: carries out a change the placement driver planned.
#[tracing::instrument(skip_all, fields(range_id = c.range_id, change = ?c.change))]
pub async fn carry_out(node: &Node, keeper: &RangeKeeper, c: ChangeReplicas) -> Result<()> {
    let r = node.router.get(c.range_id).ok_or_else(|| {
        Error::RangeNotFound(format!("range {} has no replica on this node", c.range_id))
    })?;
    r.check_leader()?;
    r.wake().await;
    let d = r.ready_descriptor()?;
    if d.epoch.conf_ver != c.conf_ver {
        return Err(Error::Refused(format!(
            "range {} is at conf_ver {}, not {}: its replicas changed since the change was planned",
            c.range_id, d.epoch.conf_ver, c.conf_ver
        )));
    }
    let m = r.metrics();
    let mem = m.membership_config.membership().clone();
    if let [.., goal] = mem.get_joint_config().as_slice() {
        if mem.get_joint_config().len() > 1 {
            // A change left between its joint and its uniform step (its leader lost the
            // leadership meanwhile): nothing else can change until it is finished, so
            // finish it, to the configuration it was going to.
            r.change_membership(ChangeMembers::ReplaceAllVoters(goal.clone()), false)
                .await?;
            tracing::info!(
                range_id = r.range_id,
                ?goal,
                "finished a joint configuration left behind"
            );
            keeper.report_now(&r).await;
            return Ok(());
        }
    }
    let me = node.node_id();
    let voters: BTreeSet<u64> = mem.voter_ids().collect();
    match c.change {
        ReplicaChange::TransferLeader { to } => {
            if !voters.contains(&to) {
                return Err(Error::Refused(format!(
                    "node {to} is not a voter of range {}",
                    c.range_id
                )));
            }
            hand_over(&r, to).await
        }
        ReplicaChange::Remove { node: gone }
        | ReplicaChange::Add {
            replacing: Some(gone),
            ..
        } if gone == me => {
            // A leader never removes itself: the next leader will.
            let to = voters
                .iter()
                .copied()
                .filter(|v| *v != me)
                .max_by_key(|v| {
                    m.replication
                        .as_ref()
                        .and_then(|x| x.get(v).cloned().flatten())
                        .map_or(0, |l| l.index)
                })
                .ok_or_else(|| Error::Refused("no other voter to lead".into()))?;
            hand_over(&r, to).await
        }
        ReplicaChange::Remove { node: gone } => {
            let ids = BTreeSet::from([gone]);
            let change = if voters.contains(&gone) {
                ChangeMembers::RemoveVoters(ids)
            } else {
                ChangeMembers::RemoveNodes(ids)
            };
            r.change_membership(change, false).await?;
            tracing::info!(range_id = r.range_id, node = gone, "removed a replica");
            keeper.report_now(&r).await;
            Ok(())
        }
        ReplicaChange::Add {
            node: to,
            replacing,
        } => add_replica(node, keeper, &r, &d, to, replacing).await,
    }
}

/// Moves `r`'s leadership to `to`, waiting (a little) until it moved.
async fn hand_over(r: &Replica, to: u64) -> Result<()> {
    r.transfer_leader(to).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.is_leader() {
        if Instant::now() >= deadline {
            return Err(Error::Unavailable("the leadership did not move".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(range_id = r.range_id, to, "moved the leadership");
    Ok(())
}

/// Adds a replica of `r` on node `to`: created empty there, filled as a learner, then
/// a voter in the change that also removes `replacing`.
async fn add_replica(
    node: &Node,
    keeper: &RangeKeeper,
    r: &Replica,
    d: &RangeDescriptor,
    to: u64,
    replacing: Option<u64>,
) -> Result<()> {
    let info = node.member(to).ok_or_else(|| Error::UnknownNode(to))?;
    let known = r.with_metrics(|m| m.membership_config.membership().get_node(&to).is_some());
    // Asked again for a learner already added: its replica may have been destroyed
    // meanwhile, as left from an earlier membership, before the routing table counted
    // it again.
    let addr = info.addr.clone();
    keeper.create_replica_on(to, &addr, d).await?;
    if !known {
        r.add_learner(to, info).await?;
        tracing::info!(range_id = r.range_id, node = to, "added a learner");
    }
    // Caught up: within a few entries of the leader's log.
    let deadline = Instant::now() + CHANGE_PATIENCE;
    let mut progress = (0, Instant::now());
    loop {
        let (last, matched, leader) = r.with_metrics(|m| {
            (
                m.last_log_index.unwrap_or(0),
                m.replication
                    .as_ref()
                    .and_then(|x| x.get(&to).cloned().flatten())
                    .map_or(0, |l| l.index),
                m.current_leader,
            )
        });
        if matched > 0 && matched + CAUGHT_UP_LAG >= last {
            break;
        }
        if matched != progress.0 {
            progress = (matched, Instant::now());
        } else if progress.1.elapsed() >= STALLED_LEARNER {
            // No progress: its replica may be gone; asking again recreates it.
            if let Err(e) = keeper.create_replica_on(to, &addr, d).await {
                tracing::info!(range_id = r.range_id, node = to, error = %e, "asking again for a stalled learner's replica");
            }
            progress.1 = Instant::now();
        }
        if leader != Some(node.node_id()) {
            return Err(Error::NotLeader {
                range_id: r.range_id,
                leader_id: leader,
                leader_addr: None,
            });
        }
        if Instant::now() >= deadline {
            return Err(Error::Unavailable(format!(
                "the learner on node {to} did not catch up (at {matched} of {last})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut voters: BTreeSet<u64> =
        r.with_metrics(|m| m.membership_config.membership().voter_ids().collect());
    voters.insert(to);
    if let Some(old) = replacing {
        voters.remove(&old);
    }
    r.change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
        .await?;
    tracing::info!(
        range_id = r.range_id,
        node = to,
        ?replacing,
        "a caught-up learner became a voter"
    );
    keeper.report_now(r).await;
    Ok(())
}
