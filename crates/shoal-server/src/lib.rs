//! The shoal node.
//!
//! Foundations:
//! - [`config`]: [`NodeConfig`], the `shoal start` flags (each also a `SHOAL_*` env
//!   var) and their validation.
//! - [`error`]: [`error::Error`], everything a node's operation fails with; it becomes a
//!   gRPC status in one place, in [`convert`].
//! - [`convert`]: the gRPC edge: wire <-> domain conversions, both ways, and the
//!   error-to-status conversion. [`validate`]: the size limits requests are checked
//!   against. [`request`]: a key-value request in its domain form.
//! - [`located`]: a range's descriptor with its replicas' addresses, as clients see it.
//! - [`certs`]: certificates made (the CA, nodes', clients') and read back, for
//!   `shoal cert` and [`tls`]. [`tls`]: rustls configurations for serving clients
//!   and peers and for calling peers, read from the certificates directory and read
//!   again when it changes. [`listen`]: the TLS handshakes of a secure node's
//!   listeners. [`authn`]: who may call what on each gRPC port (client and peer).
//!   [`users`]: the cluster's users and their roles, as this node last read them.
//!   [`logins`]: failed logins, counted and slowed down per source.
//! - [`metrics`]: Prometheus counters and histograms per RPC, Raft gauges per range.
//! - [`cgroup`]: the CPU quota and memory limit of the node's container, which size
//!   its runtime and its store's memory.
//!
//! The node and its drivers:
//! - [`node`]: [`Node`]: identity, the replicas it holds, the cluster's membership,
//!   and the shared parts (store, router, peer pool) every driver and service uses.
//! - [`routing`]: the routing table (the meta range's descriptors, completed with this
//!   node's own) and the calls to the meta range's leader that keep it.
//! - [`bootstrap`]: founding (`init`, `--bootstrap-expect`) and joining a cluster.
//! - [`keeper`]: the range keeper: splits, reports to the routing table, members that
//!   skipped a split, garbage collection of removed replicas, right-hand replicas
//!   of merges retired. [`merge`]: merges of adjacent ranges, driven by the left
//!   range's leader, and stalled ones abandoned.
//! - [`placement`]: the placement driver on the meta range's leader (a pure planner,
//!   the driver and its heartbeats, changes carried out by ranges' leaders).
//! - [`clock`]: [`clock::Clock`], this node's timestamps: a batching client of the
//!   cluster's timestamp oracle, and the oracle itself while this node leads the meta
//!   range (`shoal_txn`).
//! - [`lifecycle`]: readiness, a replica's fatal failure, drain.
//! - [`tasks`]: the guard that owns every background loop.
//! - [`sweep`]: the ranges' leaders resolve locks nobody met, before garbage
//!   collection could drop what decides them.
//!
//! Serving:
//! - [`kv`]: the public `Kv` service, one pipeline for every request; [`route`]: where
//!   a request is served; [`forward`]: passing it on (with retries where safe).
//! - [`admin`]: the public `Admin` service. [`peer`]: the internal `Peer` service
//!   (node-level calls); [`peer_call`]: calling it, and its methods' paths of the
//!   version before. The internal `Raft` service is `shoal_raft`'s.
//! - [`steps`]: [`steps::NodeRanges`], how this node reaches any range with a
//!   transaction's step (its own client of the cluster).
//! - [`txn`]: the public `Txn` service (transactions across ranges; timestamps).
//! - [`http`]: `/healthz`, `/readyz`, `/metrics` over HTTP/1 (hyper).
//! - [`serve`]: [`run`]: wiring, serving, and shutdown.
//!
//! A write flows: gRPC -> `kv` (validate via `convert`, route, maybe forward) -> the
//! range's `Replica` -> Raft commit and apply -> reply with the applied index.

pub mod admin;
pub mod authn;
pub mod bootstrap;
pub mod certs;
pub mod cgroup;
pub mod clock;
pub mod config;
pub mod convert;
pub mod error;
pub mod forward;
pub mod http;
pub mod keeper;
pub mod kv;
pub mod lifecycle;
pub mod listen;
pub mod located;
pub mod logins;
pub mod merge;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod peer_call;
pub mod placement;
pub mod request;
pub mod route;
pub mod routing;
pub mod serve;
pub mod steps;
pub mod sweep;
pub mod tasks;
pub mod tls;
pub mod txn;
pub mod users;
pub mod validate;

pub use config::NodeConfig;
pub use node::Node;
pub use serve::run;
