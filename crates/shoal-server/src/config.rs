//! `shoal start` configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// How a leader confirms linearizable reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadPolicy {
    ReadIndex,
    Lease,
}

/// Flags of `shoal start`; every flag is also read from its `SHOAL_*` env var.
#[derive(Debug, Clone, Args)]
pub struct NodeConfig {
    /// Directory of this node's store and snapshots (created if missing).
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Address the clients' gRPC server binds (`Kv`, `Txn`, `Admin`).
    #[arg(long, env = "SHOAL_LISTEN_ADDR", default_value = "0.0.0.0:7070")]
    pub listen_addr: SocketAddr,

    /// Address clients reach this node at (`host:port`), and the address the
    /// cluster's membership knows it by. Defaults to the listen address, or to this
    /// host's name and the listen port when the listen address is a wildcard.
    #[arg(long, env = "SHOAL_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Address of the peer server: Raft, snapshots and node-level calls between the
    /// nodes, never clients (a public Service does not expose it). Port 0 takes any
    /// free port; peers learn it from the node's client address.
    #[arg(long, env = "SHOAL_PEER_ADDR", default_value = "0.0.0.0:7071")]
    pub peer_addr: SocketAddr,

    /// Address peers reach this node's peer server at (`host:port`). Defaults to the
    /// peer address when it names a host, else to the advertised host and the peer
    /// port.
    #[arg(long, env = "SHOAL_ADVERTISE_PEER_ADDR")]
    pub advertise_peer_addr: Option<String>,

    /// This node's name, shown in `shoal node ls`: by default the host's short name
    /// (a StatefulSet pod's `shoal-N`); a DaemonSet sets the Kubernetes node's name.
    #[arg(long, env = "SHOAL_NODE_NAME")]
    pub node_name: Option<String>,

    /// Address of the HTTP server: probes and metrics.
    #[arg(long, env = "SHOAL_HTTP_ADDR", default_value = "0.0.0.0:7080")]
    pub http_addr: SocketAddr,

    /// Address of the SQL server (the Postgres wire protocol).
    #[arg(long, env = "SHOAL_SQL_ADDR", default_value = "0.0.0.0:5432")]
    pub sql_addr: SocketAddr,

    /// Directory of the node's certificates (`shoal cert`): the cluster CA
    /// (`ca.crt`) and this node's `node.crt` and `node.key`. Every listener then
    /// speaks TLS, and the node calls its peers with its certificate. Files changed
    /// in place are read again within seconds (rotation without a restart).
    #[arg(long, env = "SHOAL_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,

    /// Serve without TLS or authentication: anyone who reaches the node's ports may
    /// read and write everything. A node starts without `--certs-dir` only with it.
    #[arg(long, env = "SHOAL_INSECURE")]
    pub insecure: bool,

    /// Peers to bootstrap with (`host:port`, comma-separated); `shoal init` founds the
    /// cluster from this node and these.
    #[arg(long, env = "SHOAL_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,

    /// DNS name of a headless Service (`name[:port]`) whose A records are the peers;
    /// resolved again and again until peers answer. The port defaults to this node's.
    #[arg(long, env = "SHOAL_JOIN_SERVICE")]
    pub join_service: Option<String>,

    /// Found the cluster without `shoal init` once this many nodes (this one
    /// included) answer and none belongs to a cluster; the one with the lowest
    /// StatefulSet ordinal (or, failing that, address) founds it.
    #[arg(long, env = "SHOAL_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<usize>,

    /// On SIGTERM: how long moving leaderships away and finishing in-flight requests
    /// may take before the process exits (keep it under the pod's grace period): a
    /// duration (`20s`, `1m`), a bare number being seconds.
    #[arg(long, env = "SHOAL_DRAIN_TIMEOUT_SECS", default_value_t = 20, value_parser = parse_secs)]
    pub drain_timeout_secs: u64,

    /// Largest key accepted, in bytes.
    #[arg(long, env = "SHOAL_MAX_KEY_BYTES", default_value_t = 8 << 10)]
    pub max_key_bytes: usize,

    /// Largest value accepted, in bytes.
    #[arg(long, env = "SHOAL_MAX_VALUE_BYTES", default_value_t = 4 << 20)]
    pub max_value_bytes: usize,

    /// Largest request accepted (sum of the keys and values of a batch or txn), in bytes.
    #[arg(long, env = "SHOAL_MAX_REQUEST_BYTES", default_value_t = 8 << 20)]
    pub max_request_bytes: usize,

    /// Raft heartbeat interval: a duration (`150ms`, `1s`), a bare number being
    /// milliseconds.
    #[arg(long, env = "SHOAL_HEARTBEAT_MS", default_value_t = 150, value_parser = parse_millis)]
    pub heartbeat_ms: u64,

    /// Minimum Raft election timeout (the maximum is twice this): a duration (`1s`,
    /// `500ms`), a bare number being milliseconds.
    #[arg(long, env = "SHOAL_ELECTION_TIMEOUT_MS", default_value_t = 1000, value_parser = parse_millis)]
    pub election_timeout_ms: u64,

    /// How a leader confirms a linearizable read (and a timestamp it hands out):
    /// `lease` (no round trip while a quorum acknowledged the leader within half the
    /// longest election timeout, else a heartbeat round; assumes no node's clock runs
    /// twice as fast as another's and that a stopped node's clock keeps counting) or
    /// `read-index` (a heartbeat round to a quorum per batch of reads, whatever the
    /// clocks do).
    #[arg(long, env = "SHOAL_READ_POLICY", value_enum, default_value = "lease")]
    pub read_policy: ReadPolicy,

    /// Build a range snapshot (and purge its log) after at least this many log entries,
    /// once the log since the last snapshot also holds half that snapshot's bytes (or
    /// 16 MiB).
    #[arg(long, env = "SHOAL_SNAPSHOT_LOGS", default_value_t = 10_000)]
    pub snapshot_logs: u64,

    /// Log entries kept behind a snapshot for slow followers.
    #[arg(long, env = "SHOAL_KEEP_LOGS", default_value_t = 1_000)]
    pub keep_logs: u64,

    /// A range whose data passes this many bytes splits in two (at the key in the
    /// middle of its data).
    #[arg(long, env = "SHOAL_RANGE_MAX_BYTES", default_value_t = 64 << 20)]
    pub range_max_bytes: u64,

    /// A range that serves more than this many requests a second on its leader for
    /// `--split-load-window` splits in two, at a key with as much of the load on each
    /// side (a load on one key is not split). 0: ranges never split by load.
    #[arg(long, env = "SHOAL_SPLIT_QPS", default_value_t = 2500)]
    pub split_qps: u64,

    /// How long a range stays over `--split-qps` before it splits by load (`10s`,
    /// `1m`; a bare number is seconds).
    #[arg(long, env = "SHOAL_SPLIT_LOAD_WINDOW", default_value = "10s", value_parser = parse_duration)]
    pub split_load_window: std::time::Duration,

    /// How long two adjacent ranges on the same replicas stay idle (quiesced: no
    /// writes) before they merge back into one, if together they hold under a quarter
    /// of `--range-max-bytes` (`10m`, `1h`; a bare number is seconds). 0: ranges merge
    /// only on request (`shoal range merge`).
    #[arg(long, env = "SHOAL_MERGE_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub merge_after: std::time::Duration,

    /// Replicas of each range (the meta range has one on every node).
    #[arg(long, env = "SHOAL_REPLICATION_FACTOR", default_value_t = 3)]
    pub replication_factor: usize,

    /// How long a node may go without a heartbeat before it is counted dead and its
    /// replicas are made again on live nodes (`90s`, `5m`, `1h`; a bare number is
    /// seconds).
    #[arg(long, env = "SHOAL_TIME_UNTIL_DEAD", default_value = "5m", value_parser = parse_duration)]
    pub time_until_dead: std::time::Duration,

    /// How long old versions of keys are kept: reads at a past timestamp reach this far
    /// back, and garbage collection drops what newer versions hid before it (`10m`,
    /// `1h`; a bare number is seconds).
    #[arg(long, env = "SHOAL_GC_TTL", default_value = "10m", value_parser = parse_duration)]
    pub gc_ttl: std::time::Duration,

    /// Keep every range's Raft timers and heartbeats running while it is idle (by
    /// default idle ranges quiesce: no heartbeats, no wakeups). For measurements.
    #[arg(long, env = "SHOAL_DISABLE_QUIESCENCE")]
    pub disable_quiescence: bool,

    /// Milliseconds added to this node's wall clock where timestamps are taken (may be
    /// negative): a clock-skew nemesis for tests. Timestamps stay ordered whatever the
    /// clocks say; only their wall-clock part drifts.
    #[arg(
        long,
        env = "SHOAL_CLOCK_SKEW_MS",
        default_value_t = 0,
        allow_negative_numbers = true,
        hide = true
    )]
    pub clock_skew_ms: i64,
}

/// A duration, in the one syntax of every duration flag of `shoal` (its server's and
/// its CLI's): a number with a unit, `1500ms`, `20s`, `5m`, `1h`, or a sum such as
/// `1m30s` (humantime's syntax); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration_in(s, std::time::Duration::from_secs(1))
}

/// As [`parse_duration`], a bare number counting `unit`s: a flag whose name ends in
/// `-ms` or `-secs` keeps reading its bare numbers in that unit.
pub fn parse_duration_in(
    s: &str,
    unit: std::time::Duration,
) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let bare = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if bare {
        let n: f64 = t
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (e.g. 1500ms, 20s, 5m, 1h)"))?;
        return std::time::Duration::try_from_secs_f64(n * unit.as_secs_f64())
            .map_err(|_| format!("{s:?} is too long"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{s:?} is not a duration ({e}; e.g. 1500ms, 20s, 5m, 1h)"))
}

/// A `--*-ms` flag: a duration, a bare number being milliseconds; in whole milliseconds.
pub fn parse_millis(s: &str) -> Result<u64, String> {
    let d = parse_duration_in(s, std::time::Duration::from_millis(1))?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("{s:?} is finer than a millisecond"));
    }
    u64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))
}

/// A `--*-secs` flag: a duration, a bare number being seconds; in whole seconds.
pub fn parse_secs(s: &str) -> Result<u64, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{s:?} is finer than a second"));
    }
    Ok(d.as_secs())
}

impl NodeConfig {
    /// Checks the configuration, with a message naming the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_key_bytes == 0 {
            return Err("--max-key-bytes must be at least 1".into());
        }
        if self.range_max_bytes < 1024 {
            return Err("--range-max-bytes must be at least 1024".into());
        }
        if self.max_value_bytes == 0 {
            return Err("--max-value-bytes must be at least 1".into());
        }
        if self.max_request_bytes < self.max_key_bytes + self.max_value_bytes {
            return Err(
                "--max-request-bytes must hold at least one key and one value of the maximum sizes"
                    .into(),
            );
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms <= self.heartbeat_ms {
            return Err(
                "--election-timeout-ms must be greater than --heartbeat-ms (and both above 0)"
                    .into(),
            );
        }
        if self.replication_factor == 0 {
            return Err("--replication-factor must be at least 1".into());
        }
        if self.time_until_dead < std::time::Duration::from_secs(5) {
            return Err("--time-until-dead must be at least 5s".into());
        }
        if self.snapshot_logs == 0 {
            return Err("--snapshot-logs must be at least 1".into());
        }
        if self.split_load_window < std::time::Duration::from_secs(1) {
            return Err("--split-load-window must be at least 1s".into());
        }
        // Below it, a read at a fresh timestamp from an oracle whose clock runs a little
        // behind this node's would already be outside the retention window.
        if self.gc_ttl < std::time::Duration::from_secs(1) {
            return Err("--gc-ttl must be at least 1s".into());
        }
        if let Some(a) = &self.advertise_addr {
            check_host_port(a).map_err(|e| format!("--advertise-addr {a:?}: {e}"))?;
        }
        if let Some(a) = &self.advertise_peer_addr {
            check_host_port(a).map_err(|e| format!("--advertise-peer-addr {a:?}: {e}"))?;
        }
        if self.peer_addr.port() != 0 && self.peer_addr == self.listen_addr {
            return Err(format!(
                "--peer-addr {} is the client address (--listen-addr): peer traffic has a port of its own",
                self.peer_addr
            ));
        }
        for j in &self.join {
            check_host_port(j).map_err(|e| format!("--join {j:?}: {e}"))?;
        }
        if let Some(s) = &self.join_service {
            let host =
                s.rsplit_once(':').map_or(
                    s.as_str(),
                    |(h, p)| if p.parse::<u16>().is_ok() { h } else { s },
                );
            if host.is_empty() || host.contains('/') {
                return Err(format!(
                    "--join-service {s:?}: expected a DNS name, optionally with :port"
                ));
            }
        }
        if self.bootstrap_expect == Some(0) {
            return Err("--bootstrap-expect must be at least 1".into());
        }
        match (&self.certs_dir, self.insecure) {
            (None, false) => {
                return Err("a node needs its certificates (--certs-dir DIR, made with `shoal cert create-ca` and `shoal cert create-node`), or --insecure to serve without TLS or authentication".into())
            }
            (Some(_), true) => {
                return Err("--insecure and --certs-dir exclude each other: a node is secure or not".into())
            }
            _ => {}
        }
        Ok(())
    }

    /// The address this node advertises: `--advertise-addr`, else the listen address
    /// when it names a host, else this host's fully qualified name (as `hostname -f`
    /// gives it: a pod's `name.service.namespace.svc.cluster.local`) and the listen port.
    pub fn advertise(&self) -> String {
        if let Some(a) = &self.advertise_addr {
            return a.clone();
        }
        if !self.listen_addr.ip().is_unspecified() {
            return self.listen_addr.to_string();
        }
        let short = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        format!("{}:{}", fqdn(&short, &hosts), self.listen_addr.port())
    }

    /// The address this node's peers reach it at: `--advertise-peer-addr`, else the
    /// peer address when it names a host, else the advertised host and the peer port.
    pub fn advertise_peer(&self) -> String {
        if let Some(a) = &self.advertise_peer_addr {
            return a.clone();
        }
        if !self.peer_addr.ip().is_unspecified() {
            return self.peer_addr.to_string();
        }
        let advertise = self.advertise();
        let host = advertise
            .rsplit_once(':')
            .map_or(advertise.as_str(), |(h, _)| h);
        format!("{host}:{}", self.peer_addr.port())
    }

    /// This node's name: `--node-name`, else the host's short name.
    pub fn name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default()
        })
    }

    /// The join service's host and port.
    pub fn join_service_target(&self) -> Option<(String, u16)> {
        let s = self.join_service.as_ref()?;
        match s.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => {
                Some((h.to_string(), p.parse().unwrap_or(7070)))
            }
            _ => Some((s.clone(), self.listen_addr.port())),
        }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    pub fn raft_options(&self) -> shoal_raft::RaftOptions {
        shoal_raft::RaftOptions {
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_timeout_ms,
            election_timeout_max_ms: self.election_timeout_ms * 2,
            snapshot_logs: self.snapshot_logs,
            keep_logs: self.keep_logs,
            lease_reads: self.read_policy == ReadPolicy::Lease,
        }
    }
}

/// The fully qualified name of `short` in an `/etc/hosts` text: the first name of the
/// line that lists `short`, when it extends it with a domain; else `short`.
fn fqdn(short: &str, hosts: &str) -> String {
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or("");
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        if names.contains(&short) {
            if let Some(full) = names.iter().find(|n| n.starts_with(&format!("{short}."))) {
                return full.to_string();
            }
        }
    }
    short.to_string()
}

/// Checks a `host:port` address.
pub fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    if host.is_empty() {
        return Err("empty host".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("bad port {port:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: NodeConfig,
    }

    #[test]
    fn fqdn_comes_from_the_hosts_file_as_in_a_pod() {
        let hosts = "127.0.0.1 localhost\n# Kubernetes-managed hosts file.\n10.1.2.3\tshoal-0.shoal.db.svc.cluster.local\tshoal-0\n";
        assert_eq!(fqdn("shoal-0", hosts), "shoal-0.shoal.db.svc.cluster.local");
        assert_eq!(fqdn("other", hosts), "other");
    }

    #[test]
    fn flags_parse_and_validate() {
        let c = Cli::try_parse_from([
            "x",
            "--data-dir",
            "/d",
            "--join",
            "a:1,b:2",
            "--listen-addr",
            "127.0.0.1:9",
            "--insecure",
        ])
        .unwrap()
        .cfg;
        assert_eq!(c.join, vec!["a:1", "b:2"]);
        assert_eq!(c.advertise(), "127.0.0.1:9");
        // Peers reach the peer port on the advertised host unless told otherwise.
        assert_eq!(c.advertise_peer(), "127.0.0.1:7071");
        let named = Cli::try_parse_from([
            "x",
            "--data-dir",
            "/d",
            "--insecure",
            "--advertise-addr",
            "shoal-0.shoal:7070",
        ])
        .unwrap()
        .cfg;
        assert_eq!(named.advertise_peer(), "shoal-0.shoal:7071");
        let same = Cli::try_parse_from([
            "x",
            "--data-dir",
            "/d",
            "--insecure",
            "--listen-addr",
            "127.0.0.1:7071",
            "--peer-addr",
            "127.0.0.1:7071",
        ])
        .unwrap()
        .cfg;
        assert!(same.validate().unwrap_err().contains("--peer-addr"));
        assert!(c.validate().is_ok());
        // Secure or insecure, said once: neither, or both, is refused.
        let neither = Cli::try_parse_from(["x", "--data-dir", "/d"]).unwrap().cfg;
        assert!(neither.validate().unwrap_err().contains("--insecure"));
        let both =
            Cli::try_parse_from(["x", "--data-dir", "/d", "--insecure", "--certs-dir", "/c"])
                .unwrap()
                .cfg;
        assert!(both.validate().unwrap_err().contains("exclude"));
        let secure = Cli::try_parse_from(["x", "--data-dir", "/d", "--certs-dir", "/c"])
            .unwrap()
            .cfg;
        assert!(secure.validate().is_ok());
        assert!(!c.disable_quiescence);
        let c = Cli::try_parse_from(["x", "--data-dir", "/d", "--disable-quiescence"])
            .unwrap()
            .cfg;
        assert!(c.disable_quiescence);
        let bad = Cli::try_parse_from(["x", "--data-dir", "/d", "--join", "nohost"])
            .unwrap()
            .cfg;
        assert!(bad.validate().unwrap_err().contains("--join"));
        let bad = Cli::try_parse_from([
            "x",
            "--data-dir",
            "/d",
            "--heartbeat-ms",
            "500",
            "--election-timeout-ms",
            "400",
        ])
        .unwrap()
        .cfg;
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("--election-timeout-ms"));
    }

    #[test]
    fn durations_take_a_unit_and_refuse_what_is_not_one() {
        let d = |s| parse_duration(s);
        assert_eq!(d("90"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(d("90s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(d("5m"), Ok(std::time::Duration::from_secs(300)));
        assert_eq!(d("1h"), Ok(std::time::Duration::from_secs(3600)));
        assert_eq!(d("1500ms"), Ok(std::time::Duration::from_millis(1500)));
        assert_eq!(d("1m30s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(d("1.5m"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(d("0.5"), Ok(std::time::Duration::from_millis(500)));
        for bad in [
            "",
            "m",
            "5x",
            "-1s",
            "soon",
            "1..5",
            "99999999999999999999h",
        ] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
        let c = Cli::try_parse_from(["x", "--data-dir", "/d"]).unwrap().cfg;
        assert_eq!(c.time_until_dead, std::time::Duration::from_secs(300));
        assert_eq!(c.replication_factor, 3);
        let short = Cli::try_parse_from(["x", "--data-dir", "/d", "--time-until-dead", "2s"])
            .unwrap()
            .cfg;
        assert!(short.validate().unwrap_err().contains("--time-until-dead"));
        assert!(
            Cli::try_parse_from(["x", "--data-dir", "/d", "--time-until-dead", "soon"]).is_err()
        );
    }

    #[test]
    fn flags_named_in_a_unit_take_the_same_syntax_and_keep_their_bare_numbers() {
        assert_eq!(parse_millis("150"), Ok(150));
        assert_eq!(parse_millis("1s"), Ok(1000));
        assert_eq!(parse_millis("1500ms"), Ok(1500));
        assert!(parse_millis("1500us").is_err());
        assert_eq!(parse_secs("20"), Ok(20));
        assert_eq!(parse_secs("1m"), Ok(60));
        assert!(parse_secs("1500ms").is_err());
        let c = Cli::try_parse_from(["x", "--data-dir", "/d"]).unwrap().cfg;
        assert_eq!(
            (c.heartbeat_ms, c.election_timeout_ms, c.drain_timeout_secs),
            (150, 1000, 20)
        );
        let c = Cli::try_parse_from([
            "x",
            "--data-dir",
            "/d",
            "--heartbeat-ms",
            "50ms",
            "--election-timeout-ms",
            "1s",
            "--drain-timeout-secs",
            "2m",
        ])
        .unwrap()
        .cfg;
        assert_eq!(
            (c.heartbeat_ms, c.election_timeout_ms, c.drain_timeout_secs),
            (50, 1000, 120)
        );
        assert!(Cli::try_parse_from(["x", "--data-dir", "/d", "--heartbeat-ms", "fast"]).is_err());
    }
}
