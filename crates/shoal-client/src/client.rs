//! [`Client`]: connections to a cluster's nodes, and [`Client::run`], which sends one
//! call with redirects, retries and timeouts: the machinery under the KV and admin
//! operations (`kv.rs`, `admin.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::reserve::SharedReserve;
use shoal_proto::v1 as pb;
use shoal_proto::v1::admin_client::AdminClient;
use shoal_proto::v1::kv_client::KvClient;
use shoal_proto::v1::txn_client::TxnClient;
use tonic::transport::{Channel, Endpoint};

use crate::password::{Authorize, Conn, Credentials};

use crate::cache::{CachedRange, RangeCache};
use crate::error::Error;
use crate::retry::{decide, Backoff, Decision, RequestIds};
use crate::tls::ClientTls;
use crate::Result;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time limit of one attempt (also sent to the node as the call's deadline).
    pub request_timeout: Duration,
    /// Time limit of a call, retries included.
    pub retry_deadline: Duration,
    /// First backoff between attempts; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Time limit to open a connection.
    pub connect_timeout: Duration,
    /// TLS to the nodes (a secure cluster); `None`: plaintext (an insecure one).
    pub tls: Option<ClientTls>,
    /// A user's name and password, for a client of a secure cluster without a
    /// certificate (TLS required).
    pub credentials: Option<Credentials>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_secs(20),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            tls: None,
            credentials: None,
        }
    }
}

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and writes with a request id: any transient failure.
    Always,
    /// Only when the attempt certainly did not apply.
    IfNotApplied,
}

/// Where a request goes: any node (cluster-wide calls), or the range holding a key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route<'a> {
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

impl<'a> Route<'a> {
    pub(crate) fn key(key: &'a [u8]) -> Self {
        Route::Key {
            key,
            before: false,
            any_replica: false,
        }
    }
}

/// How an attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The node's (or the transport's) status.
    Status(tonic::Status),
    /// The client's own refusal, before sending (final).
    Refused(Error),
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::Status(s)
    }
}

/// Redirects taken at once before the client backs off (the hints may be stale).
const MAX_QUICK_REDIRECTS: u32 = 3;
/// Re-routes with fresh descriptors taken at once before the client backs off.
const MAX_QUICK_REROUTES: u32 = 5;
/// How long a node address that refused a connection is routed around.
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// What the committer of batches across ranges (`across.rs`) is handed.
pub(crate) enum Finishing {
    /// A transaction's locks to commit.
    Commit(pb::FinishTxn),
    /// Answered once everything handed before is sent.
    Flush(tokio::sync::oneshot::Sender<()>),
}

pub(crate) struct Inner {
    seeds: Vec<String>,
    pub(crate) opts: ClientOptions,
    /// The credentials each call carries, if any.
    authorize: Authorize,
    channels: Mutex<HashMap<String, Channel>>,
    /// The address believed to lead, learned from `NOT_LEADER` details.
    leader: Mutex<Option<String>>,
    next_seed: Mutex<usize>,
    pub(crate) ids: Arc<RequestIds>,
    pub(crate) cache: RangeCache,
    /// Node addresses a connection to which failed lately, and when: a client outside
    /// the cluster (through a Service or published ports) cannot reach the addresses
    /// the nodes advertise, and goes through its seeds instead.
    unreachable: Mutex<HashMap<String, Instant>>,
    /// Unique timestamps for batches across ranges (see `across.rs`).
    pub(crate) reserve: SharedReserve,
    /// Sends the commits of batches across ranges in the background (started with
    /// the first).
    pub(crate) committer: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Finishing>>,
}

/// A connection to a shoal cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("seeds", &self.inner.seeds)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn endpoint(addr: &str, opts: &ClientOptions) -> Result<Endpoint> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else if opts.tls.is_some() {
        format!("https://{addr}")
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
        if opts.credentials.is_some() && opts.tls.is_none() {
            return Err(crate::password::needs_tls());
        }
        let authorize = Authorize::of(opts.credentials.as_ref());
        Ok(Self {
            inner: Arc::new(Inner {
                seeds,
                opts,
                authorize,
                channels: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
                next_seed: Mutex::new(0),
                ids: RequestIds::new(),
                cache: RangeCache::default(),
                unreachable: Mutex::new(HashMap::new()),
                reserve: SharedReserve::default(),
                committer: std::sync::OnceLock::new(),
            }),
        })
    }

    pub(crate) fn channel(&self, addr: &str) -> Result<Conn> {
        let mut map = lock(&self.inner.channels);
        let authorize = self.inner.authorize.clone();
        if let Some(c) = map.get(addr) {
            return Ok(Conn::new(c.clone(), authorize));
        }
        let e = endpoint(addr, &self.inner.opts)?;
        let c = match &self.inner.opts.tls {
            Some(tls) => tls.connect_lazy(&e),
            None => e.connect_lazy(),
        };
        map.insert(addr.to_string(), c.clone());
        Ok(Conn::new(c, authorize))
    }

    pub(crate) fn kv(ch: Conn) -> KvClient<Conn> {
        KvClient::new(ch)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    pub(crate) fn admin(ch: Conn) -> AdminClient<Conn> {
        AdminClient::new(ch)
    }

    pub(crate) fn txn_service(ch: Conn) -> TxnClient<Conn> {
        TxnClient::new(ch)
    }

    /// `msg` as a request with this client's attempt deadline, so the node answers
    /// (with a code) before the client gives up on the attempt.
    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.inner.opts.request_timeout);
        r
    }

    /// The address to try next: the known leader, else the seeds in turn.
    fn target(&self) -> String {
        if let Some(l) = lock(&self.inner.leader).clone() {
            return l;
        }
        let mut i = lock(&self.inner.next_seed);
        let a = self.inner.seeds[*i % self.inner.seeds.len()].clone();
        *i += 1;
        a
    }

    fn set_leader(&self, addr: Option<String>) {
        *lock(&self.inner.leader) = addr;
    }

    /// The range for `key` (`before`: the keys just before it), from the cache or
    /// looked up.
    pub(crate) async fn locate(&self, key: &[u8], before: bool) -> Result<CachedRange> {
        if let Some(c) = self.inner.cache.get(key, before) {
            return Ok(c);
        }
        let req = pb::RangeLookupRequest {
            key: key.to_vec(),
            before,
        };
        let r = self
            .run(Route::Any, Retry::Always, |ch, _| {
                let req = self.request(req.clone());
                async move { Ok(Self::admin(ch).range_lookup(req).await?.into_inner()) }
            })
            .await?;
        let desc = r.descriptor.ok_or_else(|| {
            Error::Unavailable("range lookup answered without a descriptor".into())
        })?;
        let leader = (!r.leader_addr.is_empty()).then_some(r.leader_addr);
        Ok(self.inner.cache.insert(desc, leader))
    }

    /// The address to send a request for range `c` to: its leader, else a replica.
    /// Addresses that failed to connect lately are skipped; with none left, a seed
    /// (whose node forwards writes to the leader and serves reads itself): then
    /// `true`.
    fn range_addr(&self, c: &CachedRange) -> (String, bool) {
        let unreachable = lock(&self.inner.unreachable);
        let reachable = |a: &str| {
            unreachable
                .get(a)
                .is_none_or(|t| t.elapsed() >= UNREACHABLE_FOR)
        };
        if let Some(l) = c.leader.as_deref().filter(|l| reachable(l)) {
            return (l.to_string(), false);
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
            return (self.target(), true);
        }
        (
            addrs[rand::random::<u32>() as usize % addrs.len()].clone(),
            false,
        )
    }

    /// Runs `call` against the cluster with redirects, retries and timeouts. With a
    /// keyed route, `call` gets the range it is sent to, to name it in the request.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        route: Route<'_>,
        retry: Retry,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut(Conn, Option<CachedRange>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let opts = &self.inner.opts;
        let deadline = Instant::now() + opts.retry_deadline;
        let mut backoff = Backoff::new(opts.initial_backoff, opts.max_backoff);
        let mut last: Option<Error> = None;
        let (mut redirects, mut reroutes) = (0, 0);
        // A stale read goes to the node reached first until a node says it does not
        // hold the range.
        let mut seed_first = matches!(
            route,
            Route::Key {
                any_replica: true,
                ..
            }
        );
        while Instant::now() < deadline || last.is_none() {
            // `by_seed`: a keyed request sent to a seed, for want of a reachable
            // replica's address.
            let (addr, range, by_seed) = match route {
                Route::Any => (self.target(), None, false),
                Route::Key { key, before, .. } => match Box::pin(self.locate(key, before)).await {
                    Ok(c) if seed_first => (self.target(), Some(c), false),
                    Ok(c) => {
                        let (addr, by_seed) = self.range_addr(&c);
                        (addr, Some(c), by_seed)
                    }
                    Err(e) if e.is_refusal() => return Err(e),
                    Err(e) => {
                        last = Some(e);
                        tokio::time::sleep(backoff.pause(deadline)).await;
                        continue;
                    }
                },
            };
            let range_id = range.as_ref().map(|c| c.desc.range_id);
            let ch = self.channel(&addr)?;
            let (status, timed_out) =
                match tokio::time::timeout(opts.request_timeout, call(ch, range)).await {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(Failure::Refused(e))) => return Err(e),
                    Ok(Err(Failure::Status(s))) => (s, false),
                    Err(_) => (
                        tonic::Status::deadline_exceeded(format!(
                            "no answer from {addr} within {:?}",
                            opts.request_timeout
                        )),
                        true,
                    ),
                };
            let decision = decide(&status, timed_out, range_id.is_some());
            let forget_leader = || match range_id {
                Some(id) => self.inner.cache.set_leader(id, None),
                None => self.set_leader(None),
            };
            let err = Error::from_status(&addr, status);
            if by_seed
                && matches!(
                    decision,
                    Decision::Redirect { .. } | Decision::Reroute { .. }
                )
            {
                // That seed's node cannot serve the range (a follower that does not
                // forward this call, or a node without a replica): the next try goes
                // to the next seed, not to the same one again.
                self.set_leader(None);
            }
            // TLS refused at an address this client was given: its certificates or
            // the node's are wrong, and no retry mends that. At an address a node
            // named (a leader, a replica), it is routed around like an unreachable
            // one: a client outside may not be able to check every name there.
            if matches!(err, Error::Tls { .. }) && self.inner.seeds.contains(&addr) {
                return Err(err);
            }
            match decision {
                Decision::Fail => return Err(err),
                Decision::Redirect { leader } => {
                    let known = leader.is_some() && leader.as_deref() != Some(addr.as_str());
                    match range_id {
                        Some(id) => self.inner.cache.set_leader(id, leader),
                        None => self.set_leader(leader),
                    }
                    redirects += 1;
                    last = Some(err);
                    if known && redirects <= MAX_QUICK_REDIRECTS {
                        continue;
                    }
                }
                Decision::Reroute { current } => {
                    // Stale routing: refresh the cache from the details (or drop the
                    // range and look it up again), then retry at once a few times.
                    seed_first = false;
                    if let Some(id) = range_id {
                        self.inner.cache.evict(id);
                    }
                    for desc in current {
                        self.inner.cache.insert(desc, None);
                    }
                    reroutes += 1;
                    last = Some(err);
                    if reroutes <= MAX_QUICK_REROUTES {
                        continue;
                    }
                }
                Decision::Retry { unreachable } => {
                    forget_leader();
                    if unreachable && (range_id.is_some() || matches!(err, Error::Tls { .. })) {
                        lock(&self.inner.unreachable).insert(addr.clone(), Instant::now());
                    }
                    last = Some(err);
                }
                Decision::RetryIfIdempotent => {
                    forget_leader();
                    if retry == Retry::IfNotApplied {
                        return Err(Error::OutcomeUnknown(err.to_string()));
                    }
                    last = Some(err);
                }
            }
            let pause = backoff.pause(deadline);
            tracing::debug!(%addr, ?pause, "retrying");
            tokio::time::sleep(pause).await;
        }
        match last {
            Some(e @ Error::Tls { .. }) => Err(e),
            last => Err(Error::Unavailable(format!(
                "gave up after {:?}: {}",
                opts.retry_deadline,
                last.map(|e| e.to_string()).unwrap_or_default()
            ))),
        }
    }

    /// One call to the node at `addr` only: no redirect, no retry.
    pub(crate) async fn direct<T>(
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
}
