//! The records of transactions across ranges that ranges' commands carry and return:
//! a transaction's writes ([`Mutation`]), a key's [`Lock`], the [`Prewrite`] and
//! [`OnePhase`] commands' payloads, a transaction's [`TxnStatus`], and why a step was
//! refused ([`TxnConflict`]). How a range applies them: [`crate::percolator`].

use serde::{Deserialize, Serialize};

/// A write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mutation {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl Mutation {
    pub fn key(&self) -> &[u8] {
        match self {
            Mutation::Put { key, .. } | Mutation::Delete { key } => key,
        }
    }
}

/// A key's lock: the prewritten write of a transaction not yet committed or rolled
/// back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The transaction's primary key: its lock is the transaction's record.
    pub primary: Vec<u8>,
    pub start_ts: u64,
    /// Milliseconds after the start timestamp's wall-clock time the lock lives,
    /// unless the coordinator extends it.
    pub ttl_ms: u64,
    /// The value to write at commit (`None`: a delete).
    pub value: Option<Vec<u8>>,
}

impl Lock {
    /// Whether the lock's time to live has passed at wall-clock millisecond `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        (self.start_ts >> 18).saturating_add(self.ttl_ms) < now_ms
    }
}

/// The first phase of a transaction, for the keys of `mutations` in one range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prewrite {
    pub start_ts: u64,
    pub primary: Vec<u8>,
    pub mutations: Vec<Mutation>,
    pub ttl_ms: u64,
}

/// A transaction whose keys all lie in one range, written at the commit timestamp of
/// the command (`Command::At`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnePhase {
    pub start_ts: u64,
    pub mutations: Vec<Mutation>,
    /// Spans `[start, end)` the transaction read (serializable): refused if a key in
    /// them changed after `start_ts`.
    pub reads: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where a transaction stands, as its primary key's range knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnStatus {
    /// Its primary lock is there and alive (time to live from the start, in ms).
    Alive {
        ttl_ms: u64,
    },
    Committed {
        commit_ts: u64,
    },
    RolledBack,
}

/// Why a transaction's step was refused (nothing written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnConflict {
    /// Another transaction holds a lock on `key`.
    Locked { key: Vec<u8>, lock: Lock },
    /// `key` was changed at `commit_ts`, after the transaction started.
    WriteConflict { key: Vec<u8>, commit_ts: u64 },
    /// A key the transaction read changed at `commit_ts`, after it read it
    /// (serializable).
    ReadConflict { key: Vec<u8>, commit_ts: u64 },
    /// The transaction was rolled back (by a reader that found it expired, or by its
    /// coordinator).
    RolledBack { key: Vec<u8> },
    /// The transaction has no lock on `key` and never committed it: its prewrite never
    /// applied here.
    LockNotFound { key: Vec<u8> },
    /// The transaction committed `key` already: it cannot be rolled back.
    Committed { key: Vec<u8>, commit_ts: u64 },
}
