//! [`PeerPool`]: the node's connections to its peers. One gRPC channel per peer
//! address, shared by every range and by the node-level calls; each Raft message
//! names its range. Channels connect lazily and reconnect by themselves, resolving the
//! peer's name again on every connect: a rescheduled pod comes back under the same
//! name with a new IP. A secure node opens them through its [`Dial`] (TLS with its
//! node certificate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_proto::v1::raft_client::RaftClient;
use tonic::transport::{Channel, Endpoint};

use crate::transport::mux::Mux;

/// How a channel's connections are opened from its endpoint: `connect_lazy` on an
/// insecure node, a TLS connector on a secure one.
pub type Dial = Arc<dyn Fn(&Endpoint) -> Channel + Send + Sync>;

/// gRPC channels to peer nodes, one per address.
#[derive(Default)]
pub struct PeerPool {
    dial: Option<Dial>,
    channels: Mutex<HashMap<String, Channel>>,
    /// The Raft message stream to each address (see `mux.rs`).
    muxes: Mutex<HashMap<String, Arc<Mux>>>,
}

impl std::fmt::Debug for PeerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPool")
            .field("secure", &self.dial.is_some())
            .finish_non_exhaustive()
    }
}

impl PeerPool {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A pool whose connections `dial` opens.
    pub fn with_dial(dial: Dial) -> Arc<Self> {
        Arc::new(Self {
            dial: Some(dial),
            ..Self::default()
        })
    }

    /// The channel to `addr` (`host:port`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.dial.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let ch = match &self.dial {
            Some(dial) => dial(&endpoint),
            None => endpoint.connect_lazy(),
        };
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// The Raft message stream to `addr`, opened on first use.
    pub(crate) fn mux(&self, addr: &str) -> Arc<Mux> {
        let channel = self.channel(addr).map_err(|e| e.to_string());
        let mut map = self.muxes.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(addr.to_string())
            .or_insert_with(|| Arc::new(Mux::new(addr, channel)))
            .clone()
    }

    pub fn client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        Ok(RaftClient::new(self.channel(addr)?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }
}
