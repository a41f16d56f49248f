//! [`Oracle`]: the timestamp oracle, served by the meta range's leader.
//!
//! Every timestamp comes from here, so timestamps order every commit in the
//! cluster in real time: one taken after another was returned is larger. The leader
//! hands them out from memory inside a window whose top (the high-water mark) is
//! persisted through the meta range's log before any timestamp under it is given
//! ([`Command::ReserveTimestamps`]). A new leader starts at the persisted mark, above
//! everything its predecessors gave; the window is moved up ahead of need, so a
//! batch rarely waits for the log.
//!
//! Each batch of asks is served only after the leader confirmed its leadership once
//! the asks had arrived: by its lease (openraft's: followers that acknowledged it
//! within the lease vote for no other candidate before it ends) or else a read index.
//! A deposed leader that does not know it yet cannot answer them, so no timestamp is
//! given below one a newer leader already gave.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_raft::{Command, OpResult, Replica, Router, FIRST_RANGE_ID};
use shoal_storage::Engine;

use crate::batch::Batcher;
use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

/// How far (in wall-clock time) a reservation reaches beyond what is needed now.
const WINDOW: Duration = Duration::from_secs(3);
/// How long a batch waits for the leadership check.
const PATIENCE: Duration = Duration::from_secs(3);
/// How long a batch may take in all (the leadership check and a reservation).
pub const FETCH_PATIENCE: Duration = Duration::from_secs(5);

/// The timestamps this leadership may give: `[next, high)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// The meta range's term this window belongs to.
    term: u64,
    next: u64,
    high: u64,
}

/// What a batch of `total` timestamps needs, from a window and the wall clock.
#[derive(Debug, PartialEq, Eq)]
enum Grant {
    /// `total` timestamps from `first`; the window moves to `next`.
    Ready { first: u64, next: u64 },
    /// The high-water mark must first reach `up_to`.
    Reserve { up_to: u64 },
}

impl Window {
    /// Grants `total` timestamps at wall clock `now` (never below it: a timestamp says
    /// roughly when it was taken), or says how far to reserve first.
    fn grant(&self, total: u64, now: Timestamp) -> Grant {
        let first = self.next.max(now.0);
        let end = first.saturating_add(total);
        if end > self.high {
            return Grant::Reserve {
                up_to: end.saturating_add(Timestamp::from_millis(window_ms()).0),
            };
        }
        Grant::Ready { first, next: end }
    }

    /// Whether the window is running out: the mark should move up before a batch
    /// has to wait for it.
    fn running_low(&self, now: Timestamp) -> bool {
        let half = Timestamp::from_millis(window_ms() / 2).0;
        self.high.saturating_sub(self.next.max(now.0)) < half
    }
}

fn window_ms() -> u64 {
    WINDOW.as_millis() as u64
}

/// The timestamp oracle of this node: it answers only while this node leads the
/// meta range (otherwise `Error::Raft(NotLeader)` names the leader).
#[derive(Clone)]
pub struct Oracle {
    batcher: Batcher<Error>,
}

impl Oracle {
    /// An oracle reading the wall clock `skew_ms` ahead (for tests of skewed clocks).
    pub fn spawn(router: Arc<Router>, engine: Engine, skew_ms: i64) -> Self {
        // The batcher runs one fetch at a time: the window is never contended.
        let window: Arc<Mutex<Option<Window>>> = Arc::default();
        let batcher = Batcher::spawn(move |total| {
            let (router, engine, window) = (router.clone(), engine.clone(), window.clone());
            async move {
                let mut w = window.lock().map_err(|_| poisoned())?.take();
                // Bounded: the batcher fetches one batch at a time, so one that never
                // ends (a reservation no quorum commits) would stop every ask after it.
                // Cut short, a batch hands out nothing, and the window keeps what it
                // had persisted.
                let allocating = allocate(&router, &engine, &mut w, total, skew_ms);
                let r = match tokio::time::timeout(FETCH_PATIENCE, allocating).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Unavailable(format!(
                        "the timestamp oracle could not serve a batch within {FETCH_PATIENCE:?}"
                    ))),
                };
                *window.lock().map_err(|_| poisoned())? = w;
                r
            }
        });
        Self { batcher }
    }

    /// The first of `count` consecutive timestamps.
    pub async fn get(&self, count: u64) -> Result<Timestamp> {
        self.batcher.get(count).await
    }
}

fn poisoned() -> Error {
    Error::Internal("the oracle's window lock is poisoned".into())
}

/// Serves one batch of `total` timestamps on the meta range's leader, with `window`
/// the leadership's window (`None`, or one of an older term: read from the
/// persisted mark).
async fn allocate(
    router: &Router,
    engine: &Engine,
    window: &mut Option<Window>,
    total: u64,
    skew_ms: i64,
) -> Result<Timestamp> {
    let meta = router.get(FIRST_RANGE_ID).ok_or(Error::NoMetaReplica)?;
    meta.check_leader()?;
    let term = current_term(&meta);
    // Leadership confirmed after the batch's asks arrived (by the leader's lease, which
    // no other leader can be elected within, or a read index); for a new leadership's
    // first batch, also every reservation of earlier leaders applied here.
    match *window {
        Some(w) if w.term == term => meta.confirm_leadership().await?,
        _ => meta.linearize(PATIENCE).await?,
    }
    if current_term(&meta) != term {
        return Err(shoal_raft::Error::NoQuorum {
            range_id: FIRST_RANGE_ID,
            why: "the meta range's leadership changed while timestamps were asked".into(),
        }
        .into());
    }
    let mut w = match *window {
        Some(w) if w.term == term => w,
        _ => {
            let high = shoal_raft::meta::timestamp_high(engine)
                .map_err(|e| Error::Storage(format!("reading the timestamp mark: {e}")))?;
            tracing::info!(term, high, "timestamp oracle starts at the persisted mark");
            Window {
                term,
                next: high,
                high,
            }
        }
    };
    let now = Timestamp::wall_now_skewed(skew_ms);
    let first = loop {
        match w.grant(total, now) {
            Grant::Ready { first, next } => {
                w.next = next;
                break first;
            }
            Grant::Reserve { up_to } => {
                // A failed reservation leaves the window as it was: nothing under the
                // old mark was given twice, nothing above it given at all.
                *window = Some(w);
                w.high = reserve(&meta, up_to).await?;
            }
        }
    };
    if w.running_low(now) {
        // Ahead of need: the next batches find the window open. A failure here is
        // retried by the batch that needs it.
        let up_to = w.next.max(now.0) + Timestamp::from_millis(window_ms()).0;
        match reserve(&meta, up_to).await {
            Ok(high) => w.high = high,
            Err(e) => tracing::warn!(error = %e, "moving the timestamp window up"),
        }
    }
    *window = Some(w);
    Ok(Timestamp(first))
}

fn current_term(meta: &Replica) -> u64 {
    meta.with_metrics(|m| m.current_term)
}

/// Raises the persisted mark to at least `up_to`; returns it.
async fn reserve(meta: &Replica, up_to: u64) -> Result<u64> {
    let resp = meta.propose(Command::ReserveTimestamps { up_to }).await?;
    match resp.results.first() {
        Some(OpResult::TimestampHigh(high)) if *high >= up_to => Ok(*high),
        other => Err(Error::Internal(format!(
            "timestamp reservation up to {up_to} answered {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_grants_from_its_next_or_the_wall_clock_and_reserves_ahead() {
        let now = Timestamp::from_millis(10_000);
        // A new leadership starts at the persisted mark: everything it gives must wait
        // for a reservation.
        let w = Window {
            term: 2,
            next: now.0 - 5,
            high: now.0 - 5,
        };
        let Grant::Reserve { up_to } = w.grant(10, now) else {
            panic!("granted above the mark");
        };
        assert!(up_to >= now.0 + 10 + Timestamp::from_millis(window_ms()).0 - 1);
        // Inside the window: from the wall clock when it is ahead of `next`...
        let w = Window {
            term: 2,
            next: now.0 - 5,
            high: up_to,
        };
        assert_eq!(
            w.grant(10, now),
            Grant::Ready {
                first: now.0,
                next: now.0 + 10
            }
        );
        // ...and from `next` when the clock is behind it (or went back).
        let w = Window {
            next: now.0 + 100,
            ..w
        };
        assert_eq!(
            w.grant(1, now),
            Grant::Ready {
                first: now.0 + 100,
                next: now.0 + 101
            }
        );
        assert!(!w.running_low(now));
        let low = Window {
            next: up_to - 10,
            ..w
        };
        assert!(low.running_low(now));
    }
}
