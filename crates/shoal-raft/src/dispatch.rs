//! How a range applies a command: [`apply`] checks that the range may take it, then
//! runs the command's own function (data writes and transactions in
//! [`crate::writes`], request-id deduplication in [`crate::once`], the meta range's
//! commands in [`crate::meta`], splits in [`crate::split`]), all into one write batch
//! that the state machine commits with the applied index.

use std::io;

use shoal_storage::KeySpan;

use crate::apply::{Apply, Effect};
use crate::codec::{decode, io_err};
use crate::command::{Command, CommandResponse, OpResult, Touch};
use crate::txn_record::{Lock, TxnConflict};

/// Applies `cmd` into `a.batch`. Reads see the store as of the previous entry (the
/// state machine commits each entry's batch before applying the next); within a
/// command, later ops see the earlier ops' writes. A refused command writes nothing.
pub fn apply(a: &mut Apply<'_>, cmd: &Command) -> io::Result<(CommandResponse, Effect)> {
    match cmd {
        Command::Riding { riders, cmd } => return apply_riding(a, riders, cmd),
        Command::Deferrable(cmd) => return apply(a, cmd),
        _ => {}
    }
    if a.frozen.is_some() && !cmd.is_merge_step() {
        // Routed before the freeze: the sender looks the range up again, and finds the
        // left neighbour once it absorbed this one.
        let why = format!("range {} is frozen for a merge", a.range_id);
        let key = cmd.find_touch(|_| true).map(|t| t.first_key().to_vec());
        return Ok((
            CommandResponse::refused(a.version(), why, key),
            Effect::None,
        ));
    }
    if cmd.is_meta_only() && !a.is_meta() {
        let why = format!("range {} is not the meta range", a.range_id);
        return Ok((
            CommandResponse::refused(a.version(), why, None),
            Effect::None,
        ));
    }
    if let Some(key) = key_outside(a, cmd) {
        let why = format!(
            "key {:?} is outside range {}",
            String::from_utf8_lossy(&key),
            a.range_id
        );
        return Ok((
            CommandResponse::refused(a.version(), why, Some(key)),
            Effect::None,
        ));
    }
    // A plain write (or an etcd-style transaction) never passes a transaction's lock:
    // refused before it applies (and before its request id keeps an answer), so its
    // writer resolves the lock and sends it again.
    if let Some((key, lock)) = locked_key(a, cmd)? {
        let mut resp = a.response();
        resp.succeeded = false;
        resp.results = vec![OpResult::TxnConflict(TxnConflict::Locked { key, lock })];
        return Ok((resp, Effect::None));
    }
    if let Command::Split {
        key,
        new_range_id,
        expected_version,
    } = cmd
    {
        return crate::split::apply_split(a, key, *new_range_id, *expected_version);
    }
    match cmd {
        Command::Freeze { left_id, token } => {
            return crate::merge::apply_freeze(a, *left_id, *token)
        }
        Command::Thaw { token } => return crate::merge::apply_thaw(a, *token),
        Command::Merge { right, token } => return crate::merge::apply_merge(a, right, *token),
        Command::FenceMerge { right_id, token } => {
            return crate::merge::apply_fence(a, *right_id, *token)
        }
        _ => {}
    }
    Ok((apply_unchecked(a, cmd)?, Effect::None))
}

/// Applies `riders` (held-back commits, see `Command::Riding`), then `cmd`; answers
/// `cmd`'s response, followed by an `OpResult::Rider` for each rider.
///
/// The riders' writes are committed to the store before `cmd` applies, as the entries
/// before it would have been: `cmd`'s reads see them (a prewrite of a key a rider
/// commits must not meet its lock). A crash in between replays the whole entry, and
/// the riders, idempotent, then write nothing again. The riders share one batch: each
/// commits a different transaction, and a commit writes a key only where it finds its
/// own transaction's lock, so no rider's writes change what another reads (two riders
/// of one transaction write the same).
fn apply_riding(
    a: &mut Apply<'_>,
    riders: &[Command],
    cmd: &Command,
) -> io::Result<(CommandResponse, Effect)> {
    let mut batch = a.engine.batch(a.range_id);
    let mut answers = Vec::with_capacity(riders.len());
    {
        let mut first = Apply {
            engine: a.engine,
            batch: &mut batch,
            range_id: a.range_id,
            log_id: a.log_id,
            membership: a.membership,
            descriptor: a.descriptor,
            ts: None,
            frozen: a.frozen,
        };
        for r in riders {
            let answer = match r {
                Command::CommitKeys { .. } => apply(&mut first, r)?.0,
                other => CommandResponse::refused(
                    first.version(),
                    format!("only a transaction's commit rides with another command, not {other}"),
                    None,
                ),
            };
            answers.push(answer);
        }
    }
    a.engine.commit(batch).map_err(io_err)?;
    let (mut resp, effect) = apply(a, cmd)?;
    resp.results
        .extend(answers.into_iter().map(|r| OpResult::Rider(Box::new(r))));
    Ok((resp, effect))
}

/// Applies a command the range may take (see [`apply`]).
fn apply_unchecked(a: &mut Apply<'_>, cmd: &Command) -> io::Result<CommandResponse> {
    let mut resp = a.response();
    match cmd {
        Command::Write(ops) => resp.results = crate::writes::apply_write(a, ops)?,
        Command::Txn {
            compares,
            success,
            failure,
        } => {
            let (ok, results) = crate::writes::apply_txn(a, compares, success, failure)?;
            resp.succeeded = ok;
            resp.results = results;
        }
        Command::Once {
            client_id,
            seq,
            acked_below,
            cmd,
        } => {
            let id = crate::once::RequestId {
                client_id: *client_id,
                seq: *seq,
                acked_below: *acked_below,
            };
            if let Some(answer) = crate::once::before(a, &id)? {
                return Ok(answer);
            }
            let inner = apply_unchecked(a, cmd)?;
            crate::once::keep(a, &id, &inner)?;
            return Ok(inner);
        }
        Command::AllocNodeId => resp
            .results
            .push(OpResult::NodeId(crate::meta::apply_alloc_node_id(a)?)),
        Command::AllocRangeId => resp
            .results
            .push(OpResult::RangeId(crate::meta::apply_alloc_range_id(a)?)),
        Command::PutDescriptors(ds) => crate::meta::apply_put_descriptors(a, ds)?,
        Command::DropDescriptor {
            range_id,
            below_version,
        } => crate::meta::apply_drop_descriptor(a, *range_id, *below_version)?,
        Command::SetDecommissioning { node_id, on } => {
            crate::meta::apply_set_decommissioning(a, *node_id, *on)
        }
        Command::At { ts, cmd } => {
            let outer = a.ts.replace(*ts);
            let inner = apply_unchecked(a, cmd);
            a.ts = outer;
            return inner;
        }
        Command::Prewrite(p) if p.async_commit.is_some() && a.ts.is_none() => {
            return Ok(CommandResponse::refused(
                a.version(),
                "an asynchronous commit's prewrite needs a timestamp".into(),
                None,
            ))
        }
        Command::Prewrite(p) => match crate::percolator::apply_prewrite(a, p)? {
            // The answer's version: the largest `min_commit_ts` of its locks here.
            Ok(min_commit_ts) => {
                resp.version = min_commit_ts;
                resp.results.push(OpResult::TxnDone);
            }
            Err(c) => resp.results.push(OpResult::TxnConflict(c)),
        },
        Command::CommitKeys {
            start_ts,
            commit_ts,
            keys,
        } => resp.results.push(txn_step(crate::percolator::apply_commit(
            a, *start_ts, *commit_ts, keys,
        )?)),
        Command::RollbackKeys { start_ts, keys } => {
            resp.results
                .push(txn_step(crate::percolator::apply_rollback(
                    a, *start_ts, keys,
                )?))
        }
        Command::CheckTxn {
            primary,
            start_ts,
            now_ms,
            rollback_if_missing,
        } => resp
            .results
            .push(OpResult::TxnStatus(crate::percolator::apply_check(
                a,
                primary,
                *start_ts,
                *now_ms,
                *rollback_if_missing,
            )?)),
        Command::CheckSecondaries { start_ts, keys } => resp.results.push(OpResult::TxnStatus(
            crate::percolator::apply_check_secondaries(a, *start_ts, keys)?,
        )),
        Command::HeartbeatTxn {
            primary,
            start_ts,
            ttl_ms,
        } => resp
            .results
            .push(OpResult::TxnStatus(crate::percolator::apply_heartbeat(
                a, primary, *start_ts, *ttl_ms,
            )?)),
        Command::OnePhase(t) => match a.ts {
            Some(commit_ts) => resp
                .results
                .push(txn_step(crate::percolator::apply_one_phase(
                    a, t, commit_ts,
                )?)),
            None => {
                return Ok(CommandResponse::refused(
                    a.version(),
                    "a one-phase transaction needs a commit timestamp".into(),
                    None,
                ))
            }
        },
        Command::ReserveTimestamps { up_to } => resp.results.push(OpResult::TimestampHigh(
            crate::meta::apply_reserve_timestamps(a, *up_to)?,
        )),
        Command::ValidateReads { .. } => {
            return Ok(CommandResponse::refused(
                a.version(),
                "a validation of reads is served as a read, never proposed".into(),
                None,
            ))
        }
        Command::Deferrable(cmd) => return apply_unchecked(a, cmd),
        Command::Riding { .. } => {
            return Ok(CommandResponse::refused(
                a.version(),
                "commits ride only with a whole entry, never inside a request id".into(),
                None,
            ))
        }
        Command::Split { .. }
        | Command::Freeze { .. }
        | Command::Thaw { .. }
        | Command::Merge { .. }
        | Command::FenceMerge { .. } => {
            // Never a request's inner command: splits and merges come from the
            // ranges' leaders, and apply through `apply`.
            return Ok(CommandResponse::refused(
                a.version(),
                format!("{cmd} cannot be wrapped in a request id"),
                None,
            ));
        }
    }
    Ok(resp)
}

/// A transaction step's result: done, or refused whole with its conflict (the step
/// wrote nothing then: its function returns before writing).
fn txn_step(step: crate::percolator::Step) -> OpResult {
    match step {
        Ok(()) => OpResult::TxnDone,
        Err(c) => OpResult::TxnConflict(c),
    }
}

/// A key with a transaction's lock among those a plain write or an etcd-style
/// transaction touches, with the lock.
fn locked_key(a: &Apply<'_>, cmd: &Command) -> io::Result<Option<(Vec<u8>, Lock)>> {
    if !cmd.is_plain_data() {
        return Ok(None);
    }
    for t in cmd.touches() {
        let found = match t {
            Touch::Key(k) => a.engine.lock(k).map_err(io_err)?.map(|l| (k.to_vec(), l)),
            Touch::Span(s, e) => {
                let span = KeySpan {
                    start: s.to_vec(),
                    end: e.to_vec(),
                };
                a.engine.locks_in(&span, 1).map_err(io_err)?.pop()
            }
        };
        if let Some((key, bytes)) = found {
            return Ok(Some((key, decode(&bytes)?)));
        }
    }
    Ok(None)
}

/// The first key of `cmd` the range does not hold. Without a descriptor, the meta
/// range (a store being founded, before its first membership entry) holds every key
/// and any other range none.
fn key_outside(a: &Apply<'_>, cmd: &Command) -> Option<Vec<u8>> {
    cmd.find_touch(|t| match a.descriptor {
        Some(d) => !t.inside(d),
        None => !a.is_meta(),
    })
    .map(|t| t.first_key().to_vec())
}

#[cfg(test)]
pub(crate) mod tests;
