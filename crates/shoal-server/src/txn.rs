//! The public `Txn` gRPC service: transactions across ranges, coordinated by this
//! node for its clients, and the cluster's timestamps.
//!
//! `Begin` opens a [`Transaction`] under a random handle in this node's table; the
//! calls naming the handle run one at a time on it (reads through [`NodeRanges`] at
//! its start timestamp, writes buffered); `Commit` runs the protocol
//! (`shoal_txn::coordinator`). A transaction open longer than its lifetime (half of
//! `--gc-ttl`, so its snapshot is never collected under it) is rolled back
//! (`TXN_EXPIRED`). An ended transaction leaves the table of open ones at once (at
//! most 10,000 are open on a node), and is remembered for a minute (`TXN_CLOSED`,
//! `TXN_EXPIRED`); a node that restarted knows none (`TXN_NOT_FOUND`). Before commit nothing of a
//! transaction is in the cluster, so a lost handle leaves nothing behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::error::ErrorCode;
use shoal_proto::v1::{self as pb, txn_server::Txn};
use shoal_txn::coordinator::{Limits as TxnLimits, Options, State};
use shoal_txn::ranges::Read;
use shoal_txn::{Isolation, Ranges, Transaction};
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::steps::NodeRanges;
use crate::validate::Limits;

/// Most keys a transaction may write (and spans it may read).
pub const MAX_TXN_KEYS: usize = 10_000;
/// Most transactions open at once on one node.
const MAX_OPEN: usize = 10_000;
/// How long the node remembers a transaction after it ended (so late calls hear
/// `TXN_CLOSED` or `TXN_EXPIRED` rather than `TXN_NOT_FOUND`), and how many at most.
const REMEMBER_FOR: Duration = Duration::from_secs(60);
const MAX_REMEMBERED: usize = 100_000;

struct Open {
    txn: Transaction,
    begun: Instant,
}

/// How a transaction ended, as the node remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Committed, rolled back, or of unknown outcome (its state's name).
    Closed(&'static str),
    /// Rolled back for outliving its lifetime.
    Expired,
}

/// The open transactions by handle, and those ended lately.
#[derive(Default)]
struct Table {
    open: HashMap<u64, Arc<tokio::sync::Mutex<Open>>>,
    ended: HashMap<u64, (Ended, Instant)>,
}

impl Table {
    fn end(&mut self, handle: u64, how: Ended) {
        self.open.remove(&handle);
        if self.ended.len() >= MAX_REMEMBERED {
            self.ended.retain(|_, (_, at)| at.elapsed() < REMEMBER_FOR);
            if self.ended.len() >= MAX_REMEMBERED {
                self.ended.clear();
            }
        }
        self.ended.insert(handle, (how, Instant::now()));
    }

    /// Ends the open transactions past `lifetime` that no call holds.
    fn sweep(&mut self, lifetime: Duration) {
        let expired: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, e)| e.try_lock().is_ok_and(|o| o.begun.elapsed() > lifetime))
            .map(|(h, _)| *h)
            .collect();
        for h in expired {
            self.end(h, Ended::Expired);
        }
    }
}

pub struct TxnService {
    node: Arc<Node>,
    clock: Clock,
    ranges: Arc<dyn Ranges>,
    limits: Limits,
    txn_limits: TxnLimits,
    lifetime: Duration,
    table: Mutex<Table>,
}

fn table(m: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn txn_error(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::Txn {
        code,
        message: message.into(),
    }
}

fn kv(r: Read) -> pb::KeyValue {
    pb::KeyValue {
        key: r.key,
        value: r.value,
        version: r.version,
    }
}

/// The most a transaction may hold on a node of `cfg`. Each range's prewrite is one
/// command: room is left for its framing besides the keys and values.
pub fn txn_limits(cfg: &NodeConfig) -> TxnLimits {
    TxnLimits {
        max_keys: MAX_TXN_KEYS,
        max_bytes: cfg.max_request_bytes / 4 * 3,
    }
}

/// The longest a transaction may stay open under `gc_ttl`: half of it, so its
/// snapshot stays above the garbage collection's safe point.
pub fn lifetime(gc_ttl: Duration) -> Duration {
    gc_ttl / 2
}

impl TxnService {
    pub fn new(node: Arc<Node>, clock: Clock, ranges: NodeRanges) -> Self {
        let limits = Limits::of(&node.cfg);
        let txn_limits = txn_limits(&node.cfg);
        let lifetime = lifetime(node.cfg.gc_ttl);
        Self {
            node,
            clock,
            ranges: Arc::new(ranges),
            limits,
            txn_limits,
            lifetime,
            table: Mutex::new(Table::default()),
        }
    }

    fn expired(&self, handle: u64) -> Error {
        txn_error(
            ErrorCode::TxnExpired,
            format!(
                "transaction {handle} was open longer than {:?} (half of --gc-ttl) and is rolled back",
                self.lifetime
            ),
        )
    }

    /// The transaction named `handle`, locked for one call; rolled back and refused
    /// once past its lifetime. A call that ends it (commit, rollback, a refusal that
    /// rolls it back) moves it to the ended ones.
    async fn with<T>(
        &self,
        handle: u64,
        call: impl AsyncFnOnce(&mut Transaction) -> Result<T>,
    ) -> Result<T> {
        self.node.check_serving()?;
        let entry = {
            let t = table(&self.table);
            match (t.open.get(&handle), t.ended.get(&handle)) {
                (Some(e), _) => e.clone(),
                (None, Some((Ended::Expired, _))) => return Err(self.expired(handle)),
                (None, Some((Ended::Closed(state), _))) => {
                    return Err(txn_error(
                        ErrorCode::TxnClosed,
                        format!("transaction {handle} is {state}: it takes no more calls"),
                    ))
                }
                (None, None) => {
                    return Err(txn_error(
                        ErrorCode::TxnNotFound,
                        format!(
                            "no transaction {handle} on node {}: it was begun elsewhere, or the node restarted since (begin it again)",
                            self.node.node_id()
                        ),
                    ))
                }
            }
        };
        let mut open = entry.lock().await;
        if open.txn.state() != State::Active {
            // Ended by a call that raced this one.
            return Err(Error::from(shoal_txn::Error::Closed(
                open.txn.state().name(),
            )));
        }
        if open.begun.elapsed() > self.lifetime {
            open.txn.rollback()?;
            table(&self.table).end(handle, Ended::Expired);
            return Err(self.expired(handle));
        }
        let result = call(&mut open.txn).await;
        let state = open.txn.state();
        if state != State::Active {
            table(&self.table).end(handle, Ended::Closed(state.name()));
        }
        result
    }

    async fn begin(&self, req: pb::TxnBeginRequest) -> Result<pb::TxnBeginResponse> {
        self.node.check_serving()?;
        let isolation = match pb::Isolation::try_from(req.isolation) {
            Ok(pb::Isolation::Serializable) => Isolation::Serializable,
            Ok(pb::Isolation::Snapshot) => Isolation::Snapshot,
            Err(_) => {
                return Err(Error::invalid(
                    ErrorCode::InvalidArgument,
                    format!("unknown isolation {}", req.isolation),
                ))
            }
        };
        let start_ts = self.clock.now().await?.0;
        let txn = Transaction::new(
            start_ts,
            Options {
                isolation,
                read_only: req.read_only,
            },
            self.txn_limits,
        );
        let entry = Arc::new(tokio::sync::Mutex::new(Open {
            txn,
            begun: Instant::now(),
        }));
        let mut t = table(&self.table);
        if t.open.len() >= MAX_OPEN {
            t.sweep(self.lifetime);
            if t.open.len() >= MAX_OPEN {
                return Err(Error::Unavailable(format!(
                    "node {} has {MAX_OPEN} transactions open; try another node or later",
                    self.node.node_id()
                )));
            }
        }
        let handle = loop {
            let h = rand::random::<u64>();
            if h != 0 && !t.open.contains_key(&h) && !t.ended.contains_key(&h) {
                break h;
            }
        };
        t.open.insert(handle, entry);
        // Abandoned transactions leave before the table fills up, too.
        if handle % 1024 == 0 {
            t.sweep(self.lifetime);
        }
        Ok(pb::TxnBeginResponse {
            handle,
            start_ts,
            node_id: self.node.node_id(),
        })
    }

    async fn commit(&self, handle: u64) -> Result<u64> {
        let ranges = self.ranges.clone();
        self.with(handle, async move |t| Ok(t.commit(ranges).await?))
            .await
    }
}

impl TxnService {
    /// `f`'s answer to the RPC `rpc` (`Txn.<method>`), counted and timed in the node's
    /// per-RPC metrics.
    async fn answer<T>(
        &self,
        rpc: &'static str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<Response<T>, Status> {
        let start = Instant::now();
        let res = f.await;
        let code = match &res {
            Ok(_) => "OK",
            Err(e) => e.code().as_str(),
        };
        self.node.metrics.observe_rpc(rpc, code, start.elapsed());
        res.map(Response::new).map_err(Status::from)
    }
}

#[tonic::async_trait]
impl Txn for TxnService {
    async fn timestamps(
        &self,
        req: Request<pb::TxnTimestampsRequest>,
    ) -> Result<Response<pb::TxnTimestampsResponse>, Status> {
        let count = req.into_inner().count;
        self.answer("Txn.Timestamps", async {
            let first = self.clock.take(count).await?;
            Ok(pb::TxnTimestampsResponse { first: first.0 })
        })
        .await
    }

    async fn begin(
        &self,
        req: Request<pb::TxnBeginRequest>,
    ) -> Result<Response<pb::TxnBeginResponse>, Status> {
        self.answer("Txn.Begin", TxnService::begin(self, req.into_inner()))
            .await
    }

    async fn get(
        &self,
        req: Request<pb::TxnGetRequest>,
    ) -> Result<Response<pb::TxnGetResponse>, Status> {
        let req = req.into_inner();
        self.answer("Txn.Get", async {
            self.limits.check_readable("key", &req.key)?;
            let ranges = self.ranges.clone();
            let found = self
                .with(req.handle, async move |t| {
                    Ok(t.get(&*ranges, &req.key).await?)
                })
                .await?;
            Ok(pb::TxnGetResponse { kv: found.map(kv) })
        })
        .await
    }

    async fn scan(
        &self,
        req: Request<pb::TxnScanRequest>,
    ) -> Result<Response<pb::TxnScanResponse>, Status> {
        let req = req.into_inner();
        self.answer("Txn.Scan", async {
            self.limits.check_span(&req.start, &req.end)?;
            let end = crate::validate::kv_end(&req.start, req.end);
            let ranges = self.ranges.clone();
            let found = self
                .with(req.handle, async move |t| {
                    Ok(t.scan(&*ranges, &req.start, &end, req.limit as usize)
                        .await?)
                })
                .await?;
            Ok(pb::TxnScanResponse {
                kvs: found.into_iter().map(kv).collect(),
            })
        })
        .await
    }

    async fn put(
        &self,
        req: Request<pb::TxnPutRequest>,
    ) -> Result<Response<pb::TxnWriteResponse>, Status> {
        let req = req.into_inner();
        self.answer("Txn.Put", async {
            self.limits.check_writable("key", &req.key)?;
            self.limits.check_value(&req.value)?;
            self.with(req.handle, async move |t| Ok(t.put(req.key, req.value)?))
                .await?;
            Ok(pb::TxnWriteResponse {})
        })
        .await
    }

    async fn delete(
        &self,
        req: Request<pb::TxnDeleteRequest>,
    ) -> Result<Response<pb::TxnWriteResponse>, Status> {
        let req = req.into_inner();
        self.answer("Txn.Delete", async {
            self.limits.check_writable("key", &req.key)?;
            self.with(req.handle, async move |t| Ok(t.delete(req.key)?))
                .await?;
            Ok(pb::TxnWriteResponse {})
        })
        .await
    }

    async fn commit(
        &self,
        req: Request<pb::TxnCommitRequest>,
    ) -> Result<Response<pb::TxnCommitResponse>, Status> {
        let handle = req.into_inner().handle;
        self.answer("Txn.Commit", async {
            let commit_ts = TxnService::commit(self, handle).await?;
            Ok(pb::TxnCommitResponse { commit_ts })
        })
        .await
    }

    async fn rollback(
        &self,
        req: Request<pb::TxnRollbackRequest>,
    ) -> Result<Response<pb::TxnRollbackResponse>, Status> {
        let handle = req.into_inner().handle;
        self.answer("Txn.Rollback", async {
            // Rolled back already (or for its age): again, nothing to do.
            let rolled_back = Ended::Closed(State::RolledBack.name());
            let again = matches!(
                table(&self.table).ended.get(&handle),
                Some((how, _)) if matches!(how, Ended::Expired) || *how == rolled_back
            );
            if !again {
                self.with(handle, async move |t| Ok(t.rollback()?)).await?;
            }
            Ok(pb::TxnRollbackResponse {})
        })
        .await
    }

    async fn finish(
        &self,
        req: Request<pb::TxnFinishRequest>,
    ) -> Result<Response<pb::TxnFinishResponse>, Status> {
        let txns = req.into_inner().txns;
        self.answer("Txn.Finish", async {
            if txns.len() > MAX_FINISHED {
                return Err(invalid(format!(
                    "{} transactions to finish; at most {MAX_FINISHED} in one call",
                    txns.len()
                )));
            }
            for t in &txns {
                self.check_finish(t)?;
            }
            // Commits go in the background at once; rollbacks are answered with
            // what each transaction's record says.
            let finished = txns.into_iter().map(|t| {
                shoal_txn::coordinator::finish(
                    self.ranges.clone(),
                    t.start_ts,
                    t.primary,
                    t.keys,
                    (t.commit_ts != 0).then_some(t.commit_ts),
                )
            });
            let mut commit_ts = Vec::new();
            for ts in futures::future::join_all(finished).await {
                commit_ts.push(ts?.unwrap_or(0));
            }
            Ok(pb::TxnFinishResponse { commit_ts })
        })
        .await
    }
}

/// The most transactions one `Finish` call ends.
const MAX_FINISHED: usize = 1024;

fn invalid(why: String) -> Error {
    Error::invalid(ErrorCode::InvalidArgument, why)
}

impl TxnService {
    /// Refuses a transaction to finish that could not be one the client prewrote.
    fn check_finish(&self, t: &pb::FinishTxn) -> Result<()> {
        if t.start_ts == 0 {
            return Err(invalid(
                "finishing a transaction needs its start timestamp".into(),
            ));
        }
        if t.commit_ts != 0 && t.commit_ts <= t.start_ts {
            return Err(invalid(format!(
                "commit timestamp {} is not above the start {}",
                t.commit_ts, t.start_ts
            )));
        }
        self.limits.check_key("primary", &t.primary, false)?;
        // A rollback goes primary first; a commit may name any of the keys (a
        // client sends each node the keys of the ranges it leads).
        if t.commit_ts == 0 && !t.keys.contains(&t.primary) {
            return Err(invalid(
                "the keys to roll back must include the primary".into(),
            ));
        }
        if t.keys.is_empty() {
            return Err(invalid("no keys to finish".into()));
        }
        if t.keys.len() > self.txn_limits.max_keys {
            return Err(invalid(format!(
                "more than {} keys",
                self.txn_limits.max_keys
            )));
        }
        for k in &t.keys {
            self.limits.check_key("key", k, false)?;
        }
        Ok(())
    }
}
