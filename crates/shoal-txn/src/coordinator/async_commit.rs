//! Async commit: a transaction committed once every one of its keys is locked, answered
//! after one round of prewrites (see [`shoal_raft::txn_record::AsyncCommit`] for what a
//! lock then holds, and `resolve.rs`'s `settle` for how a reader decides the fate of
//! one whose coordinator died).

use std::sync::Arc;

use shoal_raft::txn_record::{Mutation, Prewrite, TxnConflict};
use shoal_raft::{Command, OpResult};

use super::{
    commit_in_background, conflict, hit, lock_ttl_ms, mutation_key, roll_back, step_all_versions,
    Heartbeat,
};
use crate::error::{Error, Result};
use crate::ranges::Ranges;

/// Whether a transaction writing `mutations` and with no reads to check commits
/// asynchronously: its primary lock lists its other keys, so they must be few.
pub(super) fn commits_asynchronously(mutations: &[Mutation]) -> bool {
    shoal_proto::txn::commits_asynchronously(mutations.iter().map(Mutation::key))
}

/// Commits asynchronously (see [`shoal_raft::txn_record::AsyncCommit`]): every range's
/// keys are prewritten at once, each lock at a `min_commit_ts` its range's leader
/// takes; once all are in place the transaction is committed, at the largest of them,
/// and the client is answered. The locks are committed in the background. A reader
/// that meets a lock of a coordinator that died asks every key's range.
pub(super) async fn async_commit(
    ranges: Arc<dyn Ranges>,
    start_ts: u64,
    mutations: Vec<Mutation>,
) -> Result<u64> {
    let primary = mutations[0].key().to_vec();
    let keys: Vec<Vec<u8>> = mutations.iter().map(|m| m.key().to_vec()).collect();
    let secondaries = keys[1..].to_vec();
    let heartbeat = Heartbeat::start(ranges.clone(), primary.clone(), start_ts);
    let ttl = lock_ttl_ms(start_ts);
    let prewrite = |mutations: Vec<Mutation>| {
        let has_primary = mutations.iter().any(|m| m.key() == primary.as_slice());
        Command::Prewrite(Prewrite {
            start_ts,
            primary: primary.clone(),
            mutations,
            ttl_ms: ttl,
            async_commit: Some(if has_primary {
                secondaries.clone()
            } else {
                Vec::new()
            }),
        })
    };
    // A failpoint: the prewrites of the keys but the primary are lost in flight.
    let lost = hit("txn-prewrite-secondary").is_err();
    let sent = if lost {
        mutations.into_iter().take(1).collect()
    } else {
        mutations
    };
    let mut prewritten = step_all_versions(&*ranges, sent, &mutation_key, &prewrite).await;
    if lost {
        prewritten = prewritten.and(Err(Error::Unavailable(
            "failpoint txn-prewrite-secondary: the other prewrites were lost".into(),
        )));
    }
    drop(heartbeat);
    // A coordinator that crashes here leaves a committed transaction (every key
    // locked) for readers to roll forward.
    hit("txn-after-prewrite")?;
    let commit_ts = match prewritten {
        Ok((OpResult::TxnDone, commit_ts)) => commit_ts,
        // Committed already: by a one-phase attempt whose answer was lost before its
        // range split, or settled by a reader.
        Ok((OpResult::TxnConflict(TxnConflict::Committed { commit_ts, .. }), _)) => {
            return Ok(commit_ts)
        }
        Ok((OpResult::TxnConflict(c), _)) => {
            // A key refused its lock: the transaction can never commit.
            hit("txn-before-rollback")?;
            let _ = roll_back(&*ranges, start_ts, &primary, keys).await;
            return Err(conflict(&c));
        }
        Ok((other, _)) => return Err(Error::Internal(format!("a prewrite answered {other:?}"))),
        Err(e) => {
            // Some prewrite's answer was lost: every key may be locked, the
            // transaction committed. Its primary's record decides.
            hit("txn-before-rollback")?;
            return match roll_back(&*ranges, start_ts, &primary, keys).await {
                Ok(None) => Err(e),
                Ok(Some(commit_ts)) => Ok(commit_ts),
                Err(_) => Err(Error::OutcomeUnknown(format!("prewriting: {e}"))),
            };
        }
    };
    commit_in_background(ranges, start_ts, commit_ts, keys);
    Ok(commit_ts)
}

/// Ends a transaction a client prewrote itself (`Kv.Prewrite`, each lock taken as
/// [`async_commit`] takes them): with `commit_ts` (the largest `min_commit_ts` its
/// prewrites answered), its locks are committed in the background; without, its keys
/// are rolled back, primary first. The timestamp it committed at (`None`: rolled
/// back); a transaction every key of which was locked may have been settled as
/// committed by a reader meanwhile.
pub async fn finish(
    ranges: Arc<dyn Ranges>,
    start_ts: u64,
    primary: Vec<u8>,
    keys: Vec<Vec<u8>>,
    commit_ts: Option<u64>,
) -> Result<Option<u64>> {
    match commit_ts {
        Some(commit_ts) => {
            commit_in_background(ranges, start_ts, commit_ts, keys);
            Ok(Some(commit_ts))
        }
        None => roll_back(&*ranges, start_ts, &primary, keys).await,
    }
}
