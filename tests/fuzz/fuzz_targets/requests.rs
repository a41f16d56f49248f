//! The request validation layer: any bytes decoded as a client's batch or transaction
//! and checked against small limits. Never a panic; what passes is within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shoal_proto::v1 as pb;
use shoal_raft::{TxnOp, WriteOp};
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

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = pb::BatchRequest::decode(data) {
        if let Ok(ops) = LIMITS.batch(req.ops) {
            assert!(!ops.is_empty());
            assert!(ops.iter().all(write_ok));
        }
    }
    if let Ok(req) = pb::TxnRequest::decode(data) {
        if let Ok((compares, success, failure)) =
            LIMITS.txn(req.compares, req.success, req.failure)
        {
            assert!(compares.iter().all(|c| !c.key.is_empty() && c.key.len() <= 16));
            for op in success.iter().chain(failure.iter()) {
                match op {
                    TxnOp::Write(w) => assert!(write_ok(w)),
                    TxnOp::Get { key } => assert!(!key.is_empty() && key.len() <= 16),
                }
            }
        }
    }
});
