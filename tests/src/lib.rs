//! Harness for cluster tests: real `shoal` processes on loopback, each with its own
//! data directory and ports, killed with SIGKILL and restarted like a crashed machine.
//!
//! The binary is `$SHOAL_BIN`, or `shoal` beside the test executable's directory
//! (cargo builds it for `cargo test --workspace`).
//!
//! - [`linearizability`]: the history checker.
//! - [`workload`]: checked clients for fault tests, and the checks they end with.
//! - [`txn_workload`]: transactional workloads (bank, list-append) and their checks.
//! - [`pairs`]: batches of puts across ranges (committed by the SDK) and their checks.
//! - [`pods`]: pods simulated as Docker containers, and the faults done to them;
//!   [`pod_spec`]: what the manifests say of a pod; [`pod_certs`]: the certificates
//!   of the manifests' Secret, and HTTPS to a pod.
//! - [`sql_bank`]: the bank workload through SQL (Postgres connections) and its checks.

pub mod linearizability;
pub mod pairs;
pub mod pod_certs;
pub mod pod_spec;
pub mod pods;
pub mod sql_bank;
pub mod txn_workload;
pub mod workload;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_client::{Client, ClientOptions, ClientTls};

/// Flags that make elections quick, for tests of failover.
pub const FAST_ELECTIONS: &[&str] = &["--heartbeat-ms", "100", "--election-timeout-ms", "500"];

/// The `shoal` binary under test.
pub fn shoal_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join("shoal");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p shoal-cli) or set SHOAL_BIN",
        bin.display()
    );
    bin
}

/// Runs the `shoal` binary with `args` and returns its output.
pub fn shoal(args: &[&str]) -> Output {
    Command::new(shoal_bin())
        .args(args)
        .env_remove("SHOAL_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("running shoal")
}

/// Runs `cmd` with `input` on its stdin; its output (stdout and stderr captured).
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> std::io::Result<Output> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    child.wait_with_output()
}

/// A port that is free now and that nothing else will be handed: below the kernel's
/// ephemeral range (outgoing connections never take it), and never twice in this
/// process (tests of one binary run in parallel).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LO: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % SPAN as u32) as u16 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = LO + n % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Free loopback addresses for a node's gRPC, HTTP and SQL servers.
fn loopback_addrs() -> (String, String, String) {
    let at = || format!("127.0.0.1:{}", free_port());
    (at(), at(), at())
}

/// The `shoal start` arguments of a test node in `dir`.
fn start_args(dir: &Path, grpc: &str, http: &str, sql: &str, join: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "start".into(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
        "--listen-addr".into(),
        grpc.into(),
        "--advertise-addr".into(),
        grpc.into(),
        "--http-addr".into(),
        http.into(),
        "--sql-addr".into(),
        sql.into(),
        // Peer traffic on a port of its own, as in a pod; kept across restarts.
        "--peer-addr".into(),
        format!("127.0.0.1:{}", free_port()),
    ];
    if !join.is_empty() {
        args.push("--join".into());
        args.push(join.join(","));
    }
    args
}

/// One node process.
pub struct TestNode {
    pub grpc: String,
    pub http: String,
    /// The SQL (Postgres protocol) address.
    pub sql: String,
    pub data: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    /// Environment of the next spawn (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl TestNode {
    /// The address of the node's peer server (`--peer-addr`).
    pub fn peer(&self) -> &str {
        self.args
            .iter()
            .position(|a| a == "--peer-addr")
            .and_then(|i| self.args.get(i + 1))
            .map_or("", |a| a.as_str())
    }

    /// Moves the node's peer server to `addr` from its next start on.
    pub fn set_peer_addr(&mut self, addr: &str) {
        if let Some(i) = self.args.iter().position(|a| a == "--peer-addr") {
            self.args[i + 1] = addr.to_string();
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(shoal_bin())
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning shoal start")?;
        self.child = Some(child);
        Ok(())
    }

    /// The last lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A cluster of node processes on loopback.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    /// A secure cluster's client certificates (`start_secure`): its clients use them.
    pub tls: Option<ClientTls>,
    _root: tempfile::TempDir,
}

/// `--insecure`, unless the flags name the node's certificates.
fn security(extra: &[&str]) -> Option<String> {
    (!extra.contains(&"--certs-dir")).then(|| "--insecure".to_string())
}

impl TestCluster {
    /// Starts `n` nodes that list each other in `--join`, with `extra` flags.
    pub fn start(n: usize, extra: &[&str]) -> anyhow::Result<Self> {
        let mut root = tempfile::Builder::new().prefix("shoal-test-").tempdir()?;
        // SHOAL_TEST_KEEP=1 keeps the nodes' data and logs for a post-mortem.
        if std::env::var_os("SHOAL_TEST_KEEP").is_some() {
            root.disable_cleanup(true);
            eprintln!("keeping {}", root.path().display());
        }
        let addrs: Vec<(String, String, String)> = (0..n).map(|_| loopback_addrs()).collect();
        let mut nodes = Vec::new();
        for (i, (grpc, http, sql)) in addrs.iter().enumerate() {
            let dir = root.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&dir)?;
            let join: Vec<String> = addrs
                .iter()
                .filter(|(g, _, _)| g != grpc)
                .map(|(g, _, _)| g.clone())
                .collect();
            let mut args = start_args(&dir, grpc, http, sql, &join);
            args.extend(extra.iter().map(|s| s.to_string()));
            args.extend(security(extra));
            let mut node = TestNode {
                grpc: grpc.clone(),
                http: http.clone(),
                sql: sql.clone(),
                data: dir.join("data"),
                log: dir.join("node.log"),
                args,
                env: Vec::new(),
                child: None,
            };
            node.spawn()?;
            nodes.push(node);
        }
        Ok(Self {
            nodes,
            tls: None,
            _root: root,
        })
    }

    /// Starts `n` secure nodes with the certificates of `certs` (a node certificate
    /// valid for 127.0.0.1, and `root`'s client certificate), founds the cluster, and
    /// waits for a leader; its clients connect with TLS as `root`.
    pub async fn start_secure(n: usize, certs: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = certs.display().to_string();
        let mut flags = vec!["--certs-dir", dir.as_str()];
        flags.extend_from_slice(extra);
        let mut c = Self::start(n, &flags)?;
        c.tls = Some(ClientTls::from_dir(certs, "root")?);
        c.init().await?;
        c.wait_leader(Duration::from_secs(20)).await?;
        Ok(c)
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            tls: self.tls.clone(),
            ..ClientOptions::default()
        }
    }

    /// Starts `n` nodes and founds the cluster; returns once a leader is elected.
    pub async fn start_initialized(n: usize, extra: &[&str]) -> anyhow::Result<Self> {
        let c = Self::start(n, extra)?;
        c.init().await?;
        c.wait_leader(Duration::from_secs(20)).await?;
        Ok(c)
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.grpc.clone()).collect()
    }

    /// A client seeded with every node.
    pub fn client(&self) -> Client {
        Client::with_options(self.addrs(), self.client_options()).expect("client")
    }

    /// The Postgres DSN of node `i`'s SQL port.
    pub fn sql_dsn(&self, i: usize) -> String {
        format!("postgresql://root@{}/defaultdb", self.nodes[i].sql)
    }

    /// A Postgres client (tokio-postgres) on node `i`'s SQL port, its connection's
    /// task spawned.
    pub async fn sql_client(&self, i: usize) -> anyhow::Result<tokio_postgres::Client> {
        let dsn = format!("{}?connect_timeout=10", self.sql_dsn(i));
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// A client that enters the cluster through node `i` only.
    pub fn client_via(&self, i: usize) -> Client {
        self.client_of([i])
    }

    /// A client seeded with nodes `nodes` only (say, those still running).
    pub fn client_of(&self, nodes: impl IntoIterator<Item = usize>) -> Client {
        let seeds: Vec<String> = nodes
            .into_iter()
            .map(|i| self.nodes[i].grpc.clone())
            .collect();
        Client::with_options(seeds, self.client_options()).expect("client")
    }

    /// Founds the cluster through node 0, waiting for its gRPC port to answer.
    pub async fn init(&self) -> anyhow::Result<()> {
        let c = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.init(&self.nodes[0].grpc).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!("init failed: {e}\n{}", self.nodes[0].log_tail(20))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`pause = true`) or SIGCONT node `i`: a frozen process, like a hung host.
    pub fn pause(&mut self, i: usize, pause: bool) {
        if let Some(c) = &self.nodes[i].child {
            let sig = if pause {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            let _ = kill(Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// SIGTERM node `i` and wait up to `patience` for it to exit; its exit status.
    pub fn terminate(&mut self, i: usize, patience: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.nodes[i].child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status of node `i` if its process has ended (it is then reaped).
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let c = self.nodes[i].child.as_mut()?;
        let st = c.try_wait().ok().flatten()?;
        self.nodes[i].child = None;
        Some(st)
    }

    /// Starts node `i` again with the same data directory and flags.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        assert!(self.nodes[i].child.is_none(), "node {i} is still running");
        self.nodes[i].spawn()
    }

    /// Removes node `i`'s data directory (the node must be stopped): a lost disk.
    pub fn wipe(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} is still running");
        std::fs::remove_dir_all(&self.nodes[i].data).expect("removing the data directory");
    }

    /// Starts one more node with an empty disk that lists every current node in
    /// `--join`; returns its index.
    pub fn add_node(&mut self, extra: &[&str]) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        let (grpc, http, sql) = loopback_addrs();
        let dir = self._root.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&dir)?;
        let mut args = start_args(&dir, &grpc, &http, &sql, &self.addrs());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(security(extra));
        let mut node = TestNode {
            grpc,
            http,
            sql,
            data: dir.join("data"),
            log: dir.join("node.log"),
            args,
            env: Vec::new(),
            child: None,
        };
        node.spawn()?;
        self.nodes.push(node);
        Ok(i)
    }

    /// Status of node `i`.
    pub async fn status(&self, i: usize) -> anyhow::Result<shoal_proto::v1::StatusResponse> {
        Ok(self.client().status_of(&self.nodes[i].grpc).await?)
    }

    /// Index of the node that leads range 1, as the nodes in `among` report it.
    pub async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        for &i in among {
            if let Ok(st) = self.status(i).await {
                if let Some(r) = st.ranges.first() {
                    if r.role == "leader" {
                        return Some(i);
                    }
                }
            }
        }
        None
    }

    pub async fn wait_leader_among(
        &self,
        among: &[usize],
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader_among(among).await {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("no leader among nodes {among:?} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_leader_among(&all, timeout).await
    }

    /// Applied index of range 1 on node `i`.
    pub async fn applied(&self, i: usize) -> anyhow::Result<u64> {
        let st = self.status(i).await?;
        Ok(st.ranges.first().map_or(0, |r| r.applied_index))
    }

    /// Waits until node `i` has applied at least `index`.
    pub async fn wait_applied(
        &self,
        i: usize,
        index: u64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(a) = self.applied(i).await {
                if a >= index {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {i} did not apply index {index} within {timeout:?}\n{}",
                    self.nodes[i].log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET `path` on node `i`'s HTTP port: (status code, body).
    pub fn http_get(&self, i: usize, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(&self.nodes[i].http, path)
    }

    /// A gauge of `/metrics` on node `i` (`shoal_raft{metric="<name>",range="1"}`).
    pub fn raft_gauge(&self, i: usize, name: &str) -> anyhow::Result<u64> {
        self.raft_gauges(i, name)?
            .get(&1)
            .copied()
            .with_context(|| format!("gauge {name} of range 1 not in /metrics"))
    }

    /// A Raft gauge of `/metrics` on node `i` for every range it holds: range id ->
    /// value.
    pub fn raft_gauges(
        &self,
        i: usize,
        name: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<u64, u64>> {
        let (_, body) = self.http_get(i, "/metrics")?;
        let prefix = format!("shoal_raft{{metric=\"{name}\",range=\"");
        Ok(body
            .lines()
            .filter_map(|l| {
                let (range, v) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
                Some((range.parse().ok()?, v.trim().parse::<f64>().ok()? as u64))
            })
            .collect())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.pause(i, false);
            self.kill9(i);
        }
    }
}

/// A minimal HTTP/1.0 GET.
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP response")?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
