//! [`Error`]: what the replication layer fails with, each with the range it concerns.
//! openraft's errors become these here, and only here; the node turns them into its
//! own error (and that into a gRPC status) at its edge.

use openraft::errors::ChangeMembershipError;

use crate::types::{ClientWriteError, LinearizableReadError, NodeId, RaftError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// This replica cannot take the call; the leader (when known) can.
    #[error("not the leader of range {range_id}{}", leader_hint(.leader_addr))]
    NotLeader {
        range_id: u64,
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// Leadership cannot be confirmed with a quorum, or the leader is unreachable, or
    /// this replica did not catch up with it in time.
    #[error("range {range_id}: {why}")]
    NoQuorum { range_id: u64, why: String },
    /// The leadership changed while a write was in flight: it may or may not have
    /// been applied.
    #[error("range {range_id}: leadership changed while the write was in flight; it may or may not have been applied")]
    OutcomeUnknown { range_id: u64 },
    /// A membership change is under way; another must wait for it.
    #[error("range {range_id}: another membership change is under way")]
    MembershipInProgress { range_id: u64 },
    /// A membership change that cannot be made (an unknown learner, no voter left).
    #[error("range {range_id}: {why}")]
    Membership { range_id: u64, why: String },
    /// The range's Raft instance stopped (a storage error, or shutdown).
    #[error("range {range_id}: raft stopped: {why}")]
    Stopped { range_id: u64, why: String },
    /// A key the range does not hold (any more: it split since the request was routed).
    #[error("key {} is outside range {range_id}", String::from_utf8_lossy(.key))]
    KeyNotInRange { range_id: u64, key: Vec<u8> },
    /// The replica holds no data yet: it waits for its first snapshot.
    #[error("the replica of range {range_id} on this node is waiting for its first snapshot")]
    NotReady { range_id: u64 },
    /// This node holds no replica of the range.
    #[error("range {range_id} has no replica on this node")]
    RangeNotFound { range_id: u64 },
    /// A message addressed to another node id.
    #[error("message for node {target} reached node {me}")]
    WrongNode { target: NodeId, me: NodeId },
    /// A message or snapshot that does not decode or verify.
    #[error("{0}")]
    BadMessage(String),
    /// A snapshot whose span overlaps other replicas of this node: it must wait.
    #[error("ranges {overlapping:?} on this node overlap range {range_id}'s span")]
    RangeOverlap {
        range_id: u64,
        overlapping: Vec<u64>,
    },
    /// The store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A failure of this node that is none of the above (a bug).
    #[error("{0}")]
    Internal(String),
}

fn leader_hint(addr: &Option<String>) -> String {
    match addr {
        Some(a) => format!("; the leader is at {a}"),
        None => "; no leader is known yet".into(),
    }
}

impl Error {
    /// A failed proposal (write or membership change) of range `range_id`.
    pub fn from_write(range_id: u64, e: RaftError<ClientWriteError>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader {
                range_id,
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
                Error::OutcomeUnknown { range_id }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            )) => Error::MembershipInProgress { range_id },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Error::Membership {
                range_id,
                why: e.to_string(),
            },
            // shoal proposes no write with preconditions.
            RaftError::APIError(e @ ClientWriteError::PreconditionFailed(_)) => {
                Error::Internal(format!("range {range_id}: {e}"))
            }
            RaftError::Fatal(e) => Error::Stopped {
                range_id,
                why: e.to_string(),
            },
        }
    }

    /// A failed read-index request of range `range_id`.
    pub fn from_read(range_id: u64, e: RaftError<LinearizableReadError>) -> Self {
        match e {
            RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => Error::NotLeader {
                range_id,
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            RaftError::APIError(LinearizableReadError::QuorumNotEnough(e)) => Error::NoQuorum {
                range_id,
                why: format!("cannot confirm leadership with a quorum: {e}"),
            },
            RaftError::Fatal(e) => Error::Stopped {
                range_id,
                why: e.to_string(),
            },
        }
    }

    /// A call that can only fail when Raft stopped (triggers, shutdown).
    pub fn from_fatal(range_id: u64, e: impl std::fmt::Display) -> Self {
        Error::Stopped {
            range_id,
            why: e.to_string(),
        }
    }
}

impl From<shoal_storage::StorageError> for Error {
    fn from(e: shoal_storage::StorageError) -> Self {
        Error::Storage(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
