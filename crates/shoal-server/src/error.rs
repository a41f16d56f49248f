//! [`Error`]: everything a node's operation can fail with, each variant with the data
//! a client needs to act on it. Internal methods return it; it becomes a gRPC status
//! in exactly one place, `impl From<Error> for tonic::Status` in [`crate::convert`].

use shoal_proto::error::ErrorCode;

use crate::located::LocatedRange;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A read at a timestamp below the retention window.
    #[error("cannot read at timestamp {ts}: the retention window (--gc-ttl) starts at {floor}; older versions may be gone")]
    SnapshotTooOld { ts: u64, floor: u64 },
    /// This node cannot take the call for the range; its leader (when known) can.
    #[error("not the leader of range {range_id}{}", match .leader_addr {
        Some(a) => format!("; the leader is at {a}"),
        None => "; no leader is known yet".to_string(),
    })]
    NotLeader {
        range_id: u64,
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// The request named another epoch version of its range than the range is at.
    #[error("range {range_id} is at epoch version {version}; the request named {named}")]
    EpochMismatch {
        range_id: u64,
        version: u64,
        named: u64,
        /// The range and those holding the request's keys, as this node knows them.
        current: Vec<LocatedRange>,
    },
    /// A key of the request lies outside the range it was routed to (or the range
    /// split between routing and applying).
    #[error("{message}")]
    KeyNotInRange {
        range_id: u64,
        message: String,
        current: Vec<LocatedRange>,
    },
    /// A request naming no range whose keys fall in more than one.
    #[error("the request's keys span more than one range: send one request per range (the SDK splits scans and delete-ranges; a batch or transaction must stay in one range)")]
    CrossRange { current: Vec<LocatedRange> },
    /// No replica on this node (or no range at all) holds what the request needs.
    #[error("{0}")]
    RangeNotFound(String),
    /// This node's replica of the range waits for its first snapshot.
    #[error("the replica of range {range_id} on this node is waiting for its first snapshot")]
    NotReady { range_id: u64 },
    /// This node belongs to no cluster yet, or has not applied its first configuration.
    #[error("{0}")]
    NotInitialized(String),
    /// A write may or may not have been applied.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// Leadership could not be confirmed with a quorum (or the leader reached).
    #[error("{0}")]
    NoQuorum(String),
    /// The node, or the range's Raft instance, is stopping.
    #[error("{0}")]
    ShuttingDown(String),
    /// The node could not complete the call now: a peer it needed did not answer.
    #[error("{0}")]
    Unavailable(String),
    /// A malformed or oversized request; `code` is one of the invalid-argument codes
    /// (`EMPTY_KEY`, `KEY_TOO_LARGE`, `VALUE_TOO_LARGE`, `REQUEST_TOO_LARGE`,
    /// `INVALID_ARGUMENT`).
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
    /// A node id that is not a member of the cluster.
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(u64),
    /// The cluster's state does not allow the call (the last voter, a membership change
    /// under way, a split key at a range's start).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    AlreadyInitialized(String),
    #[error("{0}")]
    PeerUnreachable(String),
    /// An internal message addressed to another node id.
    #[error("message for node {target} reached node {me}")]
    WrongNode { target: u64, me: u64 },
    /// A replica cannot be created or filled here yet: it overlaps others of this node.
    #[error("ranges {overlapping:?} on this node overlap range {range_id}")]
    RangeOverlap {
        range_id: u64,
        overlapping: Vec<u64>,
    },
    /// A request id below the client's acknowledged mark `low`: not applied.
    #[error("request {seq} of client {client_id} is below its acknowledged mark {low}: its answer was dropped, and it is not applied")]
    StaleRequest { client_id: u64, seq: u64, low: u64 },
    /// A transaction's refusal (`TXN_CONFLICT`, `TXN_NOT_FOUND`, `TXN_EXPIRED`,
    /// `TXN_CLOSED`, `TXN_READ_ONLY`, `TXN_TOO_LARGE`).
    #[error("{message}")]
    Txn { code: ErrorCode, message: String },
    /// The store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A failure of this node that is none of the above (a bug).
    #[error("internal: {0}")]
    Internal(String),
    /// A secure node's call without a client certificate of the cluster CA.
    #[error("{0}")]
    Unauthenticated(String),
    /// A call the caller's certificate does not allow (internal calls need a node's).
    #[error("{0}")]
    PermissionDenied(String),
    /// Another node's answer to a request this node passed on, relayed as it came.
    #[error("{}", .0.message())]
    Remote(tonic::Status),
    /// Another node's answer to a call this node made of it, relayed with what the
    /// call was (`addr`: the peer, or what was asked of it).
    #[error("{addr}: {}", .status.message())]
    Peer { addr: String, status: tonic::Status },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An invalid-argument refusal with its stable code.
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The stable code a client sees.
    /// Whether the error says to ask the range's leader (here, or as a peer's answer).
    pub fn is_not_leader(&self) -> bool {
        self.code() == ErrorCode::NotLeader
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotLeader { .. } => ErrorCode::NotLeader,
            Error::EpochMismatch { .. } => ErrorCode::EpochMismatch,
            Error::KeyNotInRange { .. } => ErrorCode::KeyNotInRange,
            Error::CrossRange { .. } => ErrorCode::CrossRange,
            Error::RangeNotFound(_) | Error::NotReady { .. } => ErrorCode::RangeNotFound,
            Error::NotInitialized(_) => ErrorCode::NotInitialized,
            Error::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            Error::NoQuorum(_) => ErrorCode::NoQuorum,
            Error::ShuttingDown(_) => ErrorCode::ShuttingDown,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Invalid { code, .. } | Error::Txn { code, .. } => *code,
            Error::UnknownNode(_) | Error::Refused(_) => ErrorCode::InvalidArgument,
            Error::AlreadyInitialized(_) => ErrorCode::AlreadyInitialized,
            Error::PeerUnreachable(_) => ErrorCode::PeerUnreachable,
            Error::WrongNode { .. } => ErrorCode::WrongNode,
            Error::RangeOverlap { .. } => ErrorCode::RangeOverlap,
            Error::StaleRequest { .. } => ErrorCode::StaleRequestId,
            Error::SnapshotTooOld { .. } => ErrorCode::SnapshotTooOld,
            Error::Storage(_) | Error::Internal(_) => ErrorCode::Internal,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::Remote(s) | Error::Peer { status: s, .. } => {
                ErrorCode::of(s).unwrap_or(ErrorCode::Internal)
            }
        }
    }
}

impl From<shoal_raft::Error> for Error {
    fn from(e: shoal_raft::Error) -> Self {
        use shoal_raft::Error as R;
        let msg = e.to_string();
        match e {
            R::NotLeader {
                range_id,
                leader_id,
                leader_addr,
            } => Error::NotLeader {
                range_id,
                leader_id,
                leader_addr,
            },
            R::NoQuorum { .. } => Error::NoQuorum(msg),
            R::OutcomeUnknown { .. } => Error::OutcomeUnknown(msg),
            R::MembershipInProgress { .. } | R::Membership { .. } => Error::Refused(msg),
            R::Stopped { .. } => Error::ShuttingDown(msg),
            R::KeyNotInRange { range_id, .. } => Error::KeyNotInRange {
                range_id,
                message: msg,
                current: Vec::new(),
            },
            R::NotReady { range_id } => Error::NotReady { range_id },
            R::RangeNotFound { .. } => Error::RangeNotFound(msg),
            R::WrongNode { target, me } => Error::WrongNode { target, me },
            R::BadMessage(m) => Error::invalid(ErrorCode::InvalidArgument, m),
            R::RangeOverlap {
                range_id,
                overlapping,
            } => Error::RangeOverlap {
                range_id,
                overlapping,
            },
            R::Storage(m) => Error::Storage(m),
            R::Internal(m) => Error::Internal(m),
        }
    }
}

impl From<shoal_txn::Error> for Error {
    fn from(e: shoal_txn::Error) -> Self {
        use shoal_txn::Error as T;
        let msg = e.to_string();
        match e {
            T::Raft(r) => r.into(),
            T::NoMetaReplica | T::Unavailable(_) => Error::Unavailable(msg),
            T::BadCount { .. } => Error::invalid(ErrorCode::InvalidArgument, msg),
            T::Storage(m) => Error::Storage(m),
            T::ShuttingDown => Error::ShuttingDown(msg),
            T::Regroup | T::Internal(_) => Error::Internal(msg),
            T::Conflict(_) => Error::Txn {
                code: ErrorCode::TxnConflict,
                message: msg,
            },
            T::Closed(_) => Error::Txn {
                code: ErrorCode::TxnClosed,
                message: msg,
            },
            T::ReadOnly => Error::Txn {
                code: ErrorCode::TxnReadOnly,
                message: msg,
            },
            T::TooLarge(_) => Error::Txn {
                code: ErrorCode::TxnTooLarge,
                message: msg,
            },
            T::OutcomeUnknown(_) => Error::OutcomeUnknown(msg),
        }
    }
}

impl From<shoal_storage::StorageError> for Error {
    fn from(e: shoal_storage::StorageError) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Storage(e.to_string())
    }
}
