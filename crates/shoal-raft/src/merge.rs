//! Merges: a range absorbed by its left neighbour on the same nodes, in steps each
//! range's log applies. `Freeze` on the right-hand range (it takes no request from
//! then on), then, once every replica of it has applied the freeze, `Merge` on the
//! left-hand range: it takes over the right's span, whose keys already sit in each
//! node's store (ranges share a node's key space), and the right's replicas are
//! retired. A merge that stalls between the two (its coordinator gone) is undone:
//! `FenceMerge` on the left says whether the `Merge` applied, and if not keeps it from
//! ever applying; only then does `Thaw` let the right range serve again.

use std::io;

use shoal_storage::{keys, Engine, StateKey};

use crate::apply::{Apply, Effect};
use crate::codec::{decode, encode, io_err};
use crate::command::{CommandResponse, OpResult};
use crate::range::{Frozen, RangeDescriptor};

/// What became of a merge attempt of a right-hand range, as the left-hand range
/// records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Outcome {
    /// The range absorbed it.
    Merged,
    /// Attempts up to `token` were fenced off: no `Merge` of them applies. Attempts
    /// are numbered in the order they begin (by the cluster's timestamps).
    Fenced { token: u64 },
}

/// The freeze record of `range_id`, as this node's replica holds it.
pub fn frozen(engine: &Engine, range_id: u64) -> io::Result<Option<Frozen>> {
    engine
        .get_range_local(range_id, keys::FROZEN_SUFFIX)
        .map_err(io_err)?
        .map(|b| decode(&b))
        .transpose()
}

fn refused(a: &Apply<'_>, why: String) -> io::Result<(CommandResponse, Effect)> {
    Ok((
        CommandResponse::refused(a.version(), why, None),
        Effect::None,
    ))
}

/// `Freeze`: on the right-hand range of a merge.
pub fn apply_freeze(
    a: &mut Apply<'_>,
    left_id: u64,
    token: u64,
) -> io::Result<(CommandResponse, Effect)> {
    let f = Frozen { left_id, token };
    match a.frozen {
        Some(cur) if cur == f => return Ok((a.response(), Effect::None)),
        Some(cur) => {
            return refused(
                a,
                format!(
                    "range {} is frozen for another merge (into {}, attempt {})",
                    a.range_id, cur.left_id, cur.token
                ),
            )
        }
        None => {}
    }
    if a.descriptor.is_none() || a.is_meta() || left_id == a.range_id {
        return refused(
            a,
            format!("range {} cannot merge into {left_id}", a.range_id),
        );
    }
    if a.membership.membership().get_joint_config().len() > 1 {
        return refused(a, "a membership change is under way".into());
    }
    a.batch
        .put_range_local(a.engine, a.range_id, keys::FROZEN_SUFFIX, &encode(&f)?);
    Ok((a.response(), Effect::Frozen(Some(f))))
}

/// `Thaw`: undoes the freeze of attempt `token` (a no-op on a range not frozen).
pub fn apply_thaw(a: &mut Apply<'_>, token: u64) -> io::Result<(CommandResponse, Effect)> {
    match a.frozen {
        None => Ok((a.response(), Effect::None)),
        Some(cur) if cur.token == token => {
            a.batch
                .delete_range_local(a.engine, a.range_id, keys::FROZEN_SUFFIX);
            Ok((a.response(), Effect::Frozen(None)))
        }
        Some(cur) => refused(
            a,
            format!(
                "range {} is frozen by another merge attempt ({})",
                a.range_id, cur.token
            ),
        ),
    }
}

fn outcome(a: &Apply<'_>, right_id: u64) -> io::Result<Option<Outcome>> {
    a.engine
        .get_range_local(a.range_id, &keys::merge_suffix(right_id))
        .map_err(io_err)?
        .map(|b| decode(&b))
        .transpose()
}

/// `Merge`: the left-hand range takes over `right`'s span.
pub fn apply_merge(
    a: &mut Apply<'_>,
    right: &RangeDescriptor,
    token: u64,
) -> io::Result<(CommandResponse, Effect)> {
    let Some(cur) = a.descriptor else {
        return refused(a, "the range has no descriptor yet".into());
    };
    if a.frozen.is_some() {
        return refused(a, "the range is itself frozen for a merge".into());
    }
    if cur.end.is_empty() || cur.end != right.start {
        return refused(
            a,
            format!(
                "range {} does not end where {} begins",
                a.range_id, right.range_id
            ),
        );
    }
    if cur.replicas != right.replicas {
        return refused(
            a,
            format!(
                "ranges {} and {} have different replicas",
                a.range_id, right.range_id
            ),
        );
    }
    if a.membership.membership().get_joint_config().len() > 1 {
        return refused(a, "a membership change is under way".into());
    }
    match outcome(a, right.range_id)? {
        Some(Outcome::Fenced { token: t }) if token <= t => {
            return refused(a, format!("merge attempt {token} was abandoned"));
        }
        Some(Outcome::Merged) => {
            return refused(a, format!("range {} was merged already", right.range_id));
        }
        _ => {}
    }
    // Every replica of the right-hand range applied the freeze before this was
    // proposed (the coordinator waits for it): this node's copy of its keys, and of
    // its kept answers, is whole and final.
    let here = frozen(a.engine, right.range_id)?;
    if here
        != Some(Frozen {
            left_id: a.range_id,
            token,
        })
    {
        tracing::error!(
            left = a.range_id,
            right = right.range_id,
            ?here,
            "merging a right-hand range not frozen on this node"
        );
    }
    let merged = cur.merged_with(right);
    let (e, left_id, right_id) = (a.engine, a.range_id, right.range_id);
    let b = &mut *a.batch;
    b.put_range_local(e, left_id, keys::DESCRIPTOR_SUFFIX, &encode(&merged)?);
    b.put_range_local(
        e,
        left_id,
        &keys::merge_suffix(right_id),
        &encode(&Outcome::Merged)?,
    );
    // Kept answers of requests the right-hand range applied: a retry routed to this
    // range now must find them. A client's low mark is the higher of the two (every
    // answer below either one was acknowledged by the client).
    for (suffix, value) in e
        .scan_range_local(right_id, keys::REQUEST_PREFIX, None, usize::MAX)
        .map_err(io_err)?
    {
        if e.get_range_local(left_id, &suffix)
            .map_err(io_err)?
            .is_none()
        {
            b.put_range_local(e, left_id, &suffix, &value);
        }
    }
    for (suffix, value) in e
        .scan_range_local(right_id, keys::REQUEST_LOW_PREFIX, None, usize::MAX)
        .map_err(io_err)?
    {
        let theirs = keys::decode_u64(&value).unwrap_or(0);
        let ours = e
            .get_range_local(left_id, &suffix)
            .map_err(io_err)?
            .and_then(|v| keys::decode_u64(&v))
            .unwrap_or(0);
        if theirs > ours {
            b.put_range_local(e, left_id, &suffix, &value);
        }
    }
    // A restart does not open the right-hand replica again; the node retires the rest
    // of it (its log and Raft state) when it hears of the merge.
    b.delete_state_of(e, right_id, StateKey::Created);
    let resp = CommandResponse {
        version: a.version(),
        succeeded: true,
        results: Vec::new(),
    };
    Ok((
        resp,
        Effect::Merged {
            left: merged,
            right_id,
        },
    ))
}

/// `FenceMerge`: no `Merge` of `right_id` by an attempt up to `token` applies after
/// this.
pub fn apply_fence(
    a: &mut Apply<'_>,
    right_id: u64,
    token: u64,
) -> io::Result<(CommandResponse, Effect)> {
    let merged = match outcome(a, right_id)? {
        Some(Outcome::Merged) => true,
        Some(Outcome::Fenced { token: t }) if t >= token => false,
        _ => {
            a.batch.put_range_local(
                a.engine,
                a.range_id,
                &keys::merge_suffix(right_id),
                &encode(&Outcome::Fenced { token })?,
            );
            false
        }
    };
    let mut resp = a.response();
    resp.results.push(OpResult::MergeFenced { merged });
    Ok((resp, Effect::None))
}

#[cfg(test)]
mod tests;
