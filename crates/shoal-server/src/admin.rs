//! The `Admin` gRPC service: status, node list, `init`, and the ranges (descriptors
//! from the meta range, converted to their wire form here).

use std::sync::Arc;

use std::time::Duration;

use shoal_proto::error::{codes, status};
use shoal_proto::v1::{self as pb, admin_server::Admin};
use shoal_raft::{RangeDescriptor, Replica};
use tonic::{Code, Request, Response, Status};

use crate::node::Node;

pub struct AdminService {
    node: Arc<Node>,
}

impl AdminService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The leader of range `range_id`, as this node's replica of it knows or, on the
    /// meta range's leader, as `reported` (from the heartbeats, asked only then) says.
    fn leader_of(&self, range_id: u64, reported: impl FnOnce() -> Option<u64>) -> (u64, String) {
        if let Some(r) = self.node.router.get(range_id) {
            let (id, addr) = r.leader();
            if let Some(id) = id {
                return (id, addr.unwrap_or_default());
            }
        }
        let Some(id) = reported() else {
            return (0, String::new());
        };
        let addr = self.node.member(id).map(|n| n.addr).unwrap_or_default();
        (id, addr)
    }
}

fn role(state: openraft::ServerState) -> &'static str {
    match state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let ident = self.node.ident();
        let not_ready: Vec<String> = self
            .node
            .readiness()
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|why| format!("{name}: {why}")))
            .collect();
        let ranges = self
            .node
            .router
            .all()
            .into_iter()
            .map(|r| {
                let m = r.metrics();
                let mem = m.membership_config.membership();
                pb::RangeStatus {
                    range_id: r.range_id,
                    term: m.current_term,
                    leader_id: m.current_leader.unwrap_or(0),
                    commit_index: m.local_committed.as_ref().map_or(0, |l| l.index),
                    applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
                    last_log_index: m.last_log_index.unwrap_or(0),
                    role: role(m.state).to_string(),
                    voters: mem.voter_ids().collect(),
                    learners: mem.learner_ids().collect(),
                }
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            cluster_id: ident
                .as_ref()
                .map(|i| i.cluster_id.clone())
                .unwrap_or_default(),
            node_id: ident.as_ref().map_or(0, |i| i.node_id),
            advertise_addr: self.node.advertise.clone(),
            node_name: self.node.name.clone(),
            initialized: ident.is_some(),
            ranges,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready: not_ready.is_empty(),
            not_ready,
        }))
    }

    async fn nodes(
        &self,
        _req: Request<pb::NodesRequest>,
    ) -> Result<Response<pb::NodesResponse>, Status> {
        let r = self.node.replica()?;
        let m = r.metrics();
        // Liveness is known on the leader: send the caller there when there is one.
        if let (Some(leader), (_, addr)) = (m.current_leader, r.leader()) {
            if leader != r.node_id {
                return Err(shoal_proto::error::not_leader(
                    r.range_id,
                    Some(leader),
                    addr,
                ));
            }
        }
        let mem = m.membership_config.membership();
        let voters: Vec<u64> = mem.voter_ids().collect();
        // The leader knows how far each follower has replicated; elsewhere only our own.
        let matched = m.replication.clone().unwrap_or_default();
        // The placement driver's records (heartbeats, replicas, leaders): on the leader.
        let records = self.node.node_records();
        let nodes = mem
            .nodes()
            .map(|(id, n)| {
                let applied = if *id == r.node_id {
                    m.last_applied.as_ref().map_or(0, |l| l.index)
                } else {
                    matched.get(id).cloned().flatten().map_or(0, |l| l.index)
                };
                let rec = records.get(id).cloned().unwrap_or_default();
                pb::NodeInfo {
                    node_id: *id,
                    addr: n.addr.clone(),
                    name: n.name.clone(),
                    role: if voters.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .to_string(),
                    is_leader: m.current_leader == Some(*id),
                    // True unless the leader counts it suspect or dead.
                    live: !matches!(rec.liveness, "suspect" | "dead"),
                    applied_index: applied,
                    liveness: if rec.liveness.is_empty() {
                        "unknown"
                    } else {
                        rec.liveness
                    }
                    .to_string(),
                    replicas: rec.replicas,
                    leaders: rec.leaders,
                    decommissioning: rec.decommissioning,
                    capacity_bytes: rec.capacity_bytes,
                    available_bytes: rec.available_bytes,
                }
            })
            .collect();
        Ok(Response::new(pb::NodesResponse {
            nodes,
            cluster_id: self.node.ident().map(|i| i.cluster_id).unwrap_or_default(),
        }))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        self.node.remove_node(req.into_inner().node_id).await?;
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }

    async fn drain(
        &self,
        _req: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let still = self
            .node
            .drain(Duration::from_secs(self.node.cfg.drain_timeout_secs))
            .await;
        Ok(Response::new(pb::DrainResponse {
            still_leading: still,
        }))
    }

    async fn ranges(
        &self,
        _req: Request<pb::RangesRequest>,
    ) -> Result<Response<pb::RangesResponse>, Status> {
        // Served by the meta range's leader: every range's leader reports to it
        // (leader and size; this node too, through its own heartbeat), where another
        // node knows only the ranges it holds.
        self.node.leads_meta()?;
        let descriptors = self.node.routing_table(true).await?;
        let r = self.node.replica()?;
        let reported = self.node.reported_ranges();
        let ranges = descriptors
            .iter()
            .map(|d| {
                let (leader, bytes) = reported.get(&d.range_id).copied().unzip();
                pb::RangeInfo {
                    descriptor: Some(descriptor_pb(&r, d)),
                    leader_id: self.leader_of(d.range_id, || leader).0,
                    approximate_bytes: bytes.unwrap_or(0),
                }
            })
            .collect();
        Ok(Response::new(pb::RangesResponse { ranges }))
    }

    async fn range_lookup(
        &self,
        req: Request<pb::RangeLookupRequest>,
    ) -> Result<Response<pb::RangeLookupResponse>, Status> {
        let req = req.into_inner();
        let key = req.key;
        self.node.routing_ready()?;
        // Routing needs no read barrier: a client routed with a stale descriptor is
        // refused with the current one (its epoch is checked), and a node cut off from
        // the meta range's leader still routes its clients' stale reads.
        let r = self.node.replica()?;
        let d = self
            .node
            .range_for(&key, req.before)
            .await?
            .ok_or_else(|| {
                status(
                    Code::NotFound,
                    codes::RANGE_NOT_FOUND,
                    "no range holds this key",
                    None,
                )
            })?;
        let (leader_id, leader_addr) = self.leader_of(d.range_id, || {
            self.node.reported_leaders().get(&d.range_id).copied()
        });
        Ok(Response::new(pb::RangeLookupResponse {
            descriptor: Some(descriptor_pb(&r, &d)),
            leader_id,
            leader_addr,
        }))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionResponse>, Status> {
        let replicas = self.node.decommission(req.into_inner().node_id).await?;
        Ok(Response::new(pb::DecommissionResponse { replicas }))
    }

    async fn split_range(
        &self,
        req: Request<pb::SplitRangeRequest>,
    ) -> Result<Response<pb::SplitRangeResponse>, Status> {
        let key = req.into_inner().key;
        if key.is_empty() {
            return Err(status(
                Code::InvalidArgument,
                codes::EMPTY_KEY,
                "a split needs a key",
                None,
            ));
        }
        let (left, right) = self.node.split_range(&key).await?;
        let meta = self.node.replica()?;
        Ok(Response::new(pb::SplitRangeResponse {
            left: Some(descriptor_pb(&meta, &left)),
            right: Some(descriptor_pb(&meta, &right)),
        }))
    }

    async fn init(
        &self,
        _req: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let (cluster_id, nodes) = self.node.init().await?;
        Ok(Response::new(pb::InitResponse { cluster_id, nodes }))
    }
}

/// The wire form of `d`, with the addresses of its replicas as the meta range's
/// membership knows them.
pub(crate) fn descriptor_pb(r: &Replica, d: &RangeDescriptor) -> pb::RangeDescriptor {
    let m = r.metrics();
    let mem = m.membership_config.membership();
    pb::RangeDescriptor {
        range_id: d.range_id,
        start: d.start.clone(),
        end: d.end.clone(),
        epoch: Some(pb::RangeEpoch {
            version: d.epoch.version,
            conf_ver: d.epoch.conf_ver,
        }),
        replicas: d
            .replicas
            .iter()
            .map(|rep| pb::ReplicaDescriptor {
                node_id: rep.node_id,
                role: if rep.voter { "voter" } else { "learner" }.to_string(),
                addr: mem
                    .get_node(&rep.node_id)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}
