//! [`PlacementDriver`]: the heartbeats every node sends, and on the meta range's
//! leader the driver itself: what it hears of the nodes, the changes it has in flight,
//! and its rounds (plan, then send each change to its range's leader).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use shoal_proto::v1::PeerMessage;
use shoal_raft::{Command, RangeDescriptor, FIRST_RANGE_ID};

use crate::convert::peer_message;
use crate::error::{Error, Result};
use crate::keeper::RangeKeeper;
use crate::node::{lock, Node};
use crate::peer_call;
use crate::placement::change;
use crate::placement::messages::NodeReport;
use crate::placement::plan::{meta_voters, plan, NodeView, Planned, CAUGHT_UP_LAG};
use crate::routing;

/// How often a node sends its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// A node not heard from for this long is no longer live: it takes no new replicas
/// (its own stay until it is dead).
const LIVE_WINDOW: Duration = Duration::from_secs(4);

/// Replica changes in flight at once, cluster-wide.
const MAX_CHANGES: usize = 4;

/// After a change completed, its range is left alone this long, so the routing table
/// catches up with it before the range is planned again.
const SETTLE: Duration = Duration::from_secs(3);

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

/// The driver's bookkeeping, on the meta range's leader (reset when it loses the
/// leadership).
#[derive(Debug, Default)]
struct Heard {
    /// Since when this node leads the meta range: a node never heard from since is
    /// counted from then.
    leading_since: Option<Instant>,
    /// Each node's latest heartbeat, and when it arrived.
    reports: HashMap<u64, (Instant, NodeReport)>,
    /// Ranges with a change in flight (`None`) or completed at the instant given.
    changing: HashMap<u64, Option<Instant>>,
}

/// The placement driver of a node (active while it leads the meta range) and its
/// heartbeat.
pub struct PlacementDriver {
    node: Arc<Node>,
    keeper: Arc<RangeKeeper>,
    heard: Mutex<Heard>,
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

impl PlacementDriver {
    pub fn new(node: Arc<Node>, keeper: Arc<RangeKeeper>) -> Self {
        Self {
            node,
            keeper,
            heard: Mutex::default(),
        }
    }

    /// The nodes marked decommissioning, from this node's copy of the meta range.
    fn decommissioning(&self) -> HashSet<u64> {
        shoal_raft::meta::decommissioning(&self.node.engine).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the decommissioning nodes");
            HashSet::new()
        })
    }

    // ---- heartbeats --------------------------------------------------------------

    /// This node's heartbeat.
    fn report(&self) -> NodeReport {
        let me = self.node.node_id();
        let (capacity_bytes, available_bytes) = disk_space(&self.node.cfg.data_dir);
        let mut report = NodeReport {
            node_id: me,
            capacity_bytes,
            available_bytes,
            ..Default::default()
        };
        for r in self.node.router.all().iter() {
            report.ranges.push(r.range_id);
            if r.is_leader() {
                report.leading.push(r.range_id);
                report.leading_bytes.push(self.keeper.range_bytes(r));
            }
        }
        report
    }

    /// Sends this node's heartbeat to the meta range's leader.
    pub async fn send_heartbeat(&self) {
        if self.node.node_id() == 0 {
            return;
        }
        let report = self.report();
        let (id, addr) = match self.node.meta_leader() {
            Ok(None) => return self.heard(report),
            Ok(Some(l)) => l,
            Err(_) => return,
        };
        let sent = async {
            let msg = peer_message(FIRST_RANGE_ID, id, &report)?;
            peer_call::call::<_, PeerMessage>(&self.node, &addr, "NodeHeartbeat", msg).await
        };
        match tokio::time::timeout(HEARTBEAT_INTERVAL, sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "sending the heartbeat"),
            Err(_) => tracing::debug!("sending the heartbeat: timed out"),
        }
    }

    /// On the meta range's leader: records a node's heartbeat.
    pub fn heard(&self, report: NodeReport) {
        lock(&self.heard)
            .reports
            .insert(report.node_id, (Instant::now(), report));
    }

    /// On the meta range's leader: the liveness of every node of the cluster.
    fn views(&self, members: &[u64]) -> BTreeMap<u64, NodeView> {
        let decommissioning = self.decommissioning();
        let me = self.node.node_id();
        let now = Instant::now();
        let time_until_dead = self.node.cfg.time_until_dead;
        let h = lock(&self.heard);
        let since = h.leading_since.unwrap_or(now);
        members
            .iter()
            .map(|id| {
                let heard = h.reports.get(id).map(|(at, _)| *at);
                let quiet = now.duration_since(heard.unwrap_or(since).max(since));
                let view = NodeView {
                    live: *id == me || (heard.is_some() && quiet < LIVE_WINDOW),
                    dead: *id != me && quiet >= time_until_dead,
                    decommissioning: decommissioning.contains(id),
                };
                (*id, view)
            })
            .collect()
    }

    /// On the meta range's leader: what it knows of each node of the cluster (empty
    /// elsewhere).
    pub fn node_records(&self) -> HashMap<u64, NodeRecord> {
        let views = self.views(&self.node.members());
        let h = lock(&self.heard);
        // Just elected, the driver has not heard from every node yet.
        let new = h
            .leading_since
            .is_none_or(|since| since.elapsed() < LIVE_WINDOW);
        views
            .into_iter()
            .map(|(id, v)| {
                let report = h.reports.get(&id).map(|(_, r)| r);
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
        let h = lock(&self.heard);
        let mut by_range: HashMap<u64, (Instant, u64, u64)> = HashMap::new();
        for (at, r) in h.reports.values() {
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

    // ---- the driver --------------------------------------------------------------

    /// On the meta range's leader: brings its voters to what [`meta_voters`] wants,
    /// those removed staying on as learners (the cluster's nodes are its members).
    pub async fn maintain_meta_voters(&self) {
        let Ok(meta) = self.node.meta() else { return };
        let me = meta.node_id;
        let m = meta.metrics();
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
        let goal = meta_voters(&voters, &ready, &self.views(&members), me);
        if goal == voters {
            return;
        }
        match meta
            .change_membership(ChangeMembers::ReplaceAllVoters(goal.clone()), true)
            .await
        {
            Ok(()) => tracing::info!(?voters, ?goal, "meta range voters changed"),
            Err(e) => {
                tracing::warn!(?voters, ?goal, error = %e, "changing the meta range's voters")
            }
        }
    }

    /// On the meta range's leader: marks `node_id` decommissioning (idempotent) and
    /// answers how many replicas of ranges other than the meta range it still holds,
    /// as the routing table says.
    pub async fn decommission(&self, node_id: u64) -> Result<u64> {
        self.node.leads_meta()?;
        let meta = self.node.meta()?;
        if self.node.member(node_id).is_none() {
            return Err(Error::UnknownNode(node_id));
        }
        if !self.decommissioning().contains(&node_id) {
            meta.propose(Command::SetDecommissioning { node_id, on: true })
                .await?;
            tracing::info!(node_id, "decommissioning: its replicas move to other nodes");
        }
        let table = routing::table(&self.node, false).await?;
        Ok(table
            .iter()
            .filter(|d| d.range_id != FIRST_RANGE_ID)
            .filter(|d| d.has_replica_on(node_id))
            .count() as u64)
    }

    /// The placement driver's round, on the meta range's leader: plans changes and
    /// sends each to its range's leader.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn round(self: &Arc<Self>) {
        if self.node.node_id() == 0 || self.node.leads_meta().is_err() {
            *lock(&self.heard) = Heard::default();
            return;
        }
        lock(&self.heard)
            .leading_since
            .get_or_insert_with(Instant::now);
        let views = self.views(&self.node.members());
        let table = match routing::table(&self.node, false).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "reading the routing table");
                return;
            }
        };
        let busy = {
            let mut h = lock(&self.heard);
            let now = Instant::now();
            h.changing
                .retain(|_, done| done.is_none_or(|at| now.duration_since(at) < SETTLE));
            h.changing.keys().copied().collect::<HashSet<u64>>()
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
        let planned = plan(
            &views,
            &ranges,
            self.node.cfg.replication_factor,
            &busy,
            budget,
        );
        for p in planned {
            lock(&self.heard).changing.insert(p.change.range_id, None);
            let driver = self.clone();
            tokio::spawn(async move {
                tracing::info!(range_id = p.change.range_id, leader = p.leader, change = ?p.change.change, "placement");
                if let Err(e) = driver.send_change(p).await {
                    tracing::info!(range_id = p.change.range_id, change = ?p.change.change, error = %e, "placement change not made");
                }
                if let Some(done) = lock(&driver.heard).changing.get_mut(&p.change.range_id) {
                    *done = Some(Instant::now());
                }
            });
        }
    }

    /// Sends a planned change to its range's leader.
    async fn send_change(&self, p: Planned) -> Result<()> {
        if p.leader == self.node.node_id() {
            return change::carry_out(&self.node, &self.keeper, p.change).await;
        }
        let addr = self
            .node
            .member(p.leader)
            .map(|n| n.addr)
            .ok_or_else(|| Error::Unavailable(format!("node {} has no address", p.leader)))?;
        let sent = async {
            let msg = peer_message(p.change.range_id, p.leader, &p.change)?;
            peer_call::call::<_, PeerMessage>(&self.node, &addr, "ChangeReplicas", msg).await
        };
        match tokio::time::timeout(change::CHANGE_PATIENCE + Duration::from_secs(10), sent).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(Error::Unavailable(
                "the range's leader did not answer".into(),
            )),
        }
    }
}
