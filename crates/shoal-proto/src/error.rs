//! The stable error codes and the `ErrorDetail` a refused call carries in its gRPC
//! status details.
//!
//! This module is the vocabulary only: the node builds its statuses in one place
//! (`shoal-server`'s `error.rs`), and a client reads them back here ([`ErrorCode::of`],
//! [`detail`]), never from message text.

use prost::Message;
use tonic::Status;

use crate::v1::ErrorDetail;

/// Stable, machine-readable error codes: clients and scripts may match on them. Each
/// is carried by name in [`ErrorDetail::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// Not the leader of the range: the details name the leader when it is known.
    NotLeader,
    /// The node does not belong to a cluster yet, or has not applied its first
    /// configuration.
    NotInitialized,
    /// The node holds no (usable) replica of the range the request names or needs.
    RangeNotFound,
    /// The request named another epoch version of its range: re-route with the
    /// descriptors in the details.
    EpochMismatch,
    /// A key of the request is outside the range it was routed to.
    KeyNotInRange,
    /// An internal message addressed to another node id.
    WrongNode,
    /// A batch or transaction whose keys fall in more than one range.
    CrossRange,
    /// A replica cannot be created or filled here yet: the node still holds a replica
    /// whose span overlaps it.
    RangeOverlap,
    /// Leadership could not be confirmed with a quorum.
    NoQuorum,
    EmptyKey,
    KeyTooLarge,
    ValueTooLarge,
    RequestTooLarge,
    /// Any other malformed or contradictory request.
    InvalidArgument,
    AlreadyInitialized,
    PeerUnreachable,
    /// A write may or may not have been applied (its leader changed, or the node it
    /// was forwarded to stopped answering, while it was in flight).
    OutcomeUnknown,
    /// The node (or its replica) is stopping.
    ShuttingDown,
    /// A request id below the client's own acknowledged mark: its answer was already
    /// dropped, so the request is not applied.
    StaleRequestId,
    /// A read at a timestamp below the garbage collection's safe point (`--gc-ttl`):
    /// versions it would see may be gone.
    SnapshotTooOld,
    /// The node could not complete the call now (a peer it needed did not answer in
    /// time); it may be retried.
    Unavailable,
    /// The transaction conflicted with another and was rolled back, nothing of it
    /// written: begin it again (the SDK's `transaction` does, with backoff).
    TxnConflict,
    /// No transaction has this handle on this node (never begun here, or the node
    /// restarted since).
    TxnNotFound,
    /// The transaction was open longer than a transaction may be: rolled back.
    TxnExpired,
    /// The transaction was committed or rolled back already.
    TxnClosed,
    /// A write in a transaction begun read-only.
    TxnReadOnly,
    /// The transaction holds more keys or bytes than a transaction may: rolled back.
    TxnTooLarge,
    /// A failure of the node itself (its storage, a bug).
    Internal,
    /// A secure node's call that proved no identity (no client certificate).
    Unauthenticated,
    /// A call the caller's identity may not make (a node's internal call from
    /// anything but a node certificate, or a call above the user's role).
    PermissionDenied,
    /// `CreateUser` of a name that is taken.
    UserExists,
    /// `DropUser` of a name that is no user's.
    UserNotFound,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 32] = [
        ErrorCode::NotLeader,
        ErrorCode::NotInitialized,
        ErrorCode::RangeNotFound,
        ErrorCode::EpochMismatch,
        ErrorCode::KeyNotInRange,
        ErrorCode::WrongNode,
        ErrorCode::CrossRange,
        ErrorCode::RangeOverlap,
        ErrorCode::NoQuorum,
        ErrorCode::EmptyKey,
        ErrorCode::KeyTooLarge,
        ErrorCode::ValueTooLarge,
        ErrorCode::RequestTooLarge,
        ErrorCode::InvalidArgument,
        ErrorCode::AlreadyInitialized,
        ErrorCode::PeerUnreachable,
        ErrorCode::OutcomeUnknown,
        ErrorCode::ShuttingDown,
        ErrorCode::StaleRequestId,
        ErrorCode::SnapshotTooOld,
        ErrorCode::Unavailable,
        ErrorCode::TxnConflict,
        ErrorCode::TxnNotFound,
        ErrorCode::TxnExpired,
        ErrorCode::TxnClosed,
        ErrorCode::TxnReadOnly,
        ErrorCode::TxnTooLarge,
        ErrorCode::Internal,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::UserExists,
        ErrorCode::UserNotFound,
    ];

    /// The code's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::NotInitialized => "NOT_INITIALIZED",
            ErrorCode::RangeNotFound => "RANGE_NOT_FOUND",
            ErrorCode::EpochMismatch => "EPOCH_MISMATCH",
            ErrorCode::KeyNotInRange => "KEY_NOT_IN_RANGE",
            ErrorCode::WrongNode => "WRONG_NODE",
            ErrorCode::CrossRange => "CROSS_RANGE",
            ErrorCode::RangeOverlap => "RANGE_OVERLAP",
            ErrorCode::NoQuorum => "NO_QUORUM",
            ErrorCode::EmptyKey => "EMPTY_KEY",
            ErrorCode::KeyTooLarge => "KEY_TOO_LARGE",
            ErrorCode::ValueTooLarge => "VALUE_TOO_LARGE",
            ErrorCode::RequestTooLarge => "REQUEST_TOO_LARGE",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::AlreadyInitialized => "ALREADY_INITIALIZED",
            ErrorCode::PeerUnreachable => "PEER_UNREACHABLE",
            ErrorCode::OutcomeUnknown => "OUTCOME_UNKNOWN",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::StaleRequestId => "STALE_REQUEST_ID",
            ErrorCode::SnapshotTooOld => "SNAPSHOT_TOO_OLD",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::TxnConflict => "TXN_CONFLICT",
            ErrorCode::TxnNotFound => "TXN_NOT_FOUND",
            ErrorCode::TxnExpired => "TXN_EXPIRED",
            ErrorCode::TxnClosed => "TXN_CLOSED",
            ErrorCode::TxnReadOnly => "TXN_READ_ONLY",
            ErrorCode::TxnTooLarge => "TXN_TOO_LARGE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::UserExists => "USER_EXISTS",
            ErrorCode::UserNotFound => "USER_NOT_FOUND",
        }
    }

    /// The code named `name` (`None` for a name this version does not know).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The code a status carries in its `ErrorDetail`, if any.
    pub fn of(status: &Status) -> Option<Self> {
        detail(status).and_then(|d| Self::parse(&d.code))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decodes the `ErrorDetail` of a status, if it carries one.
pub fn detail(status: &Status) -> Option<ErrorDetail> {
    if status.details().is_empty() {
        return None;
    }
    ErrorDetail::decode(status.details()).ok()
}

/// Whether a status reports that no connection could be made, so the request was
/// never sent: tonic puts a `ConnectError` in the source chain of such a status.
pub fn never_sent(status: &Status) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = src {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        src = e.source();
    }
    false
}

/// The stable code of a status by name (as sent, even one this version does not
/// know), or empty.
pub fn code_of(status: &Status) -> String {
    detail(status).map(|d| d.code).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_from_its_name_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!(names.insert(c.as_str()), "{c} twice");
        }
        assert_eq!(ErrorCode::parse("NOPE"), None);
    }

    #[test]
    fn a_status_without_details_has_no_code() {
        let s = Status::internal("x");
        assert_eq!(code_of(&s), "");
        assert_eq!(ErrorCode::of(&s), None);
    }

    #[test]
    fn a_status_from_a_node_was_sent_and_a_refused_connection_was_not() {
        assert!(!never_sent(&Status::unavailable("tcp connect error")));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let s = Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(never_sent(&s));
    }

    #[test]
    fn a_code_travels_in_the_status_details() {
        let d = ErrorDetail {
            code: ErrorCode::NotLeader.as_str().into(),
            detail: None,
        };
        let s = Status::with_details(tonic::Code::Unavailable, "m", d.encode_to_vec().into());
        assert_eq!(ErrorCode::of(&s), Some(ErrorCode::NotLeader));
        assert_eq!(code_of(&s), "NOT_LEADER");
    }
}
