//! [`Clock`]: this node's timestamps. Every node asks the cluster's timestamp oracle
//! (`shoal_txn::Oracle`, on the meta range's leader) through one batcher: concurrent
//! callers share one call to the leader, or none when this node is the leader.

use std::sync::{Arc, Weak};
use std::time::Duration;

use shoal_proto::reserve::SharedReserve;
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

/// This node's source of timestamps, and its oracle (which answers while this node
/// leads the meta range).
#[derive(Clone)]
pub struct Clock {
    batcher: Batcher<Error>,
    oracle: Oracle,
    node: Weak<Node>,
    reserve: Arc<SharedReserve>,
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

    /// A timestamp no other caller gets, at most
    /// [`RESERVE_AGE`](shoal_proto::reserve::RESERVE_AGE) older than one taken
    /// now (from a reserve of the oracle's timestamps, refilled as it runs out or
    /// ages), but not necessarily above every timestamp handed out before this call.
    pub async fn unique(&self) -> Result<Timestamp> {
        let ts = self
            .reserve
            .unique(|count| async move { self.take(count).await.map(|t| t.0) })
            .await?;
        Ok(Timestamp(ts))
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
    use super::*;

    #[test]
    fn gc_trails_the_read_floor_by_a_quarter_of_the_ttl_at_most_a_minute() {
        assert_eq!(gc_margin(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(gc_margin(Duration::from_secs(600)), Duration::from_secs(60));
    }
}
