//! shoal's wire types, and the vocabulary the node and the SDK share.
//!
//! - [`v1`]: code generated from `proto/shoal/v1/*.proto`: the public `Kv` and `Admin`
//!   services, the internal `Raft` transport and the node-level `Peer` service.
//! - [`certs`]: the files of a certificates directory (`--certs-dir`) and the rules of
//!   user names, for `shoal cert`, the node and the SDK alike.
//! - [`error`]: the stable error codes ([`error::ErrorCode`]) and the structured
//!   `ErrorDetail` a refused call carries, so clients redirect on `NOT_LEADER` and
//!   decide retries without reading message text.
//! - [`span`]: key-span arithmetic (`[start, end)`, an empty end unbounded), written
//!   once for the node's descriptors and reads and the SDK's range cache.
//! - [`txn`]: the bounds of a transaction committed asynchronously.
//! - [`reserve`]: unique timestamps handed out from a reserve taken of the oracle.
//! - [`role`]: [`role::Role`], what a user may do (admin, readwrite, readonly).
//! - [`password`]: a user's password as the cluster keeps it, a SCRAM-SHA-256
//!   verifier ([`password::Verifier`]), and the rules of a password.
//!
//! Conversions between these wire types and the node's domain types live in
//! `shoal-server`'s `convert` module; the SDK speaks the wire types directly.

pub mod certs;
pub mod error;
pub mod password;
pub mod reserve;
pub mod role;
pub mod span;
pub mod txn;

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("shoal.v1");
}
