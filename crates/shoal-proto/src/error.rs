//! Stable error codes and the `ErrorDetail` carried in gRPC status details.

use prost::Message;
use tonic::{Code, Status};

use crate::v1::{error_detail, ErrorDetail, NotLeader};

/// Stable, machine-readable error codes. Clients and scripts may match on these.
pub mod codes {
    pub const NOT_LEADER: &str = "NOT_LEADER";
    pub const NOT_INITIALIZED: &str = "NOT_INITIALIZED";
    pub const RANGE_NOT_FOUND: &str = "RANGE_NOT_FOUND";
    /// The request named an older (or newer) epoch version of its range: re-route
    /// with the descriptor in the details.
    pub const EPOCH_MISMATCH: &str = "EPOCH_MISMATCH";
    /// A key of the request is outside the range it named.
    pub const KEY_NOT_IN_RANGE: &str = "KEY_NOT_IN_RANGE";
    pub const WRONG_NODE: &str = "WRONG_NODE";
    /// A batch or transaction whose keys fall in more than one range (cross-range
    /// transactions are not supported yet).
    pub const CROSS_RANGE: &str = "CROSS_RANGE";
    /// A replica cannot be created or filled here yet: the node still holds a replica
    /// whose span overlaps it (it catches up or is removed, and the sender retries).
    pub const RANGE_OVERLAP: &str = "RANGE_OVERLAP";
    pub const NO_QUORUM: &str = "NO_QUORUM";
    pub const EMPTY_KEY: &str = "EMPTY_KEY";
    pub const KEY_TOO_LARGE: &str = "KEY_TOO_LARGE";
    pub const VALUE_TOO_LARGE: &str = "VALUE_TOO_LARGE";
    pub const REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    pub const ALREADY_INITIALIZED: &str = "ALREADY_INITIALIZED";
    pub const PEER_UNREACHABLE: &str = "PEER_UNREACHABLE";
    pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    pub const INTERNAL: &str = "INTERNAL";
}

/// Builds a status whose details carry `code` (and `detail`, when given).
pub fn status(
    grpc: Code,
    code: &str,
    message: impl Into<String>,
    detail: Option<error_detail::Detail>,
) -> Status {
    let d = ErrorDetail {
        code: code.to_string(),
        detail,
    };
    Status::with_details(grpc, message, d.encode_to_vec().into())
}

/// The `NOT_LEADER` status: the client should retry on `leader_addr` when known.
pub fn not_leader(range_id: u64, leader_id: Option<u64>, leader_addr: Option<String>) -> Status {
    let msg = match &leader_addr {
        Some(a) => format!("not the leader of range {range_id}; the leader is at {a}"),
        None => format!("not the leader of range {range_id}; no leader is known yet"),
    };
    status(
        Code::Unavailable,
        codes::NOT_LEADER,
        msg,
        Some(error_detail::Detail::NotLeader(NotLeader {
            range_id,
            leader_id: leader_id.unwrap_or(0),
            leader_addr: leader_addr.unwrap_or_default(),
        })),
    )
}

/// Decodes the `ErrorDetail` of a status, if it carries one.
pub fn detail(status: &Status) -> Option<ErrorDetail> {
    if status.details().is_empty() {
        return None;
    }
    ErrorDetail::decode(status.details()).ok()
}

/// The stable code of a status: its `ErrorDetail` code, or empty.
pub fn code_of(status: &Status) -> String {
    detail(status).map(|d| d.code).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_round_trips_through_status_details() {
        let s = not_leader(7, Some(3), Some("n3:7070".into()));
        assert_eq!(s.code(), Code::Unavailable);
        let d = detail(&s).expect("detail");
        assert_eq!(d.code, codes::NOT_LEADER);
        match d.detail {
            Some(error_detail::Detail::NotLeader(nl)) => {
                assert_eq!(
                    (nl.range_id, nl.leader_id, nl.leader_addr.as_str()),
                    (7, 3, "n3:7070")
                )
            }
            other => panic!("unexpected detail {other:?}"),
        }
    }

    #[test]
    fn a_status_without_details_has_no_code() {
        assert_eq!(code_of(&Status::internal("x")), "");
    }
}
