//! Placement: where each range's replicas live, decided by the meta range's leader.
//!
//! - Every node sends a heartbeat ([`NodeReport`]) to the meta range's leader once a
//!   second: it is alive, its disk's capacity, the replicas it holds and leads.
//! - The meta range's leader (the placement driver) reads the routing table and the
//!   heartbeats once a second and plans, with [`plan`]: replicas made again for ranges
//!   below the replication factor, or with replicas on dead, decommissioning or
//!   removed nodes; surplus replicas removed; then replicas and leaders spread evenly.
//!   Each change goes to the range's leader ([`ChangeReplicas`]), a few at a time.
//! - A range's leader carries a change out so that the range never goes below quorum:
//!   a new replica is created empty, filled as a learner, and becomes a voter only
//!   once caught up, in the same joint change that removes the one it replaces. A
//!   leader never removes itself: it hands its leadership over first.
//! - Every node destroys its replicas of ranges that no longer count it as a member
//!   (garbage collection), once the change that removed it is committed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use shoal_proto::error::{codes, not_leader, status};
use shoal_proto::v1::RaftMessage;
use shoal_raft::codec::encode;
use shoal_raft::{
    ChangeReplicas, NodeReport, RangeDescriptor, Replica, ReplicaChange, FIRST_RANGE_ID,
};
use shoal_storage::keys;
use tonic::{Code, Status};

use crate::node::{write_error, Node};
use crate::ranges::{internal, lock};

/// How often a node sends its heartbeat.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// A node not heard from for this long is no longer live: it takes no new replicas
/// (its own stay until it is dead).
const LIVE_WINDOW: Duration = Duration::from_secs(4);

/// Replica changes in flight at once, cluster-wide.
const MAX_CHANGES: usize = 4;

/// How long a change may take on the range's leader (a learner's catch-up included).
const CHANGE_PATIENCE: Duration = Duration::from_secs(60);

/// After a change completed, its range is left alone this long, so the routing table
/// catches up with it before the range is planned again.
const SETTLE: Duration = Duration::from_secs(3);

/// A learner within this many entries of the leader's log is caught up.
const CAUGHT_UP_LAG: u64 = 20;

/// A learner whose log has not moved for this long is asked for again (its replica
/// may have been destroyed).
const STALLED_LEARNER: Duration = Duration::from_secs(5);

/// An empty replica (created for a snapshot) left this long without one, of a range
/// that does not count this node, is destroyed.
const ORPHAN_AFTER: Duration = Duration::from_secs(10);

/// What the placement driver knows of a node of the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NodeView {
    /// Heard from lately: it may take new replicas.
    pub live: bool,
    /// Not heard from for `--time-until-dead`: its replicas are made again elsewhere.
    pub dead: bool,
    pub decommissioning: bool,
}

impl NodeView {
    /// Whether its replicas stay where they are.
    fn keeps(&self) -> bool {
        !self.dead && !self.decommissioning
    }

    /// Whether it may take new replicas.
    fn takes(&self) -> bool {
        self.live && self.keeps()
    }
}

/// The most voters the meta range has. Every node holds a copy of it (its members are
/// the cluster's nodes), but past five voters a larger quorum only makes its writes
/// wait for more nodes: the others follow it as learners.
pub(crate) const META_VOTERS: usize = 5;

/// The meta range's voters as the driver wants them, from the current `voters`, the
/// learners `ready` to vote (caught up) and what it knows of the nodes; `me`, its
/// leader, stays a voter. A dead or decommissioning voter is swapped for a ready
/// learner, never dropped for none; learners are promoted up to [`META_VOTERS`], and
/// past it voters step down to learners, those leaving first.
pub(crate) fn meta_voters(
    voters: &BTreeSet<u64>,
    ready: &BTreeSet<u64>,
    nodes: &BTreeMap<u64, NodeView>,
    me: u64,
) -> BTreeSet<u64> {
    let keeps = |id: &u64| *id == me || nodes.get(id).is_none_or(NodeView::keeps);
    let mut spare = ready
        .iter()
        .filter(|id| !voters.contains(id) && nodes.get(id).is_some_and(NodeView::keeps))
        .copied();
    let mut goal = voters.clone();
    for leaving in voters.iter().filter(|v| !keeps(v)) {
        let Some(s) = spare.next() else { break };
        goal.remove(leaving);
        goal.insert(s);
    }
    while goal.len() < META_VOTERS {
        let Some(s) = spare.next() else { break };
        goal.insert(s);
    }
    // Dead nodes step down first, then decommissioning ones, then the newest.
    let leaving = |id: &u64| {
        nodes
            .get(id)
            .map_or((false, false), |n| (n.dead, !keeps(id)))
    };
    while goal.len() > META_VOTERS {
        let Some(out) = goal
            .iter()
            .filter(|v| **v != me)
            .max_by_key(|v| (leaving(v), **v))
            .copied()
        else {
            break;
        };
        goal.remove(&out);
    }
    goal
}

/// A change the driver plans, for the range's leader `leader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Planned {
    pub leader: u64,
    pub change: ChangeReplicas,
}

/// Plans at most `budget` replica changes for the ranges in `ranges` (descriptor and
/// leader, if known), given the cluster's nodes (a replica on a node not among them
/// is on a node removed from the cluster). Ranges in `busy` have a change in flight.
///
/// In order: repairs (learners left over, too few replicas on nodes that keep them,
/// too many replicas); only when none is needed, replica counts evened out (a move
/// when a node holds at least two more than another), then leaderships.
pub(crate) fn plan(
    nodes: &BTreeMap<u64, NodeView>,
    ranges: &[(RangeDescriptor, Option<u64>)],
    rf: usize,
    busy: &HashSet<u64>,
    budget: usize,
) -> Vec<Planned> {
    // A cluster of fewer nodes holds each range on all of them.
    let rf = rf.min(nodes.len()).max(1);
    let keeps = |id: u64| nodes.get(&id).is_some_and(NodeView::keeps);
    let takes = |id: u64| nodes.get(&id).is_some_and(NodeView::takes);
    let mut counts: BTreeMap<u64, usize> = nodes.keys().map(|id| (*id, 0)).collect();
    let mut leaders = counts.clone();
    let data: Vec<&(RangeDescriptor, Option<u64>)> = ranges
        .iter()
        .filter(|(d, _)| d.range_id != FIRST_RANGE_ID)
        .collect();
    for (d, leader) in &data {
        for r in &d.replicas {
            *counts.entry(r.node_id).or_default() += 1;
        }
        if let Some(l) = leader {
            *leaders.entry(*l).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    let push = |out: &mut Vec<Planned>, d: &RangeDescriptor, leader: u64, change| {
        out.push(Planned {
            leader,
            change: ChangeReplicas {
                range_id: d.range_id,
                conf_ver: d.epoch.conf_ver,
                change,
            },
        })
    };

    // Repairs.
    let mut wanting = false;
    for (d, leader) in &data {
        let voters: Vec<u64> = d
            .replicas
            .iter()
            .filter(|r| r.voter)
            .map(|r| r.node_id)
            .collect();
        let learner = d.replicas.iter().find(|r| !r.voter).map(|r| r.node_id);
        let good = voters.iter().filter(|v| keeps(**v)).count();
        if learner.is_none() && good == voters.len() && voters.len() == rf {
            continue;
        }
        wanting = true;
        let (Some(leader), false) = (*leader, busy.contains(&d.range_id)) else {
            continue;
        };
        if out.len() >= budget {
            break;
        }
        // A replica leaving: one on a node removed from the cluster first, then on a
        // dead one, then on a decommissioning one.
        let leaving = voters
            .iter()
            .copied()
            .filter(|v| !keeps(*v))
            .min_by_key(|v| match nodes.get(v) {
                None => 0,
                Some(n) if n.dead => 1,
                Some(_) => 2,
            });
        let replacing = if voters.len() >= rf { leaving } else { None };
        let change = if let Some(l) = learner {
            if keeps(l) && good < rf {
                Some(ReplicaChange::Add { node: l, replacing })
            } else {
                Some(ReplicaChange::Remove { node: l })
            }
        } else if good < rf {
            let target = counts
                .iter()
                .filter(|(id, _)| takes(**id) && !d.replicas.iter().any(|r| r.node_id == **id))
                .min_by_key(|(id, c)| (**c, leaders.get(id).copied().unwrap_or(0), **id))
                .map(|(id, _)| *id);
            match target {
                Some(node) => Some(ReplicaChange::Add { node, replacing }),
                // Nowhere to go: a replica on a node removed from the cluster is
                // dropped (it can never come back); others wait for a node.
                None => voters
                    .iter()
                    .copied()
                    .find(|v| !nodes.contains_key(v))
                    .filter(|_| voters.len() > 1)
                    .map(|node| ReplicaChange::Remove { node }),
            }
        } else if voters.len() > rf {
            let victim = leaving.unwrap_or_else(|| {
                *voters
                    .iter()
                    .max_by_key(|v| (counts.get(v).copied().unwrap_or(0), **v != leader, **v))
                    .expect("more voters than the replication factor")
            });
            Some(ReplicaChange::Remove { node: victim })
        } else {
            None
        };
        if let Some(change) = change {
            match change {
                ReplicaChange::Add { node, replacing } => {
                    *counts.entry(node).or_default() += 1;
                    if let Some(r) = replacing {
                        *counts.entry(r).or_default() -= 1;
                    }
                }
                ReplicaChange::Remove { node } => *counts.entry(node).or_default() -= 1,
                ReplicaChange::TransferLeader { .. } => {}
            }
            push(&mut out, d, leader, change);
        }
    }
    if wanting || !out.is_empty() {
        return out;
    }

    // Replica counts evened out across the nodes that take replicas.
    let takers: Vec<u64> = nodes
        .iter()
        .filter(|(_, n)| n.takes())
        .map(|(id, _)| *id)
        .collect();
    if takers.len() > rf {
        let total: usize = takers.iter().map(|id| counts[id]).sum();
        let mean = total as f64 / takers.len() as f64;
        for (d, leader) in &data {
            if out.len() >= budget {
                break;
            }
            let Some(leader) = *leader else { continue };
            if busy.contains(&d.range_id) {
                continue;
            }
            let Some(src) = d
                .replicas
                .iter()
                .map(|r| r.node_id)
                .max_by_key(|n| (counts[n], *n != leader, *n))
            else {
                continue;
            };
            let Some(dst) = takers
                .iter()
                .copied()
                .filter(|id| !d.replicas.iter().any(|r| r.node_id == *id))
                .min_by_key(|id| (counts[id], leaders[id], *id))
            else {
                continue;
            };
            let (s, t) = (counts[&src], counts[&dst]);
            if s >= t + 2 && (s as f64 > mean || (t as f64) < mean) {
                *counts.get_mut(&src).expect("counted") -= 1;
                *counts.get_mut(&dst).expect("counted") += 1;
                let change = ReplicaChange::Add {
                    node: dst,
                    replacing: Some(src),
                };
                push(&mut out, d, leader, change);
            }
        }
    }
    if !out.is_empty() || !busy.is_empty() {
        return out;
    }

    // Leaderships evened out among each range's voters.
    for (d, leader) in &data {
        if out.len() >= budget {
            break;
        }
        let Some(leader) = *leader else { continue };
        let Some(to) = d
            .replicas
            .iter()
            .filter(|r| r.voter && r.node_id != leader && takes(r.node_id))
            .map(|r| r.node_id)
            .min_by_key(|id| (leaders[id], *id))
        else {
            continue;
        };
        if leaders[&leader] >= leaders[&to] + 2 {
            *leaders.get_mut(&leader).expect("counted") -= 1;
            *leaders.get_mut(&to).expect("counted") += 1;
            push(&mut out, d, leader, ReplicaChange::TransferLeader { to });
        }
    }
    out
}

/// The driver's bookkeeping (on the meta range's leader; reset when it loses the
/// leadership).
#[derive(Debug, Default)]
pub(crate) struct PlacementState {
    inner: Mutex<Driver>,
}

#[derive(Debug, Default)]
struct Driver {
    /// Since when this node leads the meta range: a node never heard from since is
    /// counted from then.
    leading_since: Option<Instant>,
    /// Each node's latest heartbeat, and when it arrived.
    heard: HashMap<u64, (Instant, NodeReport)>,
    /// Ranges with a change in flight (`None`) or completed at the instant given.
    changing: HashMap<u64, Option<Instant>>,
}

/// What the driver knows of a node, for `shoal node ls`.
#[derive(Debug, Clone, Default)]
pub struct NodeRecord {
    pub liveness: &'static str,
    pub replicas: u64,
    pub leaders: u64,
    pub decommissioning: bool,
    pub capacity_bytes: u64,
    pub available_bytes: u64,
}

/// The data disk's size and free space, in bytes (zeros when unknown).
fn disk_space(dir: &std::path::Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let frag = s.fragment_size();
            (
                s.blocks().saturating_mul(frag),
                s.blocks_available().saturating_mul(frag),
            )
        }
        Err(_) => (0, 0),
    }
}

impl Node {
    /// The nodes marked decommissioning, from this node's copy of the meta range.
    fn decommissioning(&self) -> HashSet<u64> {
        match self.engine.scan_system(keys::DECOMMISSIONING_PREFIX) {
            Ok(kvs) => kvs
                .iter()
                .filter_map(|(k, _)| {
                    let id = k.get(k.len().checked_sub(8)?..)?;
                    Some(u64::from_be_bytes(id.try_into().ok()?))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the decommissioning nodes");
                HashSet::new()
            }
        }
    }

    /// This node's heartbeat.
    fn node_report(&self) -> NodeReport {
        let me = self.node_id();
        let (capacity_bytes, available_bytes) = disk_space(&self.cfg.data_dir);
        let mut report = NodeReport {
            node_id: me,
            capacity_bytes,
            available_bytes,
            ..Default::default()
        };
        for r in self.router.all() {
            report.ranges.push(r.range_id);
            if r.current_leader() == Some(me) {
                report.leading.push(r.range_id);
                report.leading_bytes.push(self.range_bytes(&r));
            }
        }
        report
    }

    /// Sends this node's heartbeat to the meta range's leader.
    pub(crate) async fn send_heartbeat(&self) {
        if self.node_id() == 0 {
            return;
        }
        let report = self.node_report();
        let leader = match self.meta_leader() {
            Ok(None) => return self.heartbeat_here(report),
            Ok(Some(l)) => l,
            Err(_) => return,
        };
        let (id, addr) = leader;
        let Ok(mut c) = self.pool.client(&addr) else {
            return;
        };
        let Ok(payload) = encode(&report) else { return };
        let sent = c.node_heartbeat(RaftMessage {
            range_id: FIRST_RANGE_ID,
            payload,
            target_node_id: id,
        });
        match tokio::time::timeout(HEARTBEAT_INTERVAL, sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e.message(), "sending the heartbeat"),
            Err(_) => tracing::debug!("sending the heartbeat: timed out"),
        }
    }

    /// On the meta range's leader: records a node's heartbeat.
    pub(crate) fn heartbeat_here(&self, report: NodeReport) {
        let mut d = lock(&self.placement.inner);
        d.heard.insert(report.node_id, (Instant::now(), report));
    }

    /// On the meta range's leader: the liveness of every node of the cluster.
    fn node_views(&self, members: &[u64]) -> BTreeMap<u64, NodeView> {
        let decommissioning = self.decommissioning();
        let me = self.node_id();
        let now = Instant::now();
        let d = lock(&self.placement.inner);
        let since = d.leading_since.unwrap_or(now);
        members
            .iter()
            .map(|id| {
                let heard = d.heard.get(id).map(|(at, _)| *at);
                let quiet = now.duration_since(heard.unwrap_or(since).max(since));
                let view = NodeView {
                    live: *id == me || (heard.is_some() && quiet < LIVE_WINDOW),
                    dead: *id != me && quiet >= self.cfg.time_until_dead,
                    decommissioning: decommissioning.contains(id),
                };
                (*id, view)
            })
            .collect()
    }

    /// On the meta range's leader: brings its voters to what [`meta_voters`] wants,
    /// those removed staying on as learners (the cluster's nodes are its members).
    pub(crate) async fn maintain_meta_voters(&self, meta: &Replica) {
        let m = meta.metrics();
        let me = meta.node_id;
        if m.current_leader != Some(me) {
            return;
        }
        let mem = m.membership_config.membership();
        if mem.get_joint_config().len() > 1 {
            return;
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.clone().unwrap_or_default();
        let ready: BTreeSet<u64> = mem
            .learner_ids()
            .filter(|id| {
                matched
                    .get(id)
                    .cloned()
                    .flatten()
                    .is_some_and(|l| l.index + CAUGHT_UP_LAG >= last)
            })
            .collect();
        let voters: BTreeSet<u64> = mem.voter_ids().collect();
        let members: Vec<u64> = mem.nodes().map(|(id, _)| *id).collect();
        let goal = meta_voters(&voters, &ready, &self.node_views(&members), me);
        if goal == voters {
            return;
        }
        match meta
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(goal.clone()), true)
            .await
        {
            Ok(_) => tracing::info!(?voters, ?goal, "meta range voters changed"),
            Err(e) => {
                tracing::warn!(?voters, ?goal, error = %e, "changing the meta range's voters")
            }
        }
    }

    /// The cluster's nodes: the meta range's members.
    fn members(&self) -> Vec<u64> {
        match self.replica() {
            Ok(meta) => meta
                .metrics()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// On the meta range's leader: what it knows of each node of the cluster (empty
    /// elsewhere).
    pub fn node_records(&self) -> HashMap<u64, NodeRecord> {
        let members = self.members();
        let views = self.node_views(&members);
        let d = lock(&self.placement.inner);
        // Just elected, the driver has not heard from every node yet.
        let new = d
            .leading_since
            .is_none_or(|since| since.elapsed() < LIVE_WINDOW);
        views
            .into_iter()
            .map(|(id, v)| {
                let report = d.heard.get(&id).map(|(_, r)| r);
                let record = NodeRecord {
                    liveness: if v.dead {
                        "dead"
                    } else if v.live {
                        "live"
                    } else if report.is_none() && new {
                        "unknown"
                    } else {
                        "suspect"
                    },
                    replicas: report.map_or(0, |r| r.ranges.len() as u64),
                    leaders: report.map_or(0, |r| r.leading.len() as u64),
                    decommissioning: v.decommissioning,
                    capacity_bytes: report.map_or(0, |r| r.capacity_bytes),
                    available_bytes: report.map_or(0, |r| r.available_bytes),
                };
                (id, record)
            })
            .collect()
    }

    /// On the meta range's leader: the leader of each range, as the node that said so
    /// last in its heartbeat.
    pub fn reported_leaders(&self) -> HashMap<u64, u64> {
        self.reported_ranges()
            .into_iter()
            .map(|(range, (leader, _))| (range, leader))
            .collect()
    }

    /// On the meta range's leader: the leader of each range and the range's size in
    /// bytes, as the node that said it led the range last reported them.
    pub fn reported_ranges(&self) -> HashMap<u64, (u64, u64)> {
        let d = lock(&self.placement.inner);
        let mut by_range: HashMap<u64, (Instant, u64, u64)> = HashMap::new();
        for (at, r) in d.heard.values() {
            for (id, bytes) in r.led() {
                let e = by_range.entry(id).or_insert((*at, r.node_id, bytes));
                if *at > e.0 {
                    *e = (*at, r.node_id, bytes);
                }
            }
        }
        by_range
            .into_iter()
            .map(|(range, (_, leader, bytes))| (range, (leader, bytes)))
            .collect()
    }

    /// On the meta range's leader: marks `node_id` decommissioning (idempotent) and
    /// answers how many replicas of ranges other than the meta range it still holds,
    /// as the routing table says.
    pub async fn decommission(&self, node_id: u64) -> Result<u64, Status> {
        self.leads_meta()?;
        let meta = self.replica()?;
        if self.member(node_id).is_none() {
            return Err(status(
                Code::NotFound,
                codes::INVALID_ARGUMENT,
                format!("node {node_id} is not a member of the cluster"),
                None,
            ));
        }
        if !self.decommissioning().contains(&node_id) {
            meta.raft
                .client_write(shoal_raft::Command::SetDecommissioning { node_id, on: true })
                .await
                .map_err(|e| write_error(&meta, e))?;
            tracing::info!(node_id, "decommissioning: its replicas move to other nodes");
        }
        let table = self.routing_table(false).await?;
        Ok(table
            .iter()
            .filter(|d| d.range_id != FIRST_RANGE_ID)
            .filter(|d| d.replicas.iter().any(|r| r.node_id == node_id))
            .count() as u64)
    }

    /// The placement driver's round, on the meta range's leader: plans changes and
    /// sends each to its range's leader.
    pub(crate) async fn run_placement(self: &Arc<Self>) {
        if self.node_id() == 0 || self.leads_meta().is_err() {
            *lock(&self.placement.inner) = Driver::default();
            return;
        }
        lock(&self.placement.inner)
            .leading_since
            .get_or_insert_with(Instant::now);
        let members = self.members();
        let views = self.node_views(&members);
        let table = match self.routing_table(false).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e.message(), "reading the routing table");
                return;
            }
        };
        let busy = {
            let mut d = lock(&self.placement.inner);
            let now = Instant::now();
            d.changing
                .retain(|_, done| done.is_none_or(|at| now.duration_since(at) < SETTLE));
            d.changing.keys().copied().collect::<HashSet<u64>>()
        };
        let leaders = self.reported_leaders();
        let ranges: Vec<(RangeDescriptor, Option<u64>)> = table
            .into_iter()
            .map(|desc| {
                let leader = leaders.get(&desc.range_id).copied();
                (desc, leader)
            })
            .collect();
        let budget = MAX_CHANGES.saturating_sub(busy.len());
        if budget == 0 {
            return;
        }
        let planned = plan(&views, &ranges, self.cfg.replication_factor, &busy, budget);
        for p in planned {
            lock(&self.placement.inner)
                .changing
                .insert(p.change.range_id, None);
            let node = self.clone();
            tokio::spawn(async move {
                tracing::info!(range_id = p.change.range_id, leader = p.leader, change = ?p.change.change, "placement");
                if let Err(e) = node.send_change(p).await {
                    tracing::info!(range_id = p.change.range_id, change = ?p.change.change, error = %e.message(), "placement change not made");
                }
                let mut d = lock(&node.placement.inner);
                if let Some(done) = d.changing.get_mut(&p.change.range_id) {
                    *done = Some(Instant::now());
                }
            });
        }
    }

    /// Sends a planned change to its range's leader.
    async fn send_change(&self, p: Planned) -> Result<(), Status> {
        if p.leader == self.node_id() {
            return self.change_replicas_here(p.change).await;
        }
        let addr = self
            .member(p.leader)
            .map(|n| n.addr)
            .ok_or_else(|| Status::unavailable(format!("node {} has no address", p.leader)))?;
        let mut c = self
            .pool
            .client(&addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let payload = encode(&p.change).map_err(|e| internal("encoding", e))?;
        let sent = c.change_replicas(RaftMessage {
            range_id: p.change.range_id,
            payload,
            target_node_id: p.leader,
        });
        match tokio::time::timeout(CHANGE_PATIENCE + Duration::from_secs(10), sent).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(Status::deadline_exceeded(
                "the range's leader did not answer",
            )),
        }
    }

    /// On a range's leader: carries out a change the placement driver planned.
    pub async fn change_replicas_here(&self, c: ChangeReplicas) -> Result<(), Status> {
        let r = self.router.get(c.range_id).ok_or_else(|| {
            status(
                Code::NotFound,
                codes::RANGE_NOT_FOUND,
                format!("range {} has no replica on this node", c.range_id),
                None,
            )
        })?;
        let me = self.node_id();
        let (leader, addr) = r.leader();
        if leader != Some(me) {
            return Err(not_leader(r.range_id, leader, addr));
        }
        r.wake().await;
        let d = r
            .descriptor()
            .ok_or_else(|| Status::unavailable("the range has no descriptor yet"))?;
        if d.epoch.conf_ver != c.conf_ver {
            return Err(status(
                Code::FailedPrecondition,
                codes::EPOCH_MISMATCH,
                format!(
                    "range {} is at conf_ver {}, not {}: its replicas changed since the change was planned",
                    c.range_id, d.epoch.conf_ver, c.conf_ver
                ),
                None,
            ));
        }
        let m = r.metrics();
        let mem = m.membership_config.membership().clone();
        if let [.., goal] = mem.get_joint_config().as_slice() {
            if mem.get_joint_config().len() > 1 {
                // A change left between its joint and its uniform step (its leader lost
                // the leadership meanwhile): nothing else can change until it is
                // finished, so finish it, to the configuration it was going to.
                r.raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(goal.clone()), false)
                    .await
                    .map_err(|e| write_error(&r, e))?;
                tracing::info!(
                    range_id = r.range_id,
                    ?goal,
                    "finished a joint configuration left behind"
                );
                self.report_now(&r).await;
                return Ok(());
            }
        }
        let voters: std::collections::BTreeSet<u64> = mem.voter_ids().collect();
        match c.change {
            ReplicaChange::TransferLeader { to } => {
                if !voters.contains(&to) {
                    return Err(Status::failed_precondition(format!(
                        "node {to} is not a voter of range {}",
                        c.range_id
                    )));
                }
                self.hand_over(&r, to).await
            }
            ReplicaChange::Remove { node }
            | ReplicaChange::Add {
                replacing: Some(node),
                ..
            } if node == me => {
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
                    .ok_or_else(|| Status::failed_precondition("no other voter to lead"))?;
                self.hand_over(&r, to).await
            }
            ReplicaChange::Remove { node } => {
                let ids = std::collections::BTreeSet::from([node]);
                let change = if voters.contains(&node) {
                    ChangeMembers::RemoveVoters(ids)
                } else {
                    ChangeMembers::RemoveNodes(ids)
                };
                r.raft
                    .change_membership(change, false)
                    .await
                    .map_err(|e| write_error(&r, e))?;
                tracing::info!(range_id = r.range_id, node, "removed a replica");
                self.report_now(&r).await;
                Ok(())
            }
            ReplicaChange::Add { node, replacing } => {
                self.add_replica(&r, &d, node, replacing).await
            }
        }
    }

    /// Moves `r`'s leadership to `to`, waiting (a little) until it moved.
    async fn hand_over(&self, r: &Replica, to: u64) -> Result<(), Status> {
        r.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| internal("leadership transfer", e))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.current_leader() == Some(self.node_id()) {
            if Instant::now() >= deadline {
                return Err(Status::unavailable("the leadership did not move"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(range_id = r.range_id, to, "moved the leadership");
        Ok(())
    }

    /// Adds a replica of `r` on `node`: created empty there, filled as a learner, then
    /// a voter in the change that also removes `replacing`.
    async fn add_replica(
        &self,
        r: &Replica,
        d: &RangeDescriptor,
        node: u64,
        replacing: Option<u64>,
    ) -> Result<(), Status> {
        let info = self.member(node).ok_or_else(|| {
            Status::failed_precondition(format!("node {node} is not in the cluster"))
        })?;
        let mem = r.metrics().membership_config.membership().clone();
        // Asked again for a learner already added: its replica may have been destroyed
        // meanwhile, as left from an earlier membership, before the routing table
        // counted it again.
        let addr = info.addr.clone();
        self.create_replica_on(node, &addr, d).await?;
        if mem.get_node(&node).is_none() {
            r.raft
                .add_learner(node, info, false)
                .await
                .map_err(|e| write_error(r, e))?;
            tracing::info!(range_id = r.range_id, node, "added a learner");
        }
        // Caught up: within a few entries of the leader's log.
        let deadline = Instant::now() + CHANGE_PATIENCE;
        let mut progress = (0, Instant::now());
        loop {
            let m = r.metrics();
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|x| x.get(&node).cloned().flatten())
                .map_or(0, |l| l.index);
            if matched > 0 && matched + CAUGHT_UP_LAG >= last {
                break;
            }
            if matched != progress.0 {
                progress = (matched, Instant::now());
            } else if progress.1.elapsed() >= STALLED_LEARNER {
                // No progress: its replica may be gone; asking again recreates it.
                if let Err(e) = self.create_replica_on(node, &addr, d).await {
                    tracing::info!(range_id = r.range_id, node, error = %e.message(), "asking again for a stalled learner's replica");
                }
                progress.1 = Instant::now();
            }
            if m.current_leader != Some(self.node_id()) {
                return Err(not_leader(r.range_id, m.current_leader, None));
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "the learner on node {node} did not catch up (at {matched} of {last})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut voters: std::collections::BTreeSet<u64> = r
            .metrics()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        voters.insert(node);
        if let Some(old) = replacing {
            voters.remove(&old);
        }
        r.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map_err(|e| write_error(r, e))?;
        tracing::info!(
            range_id = r.range_id,
            node,
            ?replacing,
            "a caught-up learner became a voter"
        );
        self.report_now(r).await;
        Ok(())
    }

    /// Reports `r`'s descriptor to the routing table at once (the leader loop would
    /// within a second).
    async fn report_now(&self, r: &Replica) {
        if let Some(d) = r.descriptor() {
            if let Err(e) = self.report_descriptors(vec![d]).await {
                tracing::debug!(error = %e.message(), "reporting a descriptor");
            }
        }
    }

    /// Destroys this node's replicas of ranges that no longer count it as a member:
    /// the routing table holds a descriptor of the range newer than the replica's own
    /// (a later `conf_ver`: committed after it) without this node. The change that
    /// removed it is committed, so no quorum needs this replica. (A replica's own
    /// membership is no proof: a learner filled from an older snapshot applies a
    /// membership without itself before the one that added it.)
    pub(crate) async fn collect_garbage(&self) {
        let me = self.node_id();
        if me == 0 {
            return;
        }
        let candidates: Vec<Arc<Replica>> = self
            .router
            .all()
            .into_iter()
            .filter(|r| r.range_id != FIRST_RANGE_ID && r.current_leader() != Some(me))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let table: HashMap<u64, RangeDescriptor> = match self.routing_table(false).await {
            Ok(t) => t.into_iter().map(|d| (d.range_id, d)).collect(),
            Err(_) => return,
        };
        let wanted: HashSet<u64> = {
            let mut w = lock(&self.ranges.wanted);
            w.retain(|_, at| at.elapsed() < ORPHAN_AFTER);
            w.keys().copied().collect()
        };
        for r in candidates {
            if wanted.contains(&r.range_id) {
                // Asked for by its leader: the routing table may not count it yet.
                continue;
            }
            let Some(cur) = table.get(&r.range_id) else {
                continue;
            };
            if cur.replicas.iter().any(|x| x.node_id == me) {
                continue;
            }
            let removed = match r.descriptor() {
                Some(ours) => cur.epoch.conf_ver > ours.epoch.conf_ver,
                // An empty replica, created for a snapshot that never came.
                None => r.age() > ORPHAN_AFTER,
            };
            if removed {
                if let Err(e) = self.destroy_replica(&r).await {
                    tracing::warn!(range_id = r.range_id, error = %format!("{e:#}"), "destroying a removed replica");
                }
            }
        }
    }

    /// Stops a replica and deletes all of it from this node.
    async fn destroy_replica(&self, r: &Replica) -> anyhow::Result<()> {
        let _g = self.ranges.open_lock.lock().await;
        let span = r.descriptor().map(|d| d.span());
        self.router.remove(r.range_id);
        if let Err(e) = r.raft.shutdown().await {
            tracing::warn!(range_id = r.range_id, error = %e, "stopping a removed replica");
        }
        // Without a descriptor the replica never held data: nothing of the key space.
        self.engine.destroy_range(r.range_id, span.as_ref())?;
        let snapshots = shoal_raft::StateMachine::snapshot_dir(&self.env.snapshot_root, r.range_id);
        if let Err(e) = std::fs::remove_dir_all(&snapshots) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(range_id = r.range_id, error = %e, "removing a destroyed replica's snapshots");
            }
        }
        tracing::info!(
            range_id = r.range_id,
            "destroyed a replica this node no longer holds"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_raft::{RangeEpoch, ReplicaDescriptor};

    fn range(id: u64, voters: &[u64], learners: &[u64]) -> RangeDescriptor {
        let mut replicas: Vec<ReplicaDescriptor> = voters
            .iter()
            .map(|n| ReplicaDescriptor {
                node_id: *n,
                voter: true,
            })
            .collect();
        replicas.extend(learners.iter().map(|n| ReplicaDescriptor {
            node_id: *n,
            voter: false,
        }));
        RangeDescriptor {
            range_id: id,
            start: vec![id as u8],
            end: vec![id as u8 + 1],
            epoch: RangeEpoch {
                version: 1,
                conf_ver: 7,
            },
            replicas,
        }
    }

    fn live(ids: &[u64]) -> BTreeMap<u64, NodeView> {
        ids.iter()
            .map(|id| {
                (
                    *id,
                    NodeView {
                        live: true,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    fn changes(p: &[Planned]) -> Vec<(u64, ReplicaChange)> {
        p.iter()
            .map(|p| (p.change.range_id, p.change.change))
            .collect()
    }

    /// Applies planned changes as the leaders would (all at once).
    fn apply(ranges: &mut [(RangeDescriptor, Option<u64>)], planned: &[Planned]) {
        for p in planned {
            let (d, leader) = ranges
                .iter_mut()
                .find(|(d, _)| d.range_id == p.change.range_id)
                .unwrap();
            match p.change.change {
                ReplicaChange::Add { node, replacing } => {
                    d.replicas.retain(|r| r.node_id != node);
                    d.replicas.push(ReplicaDescriptor {
                        node_id: node,
                        voter: true,
                    });
                    if let Some(old) = replacing {
                        d.replicas.retain(|r| r.node_id != old);
                        if *leader == Some(old) {
                            *leader = Some(node);
                        }
                    }
                }
                ReplicaChange::Remove { node } => d.replicas.retain(|r| r.node_id != node),
                ReplicaChange::TransferLeader { to } => *leader = Some(to),
            }
            d.epoch.conf_ver += 1;
        }
    }

    #[test]
    fn a_range_short_of_replicas_gets_one_on_the_least_loaded_live_node() {
        let nodes = live(&[1, 2, 3, 4]);
        let ranges = vec![
            (range(2, &[1, 2], &[]), Some(1)),
            (range(3, &[1, 2, 3], &[]), Some(1)),
        ];
        let p = plan(&nodes, &ranges, 3, &HashSet::new(), 10);
        assert_eq!(
            changes(&p),
            vec![(
                2,
                ReplicaChange::Add {
                    node: 4,
                    replacing: None
                }
            )]
        );
        assert_eq!(p[0].leader, 1);
        assert_eq!(p[0].change.conf_ver, 7);
        // The meta range is never planned.
        let meta = vec![(range(FIRST_RANGE_ID, &[1], &[]), Some(1))];
        assert!(plan(&nodes, &meta, 3, &HashSet::new(), 10).is_empty());
    }

    #[test]
    fn replicas_on_dead_decommissioning_or_removed_nodes_are_replaced_not_dropped() {
        let mut nodes = live(&[1, 2, 3, 4, 5]);
        nodes.get_mut(&2).unwrap().dead = true;
        nodes.get_mut(&2).unwrap().live = false;
        nodes.get_mut(&3).unwrap().decommissioning = true;
        let ranges = vec![
            (range(2, &[1, 2, 4], &[]), Some(1)),
            (range(3, &[1, 3, 4], &[]), Some(4)),
            // Node 9 was removed from the cluster.
            (range(4, &[1, 4, 9], &[]), Some(1)),
        ];
        let p = plan(&nodes, &ranges, 3, &HashSet::new(), 10);
        assert_eq!(
            changes(&p),
            vec![
                (
                    2,
                    ReplicaChange::Add {
                        node: 5,
                        replacing: Some(2)
                    }
                ),
                (
                    3,
                    ReplicaChange::Add {
                        node: 5,
                        replacing: Some(3)
                    }
                ),
                // Node 5 has two now; node 3 (decommissioning) takes none.
                (
                    4,
                    ReplicaChange::Add {
                        node: 5,
                        replacing: Some(9)
                    }
                ),
            ]
        );
        // A suspect node (not live, not dead yet) keeps its replicas and takes none.
        let mut nodes = live(&[1, 2, 3, 4]);
        nodes.get_mut(&2).unwrap().live = false;
        let ranges = vec![(range(2, &[1, 3], &[]), Some(1))];
        assert_eq!(
            changes(&plan(
                &nodes,
                &[(range(2, &[1, 2, 3], &[]), Some(1))],
                3,
                &HashSet::new(),
                10
            )),
            vec![]
        );
        assert_eq!(
            changes(&plan(&nodes, &ranges, 3, &HashSet::new(), 10)),
            vec![(
                2,
                ReplicaChange::Add {
                    node: 4,
                    replacing: None
                }
            )]
        );
    }

    #[test]
    fn with_nowhere_to_go_only_replicas_of_removed_nodes_are_dropped() {
        let mut nodes = live(&[1, 2, 3]);
        nodes.get_mut(&3).unwrap().decommissioning = true;
        let ranges = vec![
            (range(2, &[1, 2, 3], &[]), Some(1)),
            (range(3, &[1, 2, 9], &[]), Some(1)),
        ];
        assert_eq!(
            changes(&plan(&nodes, &ranges, 3, &HashSet::new(), 10)),
            vec![(3, ReplicaChange::Remove { node: 9 })]
        );
    }

    #[test]
    fn leftover_learners_are_finished_or_removed_and_surplus_voters_dropped() {
        let nodes = live(&[1, 2, 3, 4]);
        let ranges = vec![
            (range(2, &[1, 2], &[4]), Some(1)),
            (range(3, &[1, 2, 3], &[4]), Some(1)),
            (range(4, &[1, 2, 3, 4], &[]), Some(1)),
        ];
        let p = plan(&nodes, &ranges, 3, &HashSet::new(), 10);
        assert_eq!(
            changes(&p),
            vec![
                (
                    2,
                    ReplicaChange::Add {
                        node: 4,
                        replacing: None
                    }
                ),
                (3, ReplicaChange::Remove { node: 4 }),
                // The most loaded non-leader goes.
                (4, ReplicaChange::Remove { node: 4 }),
            ]
        );
        // Busy ranges and the budget are respected; no leader known: nothing.
        let busy = HashSet::from([2]);
        assert_eq!(plan(&nodes, &ranges, 3, &busy, 1).len(), 1);
        assert_eq!(plan(&nodes, &ranges, 3, &busy, 1)[0].change.range_id, 3);
        let unled = vec![(range(2, &[1, 2], &[]), None)];
        assert!(plan(&nodes, &unled, 3, &HashSet::new(), 10).is_empty());
    }

    #[test]
    fn scale_up_then_down_converges_to_even_replicas_and_leaders() {
        // 30 ranges on nodes 1..3, all led by node 1; nodes 4 and 5 join.
        let mut ranges: Vec<(RangeDescriptor, Option<u64>)> = (2..32)
            .map(|id| (range(id, &[1, 2, 3], &[]), Some(1)))
            .collect();
        let nodes = live(&[1, 2, 3, 4, 5]);
        let mut rounds = 0;
        loop {
            let p = plan(&nodes, &ranges, 3, &HashSet::new(), 4);
            if p.is_empty() {
                break;
            }
            apply(&mut ranges, &p);
            rounds += 1;
            assert!(rounds < 200, "never settles");
        }
        let count = |n: u64| {
            ranges
                .iter()
                .filter(|(d, _)| d.replicas.iter().any(|r| r.node_id == n))
                .count()
        };
        let led = |n: u64| ranges.iter().filter(|(_, l)| *l == Some(n)).count();
        // 90 replicas on 5 nodes: 18 each, give or take one; 30 leaders: 6 each.
        for n in 1..=5 {
            assert!((17..=19).contains(&count(n)), "node {n}: {}", count(n));
            assert!((5..=7).contains(&led(n)), "node {n} leads {}", led(n));
        }
        for (d, _) in &ranges {
            assert_eq!(d.replicas.len(), 3, "{d:?}");
        }

        // Nodes 4 and 5 decommissioned: everything back on 1..3, 3 replicas each.
        let mut nodes = nodes;
        nodes.get_mut(&4).unwrap().decommissioning = true;
        nodes.get_mut(&5).unwrap().decommissioning = true;
        loop {
            let p = plan(&nodes, &ranges, 3, &HashSet::new(), 4);
            if p.is_empty() {
                break;
            }
            // Never a removal that leaves a range short: adds come with their removal.
            for x in &p {
                if let ReplicaChange::Remove { .. } = x.change.change {
                    panic!("a bare removal while replicas were only moving: {x:?}");
                }
            }
            apply(&mut ranges, &p);
            rounds += 1;
            assert!(rounds < 400, "never settles");
        }
        for (d, _) in &ranges {
            let mut on: Vec<u64> = d.replicas.iter().map(|r| r.node_id).collect();
            on.sort();
            assert_eq!(on, vec![1, 2, 3], "{d:?}");
        }
    }

    #[test]
    fn the_meta_range_keeps_five_voters_swapping_leaving_ones_for_caught_up_learners() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
        let mut nodes = live(&[1, 2, 3, 4, 5, 6, 7]);
        // Learners are promoted up to five voters.
        assert_eq!(
            meta_voters(&set(&[1, 2, 3]), &set(&[4, 5, 6, 7]), &nodes, 1),
            set(&[1, 2, 3, 4, 5])
        );
        // Seven voters (a cluster founded with seven): two step down, never the leader.
        assert_eq!(
            meta_voters(&set(&[1, 2, 3, 4, 5, 6, 7]), &set(&[]), &nodes, 7),
            set(&[1, 2, 3, 4, 7])
        );
        // A dead voter and a decommissioning one are swapped for ready learners ...
        nodes.get_mut(&2).unwrap().dead = true;
        nodes.get_mut(&3).unwrap().decommissioning = true;
        let five = set(&[1, 2, 3, 4, 5]);
        assert_eq!(
            meta_voters(&five, &set(&[6, 7]), &nodes, 1),
            set(&[1, 4, 5, 6, 7])
        );
        // ... one at a time as learners catch up, and never dropped for none: the
        // quorum does not shrink.
        assert_eq!(
            meta_voters(&five, &set(&[6]), &nodes, 1),
            set(&[1, 3, 4, 5, 6])
        );
        assert_eq!(meta_voters(&five, &set(&[]), &nodes, 1), five);
        // A learner that is itself leaving is no replacement.
        nodes.get_mut(&6).unwrap().dead = true;
        assert_eq!(meta_voters(&five, &set(&[6]), &nodes, 1), five);
        // Past five, the leaving voters step down first, the dead before the rest.
        assert_eq!(
            meta_voters(&set(&[1, 2, 3, 4, 5, 7]), &set(&[]), &nodes, 1),
            set(&[1, 3, 4, 5, 7])
        );
    }
}
