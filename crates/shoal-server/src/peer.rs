//! The internal `Peer` gRPC service: the node-level calls between the nodes of a
//! cluster (hello, bootstrap, join, range ids, routing-table reports, replica
//! creation, heartbeats, replica changes, merge steps, timestamps), answered by the node, its
//! drivers and its clock.

use std::sync::Arc;

use shoal_proto::v1::{self as pb, peer_server::Peer};
use shoal_raft::RangeDescriptor;
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::convert::{peer_message, peer_payload};
use crate::error::{Error, Result};
use crate::keeper::RangeKeeper;
use crate::merge;
use crate::node::Node;
use crate::placement::change;
use crate::placement::driver::PlacementDriver;
use crate::placement::messages::{ChangeReplicas, NodeReport};
use crate::routing;

pub struct PeerService {
    node: Arc<Node>,
    keeper: Arc<RangeKeeper>,
    driver: Arc<PlacementDriver>,
    clock: Clock,
}

impl PeerService {
    pub fn new(
        node: Arc<Node>,
        keeper: Arc<RangeKeeper>,
        driver: Arc<PlacementDriver>,
        clock: Clock,
    ) -> Self {
        Self {
            node,
            keeper,
            driver,
            clock,
        }
    }

    /// Refuses a message that names another range in its payload than in its envelope.
    fn same_range(named: u64, message: u64, what: &str) -> Result<()> {
        if named != message {
            return Err(Error::invalid(
                shoal_proto::error::ErrorCode::InvalidArgument,
                format!("the {what} names another range than the message"),
            ));
        }
        Ok(())
    }

    /// Refuses a message about a range this node holds no replica of, or for another
    /// node than this one (0: any), as for Raft's messages.
    fn for_me(&self, m: &pb::PeerMessage) -> Result<()> {
        self.node.router.addressed(m.range_id, m.target_node_id)?;
        Ok(())
    }
}

fn answer(
    m: &pb::PeerMessage,
    r: Result<()>,
) -> std::result::Result<Response<pb::PeerMessage>, Status> {
    r.and_then(|()| peer_message(m.range_id, 0, &()))
        .map(Response::new)
        .map_err(Status::from)
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn hello(
        &self,
        _req: Request<pb::HelloRequest>,
    ) -> std::result::Result<Response<pb::HelloResponse>, Status> {
        Ok(Response::new(self.node.hello()))
    }

    async fn bootstrap(
        &self,
        req: Request<pb::BootstrapRequest>,
    ) -> std::result::Result<Response<pb::BootstrapResponse>, Status> {
        let req = req.into_inner();
        self.node
            .accept_bootstrap(&req.cluster_id, req.node_id)
            .await
            .map(|()| Response::new(pb::BootstrapResponse {}))
            .map_err(Status::from)
    }

    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> std::result::Result<Response<pb::JoinResponse>, Status> {
        let req = req.into_inner();
        self.node
            .admit(&req.addr, &req.name)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn alloc_range_id(
        &self,
        req: Request<pb::PeerMessage>,
    ) -> std::result::Result<Response<pb::PeerMessage>, Status> {
        let m = req.into_inner();
        let id = async {
            self.node.leads_meta()?;
            routing::alloc_range_id_here(&self.node).await
        };
        id.await
            .and_then(|id| peer_message(m.range_id, 0, &id))
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn timestamps(
        &self,
        req: Request<pb::TimestampsRequest>,
    ) -> std::result::Result<Response<pb::TimestampsResponse>, Status> {
        let count = req.into_inner().count;
        self.clock
            .serve(count)
            .await
            .map(|first| Response::new(pb::TimestampsResponse { first: first.0 }))
            .map_err(Status::from)
    }

    async fn report_ranges(
        &self,
        req: Request<pb::PeerMessage>,
    ) -> std::result::Result<Response<pb::PeerMessage>, Status> {
        let m = req.into_inner();
        let done = async {
            let ds: Vec<RangeDescriptor> = peer_payload(&m)?;
            routing::record_here(&self.node, ds).await
        };
        answer(&m, done.await)
    }

    async fn create_replica(
        &self,
        req: Request<pb::PeerMessage>,
    ) -> std::result::Result<Response<pb::PeerMessage>, Status> {
        let m = req.into_inner();
        let done = async {
            let d: RangeDescriptor = peer_payload(&m)?;
            Self::same_range(d.range_id, m.range_id, "descriptor")?;
            self.node.create_replica(m.target_node_id, d).await
        };
        answer(&m, done.await)
    }

    async fn node_heartbeat(
        &self,
        req: Request<pb::PeerMessage>,
    ) -> std::result::Result<Response<pb::PeerMessage>, Status> {
        let m = req.into_inner();
        let done = (|| {
            self.for_me(&m)?;
            let report = NodeReport::decode(&m.payload).map_err(|e| {
                Error::invalid(
                    shoal_proto::error::ErrorCode::InvalidArgument,
                    format!("undecodable heartbeat: {e}"),
                )
            })?;
            self.node.leads_meta()?;
            self.driver.heard(report);
            Ok(())
        })();
        answer(&m, done)
    }

    async fn merge_step(
        &self,
        req: Request<pb::PeerMessage>,
    ) -> std::result::Result<Response<pb::PeerMessage>, Status> {
        let m = req.into_inner();
        let done = async {
            self.for_me(&m)?;
            let step: merge::Step = peer_payload(&m)?;
            let answer = merge::serve(&self.node, m.range_id, step).await?;
            peer_message(m.range_id, 0, &answer)
        };
        done.await.map(Response::new).map_err(Status::from)
    }

    async fn change_replicas(
        &self,
        req: Request<pb::PeerMessage>,
    ) -> std::result::Result<Response<pb::PeerMessage>, Status> {
        let m = req.into_inner();
        let done = async {
            let c: ChangeReplicas = peer_payload(&m)?;
            Self::same_range(c.range_id, m.range_id, "change")?;
            self.for_me(&m)?;
            change::carry_out(&self.node, &self.keeper, c).await
        };
        answer(&m, done.await)
    }
}
