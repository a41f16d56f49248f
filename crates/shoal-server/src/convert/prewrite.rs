//! The `Prewrite` RPC's glue: a client's own prewrite of a range's keys, for a
//! transaction of puts it commits asynchronously (see `Kv.Prewrite` in kv.proto). It
//! runs as the coordinator's prewrites do: a `Command::Prewrite` step, each lock at a
//! `min_commit_ts` the range's leader takes.

use std::collections::BTreeSet;

use shoal_proto::error::ErrorCode;
use shoal_proto::txn::{commits_asynchronously, MAX_LOCK_TTL_MS};
use shoal_proto::v1 as pb;
use shoal_raft::txn_record::{Mutation, Prewrite, TxnConflict};
use shoal_raft::{Command, OpResult};

use super::{applied, target, target_pb, BoxFuture, Channel, KvClient, KvRpc, Outcome, Status};
use crate::error::{Error, Result};
use crate::request::{Op, Request};
use crate::validate::Limits;

fn invalid(why: impl Into<String>) -> Error {
    Error::invalid(ErrorCode::InvalidArgument, why.into())
}

impl KvRpc for pb::PrewriteRequest {
    rpc_glue!("Prewrite", pb::PrewriteResponse, prewrite);

    fn into_request(self, limits: &Limits) -> Result<Request> {
        if self.start_ts == 0 {
            return Err(invalid(
                "a prewrite needs its transaction's start timestamp",
            ));
        }
        if self.puts.is_empty() {
            return Err(invalid("a prewrite needs at least one key"));
        }
        if self.ttl_ms == 0 || self.ttl_ms > MAX_LOCK_TTL_MS {
            return Err(invalid(format!(
                "ttl_ms is {}; it must be 1 to {MAX_LOCK_TTL_MS}",
                self.ttl_ms
            )));
        }
        limits.check_writable("primary", &self.primary)?;
        let mut seen = BTreeSet::new();
        let mut bytes = 0;
        for p in &self.puts {
            limits.check_writable("key", &p.key)?;
            limits.check_value(&p.value)?;
            if !seen.insert(p.key.as_slice()) {
                return Err(invalid(format!(
                    "key {:?} is written twice",
                    String::from_utf8_lossy(&p.key)
                )));
            }
            bytes += p.key.len() + p.value.len();
        }
        for k in &self.secondaries {
            limits.check_key("secondary key", k, false)?;
            bytes += k.len();
        }
        let all = std::iter::once(self.primary.as_slice())
            .chain(self.secondaries.iter().map(Vec::as_slice));
        if !commits_asynchronously(all) {
            return Err(invalid(
                "too many secondary keys for a transaction committed asynchronously",
            ));
        }
        let has_primary = seen.contains(self.primary.as_slice());
        if !self.secondaries.is_empty() && !has_primary {
            return Err(invalid(
                "the secondary keys go with the prewrite of the primary key",
            ));
        }
        limits.check_request_size(bytes)?;
        let cmd = Command::Prewrite(Prewrite {
            start_ts: self.start_ts,
            primary: self.primary,
            mutations: self
                .puts
                .into_iter()
                .map(|p| Mutation::Put {
                    key: p.key,
                    value: p.value,
                })
                .collect(),
            ttl_ms: self.ttl_ms,
            async_commit: Some(self.secondaries),
        });
        Ok(Request {
            op: Op::Step(cmd),
            target: target(self.target),
            request_id: None,
        })
    }

    fn from_request(req: Request) -> Self {
        let Op::Step(Command::Prewrite(p)) = req.op else {
            return Self::default();
        };
        Self {
            start_ts: p.start_ts,
            primary: p.primary,
            puts: p
                .mutations
                .into_iter()
                .filter_map(|m| match m {
                    Mutation::Put { key, value } => Some(pb::PutOp { key, value }),
                    Mutation::Delete { .. } => None,
                })
                .collect(),
            secondaries: p.async_commit.unwrap_or_default(),
            ttl_ms: p.ttl_ms,
            target: target_pb(req.target),
        }
    }

    fn reply(header: pb::ResponseHeader, out: Outcome) -> pb::PrewriteResponse {
        use pb::prewrite_response::Outcome as Answer;
        let resp = applied(out);
        let outcome = match resp.results.first() {
            // Applied at the timestamp its range's leader took: the locks'.
            Some(OpResult::TxnDone) => Answer::MinCommitTs(resp.version),
            Some(OpResult::TxnConflict(TxnConflict::Committed { commit_ts, .. })) => {
                Answer::CommittedAt(*commit_ts)
            }
            Some(OpResult::TxnConflict(c)) => Answer::Conflict(shoal_txn::coordinator::describe(c)),
            other => Answer::Conflict(format!("the prewrite answered {other:?}")),
        };
        pb::PrewriteResponse {
            header: Some(header),
            outcome: Some(outcome),
        }
    }
}
