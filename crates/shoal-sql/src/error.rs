//! [`SqlError`]: what a statement fails with, as Postgres names it: a SQLSTATE and a
//! message. Every error the SQL layer returns carries its SQLSTATE, so pgwire and the
//! HTTP API hand clients the code Postgres would.

use std::fmt;

/// SQLSTATE codes the SQL layer answers with (Postgres' own, appendix A of its manual).
pub mod state {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const INVALID_TABLE_DEFINITION: &str = "42P16";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const GROUPING_ERROR: &str = "42803";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const CARDINALITY_VIOLATION: &str = "21000";
    pub const INVALID_COLUMN_REFERENCE: &str = "42P10";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const STRING_DATA_RIGHT_TRUNCATION: &str = "22001";
    pub const INVALID_DATETIME_FORMAT: &str = "22007";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    pub const ACTIVE_TRANSACTION: &str = "25001";
    pub const NO_ACTIVE_TRANSACTION: &str = "25P01";
    pub const READ_ONLY_TRANSACTION: &str = "25006";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const UNDEFINED_PARAMETER: &str = "42P02";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const QUERY_CANCELED: &str = "57014";
    /// A range could not be reached now: the statement may succeed when run again.
    pub const SYSTEM_ERROR: &str = "58000";
    pub const INTERNAL_ERROR: &str = "XX000";
    /// The outcome of a commit is unknown (Postgres' `transaction_resolution_unknown`).
    pub const TRANSACTION_RESOLUTION_UNKNOWN: &str = "08007";
}

/// A statement's failure: its SQLSTATE and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub state: &'static str,
    pub message: String,
}

impl SqlError {
    pub fn new(state: &'static str, message: impl Into<String>) -> Self {
        Self {
            state,
            message: message.into(),
        }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(state::SYNTAX_ERROR, message)
    }

    /// The statement was cancelled by its client (a cancel request).
    pub fn canceled() -> Self {
        Self::new(
            state::QUERY_CANCELED,
            "canceling statement due to user request",
        )
    }

    pub fn unsupported(what: impl fmt::Display) -> Self {
        Self::new(
            state::FEATURE_NOT_SUPPORTED,
            format!("{what} is not supported"),
        )
    }

    pub fn undefined_table(name: &str) -> Self {
        Self::new(
            state::UNDEFINED_TABLE,
            format!("relation \"{name}\" does not exist"),
        )
    }

    pub fn undefined_column(name: &str) -> Self {
        Self::new(
            state::UNDEFINED_COLUMN,
            format!("column \"{name}\" does not exist"),
        )
    }

    pub fn bad_text(type_name: &str, text: &str) -> Self {
        Self::new(
            state::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {type_name}: \"{text}\""),
        )
    }

    pub fn out_of_range(type_name: &str) -> Self {
        Self::new(
            state::NUMERIC_VALUE_OUT_OF_RANGE,
            format!("{type_name} out of range"),
        )
    }

    pub fn mismatch(message: impl Into<String>) -> Self {
        Self::new(state::DATATYPE_MISMATCH, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(state::INTERNAL_ERROR, message)
    }

    /// Whether running the statement (or its transaction) again may succeed.
    pub fn retriable(&self) -> bool {
        self.state == state::SERIALIZATION_FAILURE
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.state)
    }
}

impl std::error::Error for SqlError {}

impl From<shoal_txn::Error> for SqlError {
    fn from(e: shoal_txn::Error) -> Self {
        use shoal_txn::Error as E;
        let code = match &e {
            E::Conflict(_) => state::SERIALIZATION_FAILURE,
            E::TooLarge(_) => state::PROGRAM_LIMIT_EXCEEDED,
            E::ReadOnly => state::READ_ONLY_TRANSACTION,
            E::Closed(_) => state::IN_FAILED_TRANSACTION,
            E::OutcomeUnknown(_) => state::TRANSACTION_RESOLUTION_UNKNOWN,
            E::Unavailable(_) | E::NoMetaReplica | E::ShuttingDown | E::Raft(_) => {
                state::SYSTEM_ERROR
            }
            _ => state::INTERNAL_ERROR,
        };
        let message = match &e {
            E::Conflict(why) => {
                format!("could not serialize access due to a concurrent update ({why})")
            }
            other => other.to_string(),
        };
        SqlError::new(code, message)
    }
}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;
