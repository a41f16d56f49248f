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
//! Routing: the client keeps a cache of range descriptors, filled by `RangeLookup`
//! and refreshed from the descriptors a node sends with `EPOCH_MISMATCH` and
//! `KEY_NOT_IN_RANGE`. Each keyed request names its range (`RangeTarget`) and goes to
//! that range's leader when known. Scans and delete-ranges that cross range
//! boundaries are sent range by range and stitched in key order; a batch or a
//! transaction must stay within one range (`CROSS_RANGE` otherwise).
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
    /// Range cache: start key -> descriptor and leader address.
    ranges: Mutex<std::collections::BTreeMap<Vec<u8>, CachedRange>>,
    /// Node addresses a connection to which failed lately, and when: a client outside
    /// the cluster (through a Service or published ports) cannot reach the addresses
    /// the nodes advertise, and goes through its seeds instead.
    unreachable: Mutex<HashMap<String, Instant>>,
}

/// How long a node address that refused a connection is routed around.
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// A range as the client's cache knows it.
#[derive(Debug, Clone)]
struct CachedRange {
    /// Shared: every request routed through the cache takes a copy of its entry.
    desc: Arc<pb::RangeDescriptor>,
    leader: Option<String>,
}

impl CachedRange {
    fn target(&self) -> pb::RangeTarget {
        pb::RangeTarget {
            range_id: self.desc.range_id,
            epoch: self.desc.epoch,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= self.desc.start.as_slice()
            && (self.desc.end.is_empty() || key < self.desc.end.as_slice())
    }

    /// Whether the range holds the keys just before `end` (empty: the last range).
    fn holds_before(&self, end: &[u8]) -> bool {
        if end.is_empty() {
            return self.desc.end.is_empty();
        }
        self.desc.start.as_slice() < end
            && (self.desc.end.is_empty() || end <= self.desc.end.as_slice())
    }
}

/// Where a request goes: any node (cluster-wide calls), or the range holding a key.
#[derive(Debug, Clone, Copy)]
enum Route<'a> {
    Any,
    /// The range holding the key (`before`: the keys just before it). With
    /// `any_replica` (a stale read) the node the client reaches first is asked before
    /// the range's leader: it serves from its own replica, even cut off from the rest.
    Key {
        key: &'a [u8],
        before: bool,
        any_replica: bool,
    },
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
    /// More pairs may remain: continue from `resume_key`.
    pub more: bool,
    /// Where the next page starts (with a descending scan: where it ends).
    pub resume_key: Vec<u8>,
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
                ranges: Mutex::new(std::collections::BTreeMap::new()),
                unreachable: Mutex::new(HashMap::new()),
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

    /// The cached range for `route`, if any.
    fn cached(&self, key: &[u8], before: bool) -> Option<CachedRange> {
        use std::ops::Bound;
        let map = self.inner.ranges.lock().unwrap_or_else(|p| p.into_inner());
        let upto = match (before, key.is_empty()) {
            (false, _) => Bound::Included(key),
            (true, false) => Bound::Excluded(key),
            (true, true) => Bound::Unbounded,
        };
        map.range::<[u8], _>((Bound::Unbounded, upto))
            .next_back()
            .map(|(_, c)| c)
            .filter(|c| {
                if before {
                    c.holds_before(key)
                } else {
                    c.contains(key)
                }
            })
            .cloned()
    }

    /// Records `desc` in the range cache, dropping the entries it overlaps.
    fn cache_range(&self, desc: pb::RangeDescriptor, leader: Option<String>) {
        let mut map = self.inner.ranges.lock().unwrap_or_else(|p| p.into_inner());
        let overlaps = |c: &CachedRange| {
            (c.desc.end.is_empty() || desc.start < c.desc.end)
                && (desc.end.is_empty() || desc.end > c.desc.start)
        };
        // A cached entry with a newer epoch of the same range wins (late details).
        if map.values().any(|c| {
            c.desc.range_id == desc.range_id
                && c.desc.epoch.map_or(0, |e| e.version) > desc.epoch.map_or(0, |e| e.version)
        }) {
            return;
        }
        map.retain(|_, c| !overlaps(c));
        map.insert(
            desc.start.clone(),
            CachedRange {
                desc: Arc::new(desc),
                leader,
            },
        );
    }

    fn evict_range(&self, range_id: u64) {
        self.inner
            .ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| c.desc.range_id != range_id);
    }

    fn set_range_leader(&self, range_id: u64, leader: Option<String>) {
        let mut map = self.inner.ranges.lock().unwrap_or_else(|p| p.into_inner());
        for c in map.values_mut() {
            if c.desc.range_id == range_id {
                c.leader = leader.clone();
            }
        }
    }

    /// The range for `key` (`before`: the keys just before it), from the cache or
    /// looked up.
    async fn locate(&self, key: &[u8], before: bool) -> Result<CachedRange> {
        if let Some(c) = self.cached(key, before) {
            return Ok(c);
        }
        let req = pb::RangeLookupRequest {
            key: key.to_vec(),
            before,
        };
        let r = self
            .run(Route::Any, Retry::Always, |ch, _| {
                let req = req.clone();
                async move { Ok(Self::admin(ch).range_lookup(req).await?.into_inner()) }
            })
            .await?;
        let desc = r.descriptor.ok_or_else(|| {
            Error::Unavailable("range lookup answered without a descriptor".into())
        })?;
        let leader = (!r.leader_addr.is_empty()).then_some(r.leader_addr);
        self.cache_range(desc.clone(), leader.clone());
        Ok(CachedRange {
            desc: Arc::new(desc),
            leader,
        })
    }

    /// The address to send a request for range `c` to: its leader, else a replica.
    /// Addresses that failed to connect lately are skipped; with none left, a seed
    /// (whose node forwards writes to the leader and serves reads itself).
    fn range_addr(&self, c: &CachedRange) -> String {
        let unreachable = self
            .inner
            .unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let reachable = |a: &str| {
            unreachable
                .get(a)
                .is_none_or(|t| t.elapsed() >= UNREACHABLE_FOR)
        };
        if let Some(l) = c.leader.as_deref().filter(|l| reachable(l)) {
            return l.to_string();
        }
        let addrs: Vec<&String> = c
            .desc
            .replicas
            .iter()
            .map(|r| &r.addr)
            .filter(|a| !a.is_empty() && reachable(a))
            .collect();
        drop(unreachable);
        if addrs.is_empty() {
            return self.target();
        }
        addrs[rand::random::<u32>() as usize % addrs.len()].clone()
    }

    /// Runs `call` against the cluster with redirects, retries and timeouts. With a
    /// keyed route, `call` gets the range it is sent to, to name it in the request.
    async fn run<T, F, Fut>(&self, route: Route<'_>, retry: Retry, mut call: F) -> Result<T>
    where
        F: FnMut(Channel, Option<CachedRange>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let opts = &self.inner.opts;
        let deadline = Instant::now() + opts.retry_deadline;
        let mut backoff = opts.initial_backoff;
        let mut last: Option<Error>;
        // Redirects taken without a pause; past a few, hints may be stale: back off.
        let mut redirects = 0;
        // A stale read goes to the node reached first until a node says it does not
        // hold the range.
        let mut seed_first = matches!(
            route,
            Route::Key {
                any_replica: true,
                ..
            }
        );
        loop {
            let (addr, range) = match route {
                Route::Any => (self.target(), None),
                Route::Key { key, before, .. } => match Box::pin(self.locate(key, before)).await {
                    Ok(c) if seed_first => (self.target(), Some(c)),
                    Ok(c) => (self.range_addr(&c), Some(c)),
                    Err(e @ Error::InvalidArgument { .. }) => return Err(e),
                    Err(e) => {
                        last = Some(e);
                        if Instant::now() >= deadline {
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(opts.max_backoff);
                        continue;
                    }
                },
            };
            let range_id = range.as_ref().map(|c| c.desc.range_id);
            let attempt = match self.channel(&addr) {
                Ok(ch) => match tokio::time::timeout(opts.request_timeout, call(ch, range)).await {
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
            let forget_leader = |c: &Self| match range_id {
                Some(id) => c.set_range_leader(id, None),
                None => c.set_leader(None),
            };
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
                    match range_id {
                        Some(id) => self.set_range_leader(id, leader),
                        None => self.set_leader(leader),
                    }
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
                codes::EPOCH_MISMATCH | codes::KEY_NOT_IN_RANGE | codes::RANGE_NOT_FOUND
                    if range_id.is_some() =>
                {
                    // Stale routing: refresh the cache from the details (or drop the
                    // range and look it up again), then retry at once a few times.
                    seed_first = false;
                    if let Some(id) = range_id {
                        self.evict_range(id);
                    }
                    if let Some(pb::error_detail::Detail::EpochMismatch(em)) =
                        d.as_ref().and_then(|d| d.detail.clone())
                    {
                        for desc in em.current {
                            self.cache_range(desc, None);
                        }
                    }
                    redirects += 1;
                    if redirects <= 5 {
                        last = Some(Error::from_status(&addr, status));
                        if Instant::now() >= deadline {
                            break;
                        }
                        continue;
                    }
                    true
                }
                codes::NOT_INITIALIZED
                | codes::SHUTTING_DOWN
                | codes::NO_QUORUM
                | codes::RANGE_OVERLAP => {
                    forget_leader(self);
                    true
                }
                codes::OUTCOME_UNKNOWN => {
                    forget_leader(self);
                    false
                }
                "" if !timed_out && is_connect_failure(&status) => {
                    forget_leader(self);
                    if range_id.is_some() {
                        self.inner
                            .unreachable
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(addr.clone(), Instant::now());
                    }
                    true
                }
                // No answer from shoal: the request timed out, or the connection failed
                // under it (reset, HTTP/2 error); it may or may not have been applied.
                "" if timed_out || is_transport_failure(&status) => {
                    forget_leader(self);
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

    fn key_route(key: &[u8]) -> Route<'_> {
        Route::Key {
            key,
            before: false,
            any_replica: false,
        }
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
        let key = key.as_ref().to_vec();
        let route = Route::Key {
            key: &key,
            before: false,
            any_replica: consistency == Consistency::Stale,
        };
        self.run(route, Retry::Always, |ch, c| {
            let req = pb::GetRequest {
                target: c.map(|c| c.target()),
                key: key.clone(),
                consistency: consistency as i32,
            };
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
        let (key, value) = (key.as_ref().to_vec(), value.as_ref().to_vec());
        self.run(Self::key_route(&key), Retry::Always, |ch, c| {
            let req = pb::PutRequest {
                target: c.map(|c| c.target()),
                key: key.clone(),
                value: value.clone(),
                request_id: Some(id),
            };
            async move { Ok(Self::kv(ch).put(req).await?.into_inner().version) }
        })
        .await
    }

    /// Deletes `key`; returns whether it existed (on a retried attempt, whether it
    /// still existed then).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let (id, _in_flight) = self.request_id();
        let key = key.as_ref().to_vec();
        self.run(Self::key_route(&key), Retry::Always, |ch, c| {
            let req = pb::DeleteRequest {
                target: c.map(|c| c.target()),
                key: key.clone(),
                request_id: Some(id),
            };
            async move { Ok(Self::kv(ch).delete(req).await?.into_inner().deleted) }
        })
        .await
    }

    /// One page of `[start, end)` (an empty `end` is unbounded), at most `limit` pairs
    /// (0: the server's page size), from one range: `more` and `resume_key` tell
    /// where to go on. With `reverse`, in descending order from the end.
    pub async fn scan_page_with(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: u32,
        consistency: Consistency,
        reverse: bool,
    ) -> Result<ScanPage> {
        let (start, end) = (start.as_ref().to_vec(), end.as_ref().to_vec());
        let route = Route::Key {
            key: if reverse { &end } else { &start },
            before: reverse,
            any_replica: consistency == Consistency::Stale,
        };
        self.run(route, Retry::Always, |ch, c| {
            let req = pb::ScanRequest {
                target: c.map(|c| c.target()),
                start: start.clone(),
                end: end.clone(),
                limit,
                consistency: consistency as i32,
                reverse,
            };
            async move {
                let r = Self::kv(ch).scan(req).await?.into_inner();
                Ok(ScanPage {
                    kvs: r.kvs,
                    more: r.more,
                    resume_key: r.resume_key,
                })
            }
        })
        .await
    }

    /// One page of `[start, end)` in key order (see [`Client::scan_page_with`]).
    pub async fn scan_page(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: u32,
        consistency: Consistency,
    ) -> Result<ScanPage> {
        self.scan_page_with(start, end, limit, consistency, false)
            .await
    }

    /// Every pair of `[start, end)` in key order, up to `limit` (0: no limit),
    /// fetched page by page and range by range.
    pub async fn scan(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        self.scan_with(start, end, limit, Consistency::Linearizable, false)
            .await
    }

    /// As [`Client::scan`], with a consistency and, with `reverse`, in descending key
    /// order (the last `limit` pairs of the span, last first).
    pub async fn scan_with(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: usize,
        consistency: Consistency,
        reverse: bool,
    ) -> Result<Vec<KeyValue>> {
        let (mut lo, mut hi) = (start.as_ref().to_vec(), end.as_ref().to_vec());
        let mut out = Vec::new();
        loop {
            let want = if limit == 0 {
                0
            } else {
                (limit - out.len()).min(u32::MAX as usize) as u32
            };
            let page = self
                .scan_page_with(&lo, &hi, want, consistency, reverse)
                .await?;
            out.extend(page.kvs);
            if limit != 0 && out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            if !page.more {
                return Ok(out);
            }
            if reverse {
                hi = page.resume_key;
                if hi.as_slice() <= lo.as_slice() {
                    return Ok(out);
                }
            } else {
                lo = page.resume_key;
                if !hi.is_empty() && lo >= hi {
                    return Ok(out);
                }
            }
        }
    }

    /// Deletes every key of `[start, end)`; returns how many were deleted. Each range
    /// the span crosses deletes its part atomically; the parts apply one after the
    /// other.
    pub async fn delete_range(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
    ) -> Result<u64> {
        let end = end.as_ref().to_vec();
        let mut lo = start.as_ref().to_vec();
        let mut total = 0;
        loop {
            let (id, _in_flight) = self.request_id();
            // The part in the range holding `lo`, as routed on each attempt.
            let reached = std::sync::Arc::new(Mutex::new(Vec::new()));
            let deleted = self
                .run(Self::key_route(&lo), Retry::Always, |ch, c| {
                    let part_end = match &c {
                        Some(c)
                            if !c.desc.end.is_empty() && (end.is_empty() || c.desc.end < end) =>
                        {
                            c.desc.end.clone()
                        }
                        _ => end.clone(),
                    };
                    *reached.lock().unwrap_or_else(|p| p.into_inner()) = part_end.clone();
                    let req = pb::DeleteRangeRequest {
                        target: c.map(|c| c.target()),
                        start: lo.clone(),
                        end: part_end,
                        request_id: Some(id),
                    };
                    async move { Ok(Self::kv(ch).delete_range(req).await?.into_inner().deleted) }
                })
                .await?;
            total += deleted;
            let part_end = reached.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if part_end == end || part_end.is_empty() {
                return Ok(total);
            }
            lo = part_end;
        }
    }

    /// Refuses a request whose keys fall in more than one range of `c`.
    fn one_range(c: &Option<CachedRange>, keys: &[Vec<u8>]) -> Result<(), tonic::Status> {
        let Some(c) = c else { return Ok(()) };
        if keys.iter().all(|k| c.contains(k)) {
            return Ok(());
        }
        Err(shoal_proto::error::status(
            Code::InvalidArgument,
            codes::CROSS_RANGE,
            format!(
                "the keys fall in more than one range (range {} holds only part of them): a batch or transaction must stay within one range",
                c.desc.range_id
            ),
            None,
        ))
    }

    /// Applies `ops` atomically; returns the version they were written at. Every key
    /// must be in one range.
    pub async fn batch(&self, ops: Vec<WriteOp>) -> Result<u64> {
        let (id, _in_flight) = self.request_id();
        let keys: Vec<Vec<u8>> = ops.iter().filter_map(write_op_key).collect();
        let first = keys.first().cloned().unwrap_or_default();
        self.run(Self::key_route(&first), Retry::Always, |ch, c| {
            let check = Self::one_range(&c, &keys);
            let req = pb::BatchRequest {
                target: c.map(|c| c.target()),
                ops: ops.clone(),
                request_id: Some(id),
            };
            async move {
                check?;
                Ok(Self::kv(ch).batch(req).await?.into_inner().version)
            }
        })
        .await
    }

    /// An etcd-style transaction. Every key must be in one range.
    pub async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> Result<TxnResponse> {
        let (id, _in_flight) = self.request_id();
        let keys: Vec<Vec<u8>> = compares
            .iter()
            .map(|c| c.key.clone())
            .chain(success.iter().chain(failure.iter()).filter_map(txn_op_key))
            .collect();
        let first = keys.first().cloned().unwrap_or_default();
        // Retries carry the same request id: the cluster applies the transaction once.
        self.run(Self::key_route(&first), Retry::Always, |ch, c| {
            let check = Self::one_range(&c, &keys);
            let req = pb::TxnRequest {
                target: c.map(|c| c.target()),
                compares: compares.clone(),
                success: success.clone(),
                failure: failure.clone(),
                request_id: Some(id),
            };
            async move {
                check?;
                Ok(Self::kv(ch).txn(req).await?.into_inner())
            }
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
        self.run(Route::Any, Retry::Always, |ch, _| async move {
            Ok(Self::admin(ch)
                .nodes(pb::NodesRequest {})
                .await?
                .into_inner())
        })
        .await
    }

    /// Every range: descriptor, leader, approximate size.
    pub async fn ranges(&self) -> Result<pb::RangesResponse> {
        self.run(Route::Any, Retry::Always, |ch, _| async move {
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
            before: false,
        };
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = req.clone();
            async move { Ok(Self::admin(ch).range_lookup(req).await?.into_inner()) }
        })
        .await
    }

    /// Splits the range holding `key` at `key`; returns both halves.
    pub async fn split_range(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<(pb::RangeDescriptor, pb::RangeDescriptor)> {
        let key = key.as_ref().to_vec();
        let r = self
            .run(Self::key_route(&key), Retry::Always, |ch, _| {
                let req = pb::SplitRangeRequest { key: key.clone() };
                async move { Ok(Self::admin(ch).split_range(req).await?.into_inner()) }
            })
            .await?;
        for d in [&r.left, &r.right].into_iter().flatten() {
            self.cache_range(d.clone(), None);
        }
        match (r.left, r.right) {
            (Some(l), Some(r)) => Ok((l, r)),
            _ => Err(Error::Unavailable(
                "split answered without descriptors".into(),
            )),
        }
    }

    /// Removes a node from the cluster's membership.
    pub async fn remove_node(&self, node_id: u64) -> Result<()> {
        self.run(Route::Any, Retry::IfNotSent, |ch, _| async move {
            Self::admin(ch)
                .remove_node(pb::RemoveNodeRequest { node_id })
                .await?;
            Ok(())
        })
        .await
    }

    /// Marks a node decommissioning: its replicas move to other live nodes. Idempotent;
    /// answers how many replicas (the meta range's aside) it still holds, so calling
    /// it again reports progress.
    pub async fn decommission(&self, node_id: u64) -> Result<u64> {
        self.run(Route::Any, Retry::Always, |ch, _| async move {
            Ok(Self::admin(ch)
                .decommission(pb::DecommissionRequest { node_id })
                .await?
                .into_inner()
                .replicas)
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

fn write_op_key(op: &WriteOp) -> Option<Vec<u8>> {
    use pb::write_op::Op;
    match op.op.as_ref()? {
        Op::Put(p) => Some(p.key.clone()),
        Op::Delete(d) => Some(d.key.clone()),
        Op::DeleteRange(d) => Some(d.start.clone()),
    }
}

fn txn_op_key(op: &TxnOp) -> Option<Vec<u8>> {
    use pb::txn_op::Op;
    match op.op.as_ref()? {
        Op::Put(p) => Some(p.key.clone()),
        Op::Delete(d) => Some(d.key.clone()),
        Op::DeleteRange(d) => Some(d.start.clone()),
        Op::Get(g) => Some(g.key.clone()),
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
