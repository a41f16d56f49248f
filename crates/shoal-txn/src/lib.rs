//! shoal's transactions.
//!
//! - [`timestamp`]: [`Timestamp`], a point of the cluster's one time line (wall-clock
//!   milliseconds and a logical count).
//! - [`batch`]: [`Batcher`], which coalesces concurrent asks for timestamps into one
//!   fetch at a time.
//! - [`oracle`]: [`Oracle`], the timestamp oracle on the meta range's leader: a window
//!   of timestamps in memory under a high-water mark persisted through the meta
//!   range's log, one leadership check per batch.
//! - [`resolve`]: what a reader or a writer does with a lock it meets (ask the
//!   primary's range, then roll the lock forward or back), over [`resolve::Ranges`],
//!   the node's way to reach any range.
//! - [`error`]: [`Error`], what this layer fails with.
//!
//! Flow: a node asks its [`Batcher`] for timestamps; the batcher asks the meta range's
//! leader (its [`Oracle`], through the node's peer calls, or directly when this node
//! leads the meta range), one call per batch.

pub mod batch;
pub mod error;
pub mod oracle;
pub mod resolve;
pub mod timestamp;

pub use batch::Batcher;
pub use error::{Error, Result};
pub use oracle::Oracle;
pub use timestamp::Timestamp;
