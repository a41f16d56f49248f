//! Prometheus metrics: request counts and latency histograms per RPC, Raft gauges per
//! range (read from openraft's metrics at scrape time), garbage collection of old
//! versions, TLS (refused handshakes, the node certificate's expiry), failed
//! logins, splits by reason, merges, and what the node sized itself by (its cgroup's limits)
//! and to.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use shoal_raft::Router;
use shoal_storage::GcState;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    raft: GaugeVec,
    gc_dropped: IntGauge,
    gc_safe_point: IntGauge,
    locks_swept: IntCounter,
    sql_dropped_keys: IntCounter,
    tls_refused: IntCounterVec,
    login_failures: IntCounterVec,
    cert_expires: IntGauge,
    resources: IntGaugeVec,
    splits: IntCounterVec,
    merges: IntCounterVec,
    /// Held while rendering: a concurrent scrape's reset must not empty the Raft
    /// gauges between another's setting and gathering them.
    rendering: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "shoal_requests_total",
                "gRPC requests served, by RPC and result code",
            ),
            &["rpc", "code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "shoal_request_duration_seconds",
                "gRPC request latency, by RPC",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]),
            &["rpc"],
        )
        .expect("valid metric");
        let raft = GaugeVec::new(
            Opts::new(
                "shoal_raft",
                "Raft state per range: term, leader, commit/applied/last log index, is_leader, quiesced, decided commits carried by another proposal or sent alone",
            ),
            &["range", "metric"],
        )
        .expect("valid metric");
        let gc_dropped = IntGauge::new(
            "shoal_mvcc_gc_versions_dropped_total",
            "old versions (and rollback marks) garbage collection dropped since the node started",
        )
        .expect("valid metric");
        let gc_safe_point = IntGauge::new(
            "shoal_mvcc_gc_safe_point",
            "the timestamp below which versions hidden by newer ones may be dropped",
        )
        .expect("valid metric");
        let locks_swept = IntCounter::new(
            "shoal_txn_locks_swept_total",
            "old locks of transactions this node's ranges resolved without a reader meeting them",
        )
        .expect("valid metric");
        let sql_dropped_keys = IntCounter::new(
            "shoal_sql_dropped_keys_deleted_total",
            "rows and index entries of dropped tables this node deleted after their drop",
        )
        .expect("valid metric");
        let tls_refused = IntCounterVec::new(
            Opts::new(
                "shoal_tls_handshakes_refused_total",
                "client connections closed in their TLS handshake (plaintext, a certificate of another CA or expired, a timeout), by listener",
            ),
            &["listener"],
        )
        .expect("valid metric");
        let login_failures = IntCounterVec::new(
            Opts::new(
                "shoal_login_failures_total",
                "calls and connections refused for their identity (no user's certificate, a user the cluster does not have, a certificate logging in as another user), by port",
            ),
            &["port"],
        )
        .expect("valid metric");
        let cert_expires = IntGauge::new(
            "shoal_node_certificate_expires_seconds",
            "when the node certificate in use expires (seconds since the Unix epoch; 0 on an insecure node)",
        )
        .expect("valid metric");
        let resources = IntGaugeVec::new(
            Opts::new(
                "shoal_resources",
                "what the node sized itself by and to: its cgroup's CPU quota (cpu_quota_millicores) and memory limit (memory_limit_bytes; 0: none), its runtime's worker threads, the store's memtables at most and block cache (bytes; 0: RocksDB's own)",
            ),
            &["of"],
        )
        .expect("valid metric");
        let splits = IntCounterVec::new(
            Opts::new(
                "shoal_range_splits_total",
                "splits of ranges this node led, by reason: size (past --range-max-bytes), load (over --split-qps), request (`shoal range split`)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let merges = IntCounterVec::new(
            Opts::new(
                "shoal_range_merges_total",
                "merges this node coordinated as the left-hand range's leader, by reason: idle (two small ranges quiesced for --merge-after), request (`shoal range merge`)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(splits.clone()),
            Box::new(merges.clone()),
            Box::new(resources.clone()),
            Box::new(latency.clone()),
            Box::new(raft.clone()),
            Box::new(gc_dropped.clone()),
            Box::new(gc_safe_point.clone()),
            Box::new(locks_swept.clone()),
            Box::new(sql_dropped_keys.clone()),
            Box::new(tls_refused.clone()),
            Box::new(login_failures.clone()),
            Box::new(cert_expires.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self {
            registry,
            requests,
            latency,
            raft,
            gc_dropped,
            gc_safe_point,
            locks_swept,
            sql_dropped_keys,
            tls_refused,
            login_failures,
            cert_expires,
            resources,
            splits,
            merges,
            rendering: Default::default(),
        }
    }

    pub fn count_swept_locks(&self, n: u64) {
        self.locks_swept.inc_by(n);
    }

    pub fn count_dropped_keys(&self, n: u64) {
        self.sql_dropped_keys.inc_by(n);
    }

    /// A split of a range this node led (`reason`: size, load or request).
    pub fn count_split(&self, reason: &str) {
        self.splits.with_label_values(&[reason]).inc();
    }

    /// A merge this node coordinated (`reason`: idle or request).
    pub fn count_merge(&self, reason: &str) {
        self.merges.with_label_values(&[reason]).inc();
    }

    pub fn count_tls_refused(&self, listener: &str) {
        self.tls_refused.with_label_values(&[listener]).inc();
    }

    pub fn count_login_failure(&self, port: &str) {
        self.login_failures.with_label_values(&[port]).inc();
    }

    /// One of what the node sized itself by or to (`of`: the label).
    pub fn set_resource(&self, of: &str, value: i64) {
        self.resources.with_label_values(&[of]).set(value);
    }

    /// When the node certificate in use expires (seconds since the Unix epoch).
    pub fn set_cert_expiry(&self, at: i64) {
        self.cert_expires.set(at);
    }

    pub fn observe_rpc(&self, rpc: &str, code: &str, took: Duration) {
        self.requests.with_label_values(&[rpc, code]).inc();
        self.latency
            .with_label_values(&[rpc])
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, router: &Router, gc: &GcState) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        // Only the ranges held now: a replica moved away leaves no stale gauges.
        self.raft.reset();
        for r in router.all().iter() {
            let m = r.metrics();
            let range = r.range_id.to_string();
            let set = |name: &str, v: u64| {
                self.raft
                    .with_label_values(&[range.as_str(), name])
                    .set(v as f64)
            };
            set("term", m.current_term);
            set("leader", m.current_leader.unwrap_or(0));
            set("is_leader", (m.current_leader == Some(r.node_id)) as u64);
            set(
                "commit_index",
                m.local_committed.as_ref().map_or(0, |l| l.index),
            );
            set(
                "applied_index",
                m.last_applied.as_ref().map_or(0, |l| l.index),
            );
            set("last_log_index", m.last_log_index.unwrap_or(0));
            set("snapshot_index", m.snapshot.as_ref().map_or(0, |l| l.index));
            set("purged_index", m.purged.as_ref().map_or(0, |l| l.index));
            set("quiesced", r.is_quiesced() as u64);
            let (carried, alone) = r.held_commits();
            set("commits_carried", carried);
            set("commits_alone", alone);
        }
        self.gc_dropped
            .set(i64::try_from(gc.dropped()).unwrap_or(i64::MAX));
        self.gc_safe_point
            .set(i64::try_from(gc.safe_point()).unwrap_or(i64::MAX));
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
