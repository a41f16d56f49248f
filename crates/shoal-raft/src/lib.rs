//! shoal's replication layer: every range is one openraft group.
//!
//! - [`types`]: the openraft type configuration and aliases.
//! - [`command`]: what a range's log carries ([`Command`]) and what applying it
//!   returns ([`CommandResponse`]); the data-level meaning of each op.
//! - [`log_store`]: [`LogStore`], a range's log and vote in the node's store; an
//!   append is reported flushed only after its one synced write batch.
//! - [`state_machine`]: [`StateMachine`], which applies commands (data and applied
//!   index in one batch) and builds / installs snapshots as checksummed files.
//! - [`network`]: the client side of the peer transport: one gRPC channel per peer
//!   node shared by every range, `range_id` on every message, snapshots streamed in
//!   chunks.
//! - [`mux`]: the Raft messages of every range to a peer, in batches on one
//!   long-lived stream per peer.
//! - [`service`]: the server side: the `Raft` gRPC service, dispatching by `range_id`
//!   through the [`Router`].
//! - [`failpoints`]: crash and error injection points (`failpoints` feature only).
//! - [`range`]: [`RangeDescriptor`]s (span, epoch, replicas), kept in the meta range.
//! - [`quiesce`]: idle ranges stop their Raft timers; one beat per node pair keeps
//!   their followers from electing while the leader's node lives.
//! - [`replica`]: [`Replica`], one range's Raft instance with its stores, and its
//!   configuration.
//!
//! Flow: the node's KV service proposes a [`Command`] to a [`Replica`]; openraft
//! appends it through [`LogStore`], replicates it via [`network`], and once committed
//! applies it in [`StateMachine`], whose response goes back to the proposer.

pub mod codec;
pub mod command;
pub mod failpoints;
pub mod log_store;
pub mod mux;
pub mod network;
pub mod quiesce;
pub mod range;
pub mod replica;
pub mod service;
pub mod state_machine;
pub mod types;
pub mod wal_sync;

pub use command::{
    Command, CommandResponse, Compare, CompareOp, CompareTarget, Found, OpResult, Touch, TxnOp,
    WriteOp,
};
pub use log_store::LogStore;
pub use network::{NetworkFactory, PeerPool};
pub use quiesce::{Beat, QuiesceOptions, Quiescer};
pub use range::{
    ChangeReplicas, NodeReport, RangeDescriptor, RangeEpoch, RangeIndex, ReplicaChange,
    ReplicaDescriptor,
};
pub use replica::{RaftOptions, ReadError, Replica, ReplicaEnv, Router};
pub use service::{read_error, NodeHooks, RaftService};
pub use state_machine::{RangeEvent, SnapshotFile, StateMachine};
pub use types::*;
pub use wal_sync::WalSyncer;

/// The first range ("meta"): it covers the start of the key space and keeps the
/// cluster's system keys (the routing table of range descriptors, id counters).
pub const FIRST_RANGE_ID: u64 = 1;
