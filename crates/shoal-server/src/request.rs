//! A client's key-value request as the node works with it: what it reads or writes
//! ([`Op`]), the range it was routed to ([`Target`]), its request id; and what each
//! kind of request needs of routing (its anchor key and the keys it touches) and of
//! Raft (its [`Command`]).

use shoal_raft::command::txn_touches;
use shoal_raft::{Command, Compare, Touch, TxnOp, WriteOp};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed with a quorum first: sees every acknowledged write.
    Linearizable,
    /// Served by any replica from its own state.
    Stale,
}

/// The range a client routed a request to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub range_id: u64,
    /// The epoch version the client knew the range at.
    pub version: u64,
}

/// A write's id: retries of it carry the same, and it applies at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    pub client_id: u64,
    pub seq: u64,
    pub acked_below: u64,
}

/// What a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Get {
        key: Vec<u8>,
        consistency: Consistency,
        /// Read as of this timestamp (`None`: the newest version).
        read_ts: Option<u64>,
    },
    /// A page of `[start, end)`; with `reverse`, descending from `end`.
    Scan {
        start: Vec<u8>,
        end: Vec<u8>,
        /// As asked (0: the server's page size).
        limit: u32,
        reverse: bool,
        consistency: Consistency,
        /// Read as of this timestamp (`None`: a fresh one, taken by the node).
        read_ts: Option<u64>,
    },
    /// One write: a put, a delete or a delete-range.
    Write(WriteOp),
    Batch(Vec<WriteOp>),
    Txn {
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    /// One of a transaction's steps in a range (a `Command::Prewrite`, `CommitKeys`,
    /// `RollbackKeys`, `CheckTxn`, `HeartbeatTxn` or `OnePhase`, proposed; or a
    /// `ValidateReads`, served as a read).
    Step(Command),
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub op: Op,
    pub target: Option<Target>,
    /// Writes only (0 as client id: no deduplication).
    pub request_id: Option<RequestId>,
}

/// The key a request is routed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor<'a> {
    pub key: &'a [u8],
    /// The keys just before `key` (a descending scan ending there): an empty `key` is
    /// then the end of the key space.
    pub before: bool,
}

impl Op {
    /// Whether the request writes (through Raft, on the range's leader).
    pub fn is_write(&self) -> bool {
        self.consistency().is_none()
    }

    /// Whether the request may run as a transaction across ranges when its keys span
    /// several (a batch, an etcd-style transaction).
    pub fn runs_across(&self) -> bool {
        matches!(self, Op::Batch(_) | Op::Txn { .. })
    }

    /// The consistency a read asks for (`None` for a write). A transaction's check of
    /// its reads is a linearizable read.
    pub fn consistency(&self) -> Option<Consistency> {
        match self {
            Op::Get { consistency, .. } | Op::Scan { consistency, .. } => Some(*consistency),
            Op::Step(Command::ValidateReads { .. }) => Some(Consistency::Linearizable),
            _ => None,
        }
    }

    /// The keys and spans the request touches, as routing checks them against a
    /// range. A scan touches its first key (a descending one: nothing here; its range
    /// is the one holding the keys before its end).
    pub fn touches(&self) -> Vec<Touch<'_>> {
        match self {
            Op::Get { key, .. } => vec![Touch::Key(key)],
            Op::Write(w) => vec![w.touch()],
            Op::Scan { start, reverse, .. } => {
                if *reverse {
                    Vec::new()
                } else {
                    vec![Touch::Key(start)]
                }
            }
            Op::Batch(ops) => ops.iter().map(WriteOp::touch).collect(),
            Op::Txn {
                compares,
                success,
                failure,
            } => txn_touches(compares, success, failure).collect(),
            Op::Step(cmd) => cmd.touches(),
        }
    }

    /// The key the request routes by.
    pub fn anchor(&self) -> Anchor<'_> {
        match self {
            Op::Scan {
                end, reverse: true, ..
            } => Anchor {
                key: end,
                before: true,
            },
            op => Anchor {
                key: op.touches().first().map_or(&b""[..], Touch::first_key),
                before: false,
            },
        }
    }

    /// The command a write proposes (`None` for a read).
    pub fn command(self) -> Option<Command> {
        Some(match self {
            Op::Get { .. } | Op::Scan { .. } | Op::Step(Command::ValidateReads { .. }) => {
                return None
            }
            Op::Write(w) => Command::Write(vec![w]),
            Op::Batch(ops) => Command::Write(ops),
            Op::Txn {
                compares,
                success,
                failure,
            } => Command::Txn {
                compares,
                success,
                failure,
            },
            Op::Step(cmd) => cmd,
        })
    }
}

impl Request {
    /// The command a write proposes, wrapped in its request id (so a retry applies at
    /// most once); `None` for a read.
    pub fn into_command(self) -> Option<Command> {
        let cmd = self.op.command()?;
        Some(match self.request_id {
            Some(r) if r.client_id != 0 => Command::Once {
                client_id: r.client_id,
                seq: r.seq,
                acked_below: r.acked_below,
                cmd: Box::new(cmd),
            },
            _ => cmd,
        })
    }

    /// Whether sending the request again cannot apply it twice: a read, or a write
    /// with a request id.
    pub fn is_idempotent(&self) -> bool {
        // A transaction's step applied twice answers the same and writes nothing more.
        !self.op.is_write()
            || matches!(self.op, Op::Step(_))
            || self.request_id.is_some_and(|r| r.client_id != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_route_by_their_first_key_and_descending_scans_by_their_end() {
        let scan = |reverse| Op::Scan {
            start: b"a".to_vec(),
            end: b"m".to_vec(),
            limit: 0,
            reverse,
            consistency: Consistency::Linearizable,
            read_ts: None,
        };
        assert_eq!(
            scan(false).anchor(),
            Anchor {
                key: b"a",
                before: false
            }
        );
        assert_eq!(
            scan(true).anchor(),
            Anchor {
                key: b"m",
                before: true
            }
        );
        assert!(scan(true).touches().is_empty());
        let batch = Op::Batch(vec![
            WriteOp::DeleteRange {
                start: b"c".to_vec(),
                end: b"d".to_vec(),
            },
            WriteOp::Delete { key: b"b".to_vec() },
        ]);
        assert_eq!(batch.anchor().key, b"c");
        assert_eq!(batch.touches().len(), 2);
        assert!(batch.is_write() && scan(false).consistency().is_some());
    }

    #[test]
    fn a_write_with_a_request_id_proposes_it_and_may_be_sent_again() {
        let put = |client_id| Request {
            op: Op::Write(WriteOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }),
            target: None,
            request_id: Some(RequestId {
                client_id,
                seq: 4,
                acked_below: 2,
            }),
        };
        assert!(matches!(
            put(7).into_command(),
            Some(Command::Once {
                client_id: 7,
                seq: 4,
                acked_below: 2,
                ..
            })
        ));
        assert!(put(7).is_idempotent());
        assert!(matches!(put(0).into_command(), Some(Command::Write(_))));
        assert!(!put(0).is_idempotent());
    }
}
