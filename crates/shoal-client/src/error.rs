//! Errors of the SDK.

use shoal_proto::error::detail;
use tonic::Code;

/// What a call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request was refused as invalid; retrying cannot help. `code` is the stable
    /// error code (`EMPTY_KEY`, `KEY_TOO_LARGE`, `VALUE_TOO_LARGE`, ...).
    #[error("{message} ({code})")]
    InvalidArgument { code: String, message: String },
    /// The cluster refused the request in its current state (e.g. `ALREADY_INITIALIZED`).
    #[error("{message} ({code})")]
    Rejected { code: String, message: String },
    /// No node could serve the request before the retry deadline.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The attempt may or may not have been applied (a transaction whose connection
    /// or leader was lost mid-flight).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Any other failure reported by a node.
    #[error("{addr}: {code:?}: {message}")]
    Status {
        addr: String,
        code: Code,
        message: String,
    },
}

impl Error {
    pub(crate) fn from_status(addr: &str, s: tonic::Status) -> Self {
        let code = detail(&s).map(|d| d.code).unwrap_or_default();
        match s.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted => {
                Error::InvalidArgument {
                    code: if code.is_empty() {
                        format!("{:?}", s.code()).to_uppercase()
                    } else {
                        code
                    },
                    message: s.message().to_string(),
                }
            }
            Code::FailedPrecondition | Code::AlreadyExists => Error::Rejected {
                code: if code.is_empty() {
                    "FAILED_PRECONDITION".into()
                } else {
                    code
                },
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
            },
        }
    }

    /// The stable error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::InvalidArgument { code, .. } | Error::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }
}
