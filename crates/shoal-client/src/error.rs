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
    /// The TLS handshake with the node at `addr` failed: its certificate is not of
    /// the CA this client trusts or does not name the address, the node refused the
    /// client's certificate, or one side speaks TLS and the other does not. Final at
    /// an address the client was given (certificates do not mend on their own); an
    /// address a node named is routed around. Code `TLS_HANDSHAKE`.
    #[error("TLS with {addr}: {message} (TLS_HANDSHAKE)")]
    Tls { addr: String, message: String },
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
        if let Some(message) = tls_refusal(&s) {
            return Error::Tls {
                addr: addr.to_string(),
                message,
            };
        }
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

    /// Whether no retry can change the answer: the request is invalid, or the
    /// client's credentials are refused (its certificates, its identity).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::InvalidArgument { .. } | Error::Tls { .. })
            || matches!(self.code(), Some("UNAUTHENTICATED" | "PERMISSION_DENIED"))
    }

    /// The stable error code, when the node sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::InvalidArgument { code, .. } | Error::Rejected { code, .. } => Some(code),
            Error::Status { error_code, .. } => error_code.as_deref(),
            Error::Tls { .. } => Some("TLS_HANDSHAKE"),
            Error::Unavailable(_) | Error::OutcomeUnknown(_) => None,
        }
    }
}

/// Why the TLS handshake of a failed call's connection failed, when it did: a rustls
/// error anywhere in the status's sources (an I/O error carries it inside).
pub fn tls_refusal(status: &tonic::Status) -> Option<String> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = src {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(t) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(t.to_string());
        }
        src = e.source();
    }
    None
}
