//! Lock resolution: what a reader (or a writer) does with a lock it meets. The lock's
//! transaction is asked about at its primary key's range (`CheckTxn`); a committed
//! transaction's lock is committed too (rolled forward), a rolled back one's removed.
//! A lock past its time to live gets its transaction rolled back by the check; an
//! alive one is left to its coordinator. A transaction committed asynchronously whose
//! primary lock is past its time to live is judged by its other keys' locks
//! ([`settle`]): all in place, it is committed; one missing, rolled back.
//!
//! The ranges are reached through [`Ranges`], wherever they are.

use futures::future::join_all;
use shoal_raft::txn_record::{Lock, TxnConflict, TxnStatus};
use shoal_raft::{Command, CommandResponse, OpResult};

use crate::error::{Error, Result};
pub use crate::ranges::Ranges;

/// What became of a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Its transaction committed at `commit_ts`: the key now has that version.
    Committed { commit_ts: u64 },
    /// Its transaction was rolled back: the lock is gone.
    RolledBack,
    /// Its transaction is alive: wait for it.
    Alive,
}

pub use shoal_proto::txn::wall_ms;

/// The single result of a step's response.
pub(crate) fn result_of(resp: CommandResponse) -> Result<OpResult> {
    let mut results = resp.results;
    if results.len() != 1 {
        return Err(Error::Internal(format!(
            "a transaction's step answered {} results",
            results.len()
        )));
    }
    Ok(results.remove(0))
}

/// Asks the primary's range about `lock`'s transaction (rolling it back if the lock is
/// past its time to live at `now_ms`).
pub async fn check(ranges: &dyn Ranges, lock: &Lock, now_ms: u64) -> Result<TxnStatus> {
    let step = Command::CheckTxn {
        primary: lock.primary.clone(),
        start_ts: lock.start_ts,
        now_ms,
        rollback_if_missing: lock.expired(now_ms),
    };
    match result_of(ranges.step(&lock.primary, step).await?)? {
        OpResult::TxnStatus(s) => Ok(s),
        other => Err(Error::Internal(format!(
            "a transaction check answered {other:?}"
        ))),
    }
}

/// Resolves `lock`, found on `key`: rolls it forward or back once its transaction's
/// fate is known.
pub async fn resolve(
    ranges: &dyn Ranges,
    key: &[u8],
    lock: &Lock,
    now_ms: u64,
) -> Result<Resolved> {
    let status = check(ranges, lock, now_ms).await?;
    let resolved = match status {
        TxnStatus::Alive { .. } => return Ok(Resolved::Alive),
        TxnStatus::Committed { commit_ts } => Resolved::Committed { commit_ts },
        TxnStatus::RolledBack => Resolved::RolledBack,
        TxnStatus::Prewritten {
            min_commit_ts,
            secondaries,
        } => settle(ranges, lock, min_commit_ts, &secondaries).await?,
    };
    let step = match resolved {
        Resolved::Committed { commit_ts } => Command::CommitKeys {
            start_ts: lock.start_ts,
            commit_ts,
            keys: vec![key.to_vec()],
        },
        _ => Command::RollbackKeys {
            start_ts: lock.start_ts,
            keys: vec![key.to_vec()],
        },
    };
    // The primary's own lock went with the check, or with the settling.
    if key != lock.primary.as_slice() {
        match result_of(ranges.step(key, step).await?)? {
            OpResult::TxnDone => {}
            other => {
                return Err(Error::Internal(format!(
                    "resolving a lock of {} answered {other:?}",
                    lock.start_ts
                )))
            }
        }
    }
    tracing::debug!(start_ts = lock.start_ts, ?resolved, "lock resolved");
    Ok(resolved)
}

/// Decides the fate of the transaction committed asynchronously whose primary lock,
/// `lock`'s transaction's, outlived its time to live: committed at the largest
/// `min_commit_ts` if every one of its `secondaries` is locked, rolled back if one is
/// not (that key is marked, so its prewrite never applies). The primary key's lock is
/// committed or rolled back accordingly, first: its record decides for every later
/// reader.
async fn settle(
    ranges: &dyn Ranges,
    lock: &Lock,
    min_commit_ts: u64,
    secondaries: &[Vec<u8>],
) -> Result<Resolved> {
    let start_ts = lock.start_ts;
    let asked = join_all(secondaries.iter().map(|key| {
        ranges.step(
            key,
            Command::CheckSecondaries {
                start_ts,
                keys: vec![key.clone()],
            },
        )
    }))
    .await;
    let mut commit_ts = min_commit_ts;
    let mut fate = None;
    for answer in asked {
        match result_of(answer?)? {
            OpResult::TxnStatus(TxnStatus::Prewritten { min_commit_ts, .. }) => {
                commit_ts = commit_ts.max(min_commit_ts)
            }
            OpResult::TxnStatus(TxnStatus::Committed { commit_ts }) => {
                fate = Some(Resolved::Committed { commit_ts })
            }
            OpResult::TxnStatus(TxnStatus::RolledBack) => {
                fate = fate.or(Some(Resolved::RolledBack))
            }
            other => {
                return Err(Error::Internal(format!(
                    "checking a secondary key of {start_ts} answered {other:?}"
                )))
            }
        }
    }
    let fate = fate.unwrap_or(Resolved::Committed { commit_ts });
    let keys = vec![lock.primary.clone()];
    let step = match fate {
        Resolved::Committed { commit_ts } => Command::CommitKeys {
            start_ts,
            commit_ts,
            keys,
        },
        _ => Command::RollbackKeys { start_ts, keys },
    };
    match result_of(ranges.step(&lock.primary, step).await?)? {
        OpResult::TxnDone => Ok(fate),
        // Decided meanwhile by another reader (or the coordinator).
        OpResult::TxnConflict(TxnConflict::Committed { commit_ts, .. }) => {
            Ok(Resolved::Committed { commit_ts })
        }
        OpResult::TxnConflict(TxnConflict::RolledBack { .. }) => Ok(Resolved::RolledBack),
        other => Err(Error::Internal(format!(
            "settling the primary key of {start_ts} answered {other:?}"
        ))),
    }
}
