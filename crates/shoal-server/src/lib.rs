//! The shoal node.
//!
//! - [`config`]: [`NodeConfig`], the `shoal start` flags (each also a `SHOAL_*` env
//!   var) and their validation.
//! - [`node`]: [`Node`], which owns the store, the replicas and the peer pool; it
//!   answers bootstrap (`init`) and serves until shutdown ([`run`]).
//! - [`kv`]: the public `Kv` gRPC service: requests checked by [`validate`],
//!   proposals through Raft, linearizable or stale reads.
//! - [`validate`]: requests checked whole against the size limits and turned into
//!   domain ops, before anything is proposed.
//! - [`ranges`]: splits, the routing-table reports to the meta range, and replicas
//!   kept on the cluster's nodes, run by each range's leader.
//! - [`admin`]: the `Admin` gRPC service: status, node list, `init`, ranges.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics` over HTTP/1 (hyper).
//! - [`metrics`]: Prometheus counters and histograms per RPC, Raft gauges per range.
//!
//! Requests flow: gRPC -> `kv` (validate, build a `shoal_raft::Command`) -> the
//! range's `Replica` -> Raft commit and apply -> response with the applied index.

pub mod admin;
pub mod config;
pub mod http;
pub mod kv;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod ranges;
pub mod validate;

pub use config::NodeConfig;
pub use node::{run, Node};
