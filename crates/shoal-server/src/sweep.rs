//! [`LockSweeper`]: resolves the old locks of the ranges this node leads.
//!
//! A lock is resolved by whoever meets it (a reader, a writer) or by its coordinator's
//! background commit. One that nobody meets, left by a coordinator that died, could
//! otherwise outlive what decides it: garbage collection drops a primary key's commit
//! record once a newer version hides it below the safe point, and a reader meeting the
//! old secondary lock after that would find no trace of the transaction at its primary
//! and roll it back, losing a committed write. So every range's leader resolves, each
//! quarter of `--gc-ttl`, the locks older than a quarter of it: a transaction's commit
//! record falls below the safe point a whole `--gc-ttl` after its start at the
//! earliest, by which time the sweep has met its locks several times. The sweep
//! visits every key of a range (locks live beside their keys' versions), so a range
//! found without locks is skipped until a prewrite applies there or a snapshot fills
//! it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_raft::codec::decode;
use shoal_raft::txn_record::Lock;
use shoal_storage::KeySpan;
use shoal_txn::resolve::{self, Resolved};
use shoal_txn::Timestamp;

use crate::node::{lock, Node};
use crate::steps::NodeRanges;

/// The most locks a range resolves in one round (the next round takes the rest).
const SWEEP_BATCH: usize = 1024;

/// How often the sweep runs, and the age of the locks it resolves: a quarter of
/// `gc_ttl`.
pub fn sweep_every(gc_ttl: Duration) -> Duration {
    (gc_ttl / 4).max(Duration::from_millis(250))
}

/// The start timestamp's wall-clock millisecond of a lock's transaction, from its
/// stored form (`None`: not a lock this sweep understands; left alone).
fn started_ms(stored: &[u8]) -> Option<u64> {
    decode::<Lock>(stored)
        .ok()
        .map(|l| Timestamp(l.start_ts).millis())
}

/// The sweep of this node's ranges; remembers which ranges it found without locks.
pub struct LockSweeper {
    node: Arc<Node>,
    ranges: NodeRanges,
    /// Ranges found without any lock, each with its replica's `lock_writes` then: not
    /// scanned again until that moves (a prewrite applied, a snapshot installed).
    clean: Mutex<HashMap<u64, u64>>,
}

impl LockSweeper {
    pub fn new(node: Arc<Node>, ranges: NodeRanges) -> Self {
        Self {
            node,
            ranges,
            clean: Mutex::default(),
        }
    }

    /// One round: every range this node leads resolves its locks older than
    /// `sweep_every(--gc-ttl)`. Returns how many it rolled forward or back.
    pub async fn round(&self) -> u64 {
        let node = &self.node;
        let now_ms = resolve::wall_ms();
        let age = u64::try_from(sweep_every(node.cfg.gc_ttl).as_millis()).unwrap_or(u64::MAX);
        let before_ms = now_ms.saturating_sub(age);
        let mut resolved = 0;
        let led: Vec<_> = node
            .router
            .all()
            .iter()
            .filter(|r| r.is_leader())
            .cloned()
            .collect();
        lock(&self.clean).retain(|id, _| led.iter().any(|r| r.range_id == *id));
        for r in led {
            let lock_writes = r.lock_writes();
            if lock(&self.clean).get(&r.range_id) == Some(&lock_writes) {
                continue;
            }
            let Some(d) = r.descriptor() else { continue };
            let span = KeySpan {
                start: d.start.clone(),
                end: d.end.clone(),
            };
            // A scan of the range's keys: off the async workers.
            let engine = node.engine.clone();
            let found = tokio::task::spawn_blocking(move || {
                let mut seen = 0usize;
                let old = engine.locks_where(&span, SWEEP_BATCH, |v| {
                    seen += 1;
                    started_ms(v).is_some_and(|ms| ms < before_ms)
                });
                old.map(|old| (old, seen))
            })
            .await;
            let locks = match found {
                Ok(Ok((_, 0))) => {
                    lock(&self.clean).insert(r.range_id, lock_writes);
                    continue;
                }
                Ok(Ok((locks, _))) => locks,
                Ok(Err(e)) => {
                    tracing::warn!(range_id = r.range_id, error = %e, "scanning a range's locks");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(range_id = r.range_id, error = %e, "a lock scan's task failed");
                    continue;
                }
            };
            lock(&self.clean).remove(&r.range_id);
            for (key, stored) in locks {
                let Ok(l) = decode::<Lock>(&stored) else {
                    continue;
                };
                match resolve::resolve(&self.ranges, &key, &l, now_ms).await {
                    Ok(Resolved::Alive) => {}
                    Ok(_) => resolved += 1,
                    Err(e) => {
                        tracing::debug!(range_id = r.range_id, start_ts = l.start_ts, error = %e, "resolving an old lock");
                    }
                }
            }
        }
        if resolved > 0 {
            tracing::info!(resolved, "old locks resolved");
            node.metrics.count_swept_locks(resolved);
        }
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_runs_every_quarter_of_the_gc_ttl_and_reads_a_locks_start() {
        assert_eq!(
            sweep_every(Duration::from_secs(600)),
            Duration::from_secs(150)
        );
        assert_eq!(
            sweep_every(Duration::from_millis(400)),
            Duration::from_millis(250)
        );
        let lock = Lock {
            primary: b"p".to_vec(),
            start_ts: Timestamp::from_millis(1_234).0 + 7,
            ttl_ms: 3_000,
            value: None,
            async_commit: None,
        };
        let stored = shoal_raft::codec::encode(&lock).unwrap();
        assert_eq!(started_ms(&stored), Some(1_234));
        assert_eq!(started_ms(b"\xff\xff not a lock"), None);
    }
}
