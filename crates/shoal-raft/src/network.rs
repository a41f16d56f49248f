//! Client side of the peer transport.
//!
//! One gRPC channel per peer address, shared by every range ([`PeerPool`]); each
//! message names its range. Channels connect lazily and reconnect by themselves,
//! resolving the peer's name again on every connect: a rescheduled pod comes back
//! under the same name with a new IP.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use openraft::errors::{NetworkError, ReplicationClosed, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::v1::raft_client::RaftClient;
use shoal_proto::v1::{MuxKind, RaftMessage, SnapshotChunk};
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint};

use crate::codec::{decode, encode};
use crate::mux::Mux;
use crate::state_machine::SnapshotFile;
use crate::types::*;

/// Bytes of snapshot data per streamed chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// gRPC channels to peer nodes, one per address.
#[derive(Debug, Default)]
pub struct PeerPool {
    channels: Mutex<HashMap<String, Channel>>,
    /// The Raft message stream to each address (see `mux.rs`).
    muxes: Mutex<HashMap<String, Arc<Mux>>>,
}

impl PeerPool {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The channel to `addr` (`host:port`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// The Raft message stream to `addr`, opened on first use.
    pub(crate) fn mux(&self, addr: &str) -> Arc<Mux> {
        let mut map = self.muxes.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(addr.to_string())
            .or_insert_with(|| Arc::new(Mux::new(addr)))
            .clone()
    }

    pub fn client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        Ok(RaftClient::new(self.channel(addr)?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }
}

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
        let resp = match tokio::time::timeout(ttl, self.mux.call(&self.pool, kind, msg)).await {
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
