//! TLS to the nodes (rustls on ring, the nodes' one stack): [`ClientTls`], the
//! certificates a client trusts and presents, and the connector that opens a
//! channel's connections with them.
//!
//! A client trusts the cluster CA alone (`ca.crt` of a certificates directory) and
//! checks that the node it reaches is named in the node's certificate by the host of
//! the address it dialed. It presents `client.USER.crt` when the directory holds one
//! (the user it authenticates as). The configuration is asked for at every new
//! connection, so a node's own connector follows its rotated certificates.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use shoal_proto::certs::{client_cert, client_key, CA_CERT};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;
use tonic::codegen::{Context, Poll, Service};
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

type Source = Arc<dyn Fn() -> Arc<ClientConfig> + Send + Sync>;

/// The TLS configuration of a client's connections.
#[derive(Clone)]
pub struct ClientTls {
    config: Source,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

fn bad(path: &Path, why: impl fmt::Display) -> Error {
    Error::InvalidArgument {
        code: "BAD_CERTIFICATES".into(),
        message: format!("{}: {why}", path.display()),
    }
}

/// The certificates of a PEM file, at least one; else why not. (The node reads its
/// certificates directory with it too.)
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no certificate".into());
    }
    Ok(certs)
}

/// ring, the one crypto provider of the cluster's TLS.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClientTls {
    /// From a certificates directory: its CA, and the certificate and key of `user`
    /// when it holds them (a client without one authenticates otherwise, or not at
    /// all).
    pub fn from_dir(dir: &Path, user: &str) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        let ca_path = dir.join(CA_CERT);
        for ca in read_certs(&ca_path).map_err(|e| bad(&ca_path, e))? {
            roots.add(ca).map_err(|e| bad(&ca_path, e))?;
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(dir, e))?
            .with_root_certificates(roots);
        let (cert_path, key_path) = (dir.join(client_cert(user)), dir.join(client_key(user)));
        let config = if cert_path.exists() {
            let chain = read_certs(&cert_path).map_err(|e| bad(&cert_path, e))?;
            let key_pem = std::fs::read(&key_path).map_err(|e| bad(&key_path, e))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| bad(&key_path, format!("not a PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(&key_path, format!("not the key of its certificate: {e}")))?
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(with_h2(config));
        Ok(ClientTls {
            config: Arc::new(move || config.clone()),
        })
    }

    /// The configuration for another protocol than gRPC, named by ALPN (`None`:
    /// none named): the SQL shell's Postgres connections.
    pub fn config_for(&self, alpn: Option<&[u8]>) -> Arc<ClientConfig> {
        let mut c = (*(self.config)()).clone();
        c.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
        Arc::new(c)
    }

    /// From a configuration read anew at every connection (a node's, which follows
    /// its rotated certificates, and names `h2` by ALPN itself).
    pub fn from_source(config: impl Fn() -> Arc<ClientConfig> + Send + Sync + 'static) -> Self {
        ClientTls {
            config: Arc::new(config),
        }
    }

    /// A TLS connection to `host:port`, the node checked against `host`.
    pub async fn connect(&self, host: String, port: u16) -> Result<TlsStream<TcpStream>, BoxError> {
        let config = (self.config)();
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(host)?;
        Ok(TlsConnector::from(config).connect(name, tcp).await?)
    }

    /// A channel through `endpoint` whose connections are TLS, opened on first use.
    pub fn connect_lazy(&self, endpoint: &Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(Connector { tls: self.clone() })
    }
}

/// gRPC runs over HTTP/2, which TLS names by ALPN.
fn with_h2(mut c: ClientConfig) -> ClientConfig {
    c.alpn_protocols = vec![b"h2".to_vec()];
    c
}

/// Opens a TCP connection to the URI's host and port and a TLS session over it,
/// checking the node's certificate against the URI's host.
#[derive(Clone)]
struct Connector {
    tls: ClientTls,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("a node address without a host")?;
            // An IPv6 literal comes bracketed.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            Ok(TokioIo::new(tls.connect(host, port).await?))
        })
    }
}
