//! The `TxnStep` RPC's glue: a transaction's step in a range, as the nodes send it
//! to each other (the payloads are the encodings of range commands and responses).

use shoal_proto::v1 as pb;
use shoal_raft::codec::{decode, encode};
use shoal_raft::{Command, Touch};

use super::{applied, target, target_pb, BoxFuture, Channel, KvClient, KvRpc, Outcome, Status};
use crate::error::{Error, Result};
use crate::request::{Op, Request};
use crate::validate::Limits;
use shoal_proto::error::ErrorCode;

impl KvRpc for pb::TxnStepRequest {
    rpc_glue!("TxnStep", pb::TxnStepResponse, txn_step);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        limits.check_request_size(self.step.len())?;
        let invalid = |why: String| Error::invalid(ErrorCode::InvalidArgument, why);
        let cmd: Command =
            decode(&self.step).map_err(|e| invalid(format!("an undecodable step: {e}")))?;
        if !cmd.is_txn_step() {
            return Err(invalid(format!("{cmd} is not a transaction's step")));
        }
        let touches = cmd.touches();
        if touches.is_empty() {
            return Err(invalid(format!("{cmd} touches no key")));
        }
        for t in touches {
            match t {
                Touch::Key(k) => limits.check_key("key", k, false)?,
                Touch::Span(s, e) => limits.check_span(s, e)?,
            }
        }
        Ok(Request {
            op: Op::Step(cmd),
            target: target(self.target),
            request_id: None,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Step(cmd) = req.op else {
            return Self::default();
        };
        Self {
            // Decoded from bytes that encoded it: it encodes again.
            step: encode(&cmd).unwrap_or_default(),
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::TxnStepResponse {
        pb::TxnStepResponse {
            header: Some(header),
            result: encode(&applied(out)).unwrap_or_default(),
        }
    }
}
