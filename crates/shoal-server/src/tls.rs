//! TLS, one stack (rustls on ring: no OpenSSL, no aws-lc build): the node's
//! certificate and the cluster CA, read from the certificates directory
//! ([`shoal_proto::certs`]), and read again when those files change, so certificates
//! rotate without a restart.
//!
//! One reading gives three configurations:
//! - `peers`: what the node serves to other nodes. The caller must present a
//!   certificate of the cluster CA; a peer connection without one fails its
//!   handshake.
//! - `clients`: what the node serves to clients. A client certificate of the CA is
//!   asked for, not required (a client may log in with a password instead); one that
//!   is presented must verify.
//! - `connector`: the node calling its peers: it trusts the cluster CA alone and
//!   presents its node certificate; a peer dialed at an address its certificate does
//!   not name passes when that certificate is a node's ([`NodeVerifier`]).
//!
//! A reading that fails (a file missing or half-written by a tool that does not
//! rename, a key that is not the certificate's, a certificate the CA did not sign or
//! that has expired) keeps the configurations of the reading before it; connections
//! already open keep the certificates they were made with.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use shoal_proto::certs::{CA_CERT, NODE_CERT, NODE_COMMON_NAME, NODE_KEY};

use shoal_client::tls::{provider, read_certs};

use crate::certs::parse_der;

/// Why the certificates could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TlsError {
    pub path: String,
    pub reason: String,
}

fn error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// When and how big each file was: a reading is done again when this changes.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(dir: &Path) -> Stamp {
    [CA_CERT, NODE_CERT, NODE_KEY]
        .iter()
        .map(|f| {
            let m = fs::metadata(dir.join(f)).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// The configurations of one reading of the certificates directory.
pub struct Loaded {
    stamp: Stamp,
    pub peers: Arc<ServerConfig>,
    pub clients: Arc<ServerConfig>,
    /// What each client listener serves, with the protocol it names by ALPN: gRPC
    /// and HTTP as `clients`; SQL requires a client certificate.
    pub grpc: Arc<ServerConfig>,
    pub http: Arc<ServerConfig>,
    pub sql: Arc<ServerConfig>,
    pub connector: Arc<ClientConfig>,
    /// When the node's certificate expires (seconds since the Unix epoch).
    pub node_expires: i64,
}

/// The node's TLS configurations, kept current with its certificates directory.
pub struct Tls {
    dir: PathBuf,
    loaded: RwLock<Arc<Loaded>>,
}

impl Tls {
    /// Reads the certificates directory: it must hold the CA, and the node's
    /// certificate and key, signed by that CA and valid now.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let loaded = read(dir)?;
        Ok(Tls {
            dir: dir.to_path_buf(),
            loaded: RwLock::new(Arc::new(loaded)),
        })
    }

    /// The configurations of the latest good reading.
    pub fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How the node opens its connections to its peers: TLS with its node
    /// certificate, as current at each new connection.
    pub fn dial(self: &Arc<Self>) -> shoal_raft::Dial {
        let client = self.client();
        Arc::new(move |host, port| {
            let client = client.clone();
            Box::pin(async move {
                let io = client.connect(host, port).await?;
                Ok(Box::new(io) as Box<dyn shoal_raft::Io>)
            })
        })
    }

    /// The node as a client of the cluster (its own gateway's steps), presenting its
    /// node certificate.
    pub fn client(self: &Arc<Self>) -> shoal_client::ClientTls {
        let tls = self.clone();
        shoal_client::ClientTls::from_source(move || tls.current().connector.clone())
    }

    /// Reads the directory again if its files changed since the last good reading:
    /// `Ok(true)` when new configurations took over. An error keeps those before.
    pub fn reload(&self) -> Result<bool, TlsError> {
        if stamp(&self.dir) == self.current().stamp {
            return Ok(false);
        }
        let loaded = read(&self.dir)?;
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(true)
    }
}

fn read(dir: &Path) -> Result<Loaded, TlsError> {
    // Taken first: a file that changes while it is read changes the stamp again,
    // and the next reload reads it once more.
    let stamp = stamp(dir);
    let provider = provider();
    let certs_of = |name: &str| {
        let path = dir.join(name);
        read_certs(&path).map_err(|e| error(&path, e))
    };
    let (ca_path, cert_path, key_path) =
        (dir.join(CA_CERT), dir.join(NODE_CERT), dir.join(NODE_KEY));
    let mut roots = RootCertStore::empty();
    for ca in certs_of(CA_CERT)? {
        roots.add(ca).map_err(|e| error(&ca_path, e))?;
    }
    let roots = Arc::new(roots);
    let chain = certs_of(NODE_CERT)?;
    let key_pem = fs::read(&key_path).map_err(|e| error(&key_path, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| error(&key_path, format!("not a PEM private key: {e}")))?;

    let peer_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| error(&ca_path, e))?;
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| error(&ca_path, e))?;
    // The node's own certificate must be one its peers accept: signed by the CA,
    // valid now, for calling peers (and, below, for serving under its names).
    peer_verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map_err(|e| {
            error(
                &cert_path,
                format!("not a node certificate of the CA in {CA_CERT}: {e}"),
            )
        })?;
    let parsed = parse_der(&chain[0]).map_err(|e| error(&cert_path, e))?;
    if let Some(host) = parsed.hosts.first() {
        let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| error(&ca_path, e))?;
        // A wildcard is checked with a name it covers.
        let name = match host.strip_prefix("*.") {
            Some(parent) => format!("node.{parent}"),
            None => host.clone(),
        };
        let name = ServerName::try_from(name).map_err(|e| error(&cert_path, e))?;
        server_verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map_err(|e| error(&cert_path, format!("cannot serve as {host}: {e}")))?;
    } else {
        return Err(error(
            &cert_path,
            "names no host (shoal cert create-node HOST...)",
        ));
    }

    let server = |verifier: Arc<dyn ClientCertVerifier>| -> Result<Arc<ServerConfig>, TlsError> {
        let c = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| error(dir, e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| error(&key_path, format!("not the key of {NODE_CERT}: {e}")))?;
        Ok(Arc::new(c))
    };
    let alpn = |c: &Arc<ServerConfig>, protocol: &[u8]| {
        let mut c = (**c).clone();
        c.alpn_protocols = vec![protocol.to_vec()];
        Arc::new(c)
    };
    let peers = alpn(&server(peer_verifier)?, b"h2");
    let clients = server(client_verifier)?;
    // A SQL client may come without a certificate, to log in by password (SCRAM).
    let (grpc, http, sql) = (
        alpn(&clients, b"h2"),
        alpn(&clients, b"http/1.1"),
        // What libpq offers (PostgreSQL 17); older clients offer nothing, which
        // passes too.
        alpn(&clients, b"postgresql"),
    );
    let node_verifier = Arc::new(NodeVerifier {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| error(&ca_path, e))?,
    });
    let mut connector = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(dir, e))?
        .dangerous()
        .with_custom_certificate_verifier(node_verifier)
        .with_client_auth_cert(chain.clone(), key.clone_key())
        .map_err(|e| error(&key_path, format!("not the key of {NODE_CERT}: {e}")))?;
    connector.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        stamp,
        peers,
        clients,
        grpc,
        http,
        sql,
        connector: Arc::new(connector),
        node_expires: parsed.not_after,
    })
}

/// How a node checks the peer it called: the certificate must be of the cluster CA
/// and valid now, and name the address dialed, or else be a node certificate (common
/// name `node`). The second case is a peer found by the A records of a headless
/// Service: dialed at a pod IP that no certificate names (pod IPs change), and
/// proven a member of the cluster by its node certificate all the same. Clients get
/// no such leniency: they check the name.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        // The name is checked last, once the chain to the CA verified: a name error
        // says the certificate is otherwise good.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) if parse_der(end_entity).is_ok_and(|p| p.common_name == NODE_COMMON_NAME) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
