//! The public `Kv` gRPC service.
//!
//! Every request is validated against the node's limits before anything is proposed,
//! so a bad request changes nothing. Writes go through Raft and are answered once
//! committed and applied. Reads are linearizable (read index on the leader) unless
//! the request asks for a stale read, which any replica serves from its own state.
//!
//! Routing: a request naming its range (`RangeTarget`) is checked against that
//! replica's descriptor; one that does not is served by this node's replica holding
//! its keys. A request naming no range whose keys this node holds no replica of is
//! passed on, once, to a node that does (clients need no range cache to use any node).
//! Either way the keys are checked again where it matters: a read after
//! its read barrier (a split may have applied meanwhile), a write when it applies.
//! A refusal carries the descriptors this node knows, for the client's range cache.

use std::sync::Arc;
use std::time::Instant;

use shoal_proto::error::{codes, not_leader, status};
use shoal_proto::v1::{self as pb, kv_client::KvClient, kv_server::Kv};
use shoal_raft::{
    ClientWriteError, Command, CommandResponse, OpResult, RaftError, RangeDescriptor, Replica,
    Touch, WriteOp,
};
use shoal_storage::KeySpan;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::node::Node;
use crate::validate::{invalid, Limits};

/// How long a linearizable read waits for the leader's answer and for this replica to
/// apply up to the read index.
const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Metadata key marking a write forwarded by a follower to its leader, or a request
/// passed on by a node holding none of its keys ([`ROUTED`]).
const FORWARDED: &str = "x-shoal-forwarded";
/// The value of [`FORWARDED`] on a request passed on to a node holding its keys: that
/// node may still forward a write to the range's leader, once.
const ROUTED: &str = "routed";
/// How long a follower waits for the leader's answer to a forwarded write.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Default and largest number of pairs a scan returns per page.
pub const DEFAULT_SCAN_PAGE: usize = 1_000;
pub const MAX_SCAN_PAGE: usize = 10_000;

pub struct KvService {
    node: Arc<Node>,
}

impl KvService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn limits(&self) -> Limits {
        Limits::of(&self.node.cfg)
    }

    /// The replica to serve a request touching `touches`: the range the request names
    /// (checked: same epoch version, every key inside), or this node's replica holding
    /// its first key (every key must then fall in that one range).
    fn route(
        &self,
        target: Option<&pb::RangeTarget>,
        touches: &[Touch<'_>],
    ) -> Result<Arc<Replica>, Status> {
        // NOT_INITIALIZED before anything else: clients retry it.
        self.node.routing_ready()?;
        let Some(t) = target else {
            let first = touches.first().map_or(&b""[..], Touch::first_key);
            let r = self.node.router.lookup(first).ok_or_else(|| {
                status(
                    Code::NotFound,
                    codes::RANGE_NOT_FOUND,
                    "no replica of this node holds the request's keys; route it through RangeLookup",
                    None,
                )
            })?;
            self.check_inside(&r, touches, codes::CROSS_RANGE)?;
            return Ok(r);
        };
        let r = self.node.router.get(t.range_id).ok_or_else(|| {
            status(
                Code::NotFound,
                codes::RANGE_NOT_FOUND,
                format!("range {} has no replica on this node", t.range_id),
                None,
            )
        })?;
        let d = self.descriptor(&r)?;
        let named = t.epoch.map_or(0, |e| e.version);
        if named != d.epoch.version {
            return Err(self.refusal(
                &r,
                &d,
                codes::EPOCH_MISMATCH,
                format!(
                    "range {} is at epoch version {}; the request named {named}",
                    d.range_id, d.epoch.version
                ),
                touches,
            ));
        }
        self.check_inside(&r, touches, codes::KEY_NOT_IN_RANGE)?;
        Ok(r)
    }

    fn descriptor(&self, r: &Replica) -> Result<RangeDescriptor, Status> {
        r.descriptor().ok_or_else(|| Self::no_descriptor(r))
    }

    fn no_descriptor(r: &Replica) -> Status {
        status(
            Code::Unavailable,
            codes::RANGE_NOT_FOUND,
            format!(
                "the replica of range {} on this node is waiting for its first snapshot",
                r.range_id
            ),
            None,
        )
    }

    /// Refuses with `code` unless every touched key lies in `r`'s current span.
    fn check_inside(&self, r: &Replica, touches: &[Touch<'_>], code: &str) -> Result<(), Status> {
        // Checked in place: the descriptor is copied only for a refusal.
        let inside = r
            .state_machine
            .with_descriptor(|d| d.map(|d| touches.iter().all(|t| t.inside(d))));
        match inside {
            None => return Err(Self::no_descriptor(r)),
            Some(true) => return Ok(()),
            Some(false) => {}
        }
        let d = self.descriptor(r)?;
        let msg = if code == codes::CROSS_RANGE {
            "the request's keys span more than one range: send one request per range (the SDK splits scans and delete-ranges; a batch or transaction must stay in one range)".to_string()
        } else {
            format!("the request touches keys outside range {}", d.range_id)
        };
        Err(self.refusal(r, &d, code, msg, touches))
    }

    /// A refusal carrying `d` and the descriptors of this node's other replicas that
    /// hold the touched keys.
    fn refusal(
        &self,
        r: &Replica,
        d: &RangeDescriptor,
        code: &str,
        msg: String,
        touches: &[Touch<'_>],
    ) -> Status {
        let meta = self.node.replica().ok();
        let pb_of = |d: &RangeDescriptor| match &meta {
            Some(m) => crate::admin::descriptor_pb(m, d),
            None => crate::admin::descriptor_pb(r, d),
        };
        let mut current = vec![pb_of(d)];
        let mut seen = vec![d.range_id];
        for t in touches {
            let (s, e) = match *t {
                Touch::Key(k) => (k, k),
                Touch::Span(s, e) => (s, e),
            };
            let ids = if s == e {
                self.node.router.index.lookup(s).into_iter().collect()
            } else {
                self.node.router.index.overlapping(s, e)
            };
            for id in ids {
                if seen.contains(&id) {
                    continue;
                }
                seen.push(id);
                if let Some(od) = self.node.router.get(id).and_then(|o| o.descriptor()) {
                    current.push(pb_of(&od));
                }
            }
        }
        let grpc = if code == codes::CROSS_RANGE {
            Code::InvalidArgument
        } else {
            Code::FailedPrecondition
        };
        status(
            grpc,
            code,
            msg,
            Some(pb::error_detail::Detail::EpochMismatch(pb::EpochMismatch {
                current,
            })),
        )
    }

    /// The leader to forward a write to, when this node knows one and is not it (and
    /// the request was not forwarded here already). Writes may enter through any
    /// node: clients outside the cluster cannot always reach the leader's address.
    fn forward_target(&self, meta: &tonic::metadata::MetadataMap, r: &Replica) -> Option<String> {
        if meta.get(FORWARDED).is_some_and(|v| v != ROUTED) {
            return None;
        }
        match r.leader() {
            (Some(l), Some(addr)) if l != r.node_id => Some(addr),
            _ => None,
        }
    }

    /// For a request naming no range whose key no replica of this node holds (the
    /// keys just before it, with `before`): a node holding that key's range, from
    /// this node's copy of the routing table. Clients with no range cache (any gRPC
    /// client) may send any request to any node; it is passed on once, to a voter of
    /// the range, which serves it or forwards a write to its leader.
    async fn holder(
        &self,
        meta: &tonic::metadata::MetadataMap,
        target: Option<&pb::RangeTarget>,
        key: &[u8],
        before: bool,
    ) -> Option<String> {
        if target.is_some() || meta.contains_key(FORWARDED) || self.node.routing_ready().is_err() {
            return None;
        }
        let index = &self.node.router.index;
        let local = if before {
            index.lookup_before(key)
        } else {
            index.lookup(key)
        };
        // A replica removed from its range (not destroyed yet) does not count.
        let me = self.node.node_id();
        let counts_me = |d: Option<&RangeDescriptor>| {
            d.is_some_and(|d| d.replicas.iter().any(|r| r.node_id == me))
        };
        if local
            .and_then(|id| self.node.router.get(id))
            .is_some_and(|r| r.state_machine.with_descriptor(counts_me))
        {
            return None;
        }
        let d = self.node.range_for(key, before).await.ok()??;
        d.replicas
            .iter()
            .filter(|r| r.voter && r.node_id != me)
            .find_map(|r| self.node.member(r.node_id))
            .map(|n| n.addr)
    }

    /// Sends a request to `addr` (the range's leader, or with `routed` a node holding
    /// the range) and relays its answer, errors included, so a client still sees the
    /// structured details of where it was served.
    async fn forward<Req, Resp, F, Fut>(
        &self,
        addr: String,
        routed: bool,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(KvClient<Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let who = if routed {
            "the range's node"
        } else {
            "the leader"
        };
        let ch = self.node.pool.channel(&addr).map_err(|e| {
            status(
                Code::Unavailable,
                if routed {
                    codes::RANGE_NOT_FOUND
                } else {
                    codes::NOT_LEADER
                },
                format!("{who} at {addr}: {e}"),
                None,
            )
        })?;
        let client = KvClient::new(ch)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut fwd = Request::new(req.into_inner());
        let mark = if routed { ROUTED } else { "1" };
        fwd.metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static(mark));
        match tokio::time::timeout(FORWARD_TIMEOUT, call(client, fwd)).await {
            Ok(r) => r,
            Err(_) => Err(status(
                Code::Unavailable,
                codes::OUTCOME_UNKNOWN,
                format!(
                    "{who} at {addr} did not answer a forwarded request within {FORWARD_TIMEOUT:?}"
                ),
                None,
            )),
        }
    }

    /// Wraps `cmd` so that a retry of the same request applies at most once.
    fn once(rid: Option<pb::RequestId>, cmd: Command) -> Command {
        match rid {
            Some(r) if r.client_id != 0 => Command::Once {
                client_id: r.client_id,
                seq: r.seq,
                acked_below: r.acked_below,
                cmd: Box::new(cmd),
            },
            _ => cmd,
        }
    }

    async fn propose(&self, r: &Arc<Replica>, cmd: Command) -> Result<CommandResponse, Status> {
        if self.node.is_draining() {
            return Err(status(
                Code::Unavailable,
                codes::SHUTTING_DOWN,
                "node is shutting down",
                None,
            ));
        }
        r.wake().await;
        let resp = match r.raft.client_write(cmd).await {
            Ok(resp) => resp.data,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return Err(not_leader(r.range_id, f.leader_id, f.leader_node.map(|n| n.addr)))
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => return Err(status(
                Code::Unavailable,
                codes::OUTCOME_UNKNOWN,
                format!(
                    "leadership changed while the write was in flight; it may or may not have been applied (new leader: {:?})",
                    f.leader_node.map(|n| n.addr)
                ),
                None,
            )),
            Err(RaftError::APIError(e)) => return Err(status(Code::Internal, codes::INTERNAL, e.to_string(), None)),
            Err(RaftError::Fatal(e)) => return Err(status(Code::Unavailable, codes::SHUTTING_DOWN, format!("raft stopped: {e}"), None)),
        };
        if let Some(OpResult::Refused { reason, key }) = resp.results.first() {
            // The range split (or merged) between routing and applying: nothing was
            // written; the client re-routes with the descriptors in the details.
            let d = self.descriptor(r)?;
            let touches: Vec<Touch<'_>> = key.as_deref().map(Touch::Key).into_iter().collect();
            return Err(self.refusal(
                r,
                &d,
                codes::KEY_NOT_IN_RANGE,
                format!("refused by range {}: {reason}", r.range_id),
                &touches,
            ));
        }
        Ok(resp)
    }

    /// Makes a read of `r` linearizable (see `Replica::linearize`): on the leader or
    /// on a follower, which asks the leader for the read index. Then checks that the
    /// range still holds the keys read.
    async fn read_barrier(
        &self,
        r: &Replica,
        consistency: pb::Consistency,
        touches: &[Touch<'_>],
    ) -> Result<(), Status> {
        if self.node.is_draining() {
            return Err(status(
                Code::Unavailable,
                codes::SHUTTING_DOWN,
                "node is shutting down",
                None,
            ));
        }
        if consistency == pb::Consistency::Linearizable {
            r.linearize(READ_PATIENCE)
                .await
                .map_err(|e| shoal_raft::read_error(r.range_id, e))?;
        }
        self.check_inside(r, touches, codes::KEY_NOT_IN_RANGE)
    }

    /// The consistency a read asks for; checked with the rest of the request, before
    /// it is routed.
    fn consistency(consistency: i32) -> Result<pb::Consistency, Status> {
        pb::Consistency::try_from(consistency).map_err(|_| {
            invalid(
                codes::INVALID_ARGUMENT,
                format!("unknown consistency {consistency}"),
            )
        })
    }

    /// For a descending scan: the replica holding the keys just before `end`.
    fn route_before(
        &self,
        target: Option<&pb::RangeTarget>,
        end: &[u8],
    ) -> Result<Arc<Replica>, Status> {
        if let Some(t) = target {
            return self.route(Some(t), &[]);
        }
        self.node.routing_ready()?;
        let id = self.node.router.index.lookup_before(end);
        let r = id.and_then(|id| self.node.router.get(id)).ok_or_else(|| {
            status(
                Code::NotFound,
                codes::RANGE_NOT_FOUND,
                "no replica of this node holds the keys before the scan's end",
                None,
            )
        })?;
        Ok(r)
    }

    fn header(&self, r: &Replica) -> Option<pb::ResponseHeader> {
        let applied = r.applied_index();
        Some(pb::ResponseHeader {
            node_id: r.node_id,
            range_id: r.range_id,
            applied_index: applied,
        })
    }

    fn storage_error(e: shoal_storage::StorageError) -> Status {
        tracing::error!(error = %e, "storage read failed");
        status(
            Code::Internal,
            codes::INTERNAL,
            format!("storage: {e}"),
            None,
        )
    }

    async fn observe<T>(
        &self,
        rpc: &'static str,
        fut: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let start = Instant::now();
        let res = fut.await;
        let code = match &res {
            Ok(_) => "OK".to_string(),
            Err(s) => {
                let c = shoal_proto::error::code_of(s);
                if c.is_empty() {
                    format!("{:?}", s.code())
                } else {
                    c
                }
            }
        };
        self.node.metrics.observe_rpc(rpc, &code, start.elapsed());
        res
    }
}

fn kv(v: shoal_storage::Versioned) -> pb::KeyValue {
    pb::KeyValue {
        key: v.key,
        value: v.value,
        version: v.version,
    }
}

/// Forwards a write to its range's leader when this node is not it.
macro_rules! forward_if_follower {
    ($self:ident, $req:ident, $r:ident, $method:ident) => {
        if let Some(addr) = $self.forward_target($req.metadata(), &$r) {
            return $self
                .forward(
                    addr,
                    false,
                    $req,
                    |mut c, r| async move { c.$method(r).await },
                )
                .await;
        }
    };
}

/// Passes a request on to a node holding its range when this node holds none of its
/// keys (see `KvService::holder`): `$key` is its first key, or with `before` the end
/// before which a reverse scan reads.
macro_rules! pass_to_holder {
    ($self:ident, $req:ident, $key:expr, $before:expr, $method:ident) => {
        let target = $req.get_ref().target.as_ref();
        if let Some(addr) = $self.holder($req.metadata(), target, $key, $before).await {
            return $self
                .forward(
                    addr,
                    true,
                    $req,
                    |mut c, r| async move { c.$method(r).await },
                )
                .await;
        }
    };
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.observe("Get", async {
            pass_to_holder!(self, req, &req.get_ref().key, false, get);
            let req = req.into_inner();
            self.limits().check_key("key", &req.key, false)?;
            let consistency = Self::consistency(req.consistency)?;
            let touches = [Touch::Key(&req.key)];
            let r = self.route(req.target.as_ref(), &touches)?;
            self.read_barrier(&r, consistency, &touches).await?;
            let found = r.engine.get(&req.key).map_err(Self::storage_error)?;
            Ok(Response::new(pb::GetResponse {
                header: self.header(&r),
                kv: found.map(kv),
            }))
        })
        .await
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.observe("Put", async {
            self.limits().check_key("key", &req.get_ref().key, false)?;
            pass_to_holder!(self, req, &req.get_ref().key, false, put);
            let r = self.route(
                req.get_ref().target.as_ref(),
                &[Touch::Key(&req.get_ref().key)],
            )?;
            forward_if_follower!(self, req, r, put);
            let req = req.into_inner();
            let rid = req.request_id;
            let (op, n) = self.limits().put_op(pb::PutOp {
                key: req.key,
                value: req.value,
            })?;
            self.limits().check_request_size(n)?;
            let resp = self
                .propose(&r, Self::once(rid, Command::Write(vec![op])))
                .await?;
            Ok(Response::new(pb::PutResponse {
                header: self.header(&r),
                version: resp.index,
            }))
        })
        .await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.observe("Delete", async {
            self.limits().check_key("key", &req.get_ref().key, false)?;
            pass_to_holder!(self, req, &req.get_ref().key, false, delete);
            let r = self.route(
                req.get_ref().target.as_ref(),
                &[Touch::Key(&req.get_ref().key)],
            )?;
            forward_if_follower!(self, req, r, delete);
            let req = req.into_inner();
            let rid = req.request_id;
            let resp = self
                .propose(
                    &r,
                    Self::once(rid, Command::Write(vec![WriteOp::Delete { key: req.key }])),
                )
                .await?;
            Ok(Response::new(pb::DeleteResponse {
                header: self.header(&r),
                version: resp.index,
                deleted: matches!(resp.results.first(), Some(OpResult::Deleted(n)) if *n > 0),
            }))
        })
        .await
    }

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        self.observe("Scan", async {
            let reverse = req.get_ref().reverse;
            let first = if reverse {
                &req.get_ref().end
            } else {
                &req.get_ref().start
            };
            pass_to_holder!(self, req, first, reverse, scan);
            let req = req.into_inner();
            self.limits().check_span(&req.start, &req.end)?;
            let consistency = Self::consistency(req.consistency)?;
            let limit = match req.limit as usize {
                0 => DEFAULT_SCAN_PAGE,
                n => n.min(MAX_SCAN_PAGE),
            };
            // A scan is served by one range: the one holding its first key (in
            // descending order, the keys just before its end), up to that range's
            // boundary; `resume_key` tells where to go on.
            let r = if req.reverse {
                self.route_before(req.target.as_ref(), &req.end)?
            } else {
                self.route(req.target.as_ref(), &[Touch::Key(&req.start)])?
            };
            let anchor: Vec<Touch<'_>> = if req.reverse {
                Vec::new()
            } else {
                vec![Touch::Key(&req.start)]
            };
            self.read_barrier(&r, consistency, &anchor).await?;
            let d = self.descriptor(&r)?;
            if req.reverse && !holds_before(&d, &req.end) {
                return Err(self.refusal(
                    &r,
                    &d,
                    codes::KEY_NOT_IN_RANGE,
                    format!(
                        "range {} does not hold the keys before the scan's end",
                        d.range_id
                    ),
                    &[],
                ));
            }
            let start = if req.start.as_slice() < d.start.as_slice() {
                d.start.clone()
            } else {
                req.start.clone()
            };
            let end = if d.end.is_empty() || (!req.end.is_empty() && req.end < d.end) {
                req.end.clone()
            } else {
                d.end.clone()
            };
            let clipped = if req.reverse {
                start != req.start
            } else {
                end != req.end
            };
            let span = KeySpan { start, end };
            let (page, full) = r
                .engine
                .scan(&span, limit, req.reverse)
                .map_err(Self::storage_error)?;
            let (more, resume_key) = if full {
                let last = page.last().map(|v| v.key.clone()).unwrap_or_default();
                (true, if req.reverse { last } else { key_after(&last) })
            } else if clipped && !(req.reverse && d.start.is_empty()) {
                (
                    true,
                    if req.reverse {
                        d.start.clone()
                    } else {
                        d.end.clone()
                    },
                )
            } else {
                (false, Vec::new())
            };
            Ok(Response::new(pb::ScanResponse {
                header: self.header(&r),
                kvs: page.into_iter().map(kv).collect(),
                more,
                resume_key,
            }))
        })
        .await
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.observe("DeleteRange", async {
            self.limits()
                .check_span(&req.get_ref().start, &req.get_ref().end)?;
            pass_to_holder!(self, req, &req.get_ref().start, false, delete_range);
            let r = self.route(
                req.get_ref().target.as_ref(),
                &[Touch::Span(&req.get_ref().start, &req.get_ref().end)],
            )?;
            forward_if_follower!(self, req, r, delete_range);
            let req = req.into_inner();
            let rid = req.request_id;
            let resp = self
                .propose(
                    &r,
                    Self::once(
                        rid,
                        Command::Write(vec![WriteOp::DeleteRange {
                            start: req.start,
                            end: req.end,
                        }]),
                    ),
                )
                .await?;
            let deleted = match resp.results.first() {
                Some(OpResult::Deleted(n)) => *n,
                _ => 0,
            };
            Ok(Response::new(pb::DeleteRangeResponse {
                header: self.header(&r),
                version: resp.index,
                deleted,
            }))
        })
        .await
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        self.observe("Batch", async {
            if req.get_ref().ops.is_empty() {
                return Err(invalid(codes::INVALID_ARGUMENT, "batch has no ops".into()));
            }
            let ops = self.limits().batch(req.get_ref().ops.clone())?;
            let touches: Vec<Touch<'_>> = ops.iter().map(WriteOp::touch).collect();
            let first = touches.first().map_or(&b""[..], Touch::first_key);
            pass_to_holder!(self, req, first, false, batch);
            let r = self.route(req.get_ref().target.as_ref(), &touches)?;
            forward_if_follower!(self, req, r, batch);
            let rid = req.get_ref().request_id;
            let resp = self
                .propose(&r, Self::once(rid, Command::Write(ops)))
                .await?;
            Ok(Response::new(pb::BatchResponse {
                header: self.header(&r),
                version: resp.index,
            }))
        })
        .await
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        self.observe("Txn", async {
            let (compares, success, failure) = self.limits().txn(
                req.get_ref().compares.clone(),
                req.get_ref().success.clone(),
                req.get_ref().failure.clone(),
            )?;
            let cmd = Command::Txn {
                compares,
                success,
                failure,
            };
            let touches = cmd.touches();
            let first = touches.first().map_or(&b""[..], Touch::first_key);
            pass_to_holder!(self, req, first, false, txn);
            let r = self.route(req.get_ref().target.as_ref(), &touches)?;
            forward_if_follower!(self, req, r, txn);
            let rid = req.get_ref().request_id;
            let resp = self.propose(&r, Self::once(rid, cmd)).await?;
            let results = resp
                .results
                .into_iter()
                .map(|res| {
                    use pb::txn_op_result::Result as R;
                    let result = match res {
                        // Not transaction ops: never in a transaction's results.
                        OpResult::NodeId(_) | OpResult::RangeId(_) | OpResult::Refused { .. } => {
                            return pb::TxnOpResult { result: None }
                        }
                        OpResult::Put(v) => R::Put(v),
                        OpResult::Deleted(n) => R::Deleted(n),
                        OpResult::Get(found) => R::Get(pb::GetResult {
                            kv: found.map(|f| pb::KeyValue {
                                key: f.key,
                                value: f.value,
                                version: f.version,
                            }),
                        }),
                    };
                    pb::TxnOpResult {
                        result: Some(result),
                    }
                })
                .collect();
            Ok(Response::new(pb::TxnResponse {
                header: self.header(&r),
                succeeded: resp.succeeded,
                results,
                version: resp.index,
            }))
        })
        .await
    }
}

/// The smallest key after `key`.
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// Whether `d` holds the keys just before `end` (an empty `end`: the last keys).
fn holds_before(d: &RangeDescriptor, end: &[u8]) -> bool {
    if end.is_empty() {
        return d.end.is_empty();
    }
    d.start.as_slice() < end && (d.end.is_empty() || end <= d.end.as_slice())
}
