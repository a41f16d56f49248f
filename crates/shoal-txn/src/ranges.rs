//! [`Ranges`]: how the transaction layer reaches the cluster: the range holding a key
//! (its bounds, its steps, its reads at a timestamp) and the cluster's timestamps. The
//! node implements it over its own client (routing, redirects, retries of idempotent
//! steps); tests may implement it over anything.

use futures::future::BoxFuture;
use shoal_raft::{Command, CommandResponse};

use crate::error::Result;

/// The bounds `[start, end)` of a range (an empty `end`: the end of the key space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl Bounds {
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// A key's value and version, as a read at a timestamp saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The version's commit timestamp.
    pub version: u64,
}

/// The ranges of the cluster, as the transaction layer reaches them.
pub trait Ranges: Send + Sync {
    /// Applies a transaction's `step` on the range holding `key` (its first key), on
    /// that range's leader; what applying it returned. Steps are idempotent, so the
    /// implementation may send one again after an ambiguous failure. Fails with
    /// [`crate::Error::Regroup`] when the step's keys no longer lie in one range (it
    /// split): nothing was applied, and the caller sends the keys of each range apart.
    fn step<'a>(&'a self, key: &'a [u8], step: Command) -> BoxFuture<'a, Result<CommandResponse>>;

    /// The bounds of the range holding `key`, as last known (they may have changed:
    /// a step sent by them may fail with `Regroup`).
    fn locate<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Bounds>>;

    /// `key` as a read at `ts` sees it, once every lock that could hide a version at
    /// or below `ts` is resolved.
    fn get<'a>(&'a self, key: &'a [u8], ts: u64) -> BoxFuture<'a, Result<Option<Read>>>;

    /// Up to `limit` pairs of `[start, end)` (0: all) in key order, as a read at `ts`
    /// sees them, across ranges.
    fn scan<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
        ts: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Read>>>;

    /// A fresh timestamp from the cluster's oracle: above every timestamp handed out
    /// before the call.
    fn now(&self) -> BoxFuture<'_, Result<u64>>;

    /// A timestamp from the cluster's oracle that no other caller gets, but not
    /// necessarily above those handed out before the call (it may come from a reserve
    /// taken a moment ago): what the start of a transaction that reads nothing needs.
    fn unique(&self) -> BoxFuture<'_, Result<u64>> {
        self.now()
    }
}
