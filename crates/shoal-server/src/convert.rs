//! The gRPC edge: every conversion between the wire types of `shoal-proto` and the
//! node's domain types, in both directions, and the one place where a domain
//! [`Error`] becomes a gRPC status (`impl From<Error> for Status`).
//!
//! - Requests: each `Kv` RPC's request type implements [`KvRpc`]: how it validates into
//!   a domain [`Request`] (structure here, limits in [`crate::validate`]), how it is
//!   encoded again to be passed on to another node, and how its reply is built.
//! - Descriptors: [`descriptor`] (a [`LocatedRange`] as clients see it).
//! - Node-level calls: [`peer_message`] and [`peer_payload`] (postcard payloads).

use futures::future::BoxFuture;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::error::ErrorCode;
use shoal_proto::v1::{self as pb, kv_client::KvClient};
use shoal_raft::{
    CommandResponse, Compare, CompareOp, CompareTarget, OpResult, ScanPage, TxnOp, WriteOp,
};
use shoal_storage::Versioned;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::error::{Error, Result};
use crate::located::LocatedRange;
use crate::request::{Consistency, Op, Request, RequestId, Target};
use crate::validate::Limits;

// ---- errors ---------------------------------------------------------------------

impl From<Error> for Status {
    /// The status a client sees: a gRPC code and the stable code (with the leader, or
    /// the current descriptors, where the variant has them) in an `ErrorDetail`.
    fn from(e: Error) -> Status {
        use pb::error_detail::Detail;
        let located = |current: &[LocatedRange]| {
            Some(Detail::EpochMismatch(pb::EpochMismatch {
                current: current.iter().map(descriptor).collect(),
            }))
        };
        let (grpc, detail) = match &e {
            Error::Remote(s) => return s.clone(),
            Error::Peer { status, .. } => {
                let message = e.to_string();
                return Status::with_details(
                    status.code(),
                    message,
                    status.details().to_vec().into(),
                );
            }
            Error::NotLeader {
                range_id,
                leader_id,
                leader_addr,
            } => (
                Code::Unavailable,
                Some(Detail::NotLeader(pb::NotLeader {
                    range_id: *range_id,
                    leader_id: leader_id.unwrap_or(0),
                    leader_addr: leader_addr.clone().unwrap_or_default(),
                })),
            ),
            Error::EpochMismatch { current, .. } | Error::KeyNotInRange { current, .. } => {
                (Code::FailedPrecondition, located(current))
            }
            Error::CrossRange { current } => (Code::InvalidArgument, located(current)),
            Error::RangeNotFound(_) | Error::UnknownNode(_) => (Code::NotFound, None),
            Error::NotReady { .. }
            | Error::NotInitialized(_)
            | Error::OutcomeUnknown(_)
            | Error::NoQuorum(_)
            | Error::ShuttingDown(_)
            | Error::Unavailable(_)
            | Error::RangeOverlap { .. } => (Code::Unavailable, None),
            Error::Invalid { code, .. } => (
                match code {
                    ErrorCode::UserExists => Code::AlreadyExists,
                    ErrorCode::UserNotFound => Code::NotFound,
                    _ => Code::InvalidArgument,
                },
                None,
            ),
            Error::Txn { code, .. } => (
                match code {
                    ErrorCode::TxnConflict => Code::Aborted,
                    ErrorCode::TxnNotFound | ErrorCode::TxnExpired => Code::NotFound,
                    ErrorCode::TxnTooLarge => Code::ResourceExhausted,
                    _ => Code::FailedPrecondition,
                },
                None,
            ),
            Error::Refused(_)
            | Error::AlreadyInitialized(_)
            | Error::PeerUnreachable(_)
            | Error::WrongNode { .. }
            | Error::StaleRequest { .. }
            | Error::SnapshotTooOld { .. } => (Code::FailedPrecondition, None),
            Error::Storage(_) | Error::Internal(_) => (Code::Internal, None),
            Error::Unauthenticated(_) => (Code::Unauthenticated, None),
            Error::PermissionDenied(_) => (Code::PermissionDenied, None),
        };
        let d = pb::ErrorDetail {
            code: e.code().as_str().to_string(),
            detail,
        };
        Status::with_details(grpc, e.to_string(), d.encode_to_vec().into())
    }
}

// ---- descriptors ----------------------------------------------------------------

/// The wire form of a range's descriptor, with its replicas' addresses.
pub fn descriptor(l: &LocatedRange) -> pb::RangeDescriptor {
    let d = &l.desc;
    pb::RangeDescriptor {
        range_id: d.range_id,
        start: d.start.clone(),
        end: d.end.clone(),
        epoch: Some(pb::RangeEpoch {
            version: d.epoch.version,
            conf_ver: d.epoch.conf_ver,
        }),
        replicas: d
            .replicas
            .iter()
            .map(|rep| pb::ReplicaDescriptor {
                node_id: rep.node_id,
                role: if rep.voter { "voter" } else { "learner" }.to_string(),
                addr: l.addr(rep.node_id).unwrap_or_default().to_string(),
            })
            .collect(),
    }
}

// ---- node-level calls -----------------------------------------------------------

/// A node-level call's message: `payload` about range `range_id`, for node `target`.
pub fn peer_message<T: Serialize>(
    range_id: u64,
    target: u64,
    payload: &T,
) -> Result<pb::PeerMessage> {
    Ok(pb::PeerMessage {
        range_id,
        payload: shoal_raft::codec::encode(payload).map_err(|e| Error::Internal(e.to_string()))?,
        target_node_id: target,
    })
}

/// The payload of a node-level call a peer sent (one that does not decode is refused
/// as invalid).
pub fn peer_payload<T: DeserializeOwned>(m: &pb::PeerMessage) -> Result<T> {
    shoal_raft::codec::decode(&m.payload).map_err(|e| {
        Error::invalid(
            ErrorCode::InvalidArgument,
            format!("undecodable peer message: {e}"),
        )
    })
}

// ---- key-value requests ---------------------------------------------------------

/// What serving a request gave, for its reply.
#[derive(Debug)]
pub enum Outcome {
    Get(Option<Versioned>),
    Scan(ScanPage),
    Applied(CommandResponse),
}

/// One RPC of the `Kv` service, as the request pipeline (`kv.rs`) needs it.
pub trait KvRpc: Sized + Send + 'static {
    /// The RPC's name, for metrics.
    const NAME: &'static str;
    type Reply: Send + 'static;
    /// Validates the wire request into its domain form (structure, then `limits`).
    fn into_request(self, limits: &Limits) -> Result<Request>;
    /// The wire request again, to pass it on to another node.
    fn from_request(req: Request) -> Self;
    /// The reply from what serving the request gave.
    fn reply(header: pb::ResponseHeader, out: Outcome) -> Self::Reply;
    /// Sends the request to another node.
    fn send(
        client: KvClient<Channel>,
        req: tonic::Request<Self>,
    ) -> BoxFuture<'static, std::result::Result<tonic::Response<Self::Reply>, Status>>;
}

fn target(t: Option<pb::RangeTarget>) -> Option<Target> {
    t.map(|t| Target {
        range_id: t.range_id,
        version: t.epoch.map_or(0, |e| e.version),
    })
}

fn target_pb(t: Option<Target>) -> Option<pb::RangeTarget> {
    t.map(|t| pb::RangeTarget {
        range_id: t.range_id,
        epoch: Some(pb::RangeEpoch {
            version: t.version,
            conf_ver: 0,
        }),
    })
}

fn request_id(limits: &Limits, id: Option<pb::RequestId>) -> Result<Option<RequestId>> {
    let Some(id) = id else { return Ok(None) };
    let id = RequestId {
        client_id: id.client_id,
        seq: id.seq,
        acked_below: id.acked_below,
    };
    limits.request_id(&id)?;
    Ok(Some(id))
}

fn request_id_pb(id: Option<RequestId>) -> Option<pb::RequestId> {
    id.map(|r| pb::RequestId {
        client_id: r.client_id,
        seq: r.seq,
        acked_below: r.acked_below,
    })
}

fn consistency(c: i32) -> Result<Consistency> {
    match pb::Consistency::try_from(c) {
        Ok(pb::Consistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(pb::Consistency::Stale) => Ok(Consistency::Stale),
        Err(_) => Err(Error::invalid(
            ErrorCode::InvalidArgument,
            format!("unknown consistency {c}"),
        )),
    }
}

fn consistency_pb(c: Consistency) -> i32 {
    match c {
        Consistency::Linearizable => pb::Consistency::Linearizable as i32,
        Consistency::Stale => pb::Consistency::Stale as i32,
    }
}

fn key_value(v: Versioned) -> pb::KeyValue {
    pb::KeyValue {
        key: v.key,
        value: v.value,
        version: v.version,
    }
}

/// A wire write op in its domain form (structure only).
fn write_op(op: pb::WriteOp) -> Result<WriteOp> {
    use pb::write_op::Op as W;
    match op.op {
        Some(W::Put(p)) => Ok(WriteOp::Put {
            key: p.key,
            value: p.value,
        }),
        Some(W::Delete(d)) => Ok(WriteOp::Delete { key: d.key }),
        Some(W::DeleteRange(r)) => Ok(WriteOp::DeleteRange {
            end: crate::validate::kv_delete_end(&r.start, r.end)?,
            start: r.start,
        }),
        None => Err(Error::invalid(
            ErrorCode::InvalidArgument,
            "write op has no operation set",
        )),
    }
}

fn write_op_pb(op: WriteOp) -> pb::WriteOp {
    use pb::write_op::Op as W;
    pb::WriteOp {
        op: Some(match op {
            WriteOp::Put { key, value } => W::Put(pb::PutOp { key, value }),
            WriteOp::Delete { key } => W::Delete(pb::DeleteOp { key }),
            WriteOp::DeleteRange { start, end } => W::DeleteRange(pb::DeleteRangeOp { start, end }),
        }),
    }
}

fn txn_op(op: pb::TxnOp) -> Result<TxnOp> {
    use pb::txn_op::Op as T;
    use pb::write_op::Op as W;
    let w = |op| write_op(pb::WriteOp { op: Some(op) }).map(TxnOp::Write);
    match op.op {
        Some(T::Put(p)) => w(W::Put(p)),
        Some(T::Delete(d)) => w(W::Delete(d)),
        Some(T::DeleteRange(r)) => w(W::DeleteRange(r)),
        Some(T::Get(g)) => Ok(TxnOp::Get { key: g.key }),
        None => Err(Error::invalid(
            ErrorCode::InvalidArgument,
            "txn op has no operation set",
        )),
    }
}

fn txn_op_pb(op: TxnOp) -> pb::TxnOp {
    use pb::txn_op::Op as T;
    use pb::write_op::Op as W;
    pb::TxnOp {
        op: Some(match op {
            TxnOp::Get { key } => T::Get(pb::GetOp { key }),
            TxnOp::Write(w) => match write_op_pb(w).op {
                Some(W::Put(p)) => T::Put(p),
                Some(W::Delete(d)) => T::Delete(d),
                Some(W::DeleteRange(r)) => T::DeleteRange(r),
                None => return pb::TxnOp { op: None },
            },
        }),
    }
}

fn compare(c: pb::Compare) -> Result<Compare> {
    use pb::compare::{Op as O, Operand, Target as T};
    let bad = |m: String| Error::invalid(ErrorCode::InvalidArgument, m);
    let op = match O::try_from(c.op) {
        Ok(O::Equal) => CompareOp::Equal,
        Ok(O::NotEqual) => CompareOp::NotEqual,
        Ok(O::Greater) => CompareOp::Greater,
        Ok(O::Less) => CompareOp::Less,
        Err(_) => return Err(bad(format!("unknown compare op {}", c.op))),
    };
    let target = match (T::try_from(c.target), c.operand) {
        (Ok(T::Value), Some(Operand::Value(v))) => CompareTarget::Value(v),
        (Ok(T::Version), Some(Operand::Version(v))) => CompareTarget::Version(v),
        (Ok(T::Exists), Some(Operand::Exists(e))) => CompareTarget::Exists(e),
        (Err(_), _) => return Err(bad(format!("unknown compare target {}", c.target))),
        _ => {
            return Err(bad(
                "compare operand does not match its target (value, version or exists)".into(),
            ))
        }
    };
    Ok(Compare {
        key: c.key,
        op,
        target,
    })
}

fn compare_pb(c: Compare) -> pb::Compare {
    use pb::compare::{Op as O, Operand, Target as T};
    let op = match c.op {
        CompareOp::Equal => O::Equal,
        CompareOp::NotEqual => O::NotEqual,
        CompareOp::Greater => O::Greater,
        CompareOp::Less => O::Less,
    };
    let (target, operand) = match c.target {
        CompareTarget::Value(v) => (T::Value, Operand::Value(v)),
        CompareTarget::Version(v) => (T::Version, Operand::Version(v)),
        CompareTarget::Exists(e) => (T::Exists, Operand::Exists(e)),
    };
    pb::Compare {
        key: c.key,
        target: target as i32,
        op: op as i32,
        operand: Some(operand),
    }
}

/// A batch's ops, each valid and all of them within the request limit.
pub fn batch(limits: &Limits, ops: Vec<pb::WriteOp>) -> Result<Vec<WriteOp>> {
    if ops.is_empty() {
        return Err(Error::invalid(
            ErrorCode::InvalidArgument,
            "batch has no ops",
        ));
    }
    let mut bytes = 0;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let op = write_op(op)?;
        bytes += limits.write_op(&op)?;
        out.push(op);
    }
    limits.check_request_size(bytes)?;
    Ok(out)
}

/// A transaction's compares and branches, each valid and all of them within the
/// request limit.
pub fn txn(
    limits: &Limits,
    compares: Vec<pb::Compare>,
    success: Vec<pb::TxnOp>,
    failure: Vec<pb::TxnOp>,
) -> Result<Op> {
    let mut bytes = 0;
    let mut cs = Vec::with_capacity(compares.len());
    for c in compares {
        let c = compare(c)?;
        bytes += limits.compare(&c)?;
        cs.push(c);
    }
    let mut branch = |ops: Vec<pb::TxnOp>| -> Result<Vec<TxnOp>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let op = txn_op(op)?;
            bytes += limits.txn_op(&op)?;
            out.push(op);
        }
        Ok(out)
    };
    let success = branch(success)?;
    let failure = branch(failure)?;
    limits.check_request_size(bytes)?;
    Ok(Op::Txn {
        compares: cs,
        success,
        failure,
    })
}

/// The command's response, from an outcome that must be one.
fn applied(out: Outcome) -> CommandResponse {
    match out {
        Outcome::Applied(r) => r,
        _ => CommandResponse::default(),
    }
}

/// Builds the [`KvRpc`] glue for one RPC: its name, reply type and client method.
macro_rules! rpc_glue {
    ($name:literal, $reply:ty, $method:ident) => {
        const NAME: &'static str = $name;
        type Reply = $reply;
        fn send(
            mut client: KvClient<Channel>,
            req: tonic::Request<Self>,
        ) -> BoxFuture<'static, std::result::Result<tonic::Response<Self::Reply>, Status>> {
            Box::pin(async move { client.$method(req).await })
        }
    };
}

impl KvRpc for pb::GetRequest {
    rpc_glue!("Get", pb::GetResponse, get);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        limits.check_readable("key", &self.key)?;
        let op = Op::Get {
            consistency: consistency(self.consistency)?,
            key: self.key,
            read_ts: (self.read_ts != 0).then_some(self.read_ts),
        };
        Ok(Request {
            op,
            target: target(self.target),
            request_id: None,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Get {
            key,
            consistency,
            read_ts,
        } = req.op
        else {
            return Self::default();
        };
        Self {
            key,
            consistency: consistency_pb(consistency),
            read_ts: read_ts.unwrap_or(0),
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::GetResponse {
        let kv = match out {
            Outcome::Get(found) => found.map(key_value),
            _ => None,
        };
        pb::GetResponse {
            header: Some(header),
            kv,
        }
    }
}

impl KvRpc for pb::ScanRequest {
    rpc_glue!("Scan", pb::ScanResponse, scan);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        limits.check_span(&self.start, &self.end)?;
        let op = Op::Scan {
            consistency: consistency(self.consistency)?,
            end: crate::validate::kv_end(&self.start, self.end),
            start: self.start,
            limit: self.limit,
            reverse: self.reverse,
            read_ts: (self.read_ts != 0).then_some(self.read_ts),
        };
        Ok(Request {
            op,
            target: target(self.target),
            request_id: None,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Scan {
            start,
            end,
            limit,
            reverse,
            consistency,
            read_ts,
        } = req.op
        else {
            return Self::default();
        };
        Self {
            start,
            end,
            limit,
            consistency: consistency_pb(consistency),
            reverse,
            read_ts: read_ts.unwrap_or(0),
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::ScanResponse {
        let page = match out {
            Outcome::Scan(p) => p,
            _ => ScanPage::default(),
        };
        pb::ScanResponse {
            header: Some(header),
            kvs: page.kvs.into_iter().map(key_value).collect(),
            more: page.more,
            resume_key: page.resume_key,
        }
    }
}

impl KvRpc for pb::PutRequest {
    rpc_glue!("Put", pb::PutResponse, put);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        limits.check_writable("key", &self.key)?;
        limits.check_value(&self.value)?;
        limits.check_request_size(self.key.len() + self.value.len())?;
        Ok(Request {
            op: Op::Write(WriteOp::Put {
                key: self.key,
                value: self.value,
            }),
            target: target(self.target),
            request_id: request_id(limits, self.request_id)?,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Write(WriteOp::Put { key, value }) = req.op else {
            return Self::default();
        };
        Self {
            key,
            value,
            request_id: request_id_pb(req.request_id),
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::PutResponse {
        pb::PutResponse {
            header: Some(header),
            version: applied(out).version,
        }
    }
}

impl KvRpc for pb::DeleteRequest {
    rpc_glue!("Delete", pb::DeleteResponse, delete);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        limits.check_writable("key", &self.key)?;
        Ok(Request {
            op: Op::Write(WriteOp::Delete { key: self.key }),
            target: target(self.target),
            request_id: request_id(limits, self.request_id)?,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Write(WriteOp::Delete { key }) = req.op else {
            return Self::default();
        };
        Self {
            key,
            request_id: request_id_pb(req.request_id),
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::DeleteResponse {
        let r = applied(out);
        pb::DeleteResponse {
            header: Some(header),
            version: r.version,
            deleted: matches!(r.results.first(), Some(OpResult::Deleted(n)) if *n > 0),
        }
    }
}

impl KvRpc for pb::DeleteRangeRequest {
    rpc_glue!("DeleteRange", pb::DeleteRangeResponse, delete_range);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        limits.check_span(&self.start, &self.end)?;
        Ok(Request {
            op: Op::Write(WriteOp::DeleteRange {
                end: crate::validate::kv_delete_end(&self.start, self.end)?,
                start: self.start,
            }),
            target: target(self.target),
            request_id: request_id(limits, self.request_id)?,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Write(WriteOp::DeleteRange { start, end }) = req.op else {
            return Self::default();
        };
        Self {
            start,
            end,
            request_id: request_id_pb(req.request_id),
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::DeleteRangeResponse {
        let r = applied(out);
        let deleted = match r.results.first() {
            Some(OpResult::Deleted(n)) => *n,
            _ => 0,
        };
        pb::DeleteRangeResponse {
            header: Some(header),
            version: r.version,
            deleted,
        }
    }
}

impl KvRpc for pb::BatchRequest {
    rpc_glue!("Batch", pb::BatchResponse, batch);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        Ok(Request {
            op: Op::Batch(batch(limits, self.ops)?),
            target: target(self.target),
            request_id: request_id(limits, self.request_id)?,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Batch(ops) = req.op else {
            return Self::default();
        };
        Self {
            ops: ops.into_iter().map(write_op_pb).collect(),
            request_id: request_id_pb(req.request_id),
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::BatchResponse {
        pb::BatchResponse {
            header: Some(header),
            version: applied(out).version,
        }
    }
}

impl KvRpc for pb::TxnRequest {
    rpc_glue!("Txn", pb::TxnResponse, txn);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        Ok(Request {
            op: txn(limits, self.compares, self.success, self.failure)?,
            target: target(self.target),
            request_id: request_id(limits, self.request_id)?,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Txn {
            compares,
            success,
            failure,
        } = req.op
        else {
            return Self::default();
        };
        Self {
            compares: compares.into_iter().map(compare_pb).collect(),
            success: success.into_iter().map(txn_op_pb).collect(),
            failure: failure.into_iter().map(txn_op_pb).collect(),
            request_id: request_id_pb(req.request_id),
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::TxnResponse {
        use pb::txn_op_result::Result as R;
        let r = applied(out);
        let results = r
            .results
            .into_iter()
            .map(|res| pb::TxnOpResult {
                result: match res {
                    OpResult::Put(v) => Some(R::Put(v)),
                    OpResult::Deleted(n) => Some(R::Deleted(n)),
                    OpResult::Get(found) => Some(R::Get(pb::GetResult {
                        kv: found.map(|f| pb::KeyValue {
                            key: f.key,
                            value: f.value,
                            version: f.version,
                        }),
                    })),
                    // Not transaction ops: never in a transaction's results.
                    OpResult::NodeId(_)
                    | OpResult::RangeId(_)
                    | OpResult::Refused { .. }
                    | OpResult::StaleRequest { .. }
                    | OpResult::TimestampHigh(_)
                    | OpResult::TxnDone
                    | OpResult::TxnStatus(_)
                    | OpResult::TxnConflict(_)
                    | OpResult::Rider(_)
                    | OpResult::MergeFenced { .. } => None,
                },
            })
            .collect();
        pb::TxnResponse {
            header: Some(header),
            succeeded: r.succeeded,
            results,
            version: r.version,
        }
    }
}

mod prewrite;
mod step;
#[cfg(test)]
mod tests;
