//! What a history is: transactions over lists of `u64` values, each with its client,
//! its real-time interval, its outcome and its micro-operations.

use std::fmt;

/// The identity of a transaction within one history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId(pub u64);

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}", self.0)
    }
}

/// What the client learned about a transaction's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// shoal acknowledged the commit.
    Committed,
    /// shoal reported that the transaction did not take effect.
    Aborted,
    /// Indeterminate (a timeout, a lost connection): it may or may not have taken effect.
    Unknown,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
            Outcome::Unknown => "unknown",
        })
    }
}

/// One step of a transaction on one key's list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MicroOp {
    /// Append `value` to the end of `key`'s list.
    Append {
        /// The list appended to.
        key: u64,
        /// The element appended; unique per key across the whole history.
        value: u64,
    },
    /// Read `key`'s whole list.
    Read {
        /// The list read.
        key: u64,
        /// The list observed, or `None` when the result is not known.
        value: Option<Vec<u64>>,
    },
}

impl MicroOp {
    /// An append of `value` to `key`.
    pub fn append(key: u64, value: u64) -> Self {
        MicroOp::Append { key, value }
    }

    /// A read of `key` that observed `list`.
    pub fn read(key: u64, list: &[u64]) -> Self {
        MicroOp::Read {
            key,
            value: Some(list.to_vec()),
        }
    }

    /// A read of `key` whose result was not observed.
    pub fn read_unobserved(key: u64) -> Self {
        MicroOp::Read { key, value: None }
    }
}

impl fmt::Display for MicroOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MicroOp::Append { key, value } => write!(f, "append({key}, {value})"),
            MicroOp::Read {
                key,
                value: Some(list),
            } => write!(f, "read({key}) = {list:?}"),
            MicroOp::Read { key, value: None } => write!(f, "read({key}) = ?"),
        }
    }
}

/// One transaction as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// Unique within the history.
    pub id: TxnId,
    /// The client (process) that ran it; a client runs one transaction at a time.
    pub process: u64,
    /// When the client sent it (for example nanoseconds since the test began).
    pub invoke: u64,
    /// When the client learned its outcome; `None` if it never did.
    pub complete: Option<u64>,
    /// Its fate.
    pub outcome: Outcome,
    /// Its steps, in the order it ran them.
    pub ops: Vec<MicroOp>,
}

impl Txn {
    /// A transaction with all its fields given.
    pub fn new(
        id: u64,
        process: u64,
        invoke: u64,
        complete: Option<u64>,
        outcome: Outcome,
        ops: Vec<MicroOp>,
    ) -> Self {
        Txn {
            id: TxnId(id),
            process,
            invoke,
            complete,
            outcome,
            ops,
        }
    }

    /// A committed transaction that ran from `invoke` to `complete`.
    pub fn committed(id: u64, process: u64, invoke: u64, complete: u64, ops: Vec<MicroOp>) -> Self {
        Txn::new(id, process, invoke, Some(complete), Outcome::Committed, ops)
    }
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} p{} [{}..", self.id, self.process, self.invoke)?;
        match self.complete {
            Some(c) => write!(f, "{c}]")?,
            None => f.write_str("?]")?,
        }
        write!(f, " {}:", self.outcome)?;
        for (i, op) in self.ops.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{op}")?;
        }
        Ok(())
    }
}

/// Transactions in the order they were recorded; the order carries no meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The transactions.
    pub txns: Vec<Txn>,
}

impl History {
    /// A history of these transactions.
    pub fn new(txns: Vec<Txn>) -> Self {
        History { txns }
    }

    /// How many transactions it holds.
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Adds a transaction.
    pub fn push(&mut self, txn: Txn) {
        self.txns.push(txn);
    }

    /// The transaction with this id, if there is one.
    pub fn get(&self, id: TxnId) -> Option<&Txn> {
        self.txns.iter().find(|t| t.id == id)
    }
}

impl From<Vec<Txn>> for History {
    fn from(txns: Vec<Txn>) -> Self {
        History { txns }
    }
}

/// One transaction a line, as `T3 p1 [10..25] committed: append(0, 1), read(1) = [2]`.
impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.txns {
            writeln!(f, "{t}")?;
        }
        Ok(())
    }
}
