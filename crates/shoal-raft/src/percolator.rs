//! A range's part of a transaction across ranges, Percolator's steps as TiKV runs
//! them, each a command applied by the range's state machine:
//!
//! - [`apply_prewrite`]: locks the transaction's keys in this range, each lock naming
//!   the transaction's primary key (whose lock is the transaction's record) and holding
//!   the key's new value. Refused whole if a key is locked by another transaction or
//!   changed since the transaction's start (first committer wins).
//! - [`apply_commit`]: turns the transaction's locks into versions at its commit
//!   timestamp. Committing the primary key commits the transaction.
//! - [`apply_rollback`]: removes the transaction's locks and leaves a rollback mark
//!   at its start timestamp, so a prewrite arriving late fails.
//! - [`apply_check`]: on the primary key's range, the transaction's state: committed
//!   (and when), rolled back, or alive; a lock past its time to live (by the clock of
//!   the one asking, carried in the command) is rolled back.
//! - [`apply_heartbeat`]: the coordinator extends its primary lock's time to live.
//! - [`apply_check_secondaries`]: for a transaction committed asynchronously whose
//!   primary lock outlived its time to live, whether its other keys here are locked
//!   (each key with no trace of it is marked rolled back first).
//! - [`apply_one_phase`]: a transaction whose keys all lie in this range, in one
//!   command: validated and written at its commit timestamp, no lock left. Applied
//!   again (a retry with a fresh timestamp), it answers `Committed` with the first
//!   one's timestamp and writes nothing.
//!
//! Every step is idempotent: applied again (a retry, a replay) it answers the same and
//! writes nothing more. A step whose keys left the range (a split) is refused before
//! it applies, and the coordinator sends it to the new range.

use std::io;

use shoal_storage::{Engine, KeySpan, VersionKind};

use crate::apply::Apply;
use crate::codec::{decode, encode, io_err};
use crate::txn_record::{AsyncCommit, Lock, Mutation, OnePhase, Prewrite, TxnConflict, TxnStatus};

/// A step's outcome: done, or refused whole.
pub type Step<T = ()> = Result<T, TxnConflict>;

fn lock_of(engine: &Engine, key: &[u8]) -> io::Result<Option<Lock>> {
    match engine.lock(key).map_err(io_err)? {
        Some(bytes) => decode(&bytes).map(Some),
        None => Ok(None),
    }
}

/// What `start_ts`'s transaction left in `key`'s versions: its commit (`Some(Ok(ts))`)
/// or its rollback mark (`Some(Err(()))`), if either.
fn outcome_of(engine: &Engine, key: &[u8], start_ts: u64) -> io::Result<Option<Result<u64, ()>>> {
    for r in engine.versions_since(key, start_ts).map_err(io_err)? {
        if r.start_ts == start_ts {
            return Ok(Some(match r.kind {
                VersionKind::Rollback => Err(()),
                VersionKind::Put | VersionKind::Delete => Ok(r.ts),
            }));
        }
    }
    Ok(None)
}

/// `Prewrite`: locks every key of the transaction in this range, or none. Answers the
/// largest `min_commit_ts` of the transaction's locks here (0 unless it commits
/// asynchronously): a prewrite applied again answers its first application's.
pub fn apply_prewrite(a: &mut Apply<'_>, p: &Prewrite) -> io::Result<Step<u64>> {
    // Proposed at its timestamp (`Command::At`; dispatch refuses it without one).
    let min_commit_ts = match &p.async_commit {
        Some(_) => a.ts.unwrap_or(0),
        None => 0,
    };
    let mut to_lock = Vec::new();
    let mut locked_before = 0;
    for m in &p.mutations {
        let key = m.key();
        match lock_of(a.engine, key)? {
            Some(l) if l.start_ts == p.start_ts => {
                locked_before = locked_before.max(l.min_commit_ts());
                continue;
            }
            Some(lock) => {
                return Ok(Err(TxnConflict::Locked {
                    key: key.to_vec(),
                    lock,
                }))
            }
            None => {}
        }
        let versions = a.engine.versions_since(key, p.start_ts).map_err(io_err)?;
        // The transaction's own record first, wherever newer writes put it.
        if let Some(r) = versions.iter().find(|r| r.start_ts == p.start_ts) {
            return Ok(Err(match r.kind {
                VersionKind::Rollback => TxnConflict::RolledBack { key: key.to_vec() },
                // Committed already (a late duplicate, or a one-phase attempt whose
                // answer was lost): nothing to lock, and the coordinator learns when.
                VersionKind::Put | VersionKind::Delete => TxnConflict::Committed {
                    key: key.to_vec(),
                    commit_ts: r.ts,
                },
            }));
        }
        if let Some(r) = versions.iter().find(|r| r.kind != VersionKind::Rollback) {
            return Ok(Err(TxnConflict::WriteConflict {
                key: key.to_vec(),
                commit_ts: r.ts,
            }));
        }
        to_lock.push(m);
    }
    // Keys locked by an earlier application keep their `min_commit_ts`.
    let answer = if to_lock.is_empty() {
        locked_before
    } else {
        min_commit_ts.max(locked_before)
    };
    for m in to_lock {
        let lock = Lock {
            primary: p.primary.clone(),
            start_ts: p.start_ts,
            ttl_ms: p.ttl_ms,
            value: match m {
                Mutation::Put { value, .. } => Some(value.clone()),
                Mutation::Delete { .. } => None,
            },
            async_commit: p.async_commit.as_ref().map(|secondaries| AsyncCommit {
                min_commit_ts,
                secondaries: if m.key() == p.primary.as_slice() {
                    secondaries.clone()
                } else {
                    Vec::new()
                },
            }),
        };
        a.batch.put_lock(a.engine, m.key(), &encode(&lock)?);
    }
    Ok(Ok(answer))
}

/// `CommitKeys`: writes the transaction's locked values at `commit_ts`.
pub fn apply_commit(
    a: &mut Apply<'_>,
    start_ts: u64,
    commit_ts: u64,
    keys: &[Vec<u8>],
) -> io::Result<Step> {
    let mut to_commit = Vec::new();
    for key in keys {
        match lock_of(a.engine, key)? {
            Some(l) if l.start_ts == start_ts => to_commit.push((key, l)),
            _ => match outcome_of(a.engine, key, start_ts)? {
                Some(Ok(_)) => {}
                Some(Err(())) => return Ok(Err(TxnConflict::RolledBack { key: key.clone() })),
                None => return Ok(Err(TxnConflict::LockNotFound { key: key.clone() })),
            },
        }
    }
    for (key, l) in to_commit {
        match &l.value {
            Some(v) => a.batch.put(a.engine, key, commit_ts, start_ts, v),
            None => a.batch.delete(a.engine, key, commit_ts, start_ts),
        }
        a.batch.delete_lock(a.engine, key);
    }
    Ok(Ok(()))
}

/// `RollbackKeys`: removes the transaction's locks and marks each key, so that a late
/// prewrite of it fails; refused if the transaction committed one of them.
pub fn apply_rollback(a: &mut Apply<'_>, start_ts: u64, keys: &[Vec<u8>]) -> io::Result<Step> {
    let mut marks = Vec::new();
    for key in keys {
        let locked = matches!(lock_of(a.engine, key)?, Some(l) if l.start_ts == start_ts);
        match outcome_of(a.engine, key, start_ts)? {
            Some(Ok(commit_ts)) => {
                return Ok(Err(TxnConflict::Committed {
                    key: key.clone(),
                    commit_ts,
                }))
            }
            Some(Err(())) => {}
            None => marks.push(key),
        }
        if locked {
            a.batch.delete_lock(a.engine, key);
        }
    }
    for key in marks {
        a.batch.put_version(
            a.engine,
            key,
            start_ts,
            VersionKind::Rollback,
            start_ts,
            b"",
        );
    }
    Ok(Ok(()))
}

/// `CheckTxn`: the state of the transaction whose primary key is `primary`. A lock
/// past its time to live at `now_ms` is rolled back; so is a transaction with no trace
/// at all when `rollback_if_missing` (its prewrite is lost, or arrives too late).
pub fn apply_check(
    a: &mut Apply<'_>,
    primary: &[u8],
    start_ts: u64,
    now_ms: u64,
    rollback_if_missing: bool,
) -> io::Result<TxnStatus> {
    let rollback = |a: &mut Apply<'_>| -> io::Result<TxnStatus> {
        apply_rollback(a, start_ts, &[primary.to_vec()])?
            .map_err(|c| io::Error::other(format!("rolling back {start_ts}: {c:?}")))?;
        Ok(TxnStatus::RolledBack)
    };
    match lock_of(a.engine, primary)? {
        Some(l) if l.start_ts == start_ts => match l.async_commit {
            // Committed if every other key is locked too: the reader asks them.
            Some(c) if l.expired(now_ms) => Ok(TxnStatus::Prewritten {
                min_commit_ts: c.min_commit_ts,
                secondaries: c.secondaries,
            }),
            None if l.expired(now_ms) => rollback(a),
            _ => Ok(TxnStatus::Alive { ttl_ms: l.ttl_ms }),
        },
        _ => match outcome_of(a.engine, primary, start_ts)? {
            Some(Ok(commit_ts)) => Ok(TxnStatus::Committed { commit_ts }),
            Some(Err(())) => Ok(TxnStatus::RolledBack),
            None if rollback_if_missing => rollback(a),
            // Its prewrite may still be on its way: nothing to judge yet.
            None => Ok(TxnStatus::Alive { ttl_ms: 0 }),
        },
    }
}

/// `HeartbeatTxn`: extends the primary lock's time to live to `ttl_ms` (never
/// shortens it); the transaction's state when it has no lock any more.
pub fn apply_heartbeat(
    a: &mut Apply<'_>,
    primary: &[u8],
    start_ts: u64,
    ttl_ms: u64,
) -> io::Result<TxnStatus> {
    match lock_of(a.engine, primary)? {
        Some(mut l) if l.start_ts == start_ts => {
            if ttl_ms > l.ttl_ms {
                l.ttl_ms = ttl_ms;
                a.batch.put_lock(a.engine, primary, &encode(&l)?);
            }
            Ok(TxnStatus::Alive { ttl_ms: l.ttl_ms })
        }
        _ => Ok(match outcome_of(a.engine, primary, start_ts)? {
            Some(Ok(commit_ts)) => TxnStatus::Committed { commit_ts },
            _ => TxnStatus::RolledBack,
        }),
    }
}

/// `CheckSecondaries`: what the locks on `keys` (in this range) say of the transaction
/// committed asynchronously at `start_ts`: committed (one of them was), rolled back
/// (one was, or has no trace of it and is marked so), or every one locked (the
/// largest `min_commit_ts` among them).
pub fn apply_check_secondaries(
    a: &mut Apply<'_>,
    start_ts: u64,
    keys: &[Vec<u8>],
) -> io::Result<TxnStatus> {
    let mut min_commit_ts = 0;
    let mut missing = Vec::new();
    for key in keys {
        match lock_of(a.engine, key)? {
            Some(l) if l.start_ts == start_ts => {
                min_commit_ts = min_commit_ts.max(l.min_commit_ts());
            }
            _ => match outcome_of(a.engine, key, start_ts)? {
                Some(Ok(commit_ts)) => return Ok(TxnStatus::Committed { commit_ts }),
                Some(Err(())) => return Ok(TxnStatus::RolledBack),
                None => missing.push(key.clone()),
            },
        }
    }
    if !missing.is_empty() {
        // Never prewritten here (or not yet): marked, its prewrite can no longer apply,
        // and the transaction can no longer commit.
        apply_rollback(a, start_ts, &missing)?
            .map_err(|c| io::Error::other(format!("rolling back {start_ts}: {c:?}")))?;
        return Ok(TxnStatus::RolledBack);
    }
    Ok(TxnStatus::Prewritten {
        min_commit_ts,
        secondaries: Vec::new(),
    })
}

/// `OnePhase`: the whole transaction at the command's commit timestamp, validated
/// against locks, writes after its start and (serializable) changes to what it read.
pub fn apply_one_phase(a: &mut Apply<'_>, t: &OnePhase, commit_ts: u64) -> io::Result<Step> {
    for m in &t.mutations {
        let key = m.key();
        if let Some(lock) = lock_of(a.engine, key)? {
            return Ok(Err(TxnConflict::Locked {
                key: key.to_vec(),
                lock,
            }));
        }
        let newer = a
            .engine
            .versions_since(key, t.start_ts.saturating_add(1))
            .map_err(io_err)?;
        // Applied before (a retry of an answer lost), perhaps with newer writes over
        // it since: committed then.
        if let Some(r) = newer
            .iter()
            .find(|r| r.start_ts == t.start_ts && r.kind != VersionKind::Rollback)
        {
            return Ok(Err(TxnConflict::Committed {
                key: key.to_vec(),
                commit_ts: r.ts,
            }));
        }
        if let Some(r) = newer.iter().find(|r| r.kind != VersionKind::Rollback) {
            return Ok(Err(TxnConflict::WriteConflict {
                key: key.to_vec(),
                commit_ts: r.ts,
            }));
        }
    }
    for (start, end) in &t.reads {
        let span = KeySpan {
            start: start.clone(),
            end: end.clone(),
        };
        if let Some((key, lock)) = a.engine.locks_in(&span, 1).map_err(io_err)?.pop() {
            return Ok(Err(TxnConflict::Locked {
                key,
                lock: decode(&lock)?,
            }));
        }
        let changed = a
            .engine
            .changed_between(&span, t.start_ts, commit_ts)
            .map_err(io_err)?;
        if let Some((key, ts)) = changed {
            return Ok(Err(TxnConflict::ReadConflict { key, commit_ts: ts }));
        }
    }
    for m in &t.mutations {
        match m {
            Mutation::Put { key, value } => {
                a.batch.put(a.engine, key, commit_ts, t.start_ts, value)
            }
            Mutation::Delete { key } => a.batch.delete(a.engine, key, commit_ts, t.start_ts),
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests;
