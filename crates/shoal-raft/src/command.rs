//! What a range's log carries ([`Command`]) and what applying it returns
//! ([`CommandResponse`]). How each command applies is in [`crate::apply`].

use serde::{Deserialize, Serialize};
use shoal_storage::Versioned;

use crate::range::RangeDescriptor;
use crate::txn_record::{OnePhase, Prewrite, TxnConflict, TxnStatus};

/// A replicated command: applied atomically, at one log index, on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Writes applied together (`Put`, `Delete`, `DeleteRange`, `Batch`).
    Write(Vec<WriteOp>),
    /// Compares, then the success or the failure branch.
    Txn {
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    /// Allocates a node id, never given before (meta range only).
    AllocNodeId,
    /// Allocates a range id, never given before (meta range only).
    AllocRangeId,
    /// Records descriptors in the meta range's routing table, each only if it is newer
    /// than the one recorded (meta range only).
    PutDescriptors(Vec<RangeDescriptor>),
    /// Marks node `node_id` as decommissioning (`on`), or no longer (meta range only):
    /// the placement driver moves its replicas away.
    SetDecommissioning { node_id: u64, on: bool },
    /// Splits the range at `key`: it keeps `[start, key)` and the new range
    /// `new_range_id` takes `[key, end)` on the same replicas. Refused unless the range
    /// is still at epoch version `expected_version` and `key` falls strictly inside it.
    Split {
        key: Vec<u8>,
        new_range_id: u64,
        expected_version: u64,
    },
    /// `cmd`, applied at most once per (client_id, seq): a retried request gets the
    /// answer of its first application. Answers kept below `acked_below` are dropped
    /// (the client has them).
    Once {
        client_id: u64,
        seq: u64,
        acked_below: u64,
        cmd: Box<Command>,
    },
    /// Raises the timestamp oracle's persisted high-water mark to at least `up_to`
    /// (meta range only): no leader of the meta range ever hands out a timestamp at or
    /// above the mark without raising it first, so a new leader starts above every
    /// timestamp an old one gave.
    ReserveTimestamps { up_to: u64 },
    /// `cmd`, whose writes are versions at commit timestamp `ts` (without it, a
    /// command's writes are versions at its log index).
    At { ts: u64, cmd: Box<Command> },
    /// A transaction's first phase in this range: locks its keys (see `percolator.rs`).
    Prewrite(Prewrite),
    /// Writes the transaction's locked values on `keys` at `commit_ts`.
    CommitKeys {
        start_ts: u64,
        commit_ts: u64,
        keys: Vec<Vec<u8>>,
    },
    /// Removes the transaction's locks on `keys` and marks them rolled back.
    RollbackKeys { start_ts: u64, keys: Vec<Vec<u8>> },
    /// On the range of a transaction's primary key: its state; a lock past its time to
    /// live at `now_ms` (the asker's clock) is rolled back, and with
    /// `rollback_if_missing` so is a transaction that left no trace.
    CheckTxn {
        primary: Vec<u8>,
        start_ts: u64,
        now_ms: u64,
        rollback_if_missing: bool,
    },
    /// Extends a transaction's primary lock's time to live.
    HeartbeatTxn {
        primary: Vec<u8>,
        start_ts: u64,
        ttl_ms: u64,
    },
    /// A transaction whose keys are all in this range, written at the commit timestamp
    /// of its `At` with no lock left.
    OnePhase(OnePhase),
    /// A serializable transaction's check of what it read, before it commits: nothing in
    /// `spans` changed after `start_ts` up to `commit_ts`, and no other transaction
    /// that may commit below `commit_ts` holds a lock there. A read, never proposed:
    /// served after a read barrier at `commit_ts` (see `RangeView::validate_reads`).
    ValidateReads {
        start_ts: u64,
        commit_ts: u64,
        spans: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// The state of a transaction committed asynchronously, as its locks on `keys`
    /// tell it (asked by a reader whose primary lock outlived its time to live): a key
    /// with no trace of it is marked rolled back, so its prewrite never applies.
    CheckSecondaries { start_ts: u64, keys: Vec<Vec<u8>> },
    /// Commits of decided transactions (`CommitKeys`) that the range's leader held
    /// back to send with `cmd`, its next proposal (see `Replica::propose`): they apply
    /// first, as entries of their own just before it would, and their answers follow
    /// `cmd`'s results, an [`OpResult::Rider`] each. Entries are decoded by variant
    /// position: new variants go last.
    Riding {
        riders: Vec<Command>,
        cmd: Box<Command>,
    },
    /// `cmd`, the commit of a transaction already decided (its client has its
    /// answer), which the range's leader may hold back briefly to send with its next
    /// proposal (a `Riding`): what a coordinator sends, never what a log holds.
    Deferrable(Box<Command>),
    /// The first step of a merge, on the right-hand range: it freezes (takes no
    /// request but the merge's own steps) until its left neighbour `left_id` absorbs
    /// it or the merge is abandoned. `token` is the left neighbour's epoch version when
    /// the merge began: only a `Merge` naming it can absorb the range, only a
    /// `Thaw` naming it can undo the freeze. Refused while a membership change is
    /// under way or another merge holds the range.
    Freeze { left_id: u64, token: u64 },
    /// Undoes a `Freeze` of `token` (the merge was abandoned: its left neighbour was
    /// fenced against it without absorbing this range).
    Thaw { token: u64 },
    /// The last step of a merge, on the left-hand range: it takes over `right`'s span
    /// (its frozen right neighbour, on the same nodes, every replica of which has
    /// applied the freeze). Refused unless the range is still at epoch version `token`,
    /// ends where `right` begins, and has the same replicas.
    Merge { right: RangeDescriptor, token: u64 },
    /// On the left-hand range of a merge that stalled: no `Merge` of `right_id` by an
    /// attempt up to `token` applies after this (attempts are numbered by the
    /// cluster's timestamps). Answers whether the range absorbed `right_id` already.
    FenceMerge { right_id: u64, token: u64 },
    /// Drops the routing table's record of `range_id` if its epoch version is below
    /// `below_version`: a range merged into its left neighbour (meta range only).
    DropDescriptor { range_id: u64, below_version: u64 },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Write(ops) => write!(f, "write({} ops)", ops.len()),
            Command::Txn {
                compares,
                success,
                failure,
            } => write!(
                f,
                "txn({} compares, {} success ops, {} failure ops)",
                compares.len(),
                success.len(),
                failure.len()
            ),
            Command::AllocNodeId => write!(f, "alloc-node-id"),
            Command::AllocRangeId => write!(f, "alloc-range-id"),
            Command::PutDescriptors(d) => write!(f, "put-descriptors({})", d.len()),
            Command::SetDecommissioning { node_id, on } => {
                write!(f, "set-decommissioning({node_id}, {on})")
            }
            Command::Split { new_range_id, .. } => write!(f, "split(right: {new_range_id})"),
            Command::Once {
                client_id,
                seq,
                cmd,
                ..
            } => write!(f, "{cmd} as request {client_id}/{seq}"),
            Command::ReserveTimestamps { up_to } => write!(f, "reserve-timestamps({up_to})"),
            Command::At { ts, cmd } => write!(f, "{cmd} at {ts}"),
            Command::Prewrite(p) => {
                write!(f, "prewrite({} keys of {})", p.mutations.len(), p.start_ts)
            }
            Command::CommitKeys {
                start_ts,
                commit_ts,
                keys,
            } => write!(
                f,
                "commit({} keys of {start_ts} at {commit_ts})",
                keys.len()
            ),
            Command::RollbackKeys { start_ts, keys } => {
                write!(f, "rollback({} keys of {start_ts})", keys.len())
            }
            Command::CheckTxn { start_ts, .. } => write!(f, "check-txn({start_ts})"),
            Command::HeartbeatTxn { start_ts, .. } => write!(f, "heartbeat-txn({start_ts})"),
            Command::CheckSecondaries { start_ts, keys } => {
                write!(f, "check-secondaries({} keys of {start_ts})", keys.len())
            }
            Command::OnePhase(t) => {
                write!(f, "one-phase({} keys of {})", t.mutations.len(), t.start_ts)
            }
            Command::ValidateReads {
                start_ts,
                commit_ts,
                spans,
            } => write!(
                f,
                "validate-reads({} spans of {start_ts} at {commit_ts})",
                spans.len()
            ),
            Command::Riding { riders, cmd } => write!(f, "{cmd} with {} commits", riders.len()),
            Command::Deferrable(cmd) => write!(f, "{cmd}, deferrable"),
            Command::Freeze { left_id, token } => write!(f, "freeze(into {left_id} at {token})"),
            Command::Thaw { token } => write!(f, "thaw({token})"),
            Command::Merge { right, token } => {
                write!(f, "merge(right: {} at {token})", right.range_id)
            }
            Command::FenceMerge { right_id, token } => {
                write!(f, "fence-merge(right: {right_id} at {token})")
            }
            Command::DropDescriptor { range_id, .. } => write!(f, "drop-descriptor({range_id})"),
        }
    }
}

impl std::fmt::Display for CommandResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "version {} ({} results)",
            self.version,
            self.results.len()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// `[start, end)`; an empty `end` is the end of the key space.
    DeleteRange {
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Write(WriteOp),
    Get { key: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(Vec<u8>),
    /// A missing key has version 0.
    Version(u64),
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// The result of one op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A put: the version it wrote.
    Put(u64),
    /// A delete or delete-range: keys deleted.
    Deleted(u64),
    Get(Option<Found>),
    /// An allocated node id.
    NodeId(u64),
    /// An allocated range id.
    RangeId(u64),
    /// The command was refused and changed nothing: a data command touching keys the
    /// range does not hold (any more; `key` is the first of them), or a split that no
    /// longer applies.
    Refused {
        reason: String,
        key: Option<Vec<u8>>,
    },
    /// A request id below the client's acknowledged mark `low`: its answer (if it was
    /// ever applied) was dropped, so it is not applied. Kept answers on disk are
    /// encoded by variant position: new variants go last.
    StaleRequest {
        low: u64,
    },
    /// The timestamp oracle's persisted high-water mark after a reservation.
    TimestampHigh(u64),
    /// A transaction's step was applied.
    TxnDone,
    /// A transaction's state (`CheckTxn`, `HeartbeatTxn`).
    TxnStatus(TxnStatus),
    /// A transaction's step was refused whole: nothing was written.
    TxnConflict(TxnConflict),
    /// The answer to one of a `Riding` command's riders.
    Rider(Box<CommandResponse>),
    /// A `FenceMerge`'s answer: whether the range had absorbed its right neighbour.
    MergeFenced {
        merged: bool,
    },
}

/// A key read by a transaction's get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub version: u64,
}

/// What applying a command returns to its proposer (and what a kept request answer
/// stores: its encoding must stay readable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// The version of what the command wrote: its commit timestamp (`Command::At`),
    /// or without one its log index.
    pub version: u64,
    /// For a transaction: whether every compare held.
    pub succeeded: bool,
    pub results: Vec<OpResult>,
}

/// Why a command changed nothing, as its response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It touches `key`, which the range does not hold (any more): it split meanwhile.
    KeyOutside { key: Vec<u8>, reason: String },
    /// A request id below the client's acknowledged mark.
    StaleRequest { low: u64 },
    /// Any other reason (a split that no longer applies, a meta command elsewhere).
    Other(String),
}

impl CommandResponse {
    /// The answer to a command that changed nothing.
    pub fn refused(version: u64, reason: String, key: Option<Vec<u8>>) -> Self {
        Self {
            version,
            succeeded: false,
            results: vec![OpResult::Refused { reason, key }],
        }
    }

    /// Why the command changed nothing, if it was refused.
    pub fn refusal(&self) -> Option<Refusal> {
        match self.results.first()? {
            OpResult::Refused {
                reason,
                key: Some(key),
            } => Some(Refusal::KeyOutside {
                key: key.clone(),
                reason: reason.clone(),
            }),
            OpResult::Refused { reason, key: None } => Some(Refusal::Other(reason.clone())),
            OpResult::StaleRequest { low } => Some(Refusal::StaleRequest { low: *low }),
            _ => None,
        }
    }
}

/// A key or a span `[start, end)` a command reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch<'a> {
    Key(&'a [u8]),
    Span(&'a [u8], &'a [u8]),
}

impl WriteOp {
    pub fn touch(&self) -> Touch<'_> {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } => Touch::Key(key),
            WriteOp::DeleteRange { start, end } => Touch::Span(start, end),
        }
    }
}

impl TxnOp {
    pub fn touch(&self) -> Touch<'_> {
        match self {
            TxnOp::Write(w) => w.touch(),
            TxnOp::Get { key } => Touch::Key(key),
        }
    }
}

/// The keys and spans a transaction touches: its compares' keys, then its ops'.
pub fn txn_touches<'a>(
    compares: &'a [Compare],
    success: &'a [TxnOp],
    failure: &'a [TxnOp],
) -> impl Iterator<Item = Touch<'a>> {
    compares
        .iter()
        .map(|c| Touch::Key(&c.key))
        .chain(success.iter().chain(failure.iter()).map(TxnOp::touch))
}

impl Command {
    /// The first user key or span the command touches for which `pred` holds (a
    /// system command touches none).
    pub fn find_touch<'a>(&'a self, mut pred: impl FnMut(&Touch<'a>) -> bool) -> Option<Touch<'a>> {
        match self {
            Command::Write(ops) => ops.iter().map(WriteOp::touch).find(|t| pred(t)),
            Command::Txn {
                compares,
                success,
                failure,
            } => txn_touches(compares, success, failure).find(|t| pred(t)),
            Command::Once { cmd, .. } | Command::At { cmd, .. } | Command::Deferrable(cmd) => {
                cmd.find_touch(pred)
            }
            Command::Riding { riders, cmd } => {
                // One closure type at every depth (a `&mut pred` per level would be a
                // new type each).
                let pred: &mut dyn FnMut(&Touch<'a>) -> bool = &mut pred;
                riders
                    .iter()
                    .chain(std::iter::once(cmd.as_ref()))
                    .find_map(|c| c.find_touch(&mut *pred))
            }
            Command::Prewrite(p) => p
                .mutations
                .iter()
                .map(|m| Touch::Key(m.key()))
                .find(|t| pred(t)),
            Command::OnePhase(t) => t
                .mutations
                .iter()
                .map(|m| Touch::Key(m.key()))
                .chain(t.reads.iter().map(|(s, e)| Touch::Span(s, e)))
                .find(|t| pred(t)),
            Command::CommitKeys { keys, .. }
            | Command::RollbackKeys { keys, .. }
            | Command::CheckSecondaries { keys, .. } => {
                keys.iter().map(|k| Touch::Key(k)).find(|t| pred(t))
            }
            Command::CheckTxn { primary, .. } | Command::HeartbeatTxn { primary, .. } => {
                Some(Touch::Key(primary)).filter(|t| pred(t))
            }
            Command::ValidateReads { spans, .. } => spans
                .iter()
                .map(|(s, e)| Touch::Span(s, e))
                .find(|t| pred(t)),
            Command::AllocNodeId
            | Command::AllocRangeId
            | Command::PutDescriptors(_)
            | Command::SetDecommissioning { .. }
            | Command::ReserveTimestamps { .. }
            | Command::Split { .. }
            | Command::Freeze { .. }
            | Command::Thaw { .. }
            | Command::Merge { .. }
            | Command::FenceMerge { .. }
            | Command::DropDescriptor { .. } => None,
        }
    }

    /// Every user key and span the command touches.
    pub fn touches(&self) -> Vec<Touch<'_>> {
        let mut all = Vec::new();
        self.find_touch(|t| {
            all.push(*t);
            false
        });
        all
    }

    /// What the command writes and what it only reads (and checks for writes since a
    /// transaction's start): a one-phase transaction's read spans, a validation's
    /// spans. Writes latch what they write alone, and share what they only read.
    pub fn latch_touches(&self) -> (Vec<Touch<'_>>, Vec<Touch<'_>>) {
        match self {
            Command::OnePhase(t) => (
                t.mutations.iter().map(|m| Touch::Key(m.key())).collect(),
                t.reads.iter().map(|(s, e)| Touch::Span(s, e)).collect(),
            ),
            Command::ValidateReads { spans, .. } => (
                Vec::new(),
                spans.iter().map(|(s, e)| Touch::Span(s, e)).collect(),
            ),
            c => (c.touches(), Vec::new()),
        }
    }

    /// Whether the command is one of a transaction's steps in a range (see
    /// `percolator.rs`).
    pub fn is_txn_step(&self) -> bool {
        matches!(
            self,
            Command::Prewrite(_)
                | Command::CommitKeys { .. }
                | Command::RollbackKeys { .. }
                | Command::CheckTxn { .. }
                | Command::HeartbeatTxn { .. }
                | Command::OnePhase(_)
                | Command::ValidateReads { .. }
                | Command::CheckSecondaries { .. }
        ) || self.deferred_commit().is_some()
    }

    /// Whether applying the command may write a transaction's lock (a prewrite).
    pub fn may_lock(&self) -> bool {
        match self {
            Command::Prewrite(_) => true,
            Command::Once { cmd, .. } | Command::At { cmd, .. } | Command::Deferrable(cmd) => {
                cmd.may_lock()
            }
            Command::Riding { riders, cmd } => cmd.may_lock() || riders.iter().any(Self::may_lock),
            _ => false,
        }
    }

    /// Whether applying this may write the routing table (the meta range's record of
    /// every range's descriptor).
    pub fn writes_descriptors(&self) -> bool {
        match self {
            Command::PutDescriptors(_) | Command::DropDescriptor { .. } => true,
            Command::Once { cmd, .. } | Command::At { cmd, .. } | Command::Deferrable(cmd) => {
                cmd.writes_descriptors()
            }
            Command::Riding { riders, cmd } => {
                cmd.writes_descriptors() || riders.iter().any(Self::writes_descriptors)
            }
            _ => false,
        }
    }

    /// The commit inside a `Deferrable`, if this is one.
    pub fn deferred_commit(&self) -> Option<&Command> {
        match self {
            Command::Deferrable(cmd) if matches!(**cmd, Command::CommitKeys { .. }) => Some(cmd),
            _ => None,
        }
    }

    /// Whether the range's leader may send held-back commits with this command (see
    /// `Command::Riding`): a data write or a transaction's step, not a split or a
    /// meta range's command.
    pub fn may_carry_riders(&self) -> bool {
        match self {
            Command::Write(_) | Command::Txn { .. } => true,
            Command::Once { cmd, .. } | Command::At { cmd, .. } => cmd.may_carry_riders(),
            Command::ValidateReads { .. } | Command::Riding { .. } | Command::Deferrable(_) => {
                false
            }
            c => c.is_txn_step(),
        }
    }

    /// Whether the command's writes carry their own timestamps (a transaction's
    /// steps, but a one-phase transaction, which commits at the timestamp of its
    /// `At`, and an asynchronous commit's prewrite, whose `At` is its locks'
    /// `min_commit_ts`).
    pub fn carries_its_timestamps(&self) -> bool {
        match self {
            Command::OnePhase(_) | Command::ValidateReads { .. } => false,
            Command::Prewrite(p) => p.async_commit.is_none(),
            c => c.is_txn_step(),
        }
    }

    /// Whether the command is a plain data write or an etcd-style transaction (inside
    /// its request id and timestamp): it must not pass transactions' locks.
    pub fn is_plain_data(&self) -> bool {
        match self {
            Command::Write(_) | Command::Txn { .. } => true,
            Command::Once { cmd, .. } | Command::At { cmd, .. } => cmd.is_plain_data(),
            _ => false,
        }
    }

    /// Whether the command is a step of a merge: what a frozen range still applies.
    pub fn is_merge_step(&self) -> bool {
        matches!(
            self,
            Command::Freeze { .. }
                | Command::Thaw { .. }
                | Command::Merge { .. }
                | Command::FenceMerge { .. }
        )
    }

    /// Whether the command is kept by the meta range alone.
    pub fn is_meta_only(&self) -> bool {
        match self {
            Command::AllocNodeId
            | Command::AllocRangeId
            | Command::PutDescriptors(_)
            | Command::SetDecommissioning { .. }
            | Command::ReserveTimestamps { .. }
            | Command::DropDescriptor { .. } => true,
            Command::Once { cmd, .. } | Command::At { cmd, .. } => cmd.is_meta_only(),
            _ => false,
        }
    }
}

impl<'a> Touch<'a> {
    /// The key, or the span's start.
    pub fn first_key(&self) -> &'a [u8] {
        match *self {
            Touch::Key(k) | Touch::Span(k, _) => k,
        }
    }

    /// Whether the key or span falls inside `d`.
    pub fn inside(&self, d: &RangeDescriptor) -> bool {
        match *self {
            Touch::Key(k) => d.contains(k),
            Touch::Span(s, e) => d.contains_span(s, e),
        }
    }
}

impl Compare {
    /// Whether the compare holds against the key's current state.
    pub fn holds(&self, current: Option<&Versioned>) -> bool {
        use std::cmp::Ordering;
        let ord = match &self.target {
            CompareTarget::Value(v) => match current {
                // A compare on the value of a missing key never holds (as in etcd).
                None => return false,
                Some(c) => c.value.as_slice().cmp(v.as_slice()),
            },
            CompareTarget::Version(v) => current.map_or(0, |c| c.version).cmp(v),
            CompareTarget::Exists(e) => current.is_some().cmp(e),
        };
        match self.op {
            CompareOp::Equal => ord == Ordering::Equal,
            CompareOp::NotEqual => ord != Ordering::Equal,
            CompareOp::Greater => ord == Ordering::Greater,
            CompareOp::Less => ord == Ordering::Less,
        }
    }
}
