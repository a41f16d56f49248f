//! The public `Admin` gRPC service: node status, the cluster's nodes and ranges,
//! `init`, drain, decommission, removal, splits, merges, range lookups for routing, and
//! users.

use std::sync::Arc;
use std::time::Duration;

use shoal_proto::error::ErrorCode;
use shoal_proto::v1::admin_client::AdminClient;
use shoal_proto::v1::{self as pb, admin_server::Admin};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::bootstrap::Bootstrap;
use crate::convert::descriptor;
use crate::error::{Error, Result};
use crate::forward;
use crate::keeper::RangeKeeper;
use crate::lifecycle;
use crate::node::Node;
use crate::placement::driver::PlacementDriver;
use crate::route::Hop;
use crate::routing;
use crate::users::Users;
use shoal_txn::ranges::Ranges;

pub struct AdminService {
    node: Arc<Node>,
    keeper: Arc<RangeKeeper>,
    driver: Arc<PlacementDriver>,
    bootstrap: Arc<Bootstrap>,
    users: Arc<Users>,
    /// The cluster's ranges, as the node's transactions reach them (users' records).
    ranges: Arc<dyn Ranges>,
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

fn answer<T>(r: Result<T>) -> std::result::Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

impl AdminService {
    pub fn new(
        node: Arc<Node>,
        keeper: Arc<RangeKeeper>,
        driver: Arc<PlacementDriver>,
        bootstrap: Arc<Bootstrap>,
        users: Arc<Users>,
        ranges: Arc<dyn Ranges>,
    ) -> Self {
        Self {
            node,
            keeper,
            driver,
            bootstrap,
            users,
            ranges,
        }
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

    fn status(&self) -> pb::StatusResponse {
        let ident = self.node.ident();
        let not_ready: Vec<String> = lifecycle::readiness(&self.node)
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|why| format!("{name}: {why}")))
            .collect();
        let ranges = self
            .node
            .router
            .all()
            .iter()
            .map(|r| {
                r.with_metrics(|m| {
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
            })
            .collect();
        pb::StatusResponse {
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
        }
    }

    fn nodes(&self) -> Result<pb::NodesResponse> {
        let r = self.node.meta()?;
        let m = r.metrics();
        // Liveness is known on the leader: send the caller there when there is one.
        if let Some(leader) = m.current_leader {
            if leader != r.node_id {
                return Err(Error::NotLeader {
                    range_id: r.range_id,
                    leader_id: Some(leader),
                    leader_addr: r.leader().1,
                });
            }
        }
        let mem = m.membership_config.membership();
        let voters: Vec<u64> = mem.voter_ids().collect();
        // The leader knows how far each follower has replicated; elsewhere only our own.
        let matched = m.replication.clone().unwrap_or_default();
        // The placement driver's records (heartbeats, replicas, leaders): on the leader.
        let records = self.driver.node_records();
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
        Ok(pb::NodesResponse {
            nodes,
            cluster_id: self.node.ident().map(|i| i.cluster_id).unwrap_or_default(),
        })
    }

    async fn ranges(&self) -> Result<pb::RangesResponse> {
        // Served by the meta range's leader: every range's leader reports to it (leader
        // and size; this node too, through its own heartbeat), where another node
        // knows only the ranges it holds.
        self.node.leads_meta()?;
        let descriptors = routing::table(&self.node, true).await?;
        let reported = self.driver.reported_ranges();
        let ranges = descriptors
            .into_iter()
            .map(|d| {
                let (leader, bytes) = reported.get(&d.range_id).copied().unzip();
                let leader_id = self.leader_of(d.range_id, || leader).0;
                pb::RangeInfo {
                    descriptor: Some(descriptor(&self.node.locate(d, None))),
                    leader_id,
                    approximate_bytes: bytes.unwrap_or(0),
                }
            })
            .collect();
        Ok(pb::RangesResponse { ranges })
    }

    async fn range_lookup(&self, req: pb::RangeLookupRequest) -> Result<pb::RangeLookupResponse> {
        self.node.routing_ready()?;
        // Routing needs no read barrier: a client routed with a stale descriptor is
        // refused with the current one (its epoch is checked), and a node cut off from
        // the meta range's leader still routes its clients' stale reads.
        let d = routing::range_for(&self.node, &req.key, req.before)
            .await?
            .ok_or_else(|| Error::RangeNotFound("no range holds this key".into()))?;
        let (leader_id, leader_addr) = self.leader_of(d.range_id, || {
            self.driver.reported_leaders().get(&d.range_id).copied()
        });
        Ok(pb::RangeLookupResponse {
            descriptor: Some(descriptor(&self.node.locate(d, None))),
            leader_id,
            leader_addr,
        })
    }

    async fn split_range(&self, key: Vec<u8>, hop: Hop) -> Result<pb::SplitRangeResponse> {
        if key.is_empty() {
            return Err(Error::invalid(
                shoal_proto::error::ErrorCode::EmptyKey,
                "a split needs a key",
            ));
        }
        let (left, right) = match self.keeper.split_range(&key).await {
            Ok(halves) => halves,
            // Not this node's to split: passed on once to the node that can (the
            // range's leader, else a node holding the range), as writes are, so a
            // client that reaches one node only still splits.
            Err(e)
                if hop == Hop::Client
                    && (e.is_not_leader() || e.code() == ErrorCode::RangeNotFound) =>
            {
                return match self.split_elsewhere(&key).await? {
                    Some(resp) => Ok(resp),
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        Ok(pb::SplitRangeResponse {
            left: Some(descriptor(&self.node.locate(left, None))),
            right: Some(descriptor(&self.node.locate(right, None))),
        })
    }

    /// Sends a split at `key` to the leader of its range as this node's replica knows
    /// it, else to a node holding the range (`None`: no such node known).
    async fn split_elsewhere(&self, key: &[u8]) -> Result<Option<pb::SplitRangeResponse>> {
        let Some(addr) = self.holder(key).await? else {
            return Ok(None);
        };
        let resp = AdminClient::new(self.client_port(&addr)?)
            .split_range(forwarded(pb::SplitRangeRequest { key: key.to_vec() }))
            .await
            .map_err(Error::Remote)?;
        Ok(Some(resp.into_inner()))
    }

    async fn merge_range(&self, key: Vec<u8>, hop: Hop) -> Result<pb::MergeRangeResponse> {
        let merged = match crate::merge::merge_range(&self.node, &key, "request").await {
            Ok(d) => d,
            // Not this node's to merge: passed on once, as a split is.
            Err(e)
                if hop == Hop::Client
                    && (e.is_not_leader() || e.code() == ErrorCode::RangeNotFound) =>
            {
                let Some(addr) = self.holder(&key).await? else {
                    return Err(e);
                };
                let resp = AdminClient::new(self.client_port(&addr)?)
                    .merge_range(forwarded(pb::MergeRangeRequest { key }))
                    .await
                    .map_err(Error::Remote)?;
                return Ok(resp.into_inner());
            }
            Err(e) => return Err(e),
        };
        Ok(pb::MergeRangeResponse {
            merged: Some(descriptor(&self.node.locate(merged, None))),
        })
    }

    fn client_port(&self, addr: &str) -> Result<tonic::transport::Channel> {
        self.node
            .pool
            .client_port(addr)
            .map_err(|e| Error::Unavailable(format!("{addr}: {e}")))
    }

    /// The leader of the range holding `key` as this node's replica knows it, else a
    /// node holding the range (`None`: no such node known, or only this one).
    async fn holder(&self, key: &[u8]) -> Result<Option<String>> {
        let addr = match self.node.router.lookup(key) {
            Some(r) => r.leader().1,
            None => routing::range_for(&self.node, key, false)
                .await?
                .map(|d| self.node.locate(d, None))
                .and_then(|d| {
                    let me = self.node.cfg.advertise();
                    d.desc
                        .replicas
                        .iter()
                        .filter_map(|r| d.addr(r.node_id))
                        .find(|a| !a.is_empty() && *a != me)
                        .map(str::to_string)
                }),
        };
        Ok(addr.filter(|a| *a != self.node.cfg.advertise()))
    }
}

/// How long a split or a merge passed on to another node may take.
const SPLIT_PATIENCE: Duration = Duration::from_secs(10);

/// `msg` as a call passed on from this node (the next node passes it on no further).
fn forwarded<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert(forward::FORWARDED, MetadataValue::from_static("1"));
    req.set_timeout(SPLIT_PATIENCE);
    req
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> std::result::Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.status()))
    }

    async fn nodes(
        &self,
        _req: Request<pb::NodesRequest>,
    ) -> std::result::Result<Response<pb::NodesResponse>, Status> {
        answer(self.nodes())
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> std::result::Result<Response<pb::RemoveNodeResponse>, Status> {
        answer(
            self.node
                .remove_node(req.into_inner().node_id)
                .await
                .map(|()| pb::RemoveNodeResponse {}),
        )
    }

    async fn drain(
        &self,
        _req: Request<pb::DrainRequest>,
    ) -> std::result::Result<Response<pb::DrainResponse>, Status> {
        let patience = Duration::from_secs(self.node.cfg.drain_timeout_secs);
        let still_leading = lifecycle::drain(&self.node, patience).await;
        Ok(Response::new(pb::DrainResponse { still_leading }))
    }

    async fn ranges(
        &self,
        _req: Request<pb::RangesRequest>,
    ) -> std::result::Result<Response<pb::RangesResponse>, Status> {
        answer(self.ranges().await)
    }

    async fn range_lookup(
        &self,
        req: Request<pb::RangeLookupRequest>,
    ) -> std::result::Result<Response<pb::RangeLookupResponse>, Status> {
        answer(self.range_lookup(req.into_inner()).await)
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> std::result::Result<Response<pb::DecommissionResponse>, Status> {
        let replicas = self.driver.decommission(req.into_inner().node_id).await;
        answer(replicas.map(|replicas| pb::DecommissionResponse { replicas }))
    }

    async fn split_range(
        &self,
        req: Request<pb::SplitRangeRequest>,
    ) -> std::result::Result<Response<pb::SplitRangeResponse>, Status> {
        let hop = forward::hop(req.metadata());
        answer(self.split_range(req.into_inner().key, hop).await)
    }

    async fn merge_range(
        &self,
        req: Request<pb::MergeRangeRequest>,
    ) -> std::result::Result<Response<pb::MergeRangeResponse>, Status> {
        let hop = forward::hop(req.metadata());
        answer(self.merge_range(req.into_inner().key, hop).await)
    }

    async fn init(
        &self,
        _req: Request<pb::InitRequest>,
    ) -> std::result::Result<Response<pb::InitResponse>, Status> {
        let r = self.bootstrap.init().await;
        answer(r.map(|(cluster_id, nodes)| pb::InitResponse { cluster_id, nodes }))
    }

    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> std::result::Result<Response<pb::CreateUserResponse>, Status> {
        let req = req.into_inner();
        let r = self
            .users
            .create(self.ranges.clone(), &req.name, &req.role, &req.password);
        answer(r.await.map(|()| pb::CreateUserResponse {}))
    }

    async fn set_password(
        &self,
        req: Request<pb::SetPasswordRequest>,
    ) -> std::result::Result<Response<pb::SetPasswordResponse>, Status> {
        let req = req.into_inner();
        let r = self
            .users
            .set_password(self.ranges.clone(), &req.name, &req.password);
        answer(r.await.map(|()| pb::SetPasswordResponse {}))
    }

    async fn drop_user(
        &self,
        req: Request<pb::DropUserRequest>,
    ) -> std::result::Result<Response<pb::DropUserResponse>, Status> {
        let name = req.into_inner().name;
        let r = self.users.drop_user(self.ranges.clone(), &name).await;
        answer(r.map(|()| pb::DropUserResponse {}))
    }

    async fn list_users(
        &self,
        _req: Request<pb::ListUsersRequest>,
    ) -> std::result::Result<Response<pb::ListUsersResponse>, Status> {
        let r = self.users.refresh(self.ranges.as_ref()).await;
        answer(r.map(|()| {
            pb::ListUsersResponse {
                users: self
                    .users
                    .list()
                    .into_iter()
                    .map(|(name, role, has_password)| pb::User {
                        name,
                        role: role.name().into(),
                        has_password,
                    })
                    .collect(),
            }
        }))
    }
}
