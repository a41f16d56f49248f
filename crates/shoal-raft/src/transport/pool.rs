//! [`PeerPool`]: the node's connections to its peers. One gRPC channel per peer,
//! shared by every range and by the node-level calls; each Raft message names its
//! range. Channels connect lazily and reconnect by themselves.
//!
//! A peer is known by its client address (what the cluster's membership records);
//! its peer traffic goes to its peer port. Before every connection the channel asks
//! the client address where the peer port is (`Peer.Hello`, the one internal call a
//! client port answers), then connects there: a rescheduled pod comes back under the
//! same name with a new IP, or a node restarted with another peer port, and the next
//! connection finds it. A node of a version without a peer port answers without one,
//! and is reached at its client address. A secure node opens every connection through
//! its [`Dial`] (TLS with its node certificate).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use shoal_proto::v1::peer_client::PeerClient;
use shoal_proto::v1::raft_client::RaftClient;
use shoal_proto::v1::HelloRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint};

use crate::transport::mux::Mux;

/// A connection to a peer: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How one connection to `host:port` is opened once the address is known: plain
/// TCP on an insecure node, TLS with the node certificate on a secure one.
pub type Dial = Arc<dyn Fn(String, u16) -> BoxFuture<Result<Box<dyn Io>, BoxError>> + Send + Sync>;

/// The bound on asking a peer's client address for its peer port, and on opening
/// a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// gRPC channels to peer nodes, one per node address and port kind.
pub struct PeerPool {
    dial: Option<Dial>,
    /// To the peer ports of the nodes, by client address.
    peers: Mutex<HashMap<String, Channel>>,
    /// To the client ports of the nodes (the node as a client: forwarded requests,
    /// admin calls, and the question where a peer port is).
    clients: Mutex<HashMap<String, Channel>>,
    /// The Raft message stream to each peer (see `mux.rs`).
    muxes: Mutex<HashMap<String, Arc<Mux>>>,
}

impl std::fmt::Debug for PeerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPool")
            .field("secure", &self.dial.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeerPool {
    pub fn new() -> Arc<Self> {
        Self::build(None)
    }

    /// A pool whose connections `dial` opens.
    pub fn with_dial(dial: Dial) -> Arc<Self> {
        Self::build(Some(dial))
    }

    fn build(dial: Option<Dial>) -> Arc<Self> {
        Arc::new(Self {
            dial,
            peers: Mutex::default(),
            clients: Mutex::default(),
            muxes: Mutex::default(),
        })
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        let scheme = if self.dial.is_some() { "https" } else { "http" };
        Ok(Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true))
    }

    fn connector(&self, ask: Option<Channel>) -> Connector {
        Connector {
            dial: self.dial.clone().unwrap_or_else(tcp),
            ask,
        }
    }

    /// The channel to the peer port of the node at `addr` (its client address,
    /// `host:port`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        if let Some(c) = lock(&self.peers).get(addr) {
            return Ok(c.clone());
        }
        let ask = self.client_port(addr)?;
        let ch = self
            .endpoint(addr)?
            .connect_with_connector_lazy(self.connector(Some(ask)));
        Ok(lock(&self.peers)
            .entry(addr.to_string())
            .or_insert(ch)
            .clone())
    }

    /// The channel to the client port of the node at `addr`, created on first use.
    pub fn client_port(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        if let Some(c) = lock(&self.clients).get(addr) {
            return Ok(c.clone());
        }
        let endpoint = self.endpoint(addr)?;
        let ch = match &self.dial {
            Some(_) => endpoint.connect_with_connector_lazy(self.connector(None)),
            None => endpoint.connect_lazy(),
        };
        Ok(lock(&self.clients)
            .entry(addr.to_string())
            .or_insert(ch)
            .clone())
    }

    /// The Raft message stream to the node at `addr`, opened on first use.
    pub(crate) fn mux(&self, addr: &str) -> Arc<Mux> {
        let channel = self.channel(addr).map_err(|e| e.to_string());
        lock(&self.muxes)
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Mux::new(addr, channel)))
            .clone()
    }

    pub fn client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        Ok(RaftClient::new(self.channel(addr)?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }
}

/// Plain TCP, without Nagle's delay.
fn tcp() -> Dial {
    Arc::new(|host, port| {
        Box::pin(async move {
            let s = TcpStream::connect((host.as_str(), port)).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as Box<dyn Io>)
        })
    })
}

/// Opens a channel's connections: to the URI's address, or, with `ask`, to the
/// peer port the node at the URI's address names.
#[derive(Clone)]
struct Connector {
    dial: Dial,
    /// The channel to the node's client port, asked where its peer port is.
    ask: Option<Channel>,
}

impl Service<Uri> for Connector {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (dial, ask) = (self.dial.clone(), self.ask.clone());
        Box::pin(async move {
            let host = uri.host().ok_or("a node address without a host")?;
            // An IPv6 literal comes bracketed.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().ok_or("a node address without a port")?;
            let (host, port) = match ask {
                Some(ch) => peer_port(ch, host, port).await?,
                None => (host.to_string(), port),
            };
            let io = tokio::time::timeout(CONNECT_TIMEOUT, dial(host.clone(), port))
                .await
                .map_err(|_| format!("connecting to {host}:{port} timed out"))??;
            Ok(TokioIo::new(io))
        })
    }
}

/// Where the node whose client port `ch` reaches (at `host:port`) takes peer
/// traffic: the address its `Hello` names, or its client address when it names none
/// (a version without a peer port).
async fn peer_port(ch: Channel, host: &str, port: u16) -> Result<(String, u16), BoxError> {
    let mut client = PeerClient::new(ch);
    let hello = tokio::time::timeout(CONNECT_TIMEOUT, client.hello(HelloRequest {}))
        .await
        .map_err(|_| format!("asking {host}:{port} for its peer port timed out"))?;
    let named = match hello {
        Ok(resp) => resp.into_inner().peer_addr,
        Err(s) if s.code() == tonic::Code::Unimplemented => String::new(),
        Err(s) => {
            return Err(format!("asking {host}:{port} for its peer port: {}", s.message()).into())
        }
    };
    Ok(match split_host_port(&named) {
        Some((h, p)) => (h.to_string(), p),
        None => (host.to_string(), port),
    })
}

/// `host:port` (a bracketed IPv6 host unbracketed); `None` for anything else.
fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_peer_address_splits_into_host_and_port() {
        assert_eq!(
            split_host_port("shoal-0.shoal:7071"),
            Some(("shoal-0.shoal", 7071))
        );
        assert_eq!(split_host_port("[::1]:7071"), Some(("::1", 7071)));
        assert_eq!(split_host_port(""), None);
        assert_eq!(split_host_port(":7071"), None);
        assert_eq!(split_host_port("host:port"), None);
    }
}
