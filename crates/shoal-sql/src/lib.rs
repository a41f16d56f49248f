//! shoal's SQL-lite: a small Postgres dialect over shoal's transactions.
//!
//! - [`error`]: [`SqlError`], a failure with its SQLSTATE.
//! - [`types`]: column types and values: Postgres' text input and output, comparison,
//!   assignment to a column.
//! - [`catalog`]: a table's descriptor, and how its rows and index entries become keys
//!   (`shoal_storage::keys` owns the layout) and values.
//! - [`ctx`]: what a statement runs with (its transaction, the ranges, its
//!   parameters, its cancel token) and what it answers (rows, a stream of rows, a
//!   command's tag).
//! - [`expr`]: binding an expression against the columns in scope, its type.
//! - [`eval`]: evaluating a bound expression for a row.
//! - [`plan`]: the access path a WHERE clause allows (point get, index lookup, range
//!   scan, full scan), read a page at a time.
//! - [`aggregate`]: aggregates and the binding of grouped queries.
//! - [`select`]: queries bound against the catalog; a query's rows read
//!   whole or streamed down a channel.
//! - [`exec`]: a bound query run: read, join, filter, group and aggregate, project,
//!   sort, limit, into a sink.
//! - [`rows`]: a row and its index entries written or deleted together, constraints
//!   checked first.
//! - [`write`]: `INSERT`, `UPDATE`, `DELETE`.
//! - [`explain`]: `EXPLAIN` of a query or a write: its plan, a line per step.
//! - [`dropped`]: the rows of dropped tables, deleted after the drop, a page per
//!   transaction.
//! - [`ddl`]: `CREATE TABLE`, `DROP TABLE`, `CREATE INDEX`.
//! - [`session`]: a client's session: transaction blocks, autocommit with retries.
//! - [`pg`]: the Postgres wire protocol: a listener whose connections are sessions.
//! - [`password`]: a SQL client's login by password (SCRAM-SHA-256).
//! - [`wire`]: values on the Postgres wire: wire types, the binary format.
//! - [`psql`]: psql's catalog queries (`\dt`, `\d TABLE`), answered from the catalog.
//! - [`http`]: the HTTP SQL API (rqlite's shape): JSON arrays of statements.
//!
//! Flow: text -> `session::parse` (sqlparser) -> `Session::run` -> a statement's
//! module binds it against the catalog (read in the statement's transaction) and runs
//! it through a [`ctx::Ctx`] on `shoal_txn::Transaction`.

pub mod aggregate;
pub mod catalog;
pub mod ctx;
pub mod ddl;
pub mod dropped;
pub mod error;
pub mod eval;
pub mod exec;
pub mod explain;
pub mod expr;
pub mod http;
pub mod password;
pub mod pg;
pub mod plan;
pub mod psql;
pub mod rows;
pub mod select;
pub mod session;
pub mod types;
pub mod wire;
pub mod write;

pub use ctx::Output;
pub use error::SqlError;
pub use session::{Engine, Session};
pub use types::{Datum, SqlType};

/// The Postgres version the SQL layer answers to (`server_version`): the dialect its
/// clients may expect.
pub const SERVER_VERSION: &str = "15.0 (shoal)";

/// The one database.
pub const DATABASE: &str = "defaultdb";
/// The one user of an insecure node.
pub const USER: &str = "root";
