//! Server side of the peer transport: the `Raft` gRPC service.

use std::sync::Arc;

use futures::StreamExt;
use shoal_proto::error::{codes, not_leader, status};
use shoal_proto::v1::raft_server;
use shoal_proto::v1::{
    BootstrapRequest, BootstrapResponse, HelloRequest, HelloResponse, JoinRequest, JoinResponse,
    MuxBatch, RaftMessage, SnapshotChunk,
};
use tokio::io::AsyncWriteExt;
use tonic::{Code, Request, Response, Status, Streaming};

use shoal_storage::Engine;

use crate::codec::{decode, encode};
use crate::replica::{ReadError, Replica, Router};
use crate::state_machine::SnapshotFile;
use crate::types::*;

/// Node-level calls of the peer service, answered by the node that owns the router.
#[tonic::async_trait]
pub trait NodeHooks: Send + Sync + 'static {
    async fn hello(&self) -> HelloResponse;
    async fn bootstrap(&self, req: BootstrapRequest) -> Result<(), Status>;
    async fn join(&self, req: JoinRequest) -> Result<JoinResponse, Status>;
    /// On the meta range's leader: a new range id.
    async fn alloc_range_id(&self) -> Result<u64, Status>;
    /// On the meta range's leader: records reported descriptors in the routing table.
    async fn report_ranges(&self, descriptors: Vec<crate::RangeDescriptor>) -> Result<(), Status>;
    /// Creates an empty replica of the range `d` describes on this node, if it is the
    /// node `target_node_id` names (0: any).
    async fn create_replica(
        &self,
        target_node_id: u64,
        d: crate::RangeDescriptor,
    ) -> Result<(), Status>;
    /// On the meta range's leader: a node's heartbeat.
    async fn node_heartbeat(&self, report: crate::NodeReport) -> Result<(), Status>;
    /// On a range's leader: a replica change asked by the placement driver.
    async fn change_replicas(&self, change: crate::ChangeReplicas) -> Result<(), Status>;
}

/// The `Raft` gRPC service.
pub struct RaftService<H> {
    router: Arc<Router>,
    hooks: Arc<H>,
}

impl<H> RaftService<H> {
    pub fn new(router: Arc<Router>, hooks: Arc<H>) -> Self {
        Self { router, hooks }
    }

    fn replica(&self, range_id: u64, target: u64) -> Result<Arc<Replica>, Status> {
        replica(&self.router, range_id, target)
    }
}

/// The replica a message is for, if this node holds it under the id the sender
/// addressed (0: any).
fn replica(router: &Router, range_id: u64, target: u64) -> Result<Arc<Replica>, Status> {
    let r = router.get(range_id).ok_or_else(|| no_replica(range_id))?;
    addressed_to(target, r.node_id)?;
    Ok(r)
}

/// [`replica`] for Raft's own messages (votes, appends), which may come from the new
/// leader of a split's right half before this node applied the split: they wait a
/// moment for the replica to open, instead of failing an election that would then
/// wait a whole election timeout to start again.
async fn replica_soon(router: &Router, range_id: u64, target: u64) -> Result<Arc<Replica>, Status> {
    let r = router
        .get_soon(range_id, SPLIT_PATIENCE)
        .await
        .ok_or_else(|| no_replica(range_id))?;
    addressed_to(target, r.node_id)?;
    Ok(r)
}

/// How long a Raft message for a range this node does not hold waits for it to open.
const SPLIT_PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);

fn no_replica(range_id: u64) -> Status {
    status(
        Code::NotFound,
        codes::RANGE_NOT_FOUND,
        format!("range {range_id} has no replica on this node"),
        None,
    )
}

/// The Raft messages openraft sends a peer: answered alike whether they came as a
/// unary call or in a frame of the peer's [`Mux`](crate::mux) stream.
pub(crate) async fn append_entries(router: &Router, m: RaftMessage) -> Result<RaftMessage, Status> {
    let r = replica_soon(router, m.range_id, m.target_node_id).await?;
    let rpc: AppendEntriesRequest = decode(&m.payload).map_err(bad_payload)?;
    let resp = r.raft.append_entries(rpc).await.map_err(raft_failed)?;
    if resp.is_success() {
        r.note_leader_contact();
    }
    reply(m.range_id, &resp)
}

pub(crate) async fn vote(router: &Router, m: RaftMessage) -> Result<RaftMessage, Status> {
    let r = replica_soon(router, m.range_id, m.target_node_id).await?;
    let rpc: VoteRequest = decode(&m.payload).map_err(bad_payload)?;
    let resp = r.raft.vote(rpc).await.map_err(raft_failed)?;
    reply(m.range_id, &resp)
}

pub(crate) async fn pre_vote(router: &Router, m: RaftMessage) -> Result<RaftMessage, Status> {
    let r = replica_soon(router, m.range_id, m.target_node_id).await?;
    let rpc: VoteRequest = decode(&m.payload).map_err(bad_payload)?;
    let resp = r.raft.pre_vote(rpc).await.map_err(raft_failed)?;
    reply(m.range_id, &resp)
}

pub(crate) async fn transfer_leader(
    router: &Router,
    m: RaftMessage,
) -> Result<RaftMessage, Status> {
    let r = replica(router, m.range_id, m.target_node_id)?;
    let rpc: TransferLeaderRequest = decode(&m.payload).map_err(bad_payload)?;
    let resp = r
        .raft
        .handle_transfer_leader(rpc)
        .await
        .map_err(raft_failed)?;
    reply(m.range_id, &resp)
}

/// Refuses a message addressed to another node id than `me` (0: any).
pub fn addressed_to(target: u64, me: NodeId) -> Result<(), Status> {
    if target != 0 && target != me {
        return Err(status(
            Code::FailedPrecondition,
            codes::WRONG_NODE,
            format!("message for node {target} reached node {me}"),
            None,
        ));
    }
    Ok(())
}

/// Refuses a payload naming another range than the message carrying it.
fn same_range(named: u64, message: u64, what: &str) -> Result<(), Status> {
    if named != message {
        return Err(status(
            Code::InvalidArgument,
            codes::INVALID_ARGUMENT,
            format!("the {what} names another range than the message"),
            None,
        ));
    }
    Ok(())
}

fn bad_payload(e: std::io::Error) -> Status {
    status(
        Code::InvalidArgument,
        codes::INVALID_ARGUMENT,
        format!("undecodable raft message: {e}"),
        None,
    )
}

fn reply<T: serde::Serialize>(range_id: u64, v: &T) -> Result<RaftMessage, Status> {
    let payload = encode(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok(RaftMessage {
        range_id,
        payload,
        target_node_id: 0,
    })
}

/// The status a client or a follower gets for a read that cannot be linearized here.
pub fn read_error(range_id: u64, e: ReadError) -> Status {
    match e {
        ReadError::NotLeader {
            leader_id,
            leader_addr,
        } => not_leader(range_id, leader_id, leader_addr),
        ReadError::NoQuorum(m) => status(Code::Unavailable, codes::NO_QUORUM, m, None),
        ReadError::Stopped(m) => raft_failed(m),
    }
}

fn raft_failed(e: impl std::fmt::Display) -> Status {
    status(
        Code::Unavailable,
        codes::SHUTTING_DOWN,
        format!("raft stopped: {e}"),
        None,
    )
}

#[tonic::async_trait]
impl<H: NodeHooks> raft_server::Raft for RaftService<H> {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        append_entries(&self.router, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        vote(&self.router, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        pre_vote(&self.router, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        transfer_leader(&self.router, req.into_inner())
            .await
            .map(Response::new)
    }

    type MuxStream = crate::mux::Answers;

    async fn mux(
        &self,
        req: Request<Streaming<MuxBatch>>,
    ) -> Result<Response<Self::MuxStream>, Status> {
        Ok(Response::new(crate::mux::serve(
            self.router.clone(),
            req.into_inner(),
        )))
    }

    async fn read_index(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let r = self.replica(m.range_id, m.target_node_id)?;
        let id = r
            .read_index()
            .await
            .map_err(|e| read_error(m.range_id, e))?;
        reply(m.range_id, &id).map(Response::new)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let range_id = first.range_id;
        let r = self.replica(range_id, first.target_node_id)?;
        let (vote, meta): (Vote, SnapshotMeta) = decode(&first.header).map_err(bad_payload)?;
        let path = r.state_machine.incoming_path();
        let io = |e: std::io::Error| Status::internal(format!("receiving snapshot: {e}"));
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        let mut received = first.data.len() as u64;
        file.write_all(&first.data).await.map_err(io)?;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&path).await;
                    return Err(e);
                }
            };
            received += chunk.data.len() as u64;
            file.write_all(&chunk.data).await.map_err(io)?;
        }
        // tokio's File reports a failed background write (a full disk) on the next
        // operation: flush surfaces it; sync_all alone would not.
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        // A file cut short (a sender that stopped mid-stream) or damaged is refused
        // here: handed to Raft, a bad snapshot would stop the replica.
        let check = path.clone();
        let verified = tokio::task::spawn_blocking(move || Engine::verify_snapshot_file(&check))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        if let Err(e) = verified {
            let _ = tokio::fs::remove_file(&path).await;
            tracing::warn!(range_id, bytes = received, error = %e, "refusing a snapshot that does not verify");
            return Err(status(
                Code::InvalidArgument,
                codes::INVALID_ARGUMENT,
                format!("snapshot refused: {e}"),
                None,
            ));
        }
        // A snapshot whose span overlaps another replica of this node (one that has not
        // yet applied the split that made this range, or that is being removed) must
        // wait: installing it would mix the two ranges' keys.
        let check = path.clone();
        let desc = tokio::task::spawn_blocking(move || {
            crate::StateMachine::snapshot_descriptor(range_id, &check)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("reading the snapshot's descriptor: {e}")))?;
        if let Some(d) = &desc {
            let others: Vec<u64> = self
                .router
                .index
                .overlapping(&d.start, &d.end)
                .into_iter()
                .filter(|id| *id != range_id)
                .collect();
            if !others.is_empty() {
                let _ = tokio::fs::remove_file(&path).await;
                tracing::info!(
                    range_id,
                    ?others,
                    "refusing a snapshot that overlaps other replicas here, for now"
                );
                return Err(status(
                    Code::Unavailable,
                    codes::RANGE_OVERLAP,
                    format!("ranges {others:?} on this node overlap range {range_id}'s span"),
                    None,
                ));
            }
        }
        tracing::info!(range_id, bytes = received, "snapshot received");
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        };
        let resp = r
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(raft_failed)?;
        reply(range_id, &resp).map(Response::new)
    }

    async fn hello(&self, _req: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        Ok(Response::new(self.hooks.hello().await))
    }

    async fn bootstrap(
        &self,
        req: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        self.hooks.bootstrap(req.into_inner()).await?;
        Ok(Response::new(BootstrapResponse {}))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        Ok(Response::new(self.hooks.join(req.into_inner()).await?))
    }

    async fn alloc_range_id(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let id = self.hooks.alloc_range_id().await?;
        reply(m.range_id, &id).map(Response::new)
    }

    async fn report_ranges(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let descriptors: Vec<crate::RangeDescriptor> = decode(&m.payload).map_err(bad_payload)?;
        self.hooks.report_ranges(descriptors).await?;
        reply(m.range_id, &()).map(Response::new)
    }

    async fn create_replica(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let d: crate::RangeDescriptor = decode(&m.payload).map_err(bad_payload)?;
        same_range(d.range_id, m.range_id, "descriptor")?;
        self.hooks.create_replica(m.target_node_id, d).await?;
        reply(m.range_id, &()).map(Response::new)
    }

    async fn node_heartbeat(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        self.replica(m.range_id, m.target_node_id)?;
        let report = crate::NodeReport::decode(&m.payload).map_err(bad_payload)?;
        self.hooks.node_heartbeat(report).await?;
        reply(m.range_id, &()).map(Response::new)
    }

    async fn change_replicas(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let change: crate::ChangeReplicas = decode(&m.payload).map_err(bad_payload)?;
        same_range(change.range_id, m.range_id, "change")?;
        self.replica(m.range_id, m.target_node_id)?;
        self.hooks.change_replicas(change).await?;
        reply(m.range_id, &()).map(Response::new)
    }

    async fn quiesce_beat(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let beat: crate::quiesce::Beat = decode(&m.payload).map_err(bad_payload)?;
        if let Some(me) = self.router.node_id() {
            addressed_to(m.target_node_id, me)?;
        }
        self.router.beats.record(beat);
        reply(m.range_id, &()).map(Response::new)
    }
}
