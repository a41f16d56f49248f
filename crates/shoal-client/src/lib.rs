//! Rust SDK for shoal.
//!
//! [`Client`] connects through any nodes of a cluster, finds the leader from the
//! structured `NOT_LEADER` details of a refused request, retries what is safe to retry
//! with jittered exponential backoff, and bounds every attempt with a per-request
//! timeout, which the node also knows (it answers with a code before it runs out).
//!
//! What is retried: every read and every write, also when the outcome of an attempt
//! is unknown (a timeout, a lost connection, a leader change mid-flight). Each write
//! carries a request id (this client's id and a sequence number); retries reuse it,
//! and the cluster applies a request id at most once, answering a retry with the
//! first application's result. So a retried put never takes effect twice, and a
//! retried transaction never runs twice. Every decision comes from the stable code in
//! the status details (or, with none, from the transport's error), never from text.
//!
//! Routing: the client keeps a cache of range descriptors, filled by `RangeLookup`
//! and refreshed from the descriptors a node sends with `EPOCH_MISMATCH` and
//! `KEY_NOT_IN_RANGE`. Each keyed request names its range (`RangeTarget`) and goes to
//! that range's leader when known. Scans and delete-ranges that cross range
//! boundaries are sent range by range and stitched in key order.
//!
//! Transactions: [`Client::transaction`] runs a closure in a serializable
//! transaction across any ranges, coordinated by a node, and runs it again on a
//! conflict; [`Client::begin`] gives the [`Transaction`] handle itself.
//!
//! Modules:
//! - [`cache`]: the range cache ([`cache::RangeCache`]).
//! - [`retry`]: retry decisions per error code, backoff, request ids.
//! - [`client`]: [`Client`], its connections, and the call loop that applies them.
//! - [`kv`], [`txn`] and [`admin`]: the operations, as methods of [`Client`].
//! - [`across`]: a batch of puts across ranges, committed by the client itself.
//! - [`ops`]: builders of write ops, transaction ops and compares.
//! - [`tls`]: [`tls::ClientTls`], the certificates of a client of a secure cluster.
//! - [`password`]: [`password::Credentials`], a user's name and password, sent with
//!   every call to a secure cluster instead of a certificate.
//! - [`error`]: the SDK's [`Error`].

pub mod across;
pub mod admin;
pub mod cache;
pub mod client;
pub mod error;
pub mod kv;
pub mod ops;
pub mod password;
pub mod retry;
pub mod tls;
pub mod txn;

pub use client::{Client, ClientOptions};
pub use error::Error;
pub use kv::ScanPage;
pub use password::Credentials;
pub use pb::{compare, Compare, Consistency, KeyValue, TxnOp, TxnOpResult, TxnResponse, WriteOp};
pub use shoal_proto::span::key_after;
use shoal_proto::v1 as pb;
pub use tls::ClientTls;
pub use txn::{Isolation, Transaction, TxnOptions};

pub type Result<T, E = Error> = std::result::Result<T, E>;
