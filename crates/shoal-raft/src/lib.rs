//! shoal's replication layer: every range is one openraft group.
//!
//! Storage side, bottom up:
//! - [`types`]: the openraft type configuration and aliases; [`codec`]: how what the
//!   layer stores and sends is encoded (postcard).
//! - [`range`]: [`RangeDescriptor`]s (span, epoch, replicas); [`index`]: a node's
//!   ranges by span ([`RangeIndex`]).
//! - [`command`]: what a range's log carries ([`Command`]) and what applying it
//!   returns ([`CommandResponse`]).
//! - [`dispatch`]: how a command applies: checked against the range, then its own
//!   function, given an [`apply`] context ([`apply::Apply`]): [`writes`] (data writes and
//!   transactions), [`once`] (exactly-once request ids), [`meta`] (the meta range's
//!   system keys, written and read there alone), [`split`], [`merge`] (a range
//!   absorbed by its left neighbour: freeze, merge, or fence and thaw), [`percolator`] (a range's
//!   steps of transactions across ranges, on the records of [`txn_record`]).
//! - [`log_store`]: [`LogStore`], a range's log and vote in the node's store; an
//!   append is an unsynced write batch, reported flushed once [`wal_sync`]'s shared
//!   fsync of the write-ahead log covers it.
//! - [`state_machine`]: [`StateMachine`], which applies entries (data and applied
//!   index in one batch) and builds / installs snapshots as checksummed files.
//!
//! Node side:
//! - [`options`]: [`RaftOptions`] (timing, log compaction, when to snapshot).
//! - [`replica`]: [`Replica`], one range's Raft instance and every call the node
//!   makes of it; [`view`]: [`RangeView`], reads bounded by the range; [`latch`]:
//!   [`latch::Latches`], a leader's writes in flight by key (writes of one key in
//!   timestamp order; reads at a timestamp wait for the writes below it).
//! - [`load`]: [`load::Load`], requests a replica served and a sample of their keys,
//!   and the key a hot range splits at.
//! - [`riders`]: decided commits held back a moment to ride with a range's next
//!   proposal.
//! - [`router`]: [`Router`], the node's replicas by range id and by key.
//! - [`transport`]: the peer transport, both sides, in one place.
//! - [`quiesce`]: idle ranges stop their Raft timers; one beat per node pair keeps
//!   their followers from electing while the leader's node lives.
//! - [`error`]: [`Error`], what this layer fails with (openraft's errors mapped here).
//! - [`failpoints`]: crash and error injection points (`failpoints` feature only).
//!
//! Flow: the node proposes a [`Command`] to a [`Replica`]; openraft appends it through
//! [`LogStore`], replicates it via [`transport`], and once committed applies it in
//! [`StateMachine`] (through [`apply`]), whose response goes back to the proposer.

pub mod apply;
pub mod codec;
pub mod command;
pub mod dispatch;
pub mod error;
pub mod failpoints;
pub mod index;
pub mod latch;
pub mod load;
pub mod log_store;
pub mod merge;
pub mod meta;
pub mod once;
pub mod options;
pub mod percolator;
pub mod quiesce;
pub mod range;
pub mod replica;
pub mod riders;
pub mod router;
pub mod split;
pub mod state_machine;
pub mod transport;
pub mod txn_record;
pub mod types;
pub mod view;
pub mod wal_sync;
pub mod writes;

pub use command::{
    Command, CommandResponse, Compare, CompareOp, CompareTarget, Found, OpResult, Refusal, Touch,
    TxnOp, WriteOp,
};
pub use error::Error;
pub use index::RangeIndex;
pub use log_store::LogStore;
pub use options::RaftOptions;
pub use quiesce::{Beat, Beats, QuiesceOptions, Quiescer};
pub use range::{Frozen, RangeDescriptor, RangeEpoch, ReplicaDescriptor, FIRST_RANGE_ID};
pub use replica::{Replica, ReplicaEnv};
pub use router::Router;
pub use state_machine::{RangeEvent, StateMachine};
pub use transport::pool::{Dial, Io, PeerPool};
pub use transport::service::{RaftService, StatusOf};
pub use types::*;
pub use view::{RangeView, ScanPage};
pub use wal_sync::WalSyncer;
