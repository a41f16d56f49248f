//! [`Clock`]: this node's timestamps. Every node asks the cluster's timestamp oracle
//! (`shoal_txn::Oracle`, on the meta range's leader) through one batcher: concurrent
//! callers share one call to the leader, or none when this node is the leader.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use shoal_proto::v1::{TimestampsRequest, TimestampsResponse};
use shoal_txn::{Batcher, Oracle, Timestamp};

use crate::error::{Error, Result};
use crate::node::Node;
use crate::peer_call;

/// How many times a batch asks again after the meta range's leadership moved.
const REDIRECTS: usize = 3;
/// The wait before asking again, for a leader to be known.
const REDIRECT_PAUSE: Duration = Duration::from_millis(50);
/// How long a batch waits for the meta range's leader: its oracle's own bound, and a
/// second for the way there and back.
const CALL_PATIENCE: Duration =
    Duration::from_secs(shoal_txn::oracle::FETCH_PATIENCE.as_secs() + 1);

/// How many timestamps [`Clock::unique`] takes at once.
const RESERVE: u64 = 64;
/// The oldest a reserve is handed out from: a transaction that starts at a timestamp
/// this old meets (as a conflict, and starts again) the commits of its keys since.
/// With 200 ms, two-key transactions of 64 clients over 10,000 keys ran at 0.91x the
/// throughput of fresh starts; with 20 ms, at 1.15x (`bench/ab-txn.sh`).
const RESERVE_AGE: Duration = Duration::from_millis(20);

/// Unique timestamps taken from the oracle and not handed out yet.
#[derive(Debug, Clone, Copy)]
struct Reserve {
    next: Timestamp,
    left: u64,
    taken: std::time::Instant,
}

impl Reserve {
    /// The reserve of `RESERVE` timestamps from `first` (taken from the oracle at
    /// `taken`), `first` itself handed out.
    fn after(first: Timestamp, taken: std::time::Instant) -> Self {
        Self {
            next: first.plus(1),
            left: RESERVE - 1,
            taken,
        }
    }

    /// The next timestamp of the reserve, unless it ran out or is older than
    /// [`RESERVE_AGE`] at `now`.
    fn next(&mut self, now: std::time::Instant) -> Option<Timestamp> {
        if self.left == 0 || now.saturating_duration_since(self.taken) >= RESERVE_AGE {
            return None;
        }
        let ts = self.next;
        self.next = self.next.plus(1);
        self.left -= 1;
        Some(ts)
    }
}

/// This node's source of timestamps, and its oracle (which answers while this node
/// leads the meta range).
#[derive(Clone)]
pub struct Clock {
    batcher: Batcher<Error>,
    oracle: Oracle,
    node: Weak<Node>,
    reserve: Arc<Mutex<Option<Reserve>>>,
}

impl Clock {
    pub fn spawn(node: &Arc<Node>) -> Self {
        let oracle = Oracle::spawn(
            node.router.clone(),
            node.engine.clone(),
            node.cfg.clock_skew_ms,
        );
        let weak: Weak<Node> = Arc::downgrade(node);
        let local = oracle.clone();
        let node = weak.clone();
        let batcher = Batcher::spawn(move |total| {
            let (weak, local) = (weak.clone(), local.clone());
            async move {
                let node = weak
                    .upgrade()
                    .ok_or_else(|| Error::ShuttingDown("the node stopped".into()))?;
                fetch(&node, &local, total).await
            }
        });
        Self {
            batcher,
            oracle,
            node,
            reserve: Arc::default(),
        }
    }

    /// The oldest timestamp a read may ask for: `--gc-ttl` before this node's wall
    /// clock. No transaction lives that long, so none reads below it.
    pub fn read_floor(&self) -> u64 {
        let Some(node) = self.node.upgrade() else {
            return 0;
        };
        let now = Timestamp::wall_now_skewed(node.cfg.clock_skew_ms);
        now.minus(node.cfg.gc_ttl).0
    }

    /// Moves garbage collection's safe point to trail the read floor by a margin
    /// ([`gc_margin`]): versions a newer one hid before it may be dropped (by
    /// compactions, and left out of snapshots). The margin absorbs the difference of
    /// the nodes' clocks: a replica filled from another node's snapshot still has
    /// every version its own read floor lets a read ask for.
    pub fn move_safe_point(&self) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let margin = Timestamp::from_millis(gc_margin(node.cfg.gc_ttl).as_millis() as u64);
        let safe_point = self.read_floor().saturating_sub(margin.0);
        node.engine.gc().set_safe_point(safe_point);
    }

    /// A timestamp above every timestamp handed out in the cluster before this call.
    pub async fn now(&self) -> Result<Timestamp> {
        self.batcher.get(1).await
    }

    /// A timestamp no other caller gets, at most [`RESERVE_AGE`] older than one taken
    /// now (from a reserve of the oracle's timestamps, refilled as it runs out or
    /// ages), but not necessarily above every timestamp handed out before this call.
    pub async fn unique(&self) -> Result<Timestamp> {
        let now = std::time::Instant::now();
        let kept = {
            let mut reserve = self.reserve.lock().unwrap_or_else(|p| p.into_inner());
            reserve.as_mut().and_then(|r| r.next(now))
        };
        if let Some(ts) = kept {
            return Ok(ts);
        }
        // Taken before the call to the oracle: its age counts from before.
        let first = self.take(RESERVE).await?;
        *self.reserve.lock().unwrap_or_else(|p| p.into_inner()) = Some(Reserve::after(first, now));
        Ok(first)
    }

    /// The first of `count` consecutive timestamps, each above every timestamp handed
    /// out before this call.
    pub async fn take(&self, count: u64) -> Result<Timestamp> {
        self.batcher.get(count).await
    }

    /// On the meta range's leader: `count` timestamps from its oracle (`NOT_LEADER`
    /// elsewhere), for a peer's batch.
    pub async fn serve(&self, count: u64) -> Result<Timestamp> {
        Ok(self.oracle.get(count).await?)
    }
}

/// How far garbage collection trails the read floor: a quarter of `--gc-ttl`, at most
/// a minute (more than clocks kept by NTP drift apart).
pub fn gc_margin(gc_ttl: Duration) -> Duration {
    (gc_ttl / 4).min(Duration::from_secs(60))
}

/// One batch of `total` timestamps: from the oracle here while this node leads the
/// meta range, otherwise from the leader's, following the leadership as it moves.
async fn fetch(node: &Node, local: &Oracle, total: u64) -> Result<Timestamp> {
    let mut tries = 0;
    loop {
        let asked = match node.meta_leader() {
            Ok(None) => local.get(total).await.map_err(Error::from),
            Ok(Some((_, addr))) => {
                // Bounded, as the oracle's own batches are: this node's asks wait
                // behind this call.
                let req = TimestampsRequest { count: total };
                let call = peer_call::call::<_, TimestampsResponse>(node, &addr, "Timestamps", req);
                match tokio::time::timeout(CALL_PATIENCE, call).await {
                    Ok(answer) => answer.map(|r| Timestamp(r.first)),
                    Err(_) => Err(Error::Unavailable(format!(
                        "the timestamp oracle at {addr} did not answer within {CALL_PATIENCE:?}"
                    ))),
                }
            }
            Err(e) => Err(e),
        };
        match asked {
            Err(e) if e.is_not_leader() && tries < REDIRECTS => {
                tries += 1;
                tokio::time::sleep(REDIRECT_PAUSE).await;
            }
            // The meta range's leadership is not what the caller asked about: to it,
            // the oracle is unavailable for now.
            Err(e) if e.is_not_leader() => {
                return Err(Error::Unavailable(format!("the timestamp oracle: {e}")))
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_reserve_hands_out_each_timestamp_once_until_it_runs_out_or_ages() {
        let t0 = Instant::now();
        let mut r = Reserve::after(Timestamp(1000), t0);
        // `1000` went to the caller that took the reserve.
        let mut got = Vec::new();
        while let Some(ts) = r.next(t0) {
            got.push(ts.0);
        }
        assert_eq!(got, (1001..1000 + RESERVE).collect::<Vec<_>>());
        // Aged: nothing more, though timestamps are left.
        let mut r = Reserve::after(Timestamp(5000), t0);
        assert_eq!(r.next(t0 + RESERVE_AGE / 2), Some(Timestamp(5001)));
        assert_eq!(r.next(t0 + RESERVE_AGE), None);
    }

    #[test]
    fn gc_trails_the_read_floor_by_a_quarter_of_the_ttl_at_most_a_minute() {
        assert_eq!(gc_margin(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(gc_margin(Duration::from_secs(600)), Duration::from_secs(60));
    }
}
