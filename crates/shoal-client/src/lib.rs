//! Rust SDK for shoal.
//!
//! [`Client`] connects through any nodes of a cluster, finds the leader from the
//! structured `NOT_LEADER` details of a refused request (never from message text),
//! retries what is safe to retry with jittered exponential backoff, and bounds every
//! attempt with a per-request timeout.
//!
//! What is retried: every read and every write, also when the outcome of an attempt
//! is unknown (a timeout, a lost connection, a leader change mid-flight). Each write
//! carries a request id (this client's id and a sequence number); retries reuse it,
//! and the cluster applies a request id at most once, answering a retry with the
//! first application's result. So a retried put never takes effect twice, and a
//! retried transaction never runs twice.
//!
//! Modules: [`error`] ([`Error`]), and this file: the client and its typed API.

pub mod error;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::error::{codes, detail};
use shoal_proto::v1 as pb;
use shoal_proto::v1::admin_client::AdminClient;
use shoal_proto::v1::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

pub use error::Error;
pub use pb::{compare, Compare, Consistency, KeyValue, TxnOp, TxnOpResult, TxnResponse, WriteOp};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time limit of one attempt.
    pub request_timeout: Duration,
    /// Time limit of a call, retries included.
    pub retry_deadline: Duration,
    /// First backoff between attempts; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Time limit to open a connection.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_secs(20),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads and idempotent writes: any transient failure.
    Always,
    /// Only when the attempt certainly did not reach the log.
    IfNotSent,
}

struct Inner {
    seeds: Vec<String>,
    opts: ClientOptions,
    channels: Mutex<HashMap<String, Channel>>,
    /// The address believed to lead, learned from `NOT_LEADER` details.
    leader: Mutex<Option<String>>,
    next_seed: Mutex<usize>,
    /// Request ids of writes: retries of one write carry the same id, so the cluster
    /// applies it at most once.
    client_id: u64,
    next_seq: std::sync::atomic::AtomicU64,
    /// Writes not yet answered; every seq below the smallest was.
    outstanding: Mutex<std::collections::BTreeSet<u64>>,
}

/// A write in flight; dropping it reports its seq answered.
struct InFlight {
    inner: Arc<Inner>,
    seq: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner
            .outstanding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.seq);
    }
}

/// A connection to a shoal cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("seeds", &self.inner.seeds)
            .finish()
    }
}

/// A scan's page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub kvs: Vec<KeyValue>,
    /// More pairs remain after the last one of this page.
    pub more: bool,
}

/// The smallest key after `key`.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

impl Client {
    /// A client of the cluster reachable through `addrs` (`host:port`). Connections
    /// open lazily: this fails only on malformed addresses.
    pub fn new<I, S>(addrs: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_options(addrs, ClientOptions::default())
    }

    pub fn with_options<I, S>(addrs: I, opts: ClientOptions) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let seeds: Vec<String> = addrs
            .into_iter()
            .map(Into::into)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if seeds.is_empty() {
            return Err(Error::InvalidArgument {
                code: "NO_ADDRESS".into(),
                message: "no node address given".into(),
            });
        }
        for s in &seeds {
            endpoint(s, &opts)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                seeds,
                opts,
                channels: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
                next_seed: Mutex::new(0),
                client_id: rand::random::<u64>().max(1),
                next_seq: std::sync::atomic::AtomicU64::new(1),
                outstanding: Mutex::new(std::collections::BTreeSet::new()),
            }),
        })
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut map = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let c = endpoint(addr, &self.inner.opts)?.connect_lazy();
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// The address to try next: the known leader, else the seeds in turn.
    fn target(&self) -> String {
        if let Some(l) = self
            .inner
            .leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return l;
        }
        let mut i = self
            .inner
            .next_seed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let a = self.inner.seeds[*i % self.inner.seeds.len()].clone();
        *i += 1;
        a
    }

    /// A new request id, and the guard that marks it answered when dropped.
    fn request_id(&self) -> (pb::RequestId, InFlight) {
        let seq = self
            .inner
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let acked_below = {
            let mut out = self
                .inner
                .outstanding
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            out.insert(seq);
            out.iter().next().copied().unwrap_or(seq)
        };
        let id = pb::RequestId {
            client_id: self.inner.client_id,
            seq,
            acked_below,
        };
        (
            id,
            InFlight {
                inner: self.inner.clone(),
                seq,
            },
        )
    }

    fn set_leader(&self, addr: Option<String>) {
        *self.inner.leader.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// Runs `call` against the cluster with redirects, retries and timeouts.
    async fn run<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let opts = &self.inner.opts;
        let deadline = Instant::now() + opts.retry_deadline;
        let mut backoff = opts.initial_backoff;
        let mut last: Option<Error>;
        // Redirects taken without a pause; past a few, hints may be stale: back off.
        let mut redirects = 0;
        loop {
            let addr = self.target();
            let attempt = match self.channel(&addr) {
                Ok(ch) => match tokio::time::timeout(opts.request_timeout, call(ch)).await {
                    Ok(r) => r.map_err(|s| (s, false)),
                    Err(_) => Err((
                        tonic::Status::deadline_exceeded(format!(
                            "no answer from {addr} within {:?}",
                            opts.request_timeout
                        )),
                        true,
                    )),
                },
                Err(e) => return Err(e),
            };
            let (status, timed_out) = match attempt {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let d = detail(&status);
            let code = d.as_ref().map(|d| d.code.as_str()).unwrap_or("");
            // Decide whether and where to retry.
            let not_sent = match code {
                codes::NOT_LEADER => {
                    let leader = match d.as_ref().and_then(|d| d.detail.clone()) {
                        Some(pb::error_detail::Detail::NotLeader(nl))
                            if !nl.leader_addr.is_empty() =>
                        {
                            Some(nl.leader_addr)
                        }
                        _ => None,
                    };
                    let known = leader.is_some() && leader.as_deref() != Some(addr.as_str());
                    self.set_leader(leader);
                    redirects += 1;
                    if known && redirects <= 3 {
                        // Redirect at once: no backoff.
                        last = Some(Error::from_status(&addr, status));
                        if Instant::now() >= deadline {
                            break;
                        }
                        continue;
                    }
                    true
                }
                codes::NOT_INITIALIZED | codes::SHUTTING_DOWN | codes::NO_QUORUM => {
                    self.set_leader(None);
                    true
                }
                codes::OUTCOME_UNKNOWN => {
                    self.set_leader(None);
                    false
                }
                "" if !timed_out && is_connect_failure(&status) => {
                    self.set_leader(None);
                    true
                }
                // No answer from shoal: the request timed out, or the connection failed
                // under it (reset, HTTP/2 error); it may or may not have been applied.
                "" if timed_out || is_transport_failure(&status) => {
                    self.set_leader(None);
                    false
                }
                // Anything else is the server's answer: not retried.
                _ => return Err(Error::from_status(&addr, status)),
            };
            let err = Error::from_status(&addr, status);
            if retry == Retry::IfNotSent && !not_sent {
                return Err(Error::OutcomeUnknown(err.to_string()));
            }
            last = Some(err);
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            let pause = backoff.mul_f64(jitter).min(deadline - now);
            tracing::debug!(%addr, ?pause, "retrying");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(opts.max_backoff);
        }
        Err(Error::Unavailable(format!(
            "gave up after {:?}: {}",
            opts.retry_deadline,
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    fn kv(ch: Channel) -> KvClient<Channel> {
        KvClient::new(ch)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// The value and version of `key`, read linearizably.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
        self.get_with(key, Consistency::Linearizable).await
    }

    pub async fn get_with(
        &self,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>> {
        let req = pb::GetRequest {
            target: None,
            key: key.as_ref().to_vec(),
            consistency: consistency as i32,
        };
        self.run(Retry::Always, |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).get(req).await?.into_inner().kv) }
        })
        .await
    }

    /// Reads `key` from the node at `addr` only, without redirects: with
    /// [`Consistency::Stale`], what that replica holds.
    pub async fn get_from(
        &self,
        addr: &str,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>> {
        let req = pb::GetRequest {
            target: None,
            key: key.as_ref().to_vec(),
            consistency: consistency as i32,
        };
        let mut kv = Self::kv(self.channel(addr)?);
        Ok(
            Self::direct(addr, self.inner.opts.request_timeout, kv.get(req))
                .await?
                .kv,
        )
    }

    /// Writes `value` under `key`; returns the key's new version.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        let (id, _in_flight) = self.request_id();
        let req = pb::PutRequest {
            target: None,
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            request_id: Some(id),
        };
        self.run(Retry::Always, |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).put(req).await?.into_inner().version) }
        })
        .await
    }

    /// Deletes `key`; returns whether it existed (on a retried attempt, whether it
    /// still existed then).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let (id, _in_flight) = self.request_id();
        let req = pb::DeleteRequest {
            target: None,
            key: key.as_ref().to_vec(),
            request_id: Some(id),
        };
        self.run(Retry::Always, |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).delete(req).await?.into_inner().deleted) }
        })
        .await
    }

    /// One page of `[start, end)` (an empty `end` is unbounded), at most `limit` pairs
    /// (0: the server's page size).
    pub async fn scan_page(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: u32,
        consistency: Consistency,
    ) -> Result<ScanPage> {
        let req = pb::ScanRequest {
            target: None,
            start: start.as_ref().to_vec(),
            end: end.as_ref().to_vec(),
            limit,
            consistency: consistency as i32,
        };
        self.run(Retry::Always, |ch| {
            let req = req.clone();
            async move {
                let r = Self::kv(ch).scan(req).await?.into_inner();
                Ok(ScanPage {
                    kvs: r.kvs,
                    more: r.more,
                })
            }
        })
        .await
    }

    /// Every pair of `[start, end)` in key order, up to `limit` (0: no limit),
    /// fetched page by page.
    pub async fn scan(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let end = end.as_ref().to_vec();
        let mut from = start.as_ref().to_vec();
        let mut out = Vec::new();
        loop {
            let want = if limit == 0 {
                0
            } else {
                (limit - out.len()).min(u32::MAX as usize) as u32
            };
            let page = self
                .scan_page(&from, &end, want, Consistency::Linearizable)
                .await?;
            let more = page.more;
            if let Some(last) = page.kvs.last() {
                from = key_after(&last.key);
            }
            out.extend(page.kvs);
            if !more || (limit != 0 && out.len() >= limit) {
                out.truncate(if limit == 0 { out.len() } else { limit });
                return Ok(out);
            }
        }
    }

    /// Deletes every key of `[start, end)`; returns how many were deleted.
    pub async fn delete_range(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
    ) -> Result<u64> {
        let (id, _in_flight) = self.request_id();
        let req = pb::DeleteRangeRequest {
            target: None,
            start: start.as_ref().to_vec(),
            end: end.as_ref().to_vec(),
            request_id: Some(id),
        };
        self.run(Retry::Always, |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).delete_range(req).await?.into_inner().deleted) }
        })
        .await
    }

    /// Applies `ops` atomically; returns the version they were written at.
    pub async fn batch(&self, ops: Vec<WriteOp>) -> Result<u64> {
        let (id, _in_flight) = self.request_id();
        let req = pb::BatchRequest {
            target: None,
            ops,
            request_id: Some(id),
        };
        self.run(Retry::Always, |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).batch(req).await?.into_inner().version) }
        })
        .await
    }

    /// An etcd-style transaction.
    pub async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> Result<TxnResponse> {
        let (id, _in_flight) = self.request_id();
        let req = pb::TxnRequest {
            target: None,
            compares,
            success,
            failure,
            request_id: Some(id),
        };
        // Retries carry the same request id: the cluster applies the transaction once.
        self.run(Retry::Always, |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).txn(req).await?.into_inner()) }
        })
        .await
    }

    /// Writes `value` under `key` only if the key's version is `expected` (0: absent);
    /// returns `Ok(Some(new_version))` on success, `Ok(None)` if the version differed.
    pub async fn compare_and_put(
        &self,
        key: impl AsRef<[u8]>,
        expected: u64,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<u64>> {
        let key = key.as_ref().to_vec();
        let r = self
            .txn(
                vec![ops::version_is(&key, expected)],
                vec![ops::put(&key, value.as_ref())],
                vec![],
            )
            .await?;
        Ok(r.succeeded.then_some(r.version))
    }

    fn admin(ch: Channel) -> AdminClient<Channel> {
        AdminClient::new(ch)
    }

    /// One call to the node at `addr` only: no redirect, no retry.
    async fn direct<T>(
        addr: &str,
        limit: Duration,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(Error::from_status(addr, s)),
            Err(_) => Err(Error::Unavailable(format!(
                "no answer from {addr} within {limit:?}"
            ))),
        }
    }

    /// The status of the node at `addr` (no redirect).
    pub async fn status_of(&self, addr: &str) -> Result<pb::StatusResponse> {
        let mut admin = Self::admin(self.channel(addr)?);
        Self::direct(
            addr,
            self.inner.opts.request_timeout,
            admin.status(pb::StatusRequest {}),
        )
        .await
    }

    /// The nodes of the cluster.
    pub async fn nodes(&self) -> Result<pb::NodesResponse> {
        self.run(Retry::Always, |ch| async move {
            Ok(Self::admin(ch)
                .nodes(pb::NodesRequest {})
                .await?
                .into_inner())
        })
        .await
    }

    /// Every range: descriptor, leader, approximate size.
    pub async fn ranges(&self) -> Result<pb::RangesResponse> {
        self.run(Retry::Always, |ch| async move {
            Ok(Self::admin(ch)
                .ranges(pb::RangesRequest {})
                .await?
                .into_inner())
        })
        .await
    }

    /// The range holding `key`, and its leader.
    pub async fn range_lookup(&self, key: impl AsRef<[u8]>) -> Result<pb::RangeLookupResponse> {
        let req = pb::RangeLookupRequest {
            key: key.as_ref().to_vec(),
        };
        self.run(Retry::Always, |ch| {
            let req = req.clone();
            async move { Ok(Self::admin(ch).range_lookup(req).await?.into_inner()) }
        })
        .await
    }

    /// Removes a node from the cluster's membership.
    pub async fn remove_node(&self, node_id: u64) -> Result<()> {
        self.run(Retry::IfNotSent, |ch| async move {
            Self::admin(ch)
                .remove_node(pb::RemoveNodeRequest { node_id })
                .await?;
            Ok(())
        })
        .await
    }

    /// Drains the node at `addr` (no redirect): it turns unready, refuses new requests
    /// and hands its leaderships to other nodes. Returns the ranges it still leads.
    pub async fn drain(&self, addr: &str) -> Result<Vec<u64>> {
        let mut admin = Self::admin(self.channel(addr)?);
        let r = Self::direct(
            addr,
            Duration::from_secs(60),
            admin.drain(pb::DrainRequest {}),
        )
        .await?;
        Ok(r.still_leading)
    }

    /// Founds the cluster through the node at `addr`, from it and the peers of its
    /// `--join` list. Refused once the cluster exists.
    pub async fn init(&self, addr: &str) -> Result<pb::InitResponse> {
        let ch = self.channel(addr)?;
        let mut c = Self::admin(ch);
        // Bootstrapping waits for every peer to answer: allow it time.
        let mut req = tonic::Request::new(pb::InitRequest {});
        req.set_timeout(Duration::from_secs(60));
        Self::direct(addr, Duration::from_secs(65), c.init(req)).await
    }
}

fn endpoint(addr: &str, opts: &ClientOptions) -> Result<Endpoint> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri)
        .map(|e| {
            e.connect_timeout(opts.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
        })
        .map_err(|e| Error::InvalidArgument {
            code: "BAD_ADDRESS".into(),
            message: format!("bad node address {addr:?}: {e}"),
        })
}

/// Whether a status without shoal's error details came from the transport (a
/// timeout, a reset or refused stream, an HTTP/2 error) rather than from a node.
fn is_transport_failure(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Cancelled | Code::Unknown | Code::DeadlineExceeded
    ) || std::error::Error::source(s).is_some()
        || s.message().contains("h2 protocol error")
}

/// Whether a status reports that no connection could be made (the request was not
/// sent).
fn is_connect_failure(s: &tonic::Status) -> bool {
    if s.code() != Code::Unavailable {
        return false;
    }
    // tonic reports connection failures with its transport error as the source.
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::TimedOut
            );
        }
        if e.to_string().contains("dns error") {
            return true;
        }
        src = e.source();
    }
    false
}

/// Builders of write ops, txn ops and compares.
pub mod ops {
    use super::pb;
    use pb::txn_op::Op as T;
    use pb::write_op::Op as W;

    fn put_op(key: &[u8], value: &[u8]) -> pb::PutOp {
        pb::PutOp {
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    fn delete_op(key: &[u8]) -> pb::DeleteOp {
        pb::DeleteOp { key: key.to_vec() }
    }

    fn txn(op: T) -> pb::TxnOp {
        pb::TxnOp { op: Some(op) }
    }

    fn write(op: W) -> pb::WriteOp {
        pb::WriteOp { op: Some(op) }
    }

    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> pb::TxnOp {
        txn(T::Put(put_op(key.as_ref(), value.as_ref())))
    }

    pub fn delete(key: impl AsRef<[u8]>) -> pb::TxnOp {
        txn(T::Delete(delete_op(key.as_ref())))
    }

    pub fn get(key: impl AsRef<[u8]>) -> pb::TxnOp {
        txn(T::Get(pb::GetOp {
            key: key.as_ref().to_vec(),
        }))
    }

    pub fn write_put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> pb::WriteOp {
        write(W::Put(put_op(key.as_ref(), value.as_ref())))
    }

    pub fn write_delete(key: impl AsRef<[u8]>) -> pb::WriteOp {
        write(W::Delete(delete_op(key.as_ref())))
    }

    pub fn write_delete_range(start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> pb::WriteOp {
        write(W::DeleteRange(pb::DeleteRangeOp {
            start: start.as_ref().to_vec(),
            end: end.as_ref().to_vec(),
        }))
    }

    fn compare(
        key: &[u8],
        op: pb::compare::Op,
        target: pb::compare::Target,
        operand: pb::compare::Operand,
    ) -> pb::Compare {
        pb::Compare {
            key: key.to_vec(),
            target: target as i32,
            op: op as i32,
            operand: Some(operand),
        }
    }

    /// The key's version is `version` (0: the key is absent).
    pub fn version_is(key: impl AsRef<[u8]>, version: u64) -> pb::Compare {
        compare(
            key.as_ref(),
            pb::compare::Op::Equal,
            pb::compare::Target::Version,
            pb::compare::Operand::Version(version),
        )
    }

    pub fn version_cmp(key: impl AsRef<[u8]>, op: pb::compare::Op, version: u64) -> pb::Compare {
        compare(
            key.as_ref(),
            op,
            pb::compare::Target::Version,
            pb::compare::Operand::Version(version),
        )
    }

    pub fn value_cmp(
        key: impl AsRef<[u8]>,
        op: pb::compare::Op,
        value: impl AsRef<[u8]>,
    ) -> pb::Compare {
        compare(
            key.as_ref(),
            op,
            pb::compare::Target::Value,
            pb::compare::Operand::Value(value.as_ref().to_vec()),
        )
    }

    pub fn exists(key: impl AsRef<[u8]>, exists: bool) -> pb::Compare {
        compare(
            key.as_ref(),
            pb::compare::Op::Equal,
            pb::compare::Target::Exists,
            pb::compare::Operand::Exists(exists),
        )
    }
}
