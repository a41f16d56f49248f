//! openraft's network for one range: [`NetworkFactory`] makes a [`Connection`] per
//! peer, which sends the range's Raft messages on the peer's [`Mux`] stream (each
//! naming the range) and streams snapshots in chunks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use openraft::errors::{NetworkError, ReplicationClosed, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::v1::{MuxKind, RaftMessage, SnapshotChunk};
use tokio::io::AsyncReadExt;

use crate::codec::{decode, encode};
use crate::transport::mux::Mux;
use crate::transport::pool::PeerPool;
use crate::types::*;

/// Bytes of snapshot data per streamed chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Creates the connections of one range's Raft instance to its peers.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    pool: Arc<PeerPool>,
    range_id: u64,
    min_ttl: Duration,
}

impl NetworkFactory {
    pub fn new(pool: Arc<PeerPool>, range_id: u64) -> Self {
        Self {
            pool,
            range_id,
            min_ttl: Duration::ZERO,
        }
    }

    /// The least time an append is given before its peer counts as unreachable.
    /// openraft bounds appends (and heartbeats) by the heartbeat interval; a follower
    /// busy with a large batch or a slow fsync often takes longer, and an unreachable
    /// peer is backed off from for half a second: loading 100,000 records ran at a
    /// tenth of its speed that way. A peer answering within an election timeout is
    /// alive.
    pub fn with_min_ttl(mut self, min_ttl: Duration) -> Self {
        self.min_ttl = min_ttl;
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        Connection {
            pool: self.pool.clone(),
            range_id: self.range_id,
            target,
            addr: node.addr.clone(),
            mux: self.pool.mux(&node.addr),
            min_ttl: self.min_ttl,
        }
    }
}

/// One range's connection to one peer.
pub struct Connection {
    pool: Arc<PeerPool>,
    range_id: u64,
    target: NodeId,
    addr: String,
    /// The peer's message stream, looked up once per connection.
    mux: Arc<Mux>,
    /// See [`NetworkFactory::with_min_ttl`]; appends only.
    min_ttl: Duration,
}

fn unreachable(e: &(impl std::error::Error + 'static)) -> RPCError {
    RPCError::Unreachable(Unreachable::new(e))
}

fn status_error(s: tonic::Status) -> RPCError {
    // A transport failure (refused, reset, unresolvable) surfaces as Unavailable:
    // openraft backs off from an unreachable peer.
    if s.code() == tonic::Code::Unavailable {
        unreachable(&s)
    } else {
        RPCError::Network(NetworkError::new(&s))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rpc to node {target} timed out after {after:?}")]
struct RpcTimeout {
    target: NodeId,
    after: Duration,
}

impl Connection {
    /// Sends `req` as the call `kind` on the peer's message stream, bounded by the
    /// option's time to live.
    async fn call<Req, Resp>(
        &self,
        kind: MuxKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let msg = RaftMessage {
            range_id: self.range_id,
            payload: encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?,
            target_node_id: self.target,
        };
        let ttl = match kind {
            MuxKind::AppendEntries => option.hard_ttl().max(self.min_ttl),
            _ => option.hard_ttl(),
        };
        let resp = match tokio::time::timeout(ttl, self.mux.call(kind, msg)).await {
            Ok(r) => r.map_err(status_error)?,
            Err(_) => {
                return Err(unreachable(&RpcTimeout {
                    target: self.target,
                    after: ttl,
                }))
            }
        };
        decode(&resp.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError> {
        self.call(MuxKind::AppendEntries, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError> {
        self.call(MuxKind::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError> {
        self.call(MuxKind::PreVote, &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse, RPCError> {
        self.call(MuxKind::TransferLeader, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError> {
        let net = |e: &(dyn std::error::Error + 'static)| {
            NetworkError::new(&std::io::Error::other(e.to_string()))
        };
        let mut client = self.pool.client(&self.addr).map_err(|e| unreachable(&e))?;
        let header = encode(&(vote, snapshot.meta.clone())).map_err(|e| net(&e))?;
        let file = tokio::fs::File::open(&snapshot.snapshot.path)
            .await
            .map_err(|e| net(&e))?;
        let chunk = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK_BYTES)
            .max(4096);
        let range_id = self.range_id;
        let first = SnapshotChunk {
            range_id,
            target_node_id: self.target,
            header,
            data: Vec::new(),
        };
        // The file is read as it is sent: memory stays at one chunk per transfer.
        let data = futures::stream::unfold(Some(file), move |file| async move {
            let mut file = file?;
            // An error here cuts the stream short: the receiver must refuse what it got.
            if let Err(e) = crate::failpoints::hit("snapshot-send") {
                tracing::warn!(error = %e, "sending a snapshot");
                return None;
            }
            let mut buf = vec![0u8; chunk];
            let mut filled = 0;
            while filled < chunk {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading snapshot file for transfer");
                        return None;
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            let next = (filled == chunk).then_some(file);
            Some((
                SnapshotChunk {
                    range_id,
                    target_node_id: 0,
                    header: Vec::new(),
                    data: buf,
                },
                next,
            ))
        });
        let stream = futures::stream::iter([first]).chain(data);
        let send = client.install_snapshot(stream);
        let ttl = option.hard_ttl().max(Duration::from_secs(60));
        let resp = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, send) => match r {
                Ok(r) => r.map_err(status_error)?,
                Err(_) => return Err(unreachable(&RpcTimeout { target: self.target, after: ttl }).into()),
            },
        };
        decode(&resp.into_inner().payload).map_err(|e| StreamingError::Network(net(&e)))
    }
}
