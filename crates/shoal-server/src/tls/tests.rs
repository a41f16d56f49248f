//! Real handshakes over TCP on loopback, between configurations read from
//! certificates directories as `shoal cert` writes them.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::certs::{client_params, issue, make_ca, node_params, write_file, Made};

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// A CA's certificate and key.
fn new_ca() -> Made {
    make_ca(YEAR).unwrap()
}

/// A client certificate of `ca` for `user`.
fn user_of(ca: &Made, user: &str) -> Made {
    issue(
        &ca.cert_pem,
        &ca.key_pem,
        client_params(user, YEAR).unwrap(),
    )
    .unwrap()
    .0
}

fn node_of(ca: &Made, hosts: &[&str]) -> Made {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    issue(
        &ca.cert_pem,
        &ca.key_pem,
        node_params(&hosts, YEAR).unwrap(),
    )
    .unwrap()
    .0
}

/// A certificates directory: `ca`, and a node certificate of it for `hosts`.
fn dir_of(ca: &Made, node: &Made) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_file(&d.path().join(CA_CERT), ca.cert_pem.as_bytes(), 0o644).unwrap();
    write_node(d.path(), node);
    d
}

fn write_node(dir: &Path, node: &Made) {
    write_file(&dir.join(NODE_KEY), node.key_pem.as_bytes(), 0o600).unwrap();
    write_file(&dir.join(NODE_CERT), node.cert_pem.as_bytes(), 0o644).unwrap();
}

/// A client's configuration trusting the CAs of `ca`, presenting `cert` if given.
fn client(ca: &Made, cert: Option<&Made>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some(m) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(m.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

/// A certificate's DER.
fn der(m: &Made) -> Vec<u8> {
    CertificateDer::from_pem_slice(m.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The certificate `tls` serves to `caller` now, on its client port, as `localhost`.
async fn served(tls: &Tls, caller: &Arc<ClientConfig>) -> Vec<u8> {
    exchange(tls.current().clients.clone(), caller.clone(), "localhost")
        .await
        .unwrap()
        .1
}

/// One connection: `client` calls a server of `server` as `name`, sends a line and
/// reads it back. What the server saw of the client (its certificate's common name,
/// if it presented one), and the server certificate the client saw; or why it failed.
async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<(Option<String>, Vec<u8>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let seen = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| parse_der(&c[0]).unwrap().common_name);
        Ok::<_, String>(seen)
    });
    let called = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        Ok::<_, String>(server_cert)
    };
    let called = tokio::time::timeout(Duration::from_secs(10), called)
        .await
        .map_err(|_| "timed out".to_string())?;
    let served = tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .map_err(|_| "server timed out".to_string())?
        .unwrap();
    match (served, called) {
        (Ok(seen), Ok(cert)) => Ok((seen, cert)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

#[tokio::test]
async fn nodes_call_each_other_with_their_certificates_and_nothing_else_gets_in() {
    let ca = new_ca();
    let hosts = [
        "*.shoal.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ];
    let a = dir_of(&ca, &node_of(&ca, &hosts));
    let b = dir_of(&ca, &node_of(&ca, &hosts));
    let (a, b) = (Tls::load(a.path()).unwrap(), Tls::load(b.path()).unwrap());
    assert!(a.current().node_expires > now_secs() + 300 * 86_400);

    // Node to node, mutual: each sees the other's node certificate.
    let (seen, _) = exchange(
        a.current().peers.clone(),
        b.current().connector.clone(),
        "shoal-1.shoal.default.svc.cluster.local",
    )
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some("node"));

    // No certificate: the peer port refuses; the client port serves (a password may
    // follow), and sees no user.
    let bare = client(&ca, None);
    assert!(
        exchange(a.current().peers.clone(), bare.clone(), "localhost")
            .await
            .is_err()
    );
    let (seen, _) = exchange(a.current().clients.clone(), bare, "localhost")
        .await
        .unwrap();
    assert_eq!(seen, None);

    // A client certificate of the CA: the client port sees its user.
    let app = user_of(&ca, "app");
    let (seen, _) = exchange(
        a.current().clients.clone(),
        client(&ca, Some(&app)),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some("app"));

    // Another CA's certificates get in nowhere, as a peer or as a client.
    let other = new_ca();
    let stranger = dir_of(&other, &node_of(&other, &hosts));
    let stranger = Tls::load(stranger.path()).unwrap();
    assert!(exchange(
        a.current().peers.clone(),
        stranger.current().connector.clone(),
        "localhost"
    )
    .await
    .is_err());
    let intruder = user_of(&other, "root");
    assert!(exchange(
        a.current().clients.clone(),
        client(&ca, Some(&intruder)),
        "localhost"
    )
    .await
    .is_err());
    // And a node of the cluster does not take a stranger for a peer.
    assert!(exchange(
        stranger.current().peers.clone(),
        a.current().connector.clone(),
        "localhost"
    )
    .await
    .is_err());

    // A name the certificate was not made for is refused by a client...
    assert!(exchange(
        a.current().clients.clone(),
        client(&ca, None),
        "evil.example"
    )
    .await
    .is_err());
    // ...but not by a node calling a peer found at a pod IP (from a headless
    // Service's A records) that no certificate names: a node certificate of the CA
    // is what makes a peer.
    let (seen, _) = exchange(
        a.current().peers.clone(),
        b.current().connector.clone(),
        "10.1.2.3",
    )
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some("node"));
    // A stranger's node certificate still gets no such pass.
    assert!(exchange(
        stranger.current().clients.clone(),
        a.current().connector.clone(),
        "10.1.2.3"
    )
    .await
    .is_err());
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn new_certificates_take_over_without_a_restart_and_bad_ones_never_do() {
    let ca = new_ca();
    let hosts = ["localhost"];
    let first = node_of(&ca, &hosts);
    let dir = dir_of(&ca, &first);
    let tls = Tls::load(dir.path()).unwrap();
    let caller = client(&ca, None);
    assert_eq!(served(&tls, &caller).await, der(&first));
    assert!(!tls.reload().unwrap(), "nothing changed");

    // Rotation: a new certificate and key, written as shoal cert writes them.
    let second = issue(
        &ca.cert_pem,
        &ca.key_pem,
        node_params(&["localhost".into()], Duration::from_secs(30 * 86_400)).unwrap(),
    )
    .unwrap()
    .0;
    write_node(dir.path(), &second);
    assert!(tls.reload().unwrap());
    assert_eq!(served(&tls, &caller).await, der(&second));
    let expires = tls.current().node_expires;
    assert!(expires < now_secs() + 31 * 86_400, "the new expiry is seen");

    // Broken files keep what was there: a key that is not the certificate's, a
    // certificate of another CA, half a file, a missing key.
    let other = new_ca();
    let stranger = node_of(&other, &hosts);
    let third = node_of(&ca, &hosts);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (NODE_KEY, third.key_pem.clone().into_bytes()),
        (NODE_CERT, stranger.cert_pem.clone().into_bytes()),
        (NODE_CERT, second.cert_pem.as_bytes()[..200].to_vec()),
    ];
    for (file, data) in bad {
        write_node(dir.path(), &second);
        tls.reload().unwrap();
        write_file(&dir.path().join(file), &data, 0o600).unwrap();
        assert!(tls.reload().is_err(), "{file} broken was taken");
        assert_eq!(served(&tls, &caller).await, der(&second));
        assert_eq!(tls.current().node_expires, expires);
    }
    std::fs::remove_file(dir.path().join(NODE_KEY)).unwrap();
    assert!(tls.reload().is_err());
    assert!(exchange(tls.current().clients.clone(), caller, "localhost")
        .await
        .is_ok());
}

#[test]
fn a_directory_the_node_cannot_serve_from_is_refused_with_the_file_named() {
    let ca = new_ca();
    let node = node_of(&ca, &["localhost"]);
    let empty = tempfile::tempdir().unwrap();
    let e = Tls::load(empty.path()).err().unwrap();
    assert!(e.path.ends_with(CA_CERT), "{e}");
    // A client certificate where the node's should be: it cannot serve.
    let app = user_of(&ca, "app");
    let d = dir_of(&ca, &app);
    let e = Tls::load(d.path()).err().unwrap();
    assert!(e.path.ends_with(NODE_CERT), "{e}");
    let d = dir_of(&ca, &node);
    assert!(Tls::load(d.path()).is_ok());
}

#[tokio::test]
async fn during_a_ca_rotation_old_and_new_certificates_meet() {
    use crate::certs::rotated_ca_file;
    let old = new_ca();
    let hosts = ["localhost"];
    let dir = dir_of(&old, &node_of(&old, &hosts));
    let tls = Tls::load(dir.path()).unwrap();
    // The CA rotates: ca.crt holds the new CA, then the old one.
    let new = new_ca();
    let both = rotated_ca_file(&old.cert_pem, &new.cert_pem, now_secs()).unwrap();
    write_file(&dir.path().join(CA_CERT), both.as_bytes(), 0o644).unwrap();
    assert!(tls.reload().unwrap());
    // A client of the new CA reaches the node whose certificate is still the old CA's,
    // and the node, given a certificate of the new CA, serves clients of the old.
    let bundle = Made {
        cert_pem: both.clone(),
        key_pem: String::new(),
    };
    let (seen, _) = exchange(
        tls.current().clients.clone(),
        client(&bundle, Some(&user_of(&new, "app"))),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some("app"));
    write_node(dir.path(), &node_of(&new, &hosts));
    assert!(tls.reload().unwrap());
    let (seen, _) = exchange(
        tls.current().clients.clone(),
        client(&bundle, Some(&user_of(&old, "app"))),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some("app"));
    // Once the old CA is gone from ca.crt, its certificates are not let in.
    write_file(&dir.path().join(CA_CERT), new.cert_pem.as_bytes(), 0o644).unwrap();
    assert!(tls.reload().unwrap());
    assert!(exchange(
        tls.current().clients.clone(),
        client(&bundle, Some(&user_of(&old, "app"))),
        "localhost",
    )
    .await
    .is_err());
}
