//! etcd-shaped requests whose keys span several ranges (a `Batch` of writes, a `Txn`
//! of compares and ops), run as one serializable [`Transaction`]: the compares are
//! judged on its snapshot (and checked again at commit), the ops read and write
//! through it, and its commit makes them all take effect at one timestamp, or none.
//! A conflict runs the request again from a fresh snapshot (nothing was written),
//! until `deadline`.
//!
//! The answer has the shape a single range's `Txn` gives: whether the compares held,
//! and each op's result, a put's version and a get of a key it wrote being the
//! commit timestamp.

use std::sync::Arc;
use std::time::Duration;

use shoal_raft::{CommandResponse, Compare, Found, OpResult, TxnOp, WriteOp};
use shoal_storage::Versioned;
use tokio::time::Instant;

use crate::coordinator::{Limits, Options, Transaction};
use crate::error::{Error, Result};
use crate::ranges::{Ranges, Read};

/// The first pause after a conflict; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(200);

fn versioned(r: Read) -> Versioned {
    Versioned {
        key: r.key,
        value: r.value,
        version: r.version,
    }
}

/// Runs `compares`, then `success` or `failure`, as one transaction; with no
/// compares, `success` (a batch). What applying it in one range would answer.
pub async fn run(
    ranges: Arc<dyn Ranges>,
    limits: Limits,
    deadline: Instant,
    compares: &[Compare],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> Result<CommandResponse> {
    let mut pause = FIRST_PAUSE;
    let mut fresh = false;
    loop {
        match attempt(ranges.clone(), limits, fresh, compares, success, failure).await {
            Err(Error::Conflict(why)) => {
                if Instant::now() + pause >= deadline {
                    return Err(Error::Conflict(why));
                }
                tracing::debug!(%why, "a request across ranges runs again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                fresh = true;
            }
            done => return done,
        }
    }
}

/// Puts alone (no compares, no reads, no deletes, which count what they delete): the
/// transaction reads nothing, so its start needs no fresh timestamp, only its own one
/// (its commit timestamp is taken after its keys are locked). A start a moment old
/// can only make a prewrite meet a newer commit of its key, a conflict the next
/// attempt, at a fresh start, does not have.
fn reads_nothing(compares: &[Compare], success: &[TxnOp]) -> bool {
    compares.is_empty()
        && success
            .iter()
            .all(|op| matches!(op, TxnOp::Write(WriteOp::Put { .. })))
}

async fn attempt(
    ranges: Arc<dyn Ranges>,
    limits: Limits,
    fresh: bool,
    compares: &[Compare],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> Result<CommandResponse> {
    let start_ts = if !fresh && reads_nothing(compares, success) {
        ranges.unique().await?
    } else {
        ranges.now().await?
    };
    let mut t = Transaction::new(start_ts, Options::default(), limits);
    let mut held = true;
    for c in compares {
        let current = t.get(&*ranges, &c.key).await?.map(versioned);
        if !c.holds(current.as_ref()) {
            held = false;
            break;
        }
    }
    let mut results = Vec::new();
    // Results that name the commit timestamp, known only after it.
    let mut at_commit = Vec::new();
    for op in if held { success } else { failure } {
        let result = match op {
            TxnOp::Get { key } => {
                let found = t.get(&*ranges, key).await?;
                if found.as_ref().is_some_and(|r| r.version == 0) {
                    at_commit.push(results.len());
                }
                OpResult::Get(found.map(|r| Found {
                    key: r.key,
                    value: r.value,
                    version: r.version,
                }))
            }
            TxnOp::Write(WriteOp::Put { key, value }) => {
                t.put(key.clone(), value.clone())?;
                at_commit.push(results.len());
                OpResult::Put(0)
            }
            TxnOp::Write(WriteOp::Delete { key }) => {
                let existed = t.get(&*ranges, key).await?.is_some();
                t.delete(key.clone())?;
                OpResult::Deleted(u64::from(existed))
            }
            TxnOp::Write(WriteOp::DeleteRange { start, end }) => {
                let found = t.scan(&*ranges, start, end, 0).await?;
                let n = found.len() as u64;
                for r in found {
                    t.delete(r.key)?;
                }
                OpResult::Deleted(n)
            }
        };
        results.push(result);
    }
    let commit_ts = t.commit(ranges).await?;
    for i in at_commit {
        match &mut results[i] {
            OpResult::Put(v) => *v = commit_ts,
            OpResult::Get(Some(f)) => f.version = commit_ts,
            _ => {}
        }
    }
    Ok(CommandResponse {
        version: commit_ts,
        succeeded: held,
        results,
    })
}
