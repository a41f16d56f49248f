//! The public `Kv` gRPC service: one pipeline for every request.
//!
//! observe -> validate -> route -> forward or serve -> propose or read -> header:
//!
//! 1. The request is validated whole into its domain form ([`KvRpc::into_request`]),
//!    before it is routed, so a bad request changes nothing anywhere.
//! 2. It is routed ([`crate::route`]): served by a replica of this node, forwarded to
//!    the range's leader (a write arriving at a follower), or passed on to a node
//!    holding its range (a request naming no range this node holds).
//! 3. Served here, a write takes latches on its keys (writes of a key take turns), a
//!    commit timestamp from the cluster's oracle, and is proposed through Raft at that
//!    timestamp and answered once committed and applied. A read is made linearizable
//!    (read index, on the leader or asked of it; a read at a timestamp first waits for
//!    the leader's writes in flight below it) unless it asked for a stale read, then
//!    served from a [`shoal_raft::RangeView`] of the replica's data, bounded by its
//!    range: a get sees the newest versions (or those at its timestamp), a scan the
//!    versions at one timestamp (a fresh one, or the one it names).
//! 4. The reply carries a header (node, range, applied index); a refusal carries its
//!    stable code, and the descriptors a client needs to re-route.
//!
//! Every RPC is observed (a request count and latency per RPC and code).

use std::sync::Arc;
use std::time::Duration;

use shoal_proto::v1::{self as pb, kv_server::Kv};
use shoal_raft::latch::{LatchSpan, ReadAt};
use shoal_raft::txn_record::{Lock, TxnConflict};
use shoal_raft::{Command, OpResult, RangeView, Refusal, Replica, Touch};
use shoal_storage::LATEST;
use shoal_txn::resolve::{self, Resolved};
use tokio::time::Instant;
use tonic::{Request as Wire, Response, Status};
use tracing::Instrument;

use crate::clock::Clock;
use crate::convert::{KvRpc, Outcome};
use crate::error::{Error, Result};
use crate::forward::{self, LEADER_POLL};
use crate::node::Node;
use crate::request::{Consistency, Op, Request};
use crate::route::{self, Route};
use crate::steps::NodeRanges;
use crate::validate::Limits;

/// The longest one attempt of a linearizable read waits for the leader's answer and
/// for this replica to apply up to the read index.
const READ_PATIENCE: Duration = Duration::from_secs(3);
/// How long a follower whose leader failed waits before asking again, when no other
/// leader appears meanwhile.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How long a request waits before asking again about a lock's transaction that is
/// still alive.
const LOCK_PAUSE: Duration = Duration::from_millis(20);

/// How long a transaction's step served on this node's own replica may take (a step
/// sent by the node's client gets as long).
const LOCAL_STEP_PATIENCE: Duration = Duration::from_secs(5);

/// Default and largest number of pairs a scan returns per page.
pub const DEFAULT_SCAN_PAGE: usize = 1_000;
pub const MAX_SCAN_PAGE: usize = 10_000;

pub struct KvService {
    node: Arc<Node>,
    limits: Limits,
    clock: Clock,
    ranges: NodeRanges,
}

impl KvService {
    pub fn new(node: Arc<Node>, clock: Clock, ranges: NodeRanges) -> Self {
        let limits = Limits::of(&node.cfg);
        Self {
            node,
            limits,
            clock,
            ranges,
        }
    }

    /// The pipeline, observed.
    async fn handle<R: KvRpc + Clone>(&self, req: Wire<R>) -> Result<Response<R::Reply>, Status> {
        let start = std::time::Instant::now();
        let hop = forward::hop(req.metadata());
        let deadline = forward::deadline(req.metadata());
        let span = tracing::debug_span!(
            "kv",
            rpc = R::NAME,
            ?hop,
            range_id = tracing::field::Empty,
            client_id = tracing::field::Empty,
            seq = tracing::field::Empty,
        );
        // Boxed: a pipeline's future nests those of routing, forwarding and Raft.
        let res = Box::pin(
            self.pipeline(req.into_inner(), hop, deadline)
                .instrument(span),
        )
        .await;
        let code = match &res {
            Ok(_) => "OK",
            Err(e) => e.code().as_str(),
        };
        self.node
            .metrics
            .observe_rpc(R::NAME, code, start.elapsed());
        res.map(Response::new).map_err(Status::from)
    }

    async fn pipeline<R: KvRpc + Clone>(
        &self,
        wire: R,
        hop: route::Hop,
        deadline: Instant,
    ) -> Result<R::Reply> {
        let req = wire.into_request(&self.limits)?;
        if let Some(id) = req.request_id {
            let span = tracing::Span::current();
            span.record("client_id", id.client_id);
            span.record("seq", id.seq);
        }
        let idempotent = req.is_idempotent();
        let route = match route::route(&self.node, &req, hop).await {
            // A batch or transaction whose keys span several ranges: run as a
            // transaction across them, coordinated here. Not with a request id: that
            // asks to be applied once however often it is sent, which only one range
            // keeps (the client sends it again without one).
            Err(Error::CrossRange { .. }) if req.op.runs_across() && !idempotent => {
                return self.across::<R>(req, deadline).await;
            }
            route => route?,
        };
        match route {
            Route::Serve(r) => self.serve::<R>(&r, req, deadline).await,
            Route::ToHolder { addrs } => {
                forward::to_holder(
                    &self.node,
                    &addrs,
                    R::from_request(req),
                    idempotent,
                    deadline,
                )
                .await
            }
            Route::ToLeader { replica, addr } => {
                let r = replica.clone();
                // Boxed: the pipeline's future would otherwise hold itself twice.
                let here = |wire: R| {
                    Box::pin(async move {
                        let req = wire.into_request(&self.limits)?;
                        self.serve::<R>(&replica, req, deadline).await
                    })
                };
                forward::to_leader(
                    &self.node,
                    &r,
                    addr,
                    R::from_request(req),
                    idempotent,
                    deadline,
                    here,
                )
                .await
            }
        }
    }

    /// Runs a batch or an etcd-style transaction whose keys span several ranges as one
    /// transaction (`shoal_txn::across`), coordinated by this node. Its answer is
    /// shaped as a single range's; the header names no range.
    async fn across<R: KvRpc>(&self, req: Request, deadline: Instant) -> Result<R::Reply> {
        self.node.check_serving()?;
        let (compares, success, failure) = match req.op {
            Op::Batch(ops) => (
                Vec::new(),
                ops.into_iter().map(shoal_raft::TxnOp::Write).collect(),
                Vec::new(),
            ),
            Op::Txn {
                compares,
                success,
                failure,
            } => (compares, success, failure),
            _ => {
                return Err(Error::Internal(
                    "only a batch or a txn runs across ranges".into(),
                ))
            }
        };
        let ranges: Arc<dyn shoal_txn::Ranges> = Arc::new(self.ranges.clone());
        let limits = crate::txn::txn_limits(&self.node.cfg);
        let resp =
            shoal_txn::across::run(ranges, limits, deadline, &compares, &success, &failure).await?;
        let header = pb::ResponseHeader {
            node_id: self.node.node_id(),
            range_id: 0,
            applied_index: 0,
            read_ts: 0,
        };
        Ok(R::reply(header, Outcome::Applied(resp)))
    }

    /// Serves a request on this node's replica `r`.
    async fn serve<R: KvRpc>(
        &self,
        r: &Arc<Replica>,
        req: Request,
        deadline: Instant,
    ) -> Result<R::Reply> {
        tracing::Span::current().record("range_id", r.range_id);
        self.node.check_serving()?;
        r.record_load(req.op.anchor().key);
        let (out, read_ts) = match req.op.consistency() {
            Some(c) => self.read(r, req.op, c, deadline).await?,
            None => (self.write(r, req, deadline).await?, None),
        };
        let header = pb::ResponseHeader {
            node_id: r.node_id,
            range_id: r.range_id,
            applied_index: r.applied_index(),
            read_ts: read_ts.unwrap_or(0),
        };
        Ok(R::reply(header, out))
    }

    /// Proposes a write and answers what applying it returned.
    async fn write(&self, r: &Arc<Replica>, req: Request, deadline: Instant) -> Result<Outcome> {
        let request_id = req.request_id;
        let Some(cmd) = req.into_command() else {
            return Err(Error::Internal("a read routed as a write".into()));
        };
        let resp = loop {
            let resp = self.propose(r, cmd.clone()).await?;
            // A key locked by a transaction: nothing was written; once the lock is
            // resolved (its transaction's fate known), the write goes again. A
            // transaction's step does not wait for one alive: its coordinator is
            // answered with the conflict (two transactions waiting for each other's
            // locks would wait for ever).
            match resp.results.first() {
                Some(OpResult::TxnConflict(TxnConflict::Locked { key, lock })) => {
                    if cmd.is_txn_step() {
                        let now = resolve::wall_ms();
                        if resolve::resolve(&self.ranges, key, lock, now).await? == Resolved::Alive
                        {
                            break resp;
                        }
                    } else {
                        self.resolve_lock(key, lock, deadline).await?
                    }
                }
                _ => break resp,
            }
        };
        match resp.refusal() {
            None => Ok(Outcome::Applied(resp)),
            // The range split between routing and applying: nothing was written; the
            // client re-routes with the descriptors in the details.
            Some(Refusal::KeyOutside { key, reason }) => Err(route::outside(
                &self.node,
                r,
                &[Touch::Key(&key)],
                format!("refused by range {}: {reason}", r.range_id),
            )),
            Some(Refusal::StaleRequest { low }) => {
                let (client_id, seq) = request_id.map_or((0, 0), |id| (id.client_id, id.seq));
                Err(Error::StaleRequest {
                    client_id,
                    seq,
                    low,
                })
            }
            Some(Refusal::Other(why)) => Err(Error::Internal(format!(
                "range {} refused a data command: {why}",
                r.range_id
            ))),
        }
    }

    /// Proposes a write command: at a commit timestamp taken under latches on its keys,
    /// or as it is (a transaction's step).
    async fn propose(&self, r: &Arc<Replica>, cmd: Command) -> Result<shoal_raft::CommandResponse> {
        if cmd.carries_its_timestamps() {
            // A step of a transaction across ranges: its timestamps are its own, and
            // readers see its locks.
            return Ok(r.propose(cmd).await?);
        }
        // Writes of a key take turns, so they apply in the order of their timestamps,
        // taken once the latches are held; spans only read (and checked) are shared.
        let (writes, reads) = cmd.latch_touches();
        let spans = writes.iter().map(LatchSpan::of).collect();
        let reads = reads.iter().map(LatchSpan::of).collect();
        let latches = r.latches().acquire_reading(spans, reads).await;
        let ts = self.clock.now().await?.0;
        latches.set_ts(ts);
        // The latches stay held until the entry applies or its proposal fails (the
        // leadership moved: a new leader applies a surviving entry before any read it
        // serves), even when this request is cancelled meanwhile (its client's
        // deadline passed): the entry may still apply at `ts`, and a read at a later
        // timestamp must wait for it, not miss it.
        let r = r.clone();
        let proposal = tokio::spawn(async move {
            let applied = r
                .propose(Command::At {
                    ts,
                    cmd: Box::new(cmd),
                })
                .await;
            drop(latches);
            applied
        });
        match proposal.await {
            Ok(applied) => Ok(applied?),
            Err(e) => Err(Error::Internal(format!("a proposal's task failed: {e}"))),
        }
    }

    /// Resolves `lock`, met on `key` by a read or a write; returns once its transaction
    /// committed or rolled back (the lock rolled forward or back), or with
    /// `UNAVAILABLE` if it is still alive at `deadline`.
    async fn resolve_lock(&self, key: &[u8], lock: &Lock, deadline: Instant) -> Result<()> {
        while resolve::resolve(&self.ranges, key, lock, resolve::wall_ms()).await?
            == Resolved::Alive
        {
            wait_for_lock(key, lock, deadline).await?;
        }
        Ok(())
    }

    /// Serves a read from `r`'s data, after its read barrier; returns what it read and
    /// the timestamp it read at (`None`: the newest versions).
    async fn read(
        &self,
        r: &Replica,
        op: Op,
        c: Consistency,
        deadline: Instant,
    ) -> Result<(Outcome, Option<u64>)> {
        let (ts, spans) = match &op {
            Op::Get { key, read_ts, .. } => (*read_ts, vec![LatchSpan::key(key)]),
            Op::Scan {
                start,
                end,
                read_ts,
                ..
            } => {
                // A linearizable scan reads one snapshot, at a fresh timestamp unless
                // it names one; a stale one reads the newest versions it has.
                let ts = match (read_ts, c) {
                    (Some(ts), _) => Some(*ts),
                    (None, Consistency::Linearizable) => Some(self.clock.now().await?.0),
                    (None, Consistency::Stale) => None,
                };
                let span = LatchSpan {
                    start: start.clone(),
                    end: end.clone(),
                };
                (ts, vec![span])
            }
            Op::Step(Command::ValidateReads {
                commit_ts, spans, ..
            }) => (
                Some(*commit_ts),
                spans
                    .iter()
                    .map(|(start, end)| LatchSpan {
                        start: start.clone(),
                        end: end.clone(),
                    })
                    .collect(),
            ),
            _ => return Err(Error::Internal("a write routed as a read".into())),
        };
        if let Some(ts) = ts {
            let floor = self.clock.read_floor();
            if ts < floor {
                return Err(Error::SnapshotTooOld { ts, floor });
            }
        }
        let at = ts.map(|ts| ReadAt { ts, spans });
        let view = loop {
            if c == Consistency::Stale {
                break r.view()?;
            }
            self.linearize(r, deadline, at.as_ref()).await?;
            // Taken after the barrier: a split applied meanwhile shows as keys outside it.
            let view = r.view()?;
            // A lock the read must not pass: a transaction that may have committed at
            // or below the read's timestamp. Resolved, then the read starts over. A
            // read of the newest versions passes a transaction still alive (that one
            // commits after the read) unless it commits asynchronously.
            // A check of a transaction's reads judges the locks there itself.
            if matches!(op, Op::Step(_)) {
                break view;
            }
            let Some((key, lock)) = blocking_lock(&view, &op, ts) else {
                break view;
            };
            match resolve::resolve(&self.ranges, &key, &lock, resolve::wall_ms()).await? {
                // Not one committed asynchronously: that one may be committed
                // already, its coordinator having answered once every key was locked.
                Resolved::Alive if ts.is_none() && lock.async_commit.is_none() => break view,
                Resolved::Alive => wait_for_lock(&key, &lock, deadline).await?,
                _ => {}
            }
        };
        let read_at = ts.unwrap_or(LATEST);
        let outside = |touches: &[Touch<'_>], message: String| {
            route::outside(&self.node, r, touches, message)
        };
        let elsewhere = || format!("the request touches keys outside range {}", r.range_id);
        let out = match op {
            Op::Get { key, .. } => match view.get(&key, read_at) {
                Err(shoal_raft::Error::KeyNotInRange { .. }) => {
                    Err(outside(&[Touch::Key(&key)], elsewhere()))
                }
                found => Ok(Outcome::Get(found?)),
            },
            Op::Scan {
                start,
                end,
                limit,
                reverse,
                ..
            } => {
                let limit = match limit as usize {
                    0 => DEFAULT_SCAN_PAGE,
                    n => n.min(MAX_SCAN_PAGE),
                };
                match view.scan(&start, &end, read_at, limit, reverse) {
                    Err(shoal_raft::Error::KeyNotInRange { .. }) if reverse => Err(outside(
                        &[],
                        format!(
                            "range {} does not hold the keys before the scan's end",
                            r.range_id
                        ),
                    )),
                    Err(shoal_raft::Error::KeyNotInRange { .. }) => {
                        Err(outside(&[Touch::Key(&start)], elsewhere()))
                    }
                    page => Ok(Outcome::Scan(page?)),
                }
            }
            Op::Step(Command::ValidateReads {
                start_ts,
                commit_ts,
                spans,
            }) => match view.validate_reads(&spans, start_ts, commit_ts) {
                Err(shoal_raft::Error::KeyNotInRange { key, .. }) => {
                    Err(outside(&[Touch::Key(&key)], elsewhere()))
                }
                found => Ok(Outcome::Applied(shoal_raft::CommandResponse {
                    version: 0,
                    succeeded: true,
                    results: vec![match found? {
                        None => OpResult::TxnDone,
                        Some(c) => OpResult::TxnConflict(c),
                    }],
                })),
            },
            _ => Err(Error::Internal("a write routed as a read".into())),
        };
        out.map(|o| (o, ts))
    }

    /// Makes a read of `r` linearizable (see `Replica::linearize`). A follower whose
    /// leader cannot be reached (it died, or is being replaced) asks the next leader,
    /// once known, within the request's deadline; the leader itself does not wait for
    /// a quorum it cannot reach.
    async fn linearize(&self, r: &Replica, deadline: Instant, at: Option<&ReadAt>) -> Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let failed = match r.linearize_at(READ_PATIENCE.min(left), at).await {
                Ok(()) => return Ok(()),
                Err(
                    e @ (shoal_raft::Error::NotLeader { .. } | shoal_raft::Error::NoQuorum { .. }),
                ) if !r.is_leader() => e,
                Err(e) => return Err(e.into()),
            };
            // Ask again once the range has another leader, or after a pause (the
            // leader may only have been slow).
            let leader = r.current_leader();
            let retry_at = Instant::now() + RETRY_PAUSE;
            loop {
                if Instant::now() + LEADER_POLL >= deadline {
                    return Err(failed.into());
                }
                tokio::time::sleep(LEADER_POLL).await;
                let changed = r.current_leader().is_some_and(|l| Some(l) != leader);
                if changed || Instant::now() >= retry_at {
                    break;
                }
            }
        }
    }
}

/// Waits before asking again about `lock`'s transaction, still alive; `UNAVAILABLE`
/// if the request's deadline comes first.
async fn wait_for_lock(key: &[u8], lock: &Lock, deadline: Instant) -> Result<()> {
    if Instant::now() + LOCK_PAUSE >= deadline {
        return Err(Error::Unavailable(format!(
            "key {:?} is locked by a transaction in progress (started at {})",
            String::from_utf8_lossy(key),
            lock.start_ts
        )));
    }
    tokio::time::sleep(LOCK_PAUSE).await;
    Ok(())
}

/// The first lock in what `op` reads (in `view`'s range) whose transaction may have
/// committed at or below `ts` (`None`: the newest versions, any lock). A lock that
/// cannot be read is left to the read, which reports the store's failure.
fn blocking_lock(view: &RangeView, op: &Op, ts: Option<u64>) -> Option<(Vec<u8>, Lock)> {
    let blocks = |l: &Lock| ts.is_none_or(|ts| l.may_commit_at_or_below(ts));
    match op {
        Op::Get { key, .. } => match view.lock(key) {
            Ok(Some(l)) if blocks(&l) => Some((key.clone(), l)),
            _ => None,
        },
        Op::Scan { start, end, .. } => view
            .locks(start, end, usize::MAX)
            .ok()?
            .into_iter()
            .find(|(_, l)| blocks(l)),
        _ => None,
    }
}

impl KvService {
    /// Serves a linearizable read `op` (at a timestamp) on this node's replica of the
    /// range holding `key`, when that replica leads it or follows a leader it knows
    /// (it asks that leader for the read index, as a follower serving `Kv.Get` does);
    /// `None` otherwise, or when it failed here (the caller then reads through the
    /// client).
    async fn read_here(&self, key: &[u8], op: Op, rpc: &'static str) -> Option<Outcome> {
        // Not a range frozen for a merge: it serves nothing (see `route`).
        let r = (self.node.router.lookup(key))
            .filter(|r| r.is_leader() || r.current_leader().is_some())
            .filter(|r| r.frozen().is_none())?;
        self.node.check_serving().ok()?;
        r.record_load(key);
        let start = Instant::now();
        let deadline = start + LOCAL_STEP_PATIENCE;
        // Boxed: a read may resolve locks, which steps and reads again.
        let served = Box::pin(self.read(&r, op, Consistency::Linearizable, deadline)).await;
        let code = match &served {
            Ok(_) => "OK",
            Err(e) => e.code().as_str(),
        };
        self.node.metrics.observe_rpc(rpc, code, start.elapsed());
        match served {
            Ok((out, _)) => Some(out),
            Err(e) => {
                tracing::debug!(range_id = r.range_id, error = %e, "a read served here failed; through the client");
                None
            }
        }
    }
}

impl crate::steps::Here for KvService {
    fn step_here<'a>(
        &'a self,
        key: &'a [u8],
        step: &'a Command,
    ) -> futures::future::BoxFuture<'a, Option<shoal_raft::CommandResponse>> {
        Box::pin(async move {
            let r = self.node.router.lookup(key).filter(|r| r.is_leader())?;
            let req = Request {
                op: Op::Step(step.clone()),
                target: None,
                request_id: None,
            };
            let deadline = Instant::now() + LOCAL_STEP_PATIENCE;
            let served = async {
                let Route::Serve(r) = route::route(&self.node, &req, route::Hop::ToLeader).await?
                else {
                    return Err(Error::Internal("a step routed elsewhere".into()));
                };
                self.serve::<pb::TxnStepRequest>(&r, req, deadline).await
            };
            // Boxed: serving a step may resolve locks, which steps again.
            let start = Instant::now();
            let served = Box::pin(served).await;
            let code = match &served {
                Ok(_) => "OK",
                Err(e) => e.code().as_str(),
            };
            // Beside the `TxnStep` RPCs, as the steps this node served itself.
            self.node
                .metrics
                .observe_rpc("TxnStep.Local", code, start.elapsed());
            match served {
                Ok(reply) => shoal_raft::codec::decode(&reply.result).ok(),
                Err(e) => {
                    tracing::debug!(range_id = r.range_id, error = %e, "a step served here failed; through the client");
                    None
                }
            }
        })
    }

    fn get_here<'a>(
        &'a self,
        key: &'a [u8],
        ts: u64,
    ) -> futures::future::BoxFuture<'a, Option<Option<shoal_storage::Versioned>>> {
        Box::pin(async move {
            let op = Op::Get {
                key: key.to_vec(),
                consistency: Consistency::Linearizable,
                read_ts: Some(ts),
            };
            match self.read_here(key, op, "Get.Local").await? {
                Outcome::Get(found) => Some(found),
                _ => None,
            }
        })
    }

    fn scan_here<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
        ts: u64,
        limit: usize,
    ) -> futures::future::BoxFuture<'a, Option<shoal_raft::ScanPage>> {
        Box::pin(async move {
            let op = Op::Scan {
                start: start.to_vec(),
                end: end.to_vec(),
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                reverse: false,
                consistency: Consistency::Linearizable,
                read_ts: Some(ts),
            };
            match self.read_here(start, op, "Scan.Local").await? {
                Outcome::Scan(page) => Some(page),
                _ => None,
            }
        })
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, req: Wire<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.handle(req).await
    }

    async fn put(&self, req: Wire<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.handle(req).await
    }

    async fn delete(
        &self,
        req: Wire<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.handle(req).await
    }

    async fn scan(&self, req: Wire<pb::ScanRequest>) -> Result<Response<pb::ScanResponse>, Status> {
        self.handle(req).await
    }

    async fn delete_range(
        &self,
        req: Wire<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.handle(req).await
    }

    async fn batch(
        &self,
        req: Wire<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        self.handle(req).await
    }

    async fn txn(&self, req: Wire<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        self.handle(req).await
    }

    async fn txn_step(
        &self,
        req: Wire<pb::TxnStepRequest>,
    ) -> Result<Response<pb::TxnStepResponse>, Status> {
        self.handle(req).await
    }

    async fn prewrite(
        &self,
        req: Wire<pb::PrewriteRequest>,
    ) -> Result<Response<pb::PrewriteResponse>, Status> {
        self.handle(req).await
    }
}
