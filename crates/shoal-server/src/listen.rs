//! The listeners of a secure node (clients' and peers'): every accepted connection goes through a
//! TLS handshake with the node's current certificates ([`Tls::current`]) before its
//! protocol sees a byte. Handshakes run apart from the accept loop, each bounded in
//! time, so a slow or silent client holds up no one else; one that fails (plaintext,
//! a certificate of another CA, an expired one) is closed and counted.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use shoal_proto::certs::NODE_COMMON_NAME;

use crate::certs::parse_der;
use crate::metrics::Metrics;
use crate::tls::{Loaded, Tls};

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which listener: each names its protocol by ALPN.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Grpc,
    /// The peer port: a certificate of the CA is required at the handshake.
    Peer,
    Http,
}

impl Listener {
    fn config(self, l: &Loaded) -> Arc<ServerConfig> {
        match self {
            Listener::Grpc => l.grpc.clone(),
            Listener::Peer => l.peers.clone(),
            Listener::Http => l.http.clone(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Listener::Grpc => "grpc",
            Listener::Peer => "peer",
            Listener::Http => "http",
        }
    }
}

/// A client's connection: TLS, or plaintext, kept only to tell the client (in its
/// own protocol, with a stable code) that this node speaks TLS.
pub struct TlsConn {
    stream: Io,
    remote: Option<SocketAddr>,
    who: Option<Who>,
}

enum Io {
    Tls(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

impl TlsConn {
    /// Who the client proved to be, if it presented a certificate.
    pub fn who(&self) -> Option<&Who> {
        self.who.as_ref()
    }

    /// Whether the client spoke plaintext.
    pub fn is_plaintext(&self) -> bool {
        matches!(self.stream, Io::Plain(_))
    }
}

/// `$method` of the connection's stream, whichever it is.
macro_rules! on_io {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &mut $self.stream {
            Io::Tls(s) => Pin::new(&mut **s).$method($($arg),*),
            Io::Plain(s) => Pin::new(s).$method($($arg),*),
        }
    };
}

/// Who is at the other end of a connection, by the certificate it presented (which
/// the handshake verified against the cluster CA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A node certificate (common name `node`).
    Node,
    /// A client certificate: its common name is the user.
    User(String),
}

/// What a gRPC call learns of its connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// Who the client proved to be; `None`: it presented no certificate.
    pub who: Option<Who>,
    /// The client spoke plaintext: every call is refused.
    pub plaintext: bool,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            remote: self.remote,
            who: self.who.clone(),
            plaintext: self.is_plaintext(),
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_io!(self.poll_read(cx, buf))
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_io!(self.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_io!(self.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Io::Tls(s) => s.is_write_vectored(),
            Io::Plain(s) => s.is_write_vectored(),
        }
    }
}

/// The TLS handshake of one accepted connection, bounded in time; a failure is
/// counted and logged. A client whose first byte does not start a TLS handshake
/// (plaintext) gets its connection back as plaintext, to be refused in its protocol.
pub async fn handshake(
    tls: &Tls,
    which: Listener,
    tcp: TcpStream,
    metrics: &Metrics,
) -> Option<TlsConn> {
    let remote = tcp.peer_addr().ok();
    let _ = tcp.set_nodelay(true);
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        // 22: a TLS handshake record.
        Ok(Ok(1)) if first[0] == 22 => {}
        Ok(Ok(1)) => {
            metrics.count_tls_refused(which.name());
            tracing::debug!(
                ?remote,
                listener = which.name(),
                "a plaintext connection to a TLS port"
            );
            return Some(TlsConn {
                stream: Io::Plain(tcp),
                remote,
                who: None,
            });
        }
        _ => return None,
    }
    let acceptor = TlsAcceptor::from(which.config(&tls.current()));
    let why = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            // Read once per connection, not per call.
            let who = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| parse_der(c).ok())
                .map(|p| match p.common_name.as_str() {
                    NODE_COMMON_NAME => Who::Node,
                    user => Who::User(user.to_string()),
                });
            return Some(TlsConn {
                stream: Io::Tls(Box::new(stream)),
                remote,
                who,
            });
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    metrics.count_tls_refused(which.name());
    tracing::debug!(?remote, listener = which.name(), error = %why, "TLS handshake failed");
    None
}

/// The TLS connections of `listener`, as tonic's server takes them, until `stop`.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Tls>,
    which: Listener,
    metrics: Metrics,
    stop: CancellationToken,
) -> impl Stream<Item = io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<TlsConn>>(64);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        tracing::warn!(error = %e, listener = which.name(), "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (tls, tx, metrics) = (tls.clone(), tx.clone(), metrics.clone());
            tokio::spawn(async move {
                if let Some(conn) = handshake(&tls, which, tcp, &metrics).await {
                    let _ = tx.send(Ok(conn)).await;
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}
