//! Percolator's two phases, for a transaction whose reads are checked at its commit
//! timestamp or whose keys are too many to commit asynchronously (steps 2 to 5 of the
//! coordinator's map).

use std::sync::Arc;

use shoal_raft::txn_record::{Mutation, Prewrite, TxnConflict};
use shoal_raft::{Command, OpResult};

use futures::future::BoxFuture;

use super::{
    commit_in_background, conflict, hit, lock_ttl_ms, mutation_key, roll_back, step_all,
    step_all_recut, within, Heartbeat,
};
use crate::error::{Error, Result};
use crate::ranges::Ranges;
use crate::resolve::{self, result_of, Resolved};

/// Spans read, `[start, end)` each.
type Spans = Vec<(Vec<u8>, Vec<u8>)>;

/// How many times a validation goes again after resolving a lock it met.
const MAX_VALIDATIONS: usize = 8;

/// `spans` cut at the edges of the ranges (as last known).
async fn cut_spans(
    ranges: &dyn Ranges,
    spans: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for (mut s, e) in spans {
        loop {
            let b = ranges.locate(&s).await?;
            if within(&b, &s, &e) || b.end.is_empty() {
                out.push((s, e));
                break;
            }
            out.push((s, b.end.clone()));
            s = b.end;
        }
    }
    Ok(out)
}

fn span_start(s: &(Vec<u8>, Vec<u8>)) -> &[u8] {
    &s.0
}

/// Percolator's two phases (see the module's map).
pub(super) async fn two_phase(
    ranges: Arc<dyn Ranges>,
    start_ts: u64,
    mutations: Vec<Mutation>,
    reads: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<u64> {
    let primary = mutations[0].key().to_vec();
    let keys: Vec<Vec<u8>> = mutations.iter().map(|m| m.key().to_vec()).collect();
    let heartbeat = Heartbeat::start(ranges.clone(), primary.clone(), start_ts);
    let ttl = lock_ttl_ms(start_ts);
    let prewrite = |mutations: Vec<Mutation>| {
        Command::Prewrite(Prewrite {
            start_ts,
            primary: primary.clone(),
            mutations,
            ttl_ms: ttl,
            async_commit: None,
        })
    };
    let prewritten = step_all(&*ranges, mutations, &mutation_key, &prewrite).await;
    // A coordinator that crashes here leaves locks for readers to roll back.
    hit("txn-after-prewrite")?;
    // Committed already: by a one-phase attempt whose answer was lost before its
    // range split (a one-phase commit writes every key or none).
    if let Ok(OpResult::TxnConflict(TxnConflict::Committed { commit_ts, .. })) = &prewritten {
        return Ok(*commit_ts);
    }
    let committing = async {
        match prewritten? {
            OpResult::TxnDone => {}
            OpResult::TxnConflict(c) => return Err(conflict(&c)),
            other => return Err(Error::Internal(format!("a prewrite answered {other:?}"))),
        }
        let commit_ts = ranges.now().await?;
        if !reads.is_empty() {
            validate(&*ranges, start_ts, commit_ts, reads).await?;
        }
        Ok(commit_ts)
    }
    .await;
    let commit_ts = match committing {
        Ok(ts) => ts,
        Err(e) => {
            drop(heartbeat);
            let _ = roll_back(&*ranges, start_ts, &primary, keys).await;
            return Err(e);
        }
    };
    // The primary's range commits its keys: the transaction is committed.
    let (first, rest): (Vec<Vec<u8>>, Vec<Vec<u8>>) = {
        let b = ranges.locate(&primary).await;
        match b {
            Ok(b) => keys.into_iter().partition(|k| b.contains(k)),
            Err(_) => {
                let mut keys = keys;
                let rest = keys.split_off(1);
                (keys, rest)
            }
        }
    };
    let commit = |keys: Vec<Vec<u8>>| Command::CommitKeys {
        start_ts,
        commit_ts,
        keys,
    };
    let primary_step = match ranges.step(&primary, commit(first.clone())).await {
        // Split meanwhile: the primary alone, the rest with the secondaries.
        Err(Error::Regroup) => ranges
            .step(&primary, commit(vec![primary.clone()]))
            .await
            .map(|r| (r, first.into_iter().skip(1).collect::<Vec<_>>())),
        other => other.map(|r| (r, Vec::new())),
    };
    drop(heartbeat);
    let (resp, mut secondaries) = primary_step.map_err(|e| match e {
        Error::Conflict(m) => Error::Conflict(m),
        e => Error::OutcomeUnknown(format!("committing the primary key: {e}")),
    })?;
    match result_of(resp)? {
        OpResult::TxnDone => {}
        OpResult::TxnConflict(c) => {
            // Rolled back by a reader that found its lock expired.
            let _ = roll_back(&*ranges, start_ts, &primary, rest).await;
            return Err(conflict(&c));
        }
        other => {
            return Err(Error::OutcomeUnknown(format!(
                "committing the primary key answered {other:?}"
            )))
        }
    }
    // A coordinator that crashes here leaves its other locks for readers to roll
    // forward.
    hit("txn-before-secondaries")?;
    secondaries.extend(rest);
    commit_in_background(ranges, start_ts, commit_ts, secondaries);
    Ok(commit_ts)
}

/// Checks the spans read at `commit_ts` (see `Command::ValidateReads`); a lock met
/// there is resolved, then the check goes again.
async fn validate(
    ranges: &dyn Ranges,
    start_ts: u64,
    commit_ts: u64,
    reads: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<()> {
    let spans = cut_spans(ranges, reads).await?;
    let check = |spans: Vec<(Vec<u8>, Vec<u8>)>| Command::ValidateReads {
        start_ts,
        commit_ts,
        spans,
    };
    let recut = |spans| -> BoxFuture<'_, Result<Spans>> { Box::pin(cut_spans(ranges, spans)) };
    for _ in 0..MAX_VALIDATIONS {
        let (answer, _) =
            step_all_recut(ranges, spans.clone(), &span_start, &check, &recut).await?;
        match answer {
            OpResult::TxnDone => return Ok(()),
            OpResult::TxnConflict(TxnConflict::Locked { key, lock }) => {
                match resolve::resolve(ranges, &key, &lock, resolve::wall_ms()).await? {
                    Resolved::Committed { commit_ts: ts } if ts > start_ts && ts <= commit_ts => {
                        return Err(conflict(&TxnConflict::ReadConflict { key, commit_ts: ts }))
                    }
                    // It may yet commit below this transaction's commit timestamp.
                    Resolved::Alive => {
                        return Err(conflict(&TxnConflict::Locked { key, lock }));
                    }
                    // Rolled back, or committed above: look again.
                    _ => {}
                }
            }
            OpResult::TxnConflict(c) => return Err(conflict(&c)),
            other => {
                return Err(Error::Internal(format!(
                    "a validation of reads answered {other:?}"
                )))
            }
        }
    }
    Err(Error::Conflict(
        "the spans read kept meeting other transactions' locks".into(),
    ))
}
