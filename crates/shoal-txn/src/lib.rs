//! shoal's transactions.
//!
//! - [`timestamp`]: [`Timestamp`], a point of the cluster's one time line (wall-clock
//!   milliseconds and a logical count).
//! - [`batch`]: [`Batcher`], which coalesces concurrent asks for timestamps into one
//!   fetch at a time.
//! - [`oracle`]: [`Oracle`], the timestamp oracle on the meta range's leader: a window
//!   of timestamps in memory under a high-water mark persisted through the meta
//!   range's log, one leadership check per batch.
//! - [`ranges`]: [`Ranges`], how the layer reaches the cluster's ranges (steps,
//!   reads at a timestamp, the bounds of a key's range) and its timestamps.
//! - [`coordinator`]: [`Transaction`], a transaction as its gateway runs it: reads at
//!   its start, buffered writes, and commit by one phase (one range) or Percolator's
//!   two (prewrite, commit timestamp, read validation, primary, then the rest).
//! - [`across`]: etcd-shaped requests (`Batch`, `Txn`) whose keys span several
//!   ranges, run as one [`Transaction`].
//! - [`resolve`]: what a reader or a writer does with a lock it meets (ask the
//!   primary's range, then roll the lock forward or back), over [`Ranges`].
//! - [`error`]: [`Error`], what this layer fails with.
//!
//! Flow: a node asks its [`Batcher`] for timestamps; the batcher asks the meta range's
//! leader (its [`Oracle`], through the node's peer calls, or directly when this node
//! leads the meta range), one call per batch.
//!
//! A transaction: the node's `Txn` service holds a [`Transaction`] per handle; its
//! reads go through [`Ranges::get`]/[`Ranges::scan`] at its start timestamp, and its
//! commit sends Percolator's steps through [`Ranges::step`].

pub mod across;
pub mod batch;
pub mod coordinator;
pub mod error;
pub mod oracle;
pub mod ranges;
pub mod resolve;
pub mod timestamp;

pub use batch::Batcher;
pub use coordinator::{Isolation, Options, Transaction};
pub use error::{Error, Result};
pub use oracle::Oracle;
pub use ranges::Ranges;
pub use timestamp::Timestamp;
