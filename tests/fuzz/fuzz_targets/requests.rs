//! The request validation layer: any bytes decoded as a client's request of each kind
//! and validated into its domain form against small limits. Never a panic; what
//! passes is within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shoal_proto::v1 as pb;
use shoal_raft::{TxnOp, WriteOp};
use shoal_server::convert::KvRpc;
use shoal_server::request::Op;
use shoal_server::validate::Limits;

const LIMITS: Limits = Limits {
    max_key_bytes: 16,
    max_value_bytes: 64,
    max_request_bytes: 256,
};

fn write_ok(op: &WriteOp) -> bool {
    match op {
        WriteOp::Put { key, value } => {
            !key.is_empty() && key.len() <= 16 && value.len() <= 64
        }
        WriteOp::Delete { key } => !key.is_empty() && key.len() <= 16,
        WriteOp::DeleteRange { start, end } => {
            start.len() <= 16 && end.len() <= 16 && (end.is_empty() || start <= end)
        }
    }
}

fn check(op: &Op) {
    match op {
        Op::Batch(ops) => {
            assert!(!ops.is_empty());
            assert!(ops.iter().all(write_ok));
        }
        Op::Txn {
            compares,
            success,
            failure,
        } => {
            assert!(compares.iter().all(|c| !c.key.is_empty() && c.key.len() <= 16));
            for op in success.iter().chain(failure.iter()) {
                match op {
                    TxnOp::Write(w) => assert!(write_ok(w)),
                    TxnOp::Get { key } => assert!(!key.is_empty() && key.len() <= 16),
                }
            }
        }
        Op::Write(w) => assert!(write_ok(w)),
        Op::Get { key, .. } => assert!(!key.is_empty() && key.len() <= 16),
        Op::Scan { start, end, .. } => {
            assert!(start.len() <= 16 && end.len() <= 16 && (end.is_empty() || start <= end))
        }
        // A transaction's step: it touches keys, each within the limits.
        Op::Step(cmd) => {
            let touches = cmd.touches();
            assert!(!touches.is_empty());
            assert!(touches
                .iter()
                .all(|t| !t.first_key().is_empty() && t.first_key().len() <= 16));
        }
    }
}

fn each<R: KvRpc + Message + Default>(data: &[u8]) {
    if let Ok(r) = R::decode(data) {
        if let Ok(req) = r.into_request(&LIMITS) {
            check(&req.op);
            if let Some(id) = req.request_id {
                assert!(id.client_id == 0 || id.seq >= id.acked_below);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    each::<pb::GetRequest>(data);
    each::<pb::ScanRequest>(data);
    each::<pb::PutRequest>(data);
    each::<pb::DeleteRequest>(data);
    each::<pb::DeleteRangeRequest>(data);
    each::<pb::BatchRequest>(data);
    each::<pb::TxnRequest>(data);
    each::<pb::TxnStepRequest>(data);
});
