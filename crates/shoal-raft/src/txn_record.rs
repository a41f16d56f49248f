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
    /// Set when the transaction commits asynchronously: see [`AsyncCommit`].
    pub async_commit: Option<AsyncCommit>,
}

/// What a lock of a transaction committed asynchronously holds besides its value.
///
/// Such a transaction is committed as soon as every one of its keys is locked: its
/// coordinator answers then, and commits the locks afterwards. Its commit timestamp is
/// the largest of its locks' `min_commit_ts`. So a reader that finds the primary lock
/// past its time to live (the coordinator died) asks about every secondary key: all
/// locked, the transaction is committed; one without its lock (never prewritten, now
/// marked rolled back so it never will be) or rolled back, it is rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncCommit {
    /// A timestamp taken by the range's leader under latches on the key, after every
    /// read of it at a lower timestamp: the transaction commits at or above it, so no
    /// read served before the lock misses it.
    pub min_commit_ts: u64,
    /// On the primary lock: the transaction's other keys. Empty on the others.
    pub secondaries: Vec<Vec<u8>>,
}

impl Lock {
    /// Whether the lock's time to live has passed at wall-clock millisecond `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        (self.start_ts >> 18).saturating_add(self.ttl_ms) < now_ms
    }

    /// The lowest timestamp its transaction may commit at, as this lock knows it (0
    /// unless the transaction commits asynchronously).
    pub fn min_commit_ts(&self) -> u64 {
        self.async_commit.as_ref().map_or(0, |c| c.min_commit_ts)
    }

    /// Whether its transaction may commit at or below `ts`: a read at `ts` must not
    /// pass the lock. A transaction commits above its start, and one committed
    /// asynchronously at or above its locks' `min_commit_ts`.
    pub fn may_commit_at_or_below(&self, ts: u64) -> bool {
        self.start_ts <= ts && self.min_commit_ts() <= ts
    }
}

/// The first phase of a transaction, for the keys of `mutations` in one range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prewrite {
    pub start_ts: u64,
    pub primary: Vec<u8>,
    pub mutations: Vec<Mutation>,
    pub ttl_ms: u64,
    /// Committed asynchronously: the transaction's other keys (`Some(vec![])` in a
    /// range without its primary key). The prewrite is then proposed at a timestamp
    /// (`Command::At`), each lock's `min_commit_ts`.
    pub async_commit: Option<Vec<Vec<u8>>>,
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
    /// Committed asynchronously, and every lock asked about is in place, the largest
    /// `min_commit_ts` among them given; on the primary key's range (its lock past its
    /// time to live), the transaction's other keys to ask about.
    Prewritten {
        min_commit_ts: u64,
        secondaries: Vec<Vec<u8>>,
    },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(start_ts: u64, min_commit_ts: Option<u64>) -> Lock {
        Lock {
            primary: b"a".to_vec(),
            start_ts,
            ttl_ms: 3_000,
            value: None,
            async_commit: min_commit_ts.map(|min_commit_ts| AsyncCommit {
                min_commit_ts,
                secondaries: Vec::new(),
            }),
        }
    }

    #[test]
    fn a_read_passes_a_lock_only_below_where_its_transaction_may_commit() {
        // Two phases: from its start on.
        let l = lock(10, None);
        assert!(!l.may_commit_at_or_below(9));
        assert!(l.may_commit_at_or_below(10));
        // Asynchronous: from its `min_commit_ts` on, however early it started.
        let l = lock(10, Some(20));
        assert_eq!(l.min_commit_ts(), 20);
        assert!(!l.may_commit_at_or_below(19));
        assert!(l.may_commit_at_or_below(20));
    }
}
