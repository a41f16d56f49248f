//! The server side of the Raft transport: the `Raft` gRPC service, which hands each
//! message to the replica of the range it names (through the [`Router`]), whether it
//! came as a unary call or as a frame of a peer's [`mux`](crate::transport::mux)
//! stream; snapshots received in chunks; quiescence beats.
//!
//! Handlers answer [`Error`]s; the node gives the service the one function that turns
//! them into gRPC statuses ([`StatusOf`]), so a status is built in one place.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shoal_proto::v1::{raft_server, MuxBatch, MuxKind, RaftMessage, SnapshotChunk};
use shoal_storage::Engine;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::codec::{decode, encode};
use crate::error::{Error, Result};
use crate::latch::ReadAt;
use crate::quiesce::{Beat, Beats};
use crate::replica::Replica;
use crate::router::{addressed_to, Router};
use crate::state_machine::StateMachine;
use crate::transport::mux;
use crate::types::*;

/// How the node turns the transport's errors into gRPC statuses.
pub type StatusOf = Arc<dyn Fn(Error) -> Status + Send + Sync>;

/// How long a Raft message for a range this node does not hold waits for it to open.
const SPLIT_PATIENCE: Duration = Duration::from_millis(250);
/// How long a read-index request waits for the writes in flight below its timestamp.
const READ_PATIENCE: Duration = Duration::from_secs(3);

/// The `Raft` gRPC service.
#[derive(Clone)]
pub struct RaftService {
    router: Arc<Router>,
    beats: Arc<Beats>,
    status_of: StatusOf,
}

impl RaftService {
    pub fn new(router: Arc<Router>, beats: Arc<Beats>, status_of: StatusOf) -> Self {
        Self {
            router,
            beats,
            status_of,
        }
    }

    fn answer<T>(&self, r: Result<T>) -> std::result::Result<Response<T>, Status> {
        r.map(Response::new).map_err(|e| (self.status_of)(e))
    }
}

/// [`Router::addressed`] for Raft's own messages (votes, appends), which may come from the new
/// leader of a split's right half before this node applied the split: they wait a
/// moment for the replica to open, instead of failing an election that would then
/// wait a whole election timeout to start again.
async fn replica_soon(router: &Router, range_id: u64, target: u64) -> Result<Arc<Replica>> {
    let r = router
        .get_soon(range_id, SPLIT_PATIENCE)
        .await
        .ok_or(Error::RangeNotFound { range_id })?;
    addressed_to(target, r.node_id)?;
    Ok(r)
}

fn bad_payload(e: std::io::Error) -> Error {
    Error::BadMessage(format!("undecodable raft message: {e}"))
}

fn stopped<E: std::fmt::Display>(range_id: u64) -> impl Fn(E) -> Error {
    move |e| Error::from_fatal(range_id, e)
}

fn reply<T: serde::Serialize>(range_id: u64, v: &T) -> Result<RaftMessage> {
    let payload = encode(v).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(RaftMessage {
        range_id,
        payload,
        target_node_id: 0,
    })
}

/// Answers one Raft message of openraft's, as a unary call or a mux frame.
#[tracing::instrument(level = "debug", skip_all, fields(range_id = m.range_id, ?kind))]
async fn handle(router: &Router, kind: MuxKind, m: RaftMessage) -> Result<RaftMessage> {
    let range_id = m.range_id;
    match kind {
        MuxKind::AppendEntries => {
            let r = replica_soon(router, range_id, m.target_node_id).await?;
            let rpc: AppendEntriesRequest = decode(&m.payload).map_err(bad_payload)?;
            let resp = r
                .raft()
                .append_entries(rpc)
                .await
                .map_err(stopped(range_id))?;
            if resp.is_success() {
                r.note_leader_contact();
            }
            reply(range_id, &resp)
        }
        MuxKind::Vote | MuxKind::PreVote => {
            let r = replica_soon(router, range_id, m.target_node_id).await?;
            let rpc: VoteRequest = decode(&m.payload).map_err(bad_payload)?;
            let resp = if kind == MuxKind::Vote {
                r.raft().vote(rpc).await
            } else {
                r.raft().pre_vote(rpc).await
            };
            reply(range_id, &resp.map_err(stopped(range_id))?)
        }
        MuxKind::TransferLeader => {
            let r = router.addressed(range_id, m.target_node_id)?;
            let rpc: TransferLeaderRequest = decode(&m.payload).map_err(bad_payload)?;
            let resp = r
                .raft()
                .handle_transfer_leader(rpc)
                .await
                .map_err(stopped(range_id))?;
            reply(range_id, &resp)
        }
        MuxKind::Unspecified => Err(Error::BadMessage("no call kind".into())),
    }
}

/// Receives a snapshot stream into a file, verifies it, and installs it.
#[tracing::instrument(skip_all)]
async fn install_snapshot(
    router: &Router,
    mut stream: Streaming<SnapshotChunk>,
) -> Result<RaftMessage> {
    let first = match stream.next().await {
        None => return Err(Error::BadMessage("empty snapshot stream".into())),
        Some(Err(s)) => {
            return Err(Error::BadMessage(format!(
                "snapshot stream: {}",
                s.message()
            )))
        }
        Some(Ok(c)) => c,
    };
    let range_id = first.range_id;
    let r = router.addressed(range_id, first.target_node_id)?;
    let (vote, meta): (Vote, SnapshotMeta) = decode(&first.header).map_err(bad_payload)?;
    let path = r.state_machine().incoming_path();
    let io = |e: std::io::Error| Error::Storage(format!("receiving snapshot: {e}"));
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut received = first.data.len() as u64;
    file.write_all(&first.data).await.map_err(io)?;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(s) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(Error::BadMessage(format!(
                    "snapshot stream: {}",
                    s.message()
                )));
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
    // A file cut short (a sender that stopped mid-stream) or damaged is refused here:
    // handed to Raft, a bad snapshot would stop the replica.
    let check = path.clone();
    let verified = tokio::task::spawn_blocking(move || Engine::verify_snapshot_file(&check))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    if let Err(e) = verified {
        let _ = tokio::fs::remove_file(&path).await;
        tracing::warn!(range_id, bytes = received, error = %e, "refusing a snapshot that does not verify");
        return Err(Error::BadMessage(format!("snapshot refused: {e}")));
    }
    // A snapshot whose span overlaps another replica of this node (one that has not yet
    // applied the split that made this range, or that is being removed) must wait:
    // installing it would mix the two ranges' keys.
    let check = path.clone();
    let desc =
        tokio::task::spawn_blocking(move || StateMachine::snapshot_descriptor(range_id, &check))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Storage(format!("reading the snapshot's descriptor: {e}")))?;
    if let Some(d) = &desc {
        let overlapping: Vec<u64> = router
            .index
            .overlapping(&d.start, &d.end)
            .into_iter()
            .filter(|id| *id != range_id)
            .collect();
        if !overlapping.is_empty() {
            let _ = tokio::fs::remove_file(&path).await;
            tracing::info!(
                range_id,
                ?overlapping,
                "refusing a snapshot that overlaps other replicas here, for now"
            );
            return Err(Error::RangeOverlap {
                range_id,
                overlapping,
            });
        }
    }
    tracing::info!(range_id, bytes = received, "snapshot received");
    let snapshot = Snapshot {
        meta,
        snapshot: SnapshotFile { path },
    };
    let resp = r
        .raft()
        .install_full_snapshot(vote, snapshot)
        .await
        .map_err(stopped(range_id))?;
    reply(range_id, &resp)
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        self.answer(handle(&self.router, MuxKind::AppendEntries, req.into_inner()).await)
    }

    async fn vote(
        &self,
        req: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        self.answer(handle(&self.router, MuxKind::Vote, req.into_inner()).await)
    }

    async fn pre_vote(
        &self,
        req: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        self.answer(handle(&self.router, MuxKind::PreVote, req.into_inner()).await)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        self.answer(handle(&self.router, MuxKind::TransferLeader, req.into_inner()).await)
    }

    type MuxStream = mux::Answers;

    async fn mux(
        &self,
        req: Request<Streaming<MuxBatch>>,
    ) -> std::result::Result<Response<Self::MuxStream>, Status> {
        let (router, status_of) = (self.router.clone(), self.status_of.clone());
        Ok(Response::new(mux::serve(
            req.into_inner(),
            move |kind, m| {
                let (router, status_of) = (router.clone(), status_of.clone());
                async move { handle(&router, kind, m).await.map_err(|e| status_of(e)) }
            },
        )))
    }

    async fn read_index(
        &self,
        req: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let answer = async {
            let r = self.router.addressed(m.range_id, m.target_node_id)?;
            // A read at a timestamp names it and its spans (an empty payload: a read of
            // the newest versions).
            let at: Option<ReadAt> = if m.payload.is_empty() {
                None
            } else {
                Some(decode(&m.payload).map_err(bad_payload)?)
            };
            reply(
                m.range_id,
                &r.read_index_at(at.as_ref(), READ_PATIENCE).await?,
            )
        };
        self.answer(answer.await)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        self.answer(install_snapshot(&self.router, req.into_inner()).await)
    }

    async fn quiesce_beat(
        &self,
        req: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let answer = (|| {
            let beat: Beat = decode(&m.payload).map_err(bad_payload)?;
            if let Some(me) = self.router.node_id() {
                addressed_to(m.target_node_id, me)?;
            }
            self.beats.record(beat);
            reply(m.range_id, &())
        })();
        self.answer(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::pool::PeerPool;
    use shoal_proto::error::ErrorCode;
    use shoal_proto::v1::raft_server::RaftServer;
    use tokio::sync::oneshot;
    use tonic::Code;

    /// Serves the Raft service of a node holding no replica (`with_raft`), or no
    /// service at all (a peer that knows no `Raft` call), on `listener` until `stop`.
    /// Neither answers `Peer.Hello`, as a node of a version without a peer port: the
    /// pool reaches it at the address it was given.
    fn serve_on(
        listener: std::net::TcpListener,
        with_raft: bool,
        stop: oneshot::Receiver<()>,
    ) -> tokio::task::JoinHandle<()> {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        // Statuses as a node builds them: the code in the details.
        let status_of: StatusOf = Arc::new(|e: Error| {
            let (grpc, code) = match &e {
                Error::RangeNotFound { .. } => (Code::NotFound, ErrorCode::RangeNotFound),
                _ => (Code::Internal, ErrorCode::Internal),
            };
            let d = shoal_proto::v1::ErrorDetail {
                code: code.as_str().into(),
                detail: None,
            };
            Status::with_details(
                grpc,
                e.to_string(),
                prost::Message::encode_to_vec(&d).into(),
            )
        });
        let raft = RaftServer::new(RaftService::new(
            Router::new(),
            Arc::new(Beats::default()),
            status_of,
        ));
        tokio::spawn(async move {
            let mut b = tonic::transport::Server::builder();
            let stop = async {
                let _ = stop.await;
            };
            if with_raft {
                b.add_service(raft)
                    .serve_with_incoming_shutdown(incoming, stop)
                    .await
                    .unwrap();
            } else {
                b.add_routes(tonic::service::Routes::default())
                    .serve_with_incoming_shutdown(incoming, stop)
                    .await
                    .unwrap();
            }
        })
    }

    fn msg(range_id: u64) -> RaftMessage {
        RaftMessage {
            range_id,
            payload: vec![],
            target_node_id: 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_each_get_their_own_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (_stop, stopped) = oneshot::channel();
        let _server = serve_on(listener, true, stopped);
        let pool = PeerPool::new();
        let mux = pool.mux(&addr);

        // 200 calls at once, for 200 different ranges: every answer names the range
        // its own request named, so answers are matched to their requests.
        let calls = (1..=200u64).map(|range| {
            let mux = mux.clone();
            let kind = if range % 2 == 0 {
                MuxKind::Vote
            } else {
                MuxKind::AppendEntries
            };
            async move { (range, mux.call(kind, msg(range)).await) }
        });
        for (range, answer) in futures::future::join_all(calls).await {
            let e = answer.expect_err("no node holds the range");
            assert_eq!(e.code(), Code::NotFound);
            assert_eq!(ErrorCode::of(&e), Some(ErrorCode::RangeNotFound));
            assert!(
                e.message().contains(&format!("range {range} ")),
                "answer for range {range}: {}",
                e.message()
            );
        }
        assert!(!mux.is_unary());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_without_the_stream_is_sent_unary_calls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (_stop, stopped) = oneshot::channel();
        let _server = serve_on(listener, false, stopped);
        let pool = PeerPool::new();
        let mux = pool.mux(&addr);
        let first = mux.call(MuxKind::Vote, msg(1)).await;
        assert_eq!(first.expect_err("no stream").code(), Code::Unavailable);
        assert!(mux.is_unary());
        // The unary call reaches the peer (which knows no Raft calls at all here).
        let second = mux.call(MuxKind::Vote, msg(1)).await;
        assert_eq!(second.expect_err("no raft").code(), Code::Unimplemented);
    }
}
