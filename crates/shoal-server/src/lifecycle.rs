//! A node's health as the kubelet sees it, and how it stops.
//!
//! - [`readiness`]: the checks behind `/readyz` (and `shoal node status`): the node
//!   belongs to a cluster, is not draining, is a member of the meta range with a known
//!   leader, and has caught up (in contact with its leader, or for the leader with a
//!   quorum, lately; within [`READY_LAG`] entries of the commit index).
//! - [`check_fatal`]: a replica whose Raft stopped on its own (a storage error) stops
//!   the node, so its supervisor restarts it from what is durable.
//! - [`drain`]: on SIGTERM or `shoal node drain`, readiness turns false, new requests
//!   are refused, and leaderships move to the most caught-up voters.

use std::time::{Duration, Instant};

use shoal_raft::FIRST_RANGE_ID;

use crate::node::Node;

/// A replica more than this many committed entries behind is not ready.
pub const READY_LAG: u64 = 100;

/// Whether this node serves, check by check: `(name, Ok or why not)`.
pub fn readiness(node: &Node) -> Vec<(&'static str, Result<(), String>)> {
    let mut checks = Vec::new();
    checks.push((
        "initialized",
        match node.ident() {
            Some(_) => Ok(()),
            None => Err("not part of a cluster yet".into()),
        },
    ));
    checks.push((
        "not_draining",
        if node.is_draining() {
            Err("shutting down".into())
        } else {
            Ok(())
        },
    ));
    let meta = node.router.get(FIRST_RANGE_ID);
    let joined = match &meta {
        None => Err("no replica open".to_string()),
        Some(r) => r.with_metrics(|m| {
            let member = m
                .membership_config
                .membership()
                .get_node(&r.node_id)
                .is_some();
            if !member {
                Err("not yet a member of range 1".into())
            } else if m.current_leader.is_none() {
                Err("range 1 has no known leader".into())
            } else {
                Ok(())
            }
        }),
    };
    checks.push(("joined", joined));
    let caught_up = match &meta {
        None => Err("no replica open".to_string()),
        Some(r) => {
            let window = Duration::from_millis((node.cfg.election_timeout_ms * 3).max(2000));
            let (applied, committed) = r.with_metrics(|m| {
                (
                    m.last_applied.as_ref().map_or(0, |l| l.index),
                    m.local_committed.as_ref().map_or(0, |l| l.index),
                )
            });
            match r.leader_contact_age() {
                None => Err("no contact with a leader yet".to_string()),
                Some(age) if age > window => Err(format!(
                    "no contact with the leader (or, on the leader, with a quorum) for {} ms",
                    age.as_millis()
                )),
                Some(_) if committed > applied + READY_LAG => Err(format!(
                    "applied {applied} of {committed} committed entries"
                )),
                Some(_) => Ok(()),
            }
        }
    };
    checks.push(("caught_up", caught_up));
    checks
}

/// Stops the node when a replica's Raft stopped on its own (a storage error: a full
/// disk, a failed fsync). Such a replica can neither serve nor recover in this
/// process, and what it acknowledged is durable: exiting lets the kubelet (or any
/// supervisor) restart the node from its store, as it would a crash.
pub fn check_fatal(node: &Node) {
    if node.shutdown.is_cancelled() {
        return;
    }
    for r in node.router.all().iter() {
        if let Some(e) = r.failure() {
            tracing::error!(range_id = r.range_id, error = %e, "a replica stopped; exiting so the node restarts from its store");
            node.set_fatal(format!("range {} stopped: {e}", r.range_id));
            return;
        }
    }
}

/// Prepares this node to stop: readiness turns false, new requests are refused, and
/// its leaderships move to the most caught-up voter. Returns the ranges it still
/// leads when `patience` runs out.
pub async fn drain(node: &Node, patience: Duration) -> Vec<u64> {
    node.set_draining();
    let deadline = Instant::now() + patience;
    let mut still = Vec::new();
    for r in node.router.all().iter() {
        let target = r.with_metrics(|m| {
            if m.current_leader != Some(r.node_id) {
                return None;
            }
            let matched = m.replication.clone().unwrap_or_default();
            Some(
                m.membership_config
                    .membership()
                    .voter_ids()
                    .filter(|id| *id != r.node_id)
                    .max_by_key(|id| matched.get(id).cloned().flatten().map_or(0, |l| l.index)),
            )
        });
        let Some(target) = target else { continue };
        let Some(to) = target else {
            still.push(r.range_id);
            continue;
        };
        tracing::info!(range_id = r.range_id, to, "moving leadership away");
        let moved = loop {
            if !r.is_leader() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            // A target not ready yet (it is catching up) is asked again.
            if let Err(e) = r.transfer_leader(to).await {
                tracing::warn!(error = %e, "leadership transfer");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if !moved {
            still.push(r.range_id);
        }
    }
    still
}
