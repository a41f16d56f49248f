//! [`Error`]: what a call of the SDK fails with, from the status a node answered (its
//! gRPC code and the stable code in its details) or from the SDK's own retries.

use shoal_proto::error::code_of;
use tonic::Code;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request was refused as invalid; retrying cannot help. `code` is the stable
    /// error code (`EMPTY_KEY`, `KEY_TOO_LARGE`, `VALUE_TOO_LARGE`, `CROSS_RANGE`, ...).
    #[error("{message} ({code})")]
    InvalidArgument { code: String, message: String },
    /// The cluster refused the request in its current state (e.g. `ALREADY_INITIALIZED`).
    #[error("{message} ({code})")]
    Rejected { code: String, message: String },
    /// No node could serve the request before the retry deadline.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The attempt may or may not have been applied (a write without a request id
    /// whose connection or leader was lost mid-flight).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Any other answer of a node, with the stable code it carried (`error_code`).
    #[error("{addr}: {code:?}: {message}")]
    Status {
        addr: String,
        code: Code,
        message: String,
        error_code: Option<String>,
    },
}

impl Error {
    /// The error of a status the node at `addr` answered.
    pub fn from_status(addr: &str, s: tonic::Status) -> Self {
        let code = code_of(&s);
        let named = |fallback: &str| {
            if code.is_empty() {
                fallback.to_string()
            } else {
                code.clone()
            }
        };
        match s.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted => {
                Error::InvalidArgument {
                    code: named(&format!("{:?}", s.code()).to_uppercase()),
                    message: s.message().to_string(),
                }
            }
            Code::FailedPrecondition | Code::AlreadyExists => Error::Rejected {
                code: named("FAILED_PRECONDITION"),
                message: s.message().to_string(),
            },
            c => Error::Status {
                addr: addr.to_string(),
                code: c,
                message: if code.is_empty() {
                    s.message().to_string()
                } else {
                    format!("{} ({code})", s.message())
                },
                error_code: (!code.is_empty()).then_some(code),
            },
        }
    }

    /// The stable error code, when the node sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::InvalidArgument { code, .. } | Error::Rejected { code, .. } => Some(code),
            Error::Status { error_code, .. } => error_code.as_deref(),
            Error::Unavailable(_) | Error::OutcomeUnknown(_) => None,
        }
    }
}
