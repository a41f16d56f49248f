//! [`Error`]: what the transaction layer fails with.

use shoal_raft::FIRST_RANGE_ID;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The replication layer failed: the meta range's leader is elsewhere (with its
    /// address), has no quorum, or a range's write failed.
    #[error(transparent)]
    Raft(#[from] shoal_raft::Error),
    /// This node holds no replica of the meta range, so it cannot hand out timestamps.
    #[error("range {FIRST_RANGE_ID} (meta) has no replica on this node")]
    NoMetaReplica,
    /// A count of timestamps that cannot be handed out at once.
    #[error("cannot hand out {count} timestamps at once (1 to {max})")]
    BadCount { count: u64, max: u64 },
    /// A range could not be reached now (retrying may help).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The node is shutting down: its timestamp task has stopped.
    #[error("the timestamp service is shutting down")]
    ShuttingDown,
    /// A step's keys no longer lie in one range (it split): nothing was applied; send
    /// the keys of each range apart.
    #[error("the step's keys no longer lie in one range")]
    Regroup,
    /// The transaction conflicted with another and was rolled back: nothing of it
    /// was written. Retrying it from its start may succeed.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// The transaction was committed or rolled back already.
    #[error("the transaction is {0}: it takes no more reads or writes")]
    Closed(&'static str),
    /// A write in a transaction begun read-only.
    #[error("the transaction is read-only")]
    ReadOnly,
    /// The transaction outgrew a limit (keys, bytes): it is rolled back.
    #[error("{0}")]
    TooLarge(String),
    /// The commit may or may not have taken effect (its primary's range did not answer
    /// in time); a read of its keys tells.
    #[error("the transaction's outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// A failure that is none of the above (a bug).
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
