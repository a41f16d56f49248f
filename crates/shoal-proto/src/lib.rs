//! shoal's wire types.
//!
//! - [`v1`]: code generated from `proto/shoal/v1/*.proto` (the public `Kv` and `Admin`
//!   services and the internal `Raft` transport).
//! - [`error`]: the stable error codes and the structured `ErrorDetail` a non-OK
//!   status carries, so clients redirect on `NOT_LEADER` without string matching.
//!
//! Conversions between these types and the node's domain types live at the edge of
//! the crates that own the domain types (`shoal-server`, `shoal-client`).

pub mod error;

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("shoal.v1");
}
