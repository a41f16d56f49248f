//! Validation of client requests against the node's limits: every request is checked
//! whole, and turned into domain ops, before anything is proposed, so a bad request
//! changes nothing. Pure functions of the request and the limits (fuzzed by
//! `tests/fuzz`).

use shoal_proto::error::{codes, status};
use shoal_proto::v1 as pb;
use shoal_raft::{Compare, CompareOp, CompareTarget, TxnOp, WriteOp};
use tonic::{Code, Status};

use crate::config::NodeConfig;

/// A refused request: `INVALID_ARGUMENT` with its stable code.
pub fn invalid(code: &str, msg: String) -> Status {
    status(Code::InvalidArgument, code, msg, None)
}

/// The size limits requests are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Keys and values of one request, together.
    pub max_request_bytes: usize,
}

impl Limits {
    pub fn of(cfg: &NodeConfig) -> Self {
        Self {
            max_key_bytes: cfg.max_key_bytes,
            max_value_bytes: cfg.max_value_bytes,
            max_request_bytes: cfg.max_request_bytes,
        }
    }

    pub fn check_key(&self, what: &str, key: &[u8], allow_empty: bool) -> Result<(), Status> {
        if key.is_empty() && !allow_empty {
            return Err(invalid(codes::EMPTY_KEY, format!("{what} is empty")));
        }
        let max = self.max_key_bytes;
        if key.len() > max {
            return Err(invalid(
                codes::KEY_TOO_LARGE,
                format!("{what} is {} bytes; the limit is {max}", key.len()),
            ));
        }
        Ok(())
    }

    pub fn check_value(&self, value: &[u8]) -> Result<(), Status> {
        let max = self.max_value_bytes;
        if value.len() > max {
            return Err(invalid(
                codes::VALUE_TOO_LARGE,
                format!("value is {} bytes; the limit is {max}", value.len()),
            ));
        }
        Ok(())
    }

    pub fn check_span(&self, start: &[u8], end: &[u8]) -> Result<(), Status> {
        self.check_key("start key", start, true)?;
        self.check_key("end key", end, true)?;
        if !end.is_empty() && start > end {
            return Err(invalid(
                codes::INVALID_ARGUMENT,
                "start key is after end key".into(),
            ));
        }
        Ok(())
    }

    pub fn check_request_size(&self, bytes: usize) -> Result<(), Status> {
        let max = self.max_request_bytes;
        if bytes > max {
            return Err(invalid(
                codes::REQUEST_TOO_LARGE,
                format!("request holds {bytes} bytes of keys and values; the limit is {max}"),
            ));
        }
        Ok(())
    }

    pub fn write_op(&self, op: pb::WriteOp) -> Result<(WriteOp, usize), Status> {
        use pb::write_op::Op;
        match op.op {
            Some(Op::Put(p)) => self.put_op(p),
            Some(Op::Delete(d)) => {
                self.check_key("key", &d.key, false)?;
                let n = d.key.len();
                Ok((WriteOp::Delete { key: d.key }, n))
            }
            Some(Op::DeleteRange(r)) => {
                self.check_span(&r.start, &r.end)?;
                let n = r.start.len() + r.end.len();
                Ok((
                    WriteOp::DeleteRange {
                        start: r.start,
                        end: r.end,
                    },
                    n,
                ))
            }
            None => Err(invalid(
                codes::INVALID_ARGUMENT,
                "write op has no operation set".into(),
            )),
        }
    }

    pub fn put_op(&self, p: pb::PutOp) -> Result<(WriteOp, usize), Status> {
        self.check_key("key", &p.key, false)?;
        self.check_value(&p.value)?;
        let n = p.key.len() + p.value.len();
        Ok((
            WriteOp::Put {
                key: p.key,
                value: p.value,
            },
            n,
        ))
    }

    pub fn txn_op(&self, op: pb::TxnOp) -> Result<(TxnOp, usize), Status> {
        use pb::txn_op::Op;
        let w = |op| pb::WriteOp { op: Some(op) };
        match op.op {
            Some(Op::Put(p)) => self
                .write_op(w(pb::write_op::Op::Put(p)))
                .map(|(o, n)| (TxnOp::Write(o), n)),
            Some(Op::Delete(d)) => self
                .write_op(w(pb::write_op::Op::Delete(d)))
                .map(|(o, n)| (TxnOp::Write(o), n)),
            Some(Op::DeleteRange(r)) => self
                .write_op(w(pb::write_op::Op::DeleteRange(r)))
                .map(|(o, n)| (TxnOp::Write(o), n)),
            Some(Op::Get(g)) => {
                self.check_key("key", &g.key, false)?;
                let n = g.key.len();
                Ok((TxnOp::Get { key: g.key }, n))
            }
            None => Err(invalid(
                codes::INVALID_ARGUMENT,
                "txn op has no operation set".into(),
            )),
        }
    }

    pub fn compare(&self, c: pb::Compare) -> Result<(Compare, usize), Status> {
        use pb::compare::{Op, Operand, Target};
        self.check_key("compare key", &c.key, false)?;
        let op = match Op::try_from(c.op) {
            Ok(Op::Equal) => CompareOp::Equal,
            Ok(Op::NotEqual) => CompareOp::NotEqual,
            Ok(Op::Greater) => CompareOp::Greater,
            Ok(Op::Less) => CompareOp::Less,
            Err(_) => {
                return Err(invalid(
                    codes::INVALID_ARGUMENT,
                    format!("unknown compare op {}", c.op),
                ))
            }
        };
        let bad = |m: &str| invalid(codes::INVALID_ARGUMENT, m.to_string());
        let target = match (Target::try_from(c.target), c.operand) {
            (Ok(Target::Value), Some(Operand::Value(v))) => {
                self.check_value(&v)?;
                CompareTarget::Value(v)
            }
            (Ok(Target::Version), Some(Operand::Version(v))) => CompareTarget::Version(v),
            (Ok(Target::Exists), Some(Operand::Exists(e))) => CompareTarget::Exists(e),
            (Err(_), _) => return Err(bad(&format!("unknown compare target {}", c.target))),
            _ => {
                return Err(bad(
                    "compare operand does not match its target (value, version or exists)",
                ))
            }
        };
        let n = c.key.len()
            + match &target {
                CompareTarget::Value(v) => v.len(),
                _ => 8,
            };
        Ok((
            Compare {
                key: c.key,
                op,
                target,
            },
            n,
        ))
    }

    /// A batch's ops, each valid and all of them within the request limit.
    pub fn batch(&self, ops: Vec<pb::WriteOp>) -> Result<Vec<WriteOp>, Status> {
        if ops.is_empty() {
            return Err(invalid(codes::INVALID_ARGUMENT, "batch has no ops".into()));
        }
        let mut out = Vec::with_capacity(ops.len());
        let mut bytes = 0;
        for op in ops {
            let (op, n) = self.write_op(op)?;
            bytes += n;
            out.push(op);
        }
        self.check_request_size(bytes)?;
        Ok(out)
    }

    /// A transaction's compares and branches, each valid and all of them within the
    /// request limit.
    #[allow(clippy::type_complexity)]
    pub fn txn(
        &self,
        compares: Vec<pb::Compare>,
        success: Vec<pb::TxnOp>,
        failure: Vec<pb::TxnOp>,
    ) -> Result<(Vec<Compare>, Vec<TxnOp>, Vec<TxnOp>), Status> {
        let mut bytes = 0;
        let mut cs = Vec::with_capacity(compares.len());
        for c in compares {
            let (c, n) = self.compare(c)?;
            bytes += n;
            cs.push(c);
        }
        let mut branch = |ops: Vec<pb::TxnOp>| -> Result<Vec<TxnOp>, Status> {
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                let (op, n) = self.txn_op(op)?;
                bytes += n;
                out.push(op);
            }
            Ok(out)
        };
        let success = branch(success)?;
        let failure = branch(failure)?;
        self.check_request_size(bytes)?;
        Ok((cs, success, failure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    const LIMITS: Limits = Limits {
        max_key_bytes: 16,
        max_value_bytes: 64,
        max_request_bytes: 256,
    };

    fn within(op: &WriteOp) -> bool {
        match op {
            WriteOp::Put { key, value } => !key.is_empty() && key.len() <= 16 && value.len() <= 64,
            WriteOp::Delete { key } => !key.is_empty() && key.len() <= 16,
            WriteOp::DeleteRange { start, end } => {
                start.len() <= 16 && end.len() <= 16 && (end.is_empty() || start <= end)
            }
        }
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        // What the `requests` fuzz target does (tests/fuzz), on every run: a batch
        // passes only if every op is within the limits, and then whole.
        #[test]
        fn a_batch_passes_only_within_the_limits(
            ops in proptest::collection::vec((0u8..3, bytes(20), bytes(80)), 0..6)
        ) {
            let ops: Vec<pb::WriteOp> = ops
                .into_iter()
                .map(|(kind, a, b)| {
                    use pb::write_op::Op;
                    let op = match kind {
                        0 => Op::Put(pb::PutOp { key: a, value: b }),
                        1 => Op::Delete(pb::DeleteOp { key: a }),
                        _ => Op::DeleteRange(pb::DeleteRangeOp { start: a, end: b }),
                    };
                    pb::WriteOp { op: Some(op) }
                })
                .collect();
            let n = ops.len();
            let sizes: usize = ops
                .iter()
                .map(|o| match &o.op {
                    Some(pb::write_op::Op::Put(p)) => p.key.len() + p.value.len(),
                    Some(pb::write_op::Op::Delete(d)) => d.key.len(),
                    Some(pb::write_op::Op::DeleteRange(r)) => r.start.len() + r.end.len(),
                    None => 0,
                })
                .sum();
            match LIMITS.batch(ops) {
                Ok(out) => {
                    prop_assert_eq!(out.len(), n);
                    prop_assert!(out.iter().all(within));
                    prop_assert!(sizes <= 256);
                }
                Err(s) => prop_assert_eq!(s.code(), Code::InvalidArgument),
            }
        }

        #[test]
        fn arbitrary_bytes_as_requests_never_panic(data in bytes(200)) {
            if let Ok(r) = pb::BatchRequest::decode(data.as_slice()) {
                let _ = LIMITS.batch(r.ops);
            }
            if let Ok(r) = pb::TxnRequest::decode(data.as_slice()) {
                let _ = LIMITS.txn(r.compares, r.success, r.failure);
            }
        }
    }
}
