//! The public `Kv` gRPC service.
//!
//! Every request is validated against the node's limits before anything is proposed,
//! so a bad request changes nothing. Writes go through Raft and are answered once
//! committed and applied. Reads are linearizable (read index on the leader) unless
//! the request asks for a stale read, which any replica serves from its own state.

use std::sync::Arc;
use std::time::Instant;

use shoal_proto::error::{codes, not_leader, status};
use shoal_proto::v1::{self as pb, kv_client::KvClient, kv_server::Kv};
use shoal_raft::{
    ClientWriteError, Command, CommandResponse, OpResult, RaftError, Replica, TxnOp, WriteOp,
};
use shoal_storage::KeySpan;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::node::Node;
use crate::validate::{invalid, Limits};

/// How long a linearizable read waits for the leader's answer and for this replica to
/// apply up to the read index.
const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// What a request reads or writes: a key, or a span `[start, end)`.
enum Touch<'a> {
    Key(&'a [u8]),
    Span(&'a [u8], &'a [u8]),
}

fn write_touch(op: &WriteOp) -> Touch<'_> {
    match op {
        WriteOp::Put { key, .. } | WriteOp::Delete { key } => Touch::Key(key),
        WriteOp::DeleteRange { start, end } => Touch::Span(start, end),
    }
}

fn txn_touch(op: &TxnOp) -> Touch<'_> {
    match op {
        TxnOp::Write(w) => write_touch(w),
        TxnOp::Get { key } => Touch::Key(key),
    }
}

/// Metadata key marking a write forwarded by a follower to its leader.
const FORWARDED: &str = "x-shoal-forwarded";
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

    /// Checks the range a request names, if it names one, against this node's
    /// descriptor of it: the same epoch version (no split or merge since the client
    /// learned it), and every key the request touches inside it. A refusal carries the
    /// current descriptor for the client's range cache.
    fn check_target<'a>(
        &self,
        target: Option<&pb::RangeTarget>,
        touches: impl IntoIterator<Item = Touch<'a>>,
    ) -> Result<(), Status> {
        let Some(t) = target else {
            return Ok(());
        };
        let r = self.node.router.get(t.range_id).ok_or_else(|| {
            status(
                Code::NotFound,
                codes::RANGE_NOT_FOUND,
                format!("range {} has no replica on this node", t.range_id),
                None,
            )
        })?;
        let d = r
            .descriptor()
            .map_err(|e| Status::internal(format!("reading the range descriptor: {e}")))?;
        let refuse = |code: &str, msg: String| {
            status(
                Code::FailedPrecondition,
                code,
                msg,
                Some(pb::error_detail::Detail::EpochMismatch(pb::EpochMismatch {
                    current: vec![crate::admin::descriptor_pb(&r, &d)],
                })),
            )
        };
        let named = t.epoch.map_or(0, |e| e.version);
        if named != d.epoch.version {
            return Err(refuse(
                codes::EPOCH_MISMATCH,
                format!(
                    "range {} is at epoch version {}; the request named {named}",
                    d.range_id, d.epoch.version
                ),
            ));
        }
        for touch in touches {
            let inside = match touch {
                Touch::Key(k) => d.contains(k),
                Touch::Span(s, e) => d.contains_span(s, e),
            };
            if !inside {
                return Err(refuse(
                    codes::KEY_NOT_IN_RANGE,
                    format!("the request touches keys outside range {}", d.range_id),
                ));
            }
        }
        Ok(())
    }

    /// The leader to forward a write to, when this node knows one and is not it (and
    /// the request was not forwarded here already). Writes may enter through any
    /// node: clients outside the cluster cannot always reach the leader's address.
    fn forward_target(&self, meta: &tonic::metadata::MetadataMap) -> Option<String> {
        if meta.contains_key(FORWARDED) {
            return None;
        }
        let r = self.node.replica().ok()?;
        match r.leader() {
            (Some(l), Some(addr)) if l != r.node_id => Some(addr),
            _ => None,
        }
    }

    /// Sends a write to the leader and relays its answer (errors included, so a
    /// client still sees the leader's structured details).
    async fn forward<Req, Resp, F, Fut>(
        &self,
        addr: String,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(KvClient<Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let ch = self.node.pool.channel(&addr).map_err(|e| {
            status(
                Code::Unavailable,
                codes::NOT_LEADER,
                format!("leader {addr}: {e}"),
                None,
            )
        })?;
        let client = KvClient::new(ch)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut fwd = Request::new(req.into_inner());
        fwd.metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        match tokio::time::timeout(FORWARD_TIMEOUT, call(client, fwd)).await {
            Ok(r) => r,
            Err(_) => Err(status(
                Code::Unavailable,
                codes::OUTCOME_UNKNOWN,
                format!("the leader at {addr} did not answer a forwarded write within {FORWARD_TIMEOUT:?}"),
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

    async fn propose(&self, cmd: Command) -> Result<(Arc<Replica>, CommandResponse), Status> {
        if self.node.is_draining() {
            return Err(status(
                Code::Unavailable,
                codes::SHUTTING_DOWN,
                "node is shutting down",
                None,
            ));
        }
        let r = self.node.replica()?;
        match r.raft.client_write(cmd).await {
            Ok(resp) => Ok((r, resp.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(not_leader(r.range_id, f.leader_id, f.leader_node.map(|n| n.addr)))
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => Err(status(
                Code::Unavailable,
                codes::OUTCOME_UNKNOWN,
                format!(
                    "leadership changed while the write was in flight; it may or may not have been applied (new leader: {:?})",
                    f.leader_node.map(|n| n.addr)
                ),
                None,
            )),
            Err(RaftError::APIError(e)) => Err(status(Code::Internal, codes::INTERNAL, e.to_string(), None)),
            Err(RaftError::Fatal(e)) => Err(status(Code::Unavailable, codes::SHUTTING_DOWN, format!("raft stopped: {e}"), None)),
        }
    }

    /// Makes a read of the range linearizable (see `Replica::linearize`): on the leader
    /// or on a follower, which asks the leader for the read index.
    async fn read_barrier(&self, consistency: i32) -> Result<Arc<Replica>, Status> {
        if self.node.is_draining() {
            return Err(status(
                Code::Unavailable,
                codes::SHUTTING_DOWN,
                "node is shutting down",
                None,
            ));
        }
        let r = self.node.replica()?;
        match pb::Consistency::try_from(consistency) {
            Ok(pb::Consistency::Stale) => return Ok(r),
            Ok(pb::Consistency::Linearizable) => {}
            Err(_) => {
                return Err(invalid(
                    codes::INVALID_ARGUMENT,
                    format!("unknown consistency {consistency}"),
                ))
            }
        }
        r.linearize(READ_PATIENCE)
            .await
            .map_err(|e| shoal_raft::read_error(r.range_id, e))?;
        Ok(r)
    }

    fn header(&self, r: &Replica) -> Option<pb::ResponseHeader> {
        let applied = r.metrics().last_applied.as_ref().map_or(0, |l| l.index);
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

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.observe("Get", async {
            let req = req.into_inner();
            self.limits().check_key("key", &req.key, false)?;
            self.check_target(req.target.as_ref(), [Touch::Key(&req.key)])?;
            let r = self.read_barrier(req.consistency).await?;
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
            if let Some(addr) = self.forward_target(req.metadata()) {
                return self
                    .forward(addr, req, |mut c, r| async move { c.put(r).await })
                    .await;
            }
            let req = req.into_inner();
            let rid = req.request_id;
            let (op, n) = self.limits().put_op(pb::PutOp {
                key: req.key,
                value: req.value,
            })?;
            self.limits().check_request_size(n)?;
            self.check_target(req.target.as_ref(), [write_touch(&op)])?;
            let (r, resp) = self
                .propose(Self::once(rid, Command::Write(vec![op])))
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
            if let Some(addr) = self.forward_target(req.metadata()) {
                return self
                    .forward(addr, req, |mut c, r| async move { c.delete(r).await })
                    .await;
            }
            let req = req.into_inner();
            let rid = req.request_id;
            self.limits().check_key("key", &req.key, false)?;
            self.check_target(req.target.as_ref(), [Touch::Key(&req.key)])?;
            let (r, resp) = self
                .propose(Self::once(
                    rid,
                    Command::Write(vec![WriteOp::Delete { key: req.key }]),
                ))
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
            let req = req.into_inner();
            self.limits().check_span(&req.start, &req.end)?;
            self.check_target(req.target.as_ref(), [Touch::Span(&req.start, &req.end)])?;
            let limit = match req.limit as usize {
                0 => DEFAULT_SCAN_PAGE,
                n => n.min(MAX_SCAN_PAGE),
            };
            let r = self.read_barrier(req.consistency).await?;
            let span = KeySpan {
                start: req.start,
                end: req.end,
            };
            let (page, more) = r.engine.scan(&span, limit).map_err(Self::storage_error)?;
            Ok(Response::new(pb::ScanResponse {
                header: self.header(&r),
                kvs: page.into_iter().map(kv).collect(),
                more,
            }))
        })
        .await
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.observe("DeleteRange", async {
            if let Some(addr) = self.forward_target(req.metadata()) {
                return self
                    .forward(addr, req, |mut c, r| async move { c.delete_range(r).await })
                    .await;
            }
            let req = req.into_inner();
            let rid = req.request_id;
            self.limits().check_span(&req.start, &req.end)?;
            self.check_target(req.target.as_ref(), [Touch::Span(&req.start, &req.end)])?;
            let (r, resp) = self
                .propose(Self::once(
                    rid,
                    Command::Write(vec![WriteOp::DeleteRange {
                        start: req.start,
                        end: req.end,
                    }]),
                ))
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
            if let Some(addr) = self.forward_target(req.metadata()) {
                return self
                    .forward(addr, req, |mut c, r| async move { c.batch(r).await })
                    .await;
            }
            let req = req.into_inner();
            let rid = req.request_id;
            if req.ops.is_empty() {
                return Err(invalid(codes::INVALID_ARGUMENT, "batch has no ops".into()));
            }
            let ops = self.limits().batch(req.ops)?;
            self.check_target(req.target.as_ref(), ops.iter().map(write_touch))?;
            let (r, resp) = self.propose(Self::once(rid, Command::Write(ops))).await?;
            Ok(Response::new(pb::BatchResponse {
                header: self.header(&r),
                version: resp.index,
            }))
        })
        .await
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        self.observe("Txn", async {
            if let Some(addr) = self.forward_target(req.metadata()) {
                return self
                    .forward(addr, req, |mut c, r| async move { c.txn(r).await })
                    .await;
            }
            let req = req.into_inner();
            let rid = req.request_id;
            let (compares, success, failure) =
                self.limits().txn(req.compares, req.success, req.failure)?;
            self.check_target(
                req.target.as_ref(),
                compares
                    .iter()
                    .map(|c| Touch::Key(&c.key))
                    .chain(success.iter().chain(failure.iter()).map(txn_touch)),
            )?;
            let (r, resp) = self
                .propose(Self::once(
                    rid,
                    Command::Txn {
                        compares,
                        success,
                        failure,
                    },
                ))
                .await?;
            let results = resp
                .results
                .into_iter()
                .map(|res| {
                    use pb::txn_op_result::Result as R;
                    let result = match res {
                        // Not a transaction op: never in a transaction's results.
                        OpResult::NodeId(_) => return pb::TxnOpResult { result: None },
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
