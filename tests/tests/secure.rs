//! A secure cluster (issue 19, item 2): three nodes started with `--certs-dir`
//! (certificates made by `shoal cert`), every client path over TLS (the SDK, with a
//! transaction that the gateway runs through its own TLS client; the CLI; HTTPS with
//! curl; psql with `sslmode=verify-full`), the refusals (plaintext on each port, a
//! client that trusts another CA, one without a client certificate, a user's
//! certificate calling the services between nodes, at either port, a node's
//! certificate calling them at the client port, a node started with neither
//! certificates nor `--insecure`), certificates rotated under load with no failed
//! operation, users and roles, and users' passwords on every port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_client::{Client, ClientOptions, ClientTls, Credentials};
use shoal_proto::error::code_of;
use shoal_proto::v1 as pb;
use shoal_proto::v1::peer_client::PeerClient;
use shoal_proto::v1::raft_client::RaftClient;
use shoal_tests::{shoal_bin, TestCluster};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `shoal cert ARGS` with the certificates directory and the CA key of `certs`.
fn cert(certs: &Certs, args: &[&str]) -> Output {
    let out = Command::new(shoal_bin())
        .arg("cert")
        .args(args)
        .env("SHOAL_CERTS_DIR", &certs.dir)
        .env("SHOAL_CA_KEY", &certs.ca_key)
        .output()
        .expect("running shoal cert");
    assert!(out.status.success(), "cert {args:?}: {}", text(&out.stderr));
    out
}

/// A certificates directory: a CA, a node certificate for loopback, `root`'s client
/// certificate.
struct Certs {
    _root: tempfile::TempDir,
    dir: PathBuf,
    ca_key: PathBuf,
}

fn make_certs() -> Certs {
    let root = tempfile::tempdir().unwrap();
    let certs = Certs {
        dir: root.path().join("certs"),
        ca_key: root.path().join("ca.key"),
        _root: root,
    };
    cert(&certs, &["create-ca"]);
    cert(&certs, &["create-node", "127.0.0.1", "localhost"]);
    cert(&certs, &["create-client", "root"]);
    certs
}

/// A certificates directory that trusts the CA of `certs` and holds nothing else
/// yet (and the temporary directory it is in).
fn trusting(certs: &Certs) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("certs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(certs.dir.join("ca.crt"), dir.join("ca.crt")).unwrap();
    (root, dir)
}

/// `shoal ARGS` as a client of `c` over TLS.
fn cli(c: &TestCluster, certs: &Path, args: &[&str]) -> Output {
    Command::new(shoal_bin())
        .args(args)
        .env("SHOAL_HOST", c.addrs().join(","))
        .env("SHOAL_CERTS_DIR", certs)
        .env_remove("SHOAL_FORMAT")
        .output()
        .expect("running shoal")
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("running curl");
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn psql(conninfo: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            conninfo,
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("running psql")
}

/// The users of `shoal user ls --format json`: name, role, whether it has a password.
fn users(json_lines: &str) -> Vec<(String, String, bool)> {
    json_lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["name"].as_str().unwrap().to_string(),
                v["role"].as_str().unwrap().to_string(),
                v["password"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').unwrap().1
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secure_cluster_serves_every_client_path_over_tls() {
    let certs = make_certs();
    let c = TestCluster::start_secure(3, &certs.dir, &[]).await.unwrap();
    let client = c.client();

    // The SDK: a put and a get, and a transaction across two ranges, which the
    // gateway node runs through its own TLS client of the ranges.
    client.put("a", "1").await.unwrap();
    assert_eq!(client.get("a").await.unwrap().unwrap().value, b"1");
    client.split_range("m").await.unwrap();
    client
        .transaction(|t| async move {
            t.put("b", "2").await?;
            t.put("x", "3").await?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(client.get("x").await.unwrap().unwrap().value, b"3");

    // The CLI.
    let out = cli(&c, &certs.dir, &["kv", "put", "cli", "yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&c, &certs.dir, &["kv", "get", "b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "2");

    // HTTPS, the certificate checked by curl against the CA.
    let ca = certs.dir.join("ca.crt").display().to_string();
    let ready = format!("https://localhost:{}/readyz", port_of(&c.nodes[1].http));
    let (ok, body) = curl(&["--cacert", &ca, &ready]);
    assert!(ok, "{body}");
    let query = format!("https://127.0.0.1:{}/db/query", port_of(&c.nodes[0].http));
    let (cert, key) = (
        certs.dir.join("client.root.crt").display().to_string(),
        certs.dir.join("client.root.key").display().to_string(),
    );
    let (ok, body) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "[\"SELECT 40 + 2\"]",
        &query,
    ]);
    assert!(ok && body.contains("42"), "{body}");
    // Without a client certificate: 401, SQLSTATE 28000; the probes need none.
    let (_, body) = curl(&[
        "--cacert",
        &ca,
        "-X",
        "POST",
        "-d",
        "[\"SELECT 1\"]",
        "-w",
        "%{http_code}",
        &query,
    ]);
    assert!(body.contains("28000") && body.ends_with("401"), "{body}");

    // psql, verifying the node's certificate and its name, presenting root's.
    let conninfo = format!(
        "host=localhost port={} user=root dbname=defaultdb sslmode=verify-full sslrootcert={ca} sslcert={cert} sslkey={key}",
        port_of(&c.nodes[2].sql)
    );
    let out = psql(&conninfo, "SELECT 6 * 7");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "42");
    // The SQL shell, over TLS with the same directory.
    let sql_host = format!("localhost:{}", port_of(&c.nodes[0].sql));
    let out = cli(
        &c,
        &certs.dir,
        &["sql", "--host", &sql_host, "-e", "SELECT 'shell' AS w"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("shell"), "{}", text(&out.stdout));

    // Each node says when its certificate expires.
    let (code, metrics) = curl(&[
        "--cacert",
        &ca,
        &format!("https://127.0.0.1:{}/metrics", port_of(&c.nodes[0].http)),
    ]);
    assert!(code, "{metrics}");
    let expires = metric(&metrics, "shoal_node_certificate_expires_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(expires > now + 365.0 * 86400.0, "{expires}");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secure_node_refuses_plaintext_and_strangers_and_changes_nothing() {
    let certs = make_certs();
    let c = TestCluster::start_secure(3, &certs.dir, &[]).await.unwrap();
    let quick = |tls: Option<ClientTls>| {
        Client::with_options(
            c.addrs(),
            ClientOptions {
                tls,
                retry_deadline: Duration::from_secs(2),
                ..ClientOptions::default()
            },
        )
        .unwrap()
    };

    // gRPC in plaintext: refused at once with a stable code that says to use TLS.
    let e = quick(None).put("plain", "x").await.unwrap_err();
    assert_eq!(e.code(), Some("UNAUTHENTICATED"), "{e:?}");
    assert!(e.to_string().contains("TLS"), "{e}");
    // A client that trusts another CA refuses the nodes' certificates at once,
    // with its stable code.
    let other = make_certs();
    let e = quick(Some(ClientTls::from_dir(&other.dir, "root").unwrap()))
        .put("stranger", "x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("TLS_HANDSHAKE"), "{e:?}");
    // A client certificate of another CA is refused by the node.
    let (_mixed_root, mixed) = trusting(&certs);
    for f in ["client.root.crt", "client.root.key"] {
        std::fs::copy(other.dir.join(f), mixed.join(f)).unwrap();
    }
    let e = quick(Some(ClientTls::from_dir(&mixed, "root").unwrap()))
        .put("foreign-client", "x")
        .await;
    assert!(e.is_err(), "a client certificate of another CA was taken");
    // A client certificate of the CA that has expired (OpenSSL signs it, valid for
    // no time at all): the node refuses it in the handshake.
    let (expired_root, expired) = trusting(&certs);
    let (csr, ext) = (
        expired_root.path().join("root.csr"),
        expired_root.path().join("ext"),
    );
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            text(&out.stderr)
        );
    };
    let p = |path: &Path| path.display().to_string();
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=root",
        "-keyout",
        &p(&expired.join("client.root.key")),
        "-out",
        &p(&csr),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&certs.dir.join("ca.crt")),
        "-CAkey",
        &p(&certs.ca_key),
        "-set_serial",
        "7",
        "-days",
        "0",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&expired.join("client.root.crt")),
    ]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = quick(Some(ClientTls::from_dir(&expired, "root").unwrap()))
        .put("expired", "x")
        .await;
    // (TLS 1.3 tells the client after its handshake, when the connection drops:
    // the SDK sees a lost connection, not a named refusal.)
    assert!(e.is_err(), "an expired client certificate was taken");

    // The CA alone, no client certificate: UNAUTHENTICATED, at once.
    let (_anonymous_root, anonymous) = trusting(&certs);
    let e = quick(Some(ClientTls::from_dir(&anonymous, "root").unwrap()))
        .put("anonymous", "x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("UNAUTHENTICATED"), "{e:?}");
    // A user's certificate cannot make the calls between nodes (join, vote, ...).
    let tls = ClientTls::from_dir(&certs.dir, "root").unwrap();
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("https://{}", c.nodes[0].grpc)).unwrap();
    let mut peer = PeerClient::new(tls.connect_lazy(&endpoint));
    let status = peer.hello(pb::HelloRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(code_of(&status), "PERMISSION_DENIED");
    // Nor at the peer port, where its handshake passes (the CA signed it).
    let vote = || pb::RaftMessage {
        range_id: 1,
        payload: vec![],
        target_node_id: 1,
    };
    let peer_endpoint =
        tonic::transport::Endpoint::from_shared(format!("https://{}", c.nodes[0].peer())).unwrap();
    let status = RaftClient::new(tls.connect_lazy(&peer_endpoint))
        .vote(vote())
        .await
        .unwrap_err();
    assert_eq!(code_of(&status), "PERMISSION_DENIED", "{status:?}");
    // Without a certificate the peer port ends the handshake.
    let status = RaftClient::new(
        ClientTls::from_dir(&anonymous, "root")
            .unwrap()
            .connect_lazy(&peer_endpoint),
    )
    .vote(vote())
    .await
    .unwrap_err();
    assert_ne!(code_of(&status), "OK", "{status:?}");
    // A node's own certificate at the client port: the calls between nodes go to
    // the peer port, whoever makes them.
    let (_node_root, node_dir) = trusting(&certs);
    std::fs::copy(certs.dir.join("node.crt"), node_dir.join("client.node.crt")).unwrap();
    std::fs::copy(certs.dir.join("node.key"), node_dir.join("client.node.key")).unwrap();
    let status = RaftClient::new(
        ClientTls::from_dir(&node_dir, "node")
            .unwrap()
            .connect_lazy(&endpoint),
    )
    .vote(vote())
    .await
    .unwrap_err();
    assert_eq!(code_of(&status), "PERMISSION_DENIED", "{status:?}");
    assert!(status.message().contains("--peer-addr"), "{status:?}");
    let client = c.client();
    for k in [
        "plain",
        "stranger",
        "foreign-client",
        "anonymous",
        "expired",
    ] {
        assert!(client.get(k).await.unwrap().is_none(), "{k} was written");
    }

    // HTTP in plaintext, and HTTPS checked against another CA.
    let http = &c.nodes[0].http;
    let (_, body) = curl(&["-w", "%{http_code}", &format!("http://{http}/readyz")]);
    assert!(
        body.contains("HTTPS") && body.ends_with("400"),
        "plaintext HTTP answered: {body}"
    );
    let other_ca = other.dir.join("ca.crt").display().to_string();
    let (ok, body) = curl(&["--cacert", &other_ca, &format!("https://{http}/readyz")]);
    assert!(!ok, "a certificate of another CA passed: {body}");

    // SQL without TLS: refused as Postgres refuses what only hostssl admits.
    let sql_port = port_of(&c.nodes[0].sql);
    let out = psql(
        &format!("host=127.0.0.1 port={sql_port} user=root dbname=defaultdb sslmode=disable"),
        "CREATE TABLE t (k INT PRIMARY KEY)",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("TLS"), "{}", text(&out.stderr));
    let out = psql(
        &format!(
            "host=127.0.0.1 port={sql_port} user=root dbname=defaultdb sslmode=verify-full sslrootcert={other_ca}"
        ),
        "CREATE TABLE t (k INT PRIMARY KEY)",
    );
    assert!(!out.status.success(), "psql trusted a node of another CA");
    let ca = certs.dir.join("ca.crt").display().to_string();
    // TLS without a client certificate, as root, who has no password: refused.
    let out = psql(
        &format!(
            "host=127.0.0.1 port={sql_port} user=root dbname=defaultdb sslmode=verify-full sslrootcert={ca}"
        ),
        "CREATE TABLE t (k INT PRIMARY KEY)",
    );
    assert!(!out.status.success(), "psql got in without a certificate");
    assert!(
        text(&out.stderr).contains("has none"),
        "{}",
        text(&out.stderr)
    );
    let (cert, key) = (
        certs.dir.join("client.root.crt").display().to_string(),
        certs.dir.join("client.root.key").display().to_string(),
    );
    let out = psql(
        &format!(
            "host=127.0.0.1 port={sql_port} user=root dbname=defaultdb sslmode=verify-full sslrootcert={ca} sslcert={cert} sslkey={key}"
        ),
        "SHOW TABLES",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "",
        "a refused CREATE TABLE left a table"
    );

    // Every refused handshake was counted.
    let (_, metrics) = curl(&["--cacert", &ca, &format!("https://{http}/metrics")]);
    assert!(
        metrics.contains("shoal_tls_handshakes_refused_total{listener=\"http\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_tls_handshakes_refused_total{listener=\"peer\"}"),
        "{metrics}"
    );
}

#[test]
fn a_node_starts_secure_or_explicitly_insecure() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().display().to_string();
    let start = |extra: &[&str]| {
        let out = Command::new(shoal_bin())
            .args(["start", "--data-dir", &d])
            .args(["--listen-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--sql-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SHOAL_INSECURE")
            .env_remove("SHOAL_CERTS_DIR")
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let (code, err) = start(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--insecure") && err.contains("--certs-dir"),
        "{err}"
    );
    // A directory without the node's certificate: refused, naming the file.
    let empty = tempfile::tempdir().unwrap();
    let (code, err) = start(&["--certs-dir", &empty.path().display().to_string()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("ca.crt"), "{err}");
    let (code, err) = start(&["--certs-dir", "/nonexistent", "--insecure"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("exclude"), "{err}");
    // None of it touched the data directory.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_rotate_under_load_with_no_failed_operation() {
    let certs = make_certs();
    let c = TestCluster::start_secure(3, &certs.dir, &[]).await.unwrap();
    let ca = certs.dir.join("ca.crt").display().to_string();
    let expiry = |i: usize| {
        let (ok, m) = curl(&[
            "--cacert",
            &ca,
            &format!("https://127.0.0.1:{}/metrics", port_of(&c.nodes[i].http)),
        ]);
        assert!(ok, "{m}");
        metric(&m, "shoal_node_certificate_expires_seconds")
    };
    let before: Vec<f64> = (0..3).map(expiry).collect();

    // Clients that each open new connections as they go (a fresh client per
    // round), so handshakes happen during the rotation as well as before and after.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, addrs, tls) = (stop.clone(), c.addrs(), c.tls.clone());
        workers.push(tokio::spawn(async move {
            let (mut done, mut failed) = (0u64, Vec::new());
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let client = Client::with_options(
                    addrs.clone(),
                    ClientOptions {
                        tls: tls.clone(),
                        ..ClientOptions::default()
                    },
                )
                .unwrap();
                for _ in 0..20 {
                    let k = format!("w{w}-{i}");
                    match client.put(&k, "v").await {
                        Ok(_) => done += 1,
                        Err(e) => failed.push(format!("put {k}: {e}")),
                    }
                    i += 1;
                }
            }
            (done, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // New node certificates, valid a different time, written over the old ones.
    cert(
        &certs,
        &[
            "create-node",
            "127.0.0.1",
            "localhost",
            "--lifetime",
            "400d",
            "--overwrite",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now: Vec<f64> = (0..3).map(expiry).collect();
        if now.iter().zip(&before).all(|(n, b)| n < b) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes still use their old certificates: {now:?} (before {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Load goes on over the new certificates a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (done, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        total += done;
    }
    assert!(total > 100, "only {total} operations ran");
}

/// A gRPC client in another language (Python's grpcio, its stubs generated from
/// `proto/` here) reaches a secure node over TLS with a client certificate, or with
/// the CA alone and a user's password in its calls' metadata, and is refused in
/// plaintext and with a wrong password.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_grpc_client_speaks_tls_to_a_secure_node() {
    let python = std::env::var("SHOAL_GRPC_PYTHON")
        .expect("SHOAL_GRPC_PYTHON (grpcio's venv, set by scripts/env.sh)");
    let certs = make_certs();
    let c = TestCluster::start_secure(3, &certs.dir, &[]).await.unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stubs = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repo.join("proto"))
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .args(["shoal/v1/kv.proto", "shoal/v1/range.proto"])
        .current_dir(repo.join("proto"))
        .output()
        .unwrap();
    assert!(out.status.success(), "protoc: {}", text(&out.stderr));
    c.client()
        .set_password("root", Some("py-pass"))
        .await
        .unwrap();
    // Every node knows it within its refresh.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let f = |name: &str| certs.dir.join(name).display().to_string();
    let out = Command::new(&python)
        .env("SHOAL_PASSWORD", "py-pass")
        .arg(repo.join("tests/grpc/kv_tls.py"))
        .arg(stubs.path())
        .arg(format!("localhost:{}", port_of(&c.nodes[1].grpc)))
        .args([f("ca.crt"), f("client.root.crt"), f("client.root.key")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines,
        [
            "over tls",
            "plaintext: UNAUTHENTICATED",
            "by password: over tls",
            "wrong password: UNAUTHENTICATED"
        ],
        "{said}"
    );
    // What Python wrote, the SDK reads.
    let kv = c.client().get("python").await.unwrap().unwrap();
    assert_eq!(kv.value, b"over tls");
}

/// Users and roles (item 4, by certificate): root makes users; a certificate of a
/// user the cluster does not have is refused (`UNAUTHENTICATED`), a `readonly` user
/// reads but does not write, a `readwrite` user writes but makes no admin call (nor
/// users), over gRPC, SQL (psql: `42501`; schema changes are an admin's; a
/// certificate logs in as its own user alone) and the HTTP SQL API; failed logins
/// are counted and slowed down per source; a dropped user is refused on every node
/// within seconds. What was refused changed nothing.
#[tokio::test(flavor = "multi_thread")]
async fn users_call_what_their_roles_allow() {
    let certs = make_certs();
    for u in ["reader", "writer", "ghost"] {
        cert(&certs, &["create-client", u]);
    }
    let c = TestCluster::start_secure(3, &certs.dir, &[]).await.unwrap();
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(cli(
        &c,
        &certs.dir,
        &["user", "create", "reader", "--role", "readonly"],
    ));
    ok(cli(
        &c,
        &certs.dir,
        &["user", "create", "writer", "--role", "readwrite"],
    ));
    let again = cli(
        &c,
        &certs.dir,
        &["user", "create", "writer", "--role", "admin"],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("USER_EXISTS"),
        "{}",
        text(&again.stderr)
    );
    let ls = users(&ok(cli(
        &c,
        &certs.dir,
        &["user", "ls", "--format", "json"],
    )));
    for (name, role) in [
        ("root", "admin"),
        ("reader", "readonly"),
        ("writer", "readwrite"),
    ] {
        assert!(ls.contains(&(name.into(), role.into(), false)), "{ls:?}");
    }
    assert!(!ls.iter().any(|u| u.0 == "ghost"), "{ls:?}");
    c.client().put("k", "root's").await.unwrap();

    let as_user = |user: &str| {
        Client::with_options(
            c.addrs(),
            ClientOptions {
                tls: Some(ClientTls::from_dir(&certs.dir, user).unwrap()),
                retry_deadline: Duration::from_secs(2),
                ..ClientOptions::default()
            },
        )
        .unwrap()
    };
    // Every node knows the users within its refresh (2 s); the node that made them
    // at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let e = as_user("ghost").get("k").await.unwrap_err();
    assert_eq!(e.code(), Some("UNAUTHENTICATED"), "{e:?}");
    assert!(e.to_string().contains("ghost"), "{e}");

    let reader = as_user("reader");
    assert_eq!(reader.get("k").await.unwrap().unwrap().value, b"root's");
    let e = reader.put("k", "reader's").await.unwrap_err();
    assert_eq!(e.code(), Some("PERMISSION_DENIED"), "{e:?}");
    assert!(e.to_string().contains("readwrite"), "{e}");

    let writer = as_user("writer");
    writer.put("k", "writer's").await.unwrap();
    let e = writer.split_range("m").await.unwrap_err();
    assert_eq!(e.code(), Some("PERMISSION_DENIED"), "{e:?}");
    let e = writer
        .create_user("mallory", "admin", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("PERMISSION_DENIED"), "{e:?}");
    let out = Command::new(shoal_bin())
        .args(["user", "ls"])
        .env("SHOAL_HOST", c.addrs().join(","))
        .env("SHOAL_CERTS_DIR", &certs.dir)
        .env("SHOAL_USER", "writer")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("PERMISSION_DENIED"),
        "{}",
        text(&out.stderr)
    );

    // SQL (psql) and the HTTP SQL API: the same users, the same roles; a schema
    // change needs an admin. A certificate logs in as its own user only.
    let ca = certs.dir.join("ca.crt").display().to_string();
    let pg = |user: &str, as_user: &str, sql: &str| {
        let d = certs.dir.display();
        psql(
            &format!(
                "host=localhost port={} user={as_user} dbname=defaultdb sslmode=verify-full sslrootcert={ca} sslcert={d}/client.{user}.crt sslkey={d}/client.{user}.key",
                port_of(&c.nodes[1].sql)
            ),
            sql,
        )
    };
    let out = pg("root", "root", "CREATE TABLE t (k INT PRIMARY KEY, v TEXT)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = pg("writer", "writer", "INSERT INTO t VALUES (1, 'writer''s')");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = pg("reader", "reader", "SELECT v FROM t WHERE k = 1");
    assert_eq!(
        text(&out.stdout).trim(),
        "writer's",
        "{}",
        text(&out.stderr)
    );
    for (user, sql) in [
        ("reader", "INSERT INTO t VALUES (2, 'reader''s')"),
        ("reader", "DELETE FROM t"),
        ("writer", "DROP TABLE t"),
        ("writer", "CREATE TABLE u (k INT PRIMARY KEY)"),
    ] {
        let out = pg(user, user, sql);
        assert!(!out.status.success(), "{user}: {sql} ran");
        assert!(
            text(&out.stderr).contains("permission denied"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = pg("reader", "root", "SELECT 1");
    assert!(
        !out.status.success(),
        "reader's certificate logged in as root"
    );
    let out = pg("ghost", "ghost", "SELECT 1");
    assert!(
        text(&out.stderr).contains("no user"),
        "{}",
        text(&out.stderr)
    );
    let api = |user: &str, body: &str| {
        let d = certs.dir.display().to_string();
        curl(&[
            "--cacert",
            &ca,
            "--cert",
            &format!("{d}/client.{user}.crt"),
            "--key",
            &format!("{d}/client.{user}.key"),
            "-X",
            "POST",
            "-d",
            body,
            "-w",
            "%{http_code}",
            &format!("https://localhost:{}/db/execute", port_of(&c.nodes[2].http)),
        ])
        .1
    };
    let body = api("reader", "[\"INSERT INTO t VALUES (3, 'x')\"]");
    assert!(body.contains("42501"), "{body}");
    let body = api("ghost", "[\"SELECT 1\"]");
    assert!(body.contains("28000") && body.ends_with("401"), "{body}");
    let body = api("writer", "[\"INSERT INTO t VALUES (4, 'y')\"]");
    assert!(body.ends_with("200") && !body.contains("error"), "{body}");
    let out = pg("root", "root", "SELECT k FROM t ORDER BY k");
    assert_eq!(text(&out.stdout).trim(), "1\n4", "refused writes left rows");

    // Dropped: refused on every node within seconds; root cannot be dropped.
    ok(cli(&c, &certs.dir, &["user", "drop", "writer"]));
    let gone = cli(&c, &certs.dir, &["user", "drop", "writer"]);
    assert!(
        text(&gone.stderr).contains("USER_NOT_FOUND"),
        "{}",
        text(&gone.stderr)
    );
    let root = cli(&c, &certs.dir, &["user", "drop", "root"]);
    assert_eq!(root.status.code(), Some(1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..3 {
        let on_node = Client::with_options(
            vec![c.nodes[i].grpc.clone()],
            ClientOptions {
                tls: Some(ClientTls::from_dir(&certs.dir, "writer").unwrap()),
                retry_deadline: Duration::from_secs(2),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let e = on_node.get("k").await.unwrap_err();
        assert_eq!(e.code(), Some("UNAUTHENTICATED"), "node {i}: {e:?}");
    }
    assert_eq!(
        c.client().get("k").await.unwrap().unwrap().value,
        b"writer's",
        "a refused write changed the key"
    );
    assert!(c.client().get("mallory").await.unwrap().is_none());
}

/// Failed logins (item 4): counted per port, and slowed down per source: the first
/// three within a minute are answered at once, each one after waits longer (half a
/// second, then twice as long each time).
#[tokio::test(flavor = "multi_thread")]
async fn repeated_failed_logins_are_counted_and_slowed_down() {
    let certs = make_certs();
    cert(&certs, &["create-client", "ghost"]);
    let c = TestCluster::start_secure(1, &certs.dir, &[]).await.unwrap();
    let ghost = Client::with_options(
        c.addrs(),
        ClientOptions {
            tls: Some(ClientTls::from_dir(&certs.dir, "ghost").unwrap()),
            retry_deadline: Duration::from_secs(10),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let e = ghost.get("k").await.unwrap_err();
        took.push(started.elapsed());
        assert_eq!(e.code(), Some("UNAUTHENTICATED"), "{e:?}");
    }
    // The fourth waited at least half a second, the fifth at least one.
    assert!(took[3] >= Duration::from_millis(500), "{took:?}");
    assert!(took[4] >= Duration::from_millis(1000), "{took:?}");
    let ca = certs.dir.join("ca.crt").display().to_string();
    let (_, metrics) = curl(&[
        "--cacert",
        &ca,
        &format!("https://localhost:{}/metrics", port_of(&c.nodes[0].http)),
    ]);
    let failures = metric(&metrics, "shoal_login_failures_total{port=\"grpc\"}");
    assert!(failures >= 5.0, "{failures}");
    // A user the cluster has, from the same source, still gets in.
    c.client().put("k", "v").await.unwrap();
}

/// Passwords (item 4): an admin gives users passwords (`shoal user create
/// --password`, `shoal user passwd`, read from `SHOAL_NEW_PASSWORD`); a client that
/// has the CA alone logs in by name and password: the SDK and the CLI on gRPC
/// (per-call metadata), `shoal sql` and psql with `sslmode=verify-full`
/// (SCRAM-SHA-256), curl with HTTP Basic; the user's role bounds it as a
/// certificate's would. Refused, each with its code and nothing changed: a wrong
/// password (`UNAUTHENTICATED`, `28P01`, 401), a user without a password, a
/// password over plaintext (the SDK does not send it). A new password takes effect
/// on every node within seconds, and the old one stops working.
#[tokio::test(flavor = "multi_thread")]
async fn users_log_in_by_password_over_tls() {
    let certs = make_certs();
    let c = TestCluster::start_secure(3, &certs.dir, &[]).await.unwrap();
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let with_new_password = |args: &[&str], password: &str| {
        Command::new(shoal_bin())
            .args(args)
            .env("SHOAL_HOST", c.addrs().join(","))
            .env("SHOAL_CERTS_DIR", &certs.dir)
            .env("SHOAL_NEW_PASSWORD", password)
            .env_remove("SHOAL_FORMAT")
            .output()
            .unwrap()
    };
    ok(with_new_password(
        &["user", "create", "app", "--role", "readwrite", "--password"],
        "app-pass-1",
    ));
    ok(with_new_password(
        &[
            "user",
            "create",
            "viewer",
            "--role",
            "readonly",
            "--password",
        ],
        "viewer pass",
    ));
    let empty = with_new_password(&["user", "passwd", "viewer"], "");
    assert_eq!(empty.status.code(), Some(1));
    assert!(
        text(&empty.stderr).contains("INVALID_ARGUMENT"),
        "{}",
        text(&empty.stderr)
    );
    let ls = users(&ok(cli(
        &c,
        &certs.dir,
        &["user", "ls", "--format", "json"],
    )));
    assert!(
        ls.contains(&("app".into(), "readwrite".into(), true)),
        "{ls:?}"
    );
    assert!(
        ls.contains(&("root".into(), "admin".into(), false)),
        "{ls:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The CA alone: who the client is, its password says.
    let (_anonymous_root, anonymous) = trusting(&certs);
    let by_password = |addrs: Vec<String>, user: &str, password: &str| {
        Client::with_options(
            addrs,
            ClientOptions {
                tls: Some(ClientTls::from_dir(&anonymous, user).unwrap()),
                credentials: Some(Credentials::new(user, password)),
                retry_deadline: Duration::from_secs(2),
                ..ClientOptions::default()
            },
        )
        .unwrap()
    };
    let app = by_password(c.addrs(), "app", "app-pass-1");
    app.put("pk", "app's").await.unwrap();
    assert_eq!(app.get("pk").await.unwrap().unwrap().value, b"app's");
    let e = app.split_range("m").await.unwrap_err();
    assert_eq!(e.code(), Some("PERMISSION_DENIED"), "{e:?}");
    let viewer = by_password(c.addrs(), "viewer", "viewer pass");
    assert_eq!(viewer.get("pk").await.unwrap().unwrap().value, b"app's");
    let e = viewer.put("pk", "viewer's").await.unwrap_err();
    assert_eq!(e.code(), Some("PERMISSION_DENIED"), "{e:?}");
    for (user, password) in [("app", "app-pass-2"), ("root", "anything"), ("nobody", "x")] {
        let e = by_password(c.addrs(), user, password)
            .put("pk", "stranger's")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("UNAUTHENTICATED"), "{user}: {e:?}");
        assert!(
            e.to_string().contains("password authentication failed"),
            "{e}"
        );
    }
    // No password over plaintext: the SDK refuses to send one.
    let e = Client::with_options(
        c.addrs(),
        ClientOptions {
            credentials: Some(Credentials::new("app", "app-pass-1")),
            ..ClientOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), Some("PASSWORD_NEEDS_TLS"), "{e:?}");

    // The CLI: SHOAL_USER and SHOAL_PASSWORD, the CA alone in SHOAL_CERTS_DIR.
    let as_app = |password: &str, args: &[&str]| {
        Command::new(shoal_bin())
            .args(args)
            .env("SHOAL_HOST", c.addrs().join(","))
            .env("SHOAL_CERTS_DIR", &anonymous)
            .env("SHOAL_USER", "app")
            .env("SHOAL_PASSWORD", password)
            .env_remove("SHOAL_FORMAT")
            .output()
            .unwrap()
    };
    assert_eq!(
        ok(as_app("app-pass-1", &["kv", "get", "pk"])).trim(),
        "app's"
    );
    let out = as_app("wrong", &["kv", "put", "pk", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("UNAUTHENTICATED"),
        "{}",
        text(&out.stderr)
    );

    // SQL: SCRAM-SHA-256 inside TLS (psql, and `shoal sql`).
    let ca = certs.dir.join("ca.crt").display().to_string();
    let sql_port = port_of(&c.nodes[1].sql).to_string();
    let d = certs.dir.display();
    let out = psql(
        &format!("host=localhost port={sql_port} user=root dbname=defaultdb sslmode=verify-full sslrootcert={ca} sslcert={d}/client.root.crt sslkey={d}/client.root.key"),
        "CREATE TABLE pt (k INT PRIMARY KEY, v TEXT)",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pg = |user: &str, password: &str, sql: &str| {
        Command::new("psql")
            .args([
                &format!("host=localhost port={sql_port} user={user} dbname=defaultdb sslmode=verify-full sslrootcert={ca}"),
                "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
            ])
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGPASSWORD", password)
            .output()
            .unwrap()
    };
    let out = pg(
        "app",
        "app-pass-1",
        "INSERT INTO pt VALUES (1, 'by password')",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = pg("viewer", "viewer pass", "SELECT v FROM pt WHERE k = 1");
    assert_eq!(
        text(&out.stdout).trim(),
        "by password",
        "{}",
        text(&out.stderr)
    );
    let out = pg("viewer", "viewer pass", "DELETE FROM pt");
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );
    for (user, password) in [("app", "wrong"), ("viewer", "app-pass-1")] {
        let out = pg(user, password, "INSERT INTO pt VALUES (2, 'stranger')");
        assert!(!out.status.success(), "{user} got in with {password:?}");
        assert!(
            text(&out.stderr).contains("password authentication failed"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = Command::new(shoal_bin())
        .args([
            "sql",
            "--host",
            &format!("localhost:{sql_port}"),
            "-e",
            "SELECT k, v FROM pt",
        ])
        .env("SHOAL_CERTS_DIR", &anonymous)
        .env("SHOAL_USER", "app")
        .env("SHOAL_PASSWORD", "app-pass-1")
        .output()
        .unwrap();
    assert!(ok(out).contains("by password"));

    // The HTTP SQL API: HTTP Basic.
    let http = format!("https://localhost:{}/db/query", port_of(&c.nodes[2].http));
    let api = |credentials: &str| {
        curl(&[
            "--cacert",
            &ca,
            "-u",
            credentials,
            "-X",
            "POST",
            "-d",
            "[\"SELECT v FROM pt WHERE k = 1\"]",
            "-w",
            "%{http_code}",
            &http,
        ])
        .1
    };
    let body = api("viewer:viewer pass");
    assert!(
        body.contains("by password") && body.ends_with("200"),
        "{body}"
    );
    let body = api("viewer:nope");
    assert!(body.contains("28P01") && body.ends_with("401"), "{body}");

    // A new password: the old one stops working on every node, the new one works.
    ok(with_new_password(&["user", "passwd", "app"], "app-pass-2"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in &c.nodes {
        let old = by_password(vec![node.grpc.clone()], "app", "app-pass-1");
        let e = old.get("pk").await.unwrap_err();
        assert_eq!(e.code(), Some("UNAUTHENTICATED"), "{e:?}");
        let new = by_password(vec![node.grpc.clone()], "app", "app-pass-2");
        assert_eq!(new.get("pk").await.unwrap().unwrap().value, b"app's");
    }
    ok(with_new_password(&["user", "passwd", "app", "--clear"], ""));
    let e = by_password(c.addrs(), "app", "app-pass-2")
        .get("pk")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("UNAUTHENTICATED"), "{e:?}");

    // What a refusal met changed nothing.
    let root = c.client();
    assert_eq!(root.get("pk").await.unwrap().unwrap().value, b"app's");
    let out = pg("app", "app-pass-2", "SELECT 1");
    assert!(!out.status.success(), "a cleared password still logs in");
}
