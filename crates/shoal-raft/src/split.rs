//! `Split`: a range cut in two at a key, applied at the same index on every replica.

use std::io;

use shoal_storage::{keys, StateKey};

use crate::apply::{Apply, Effect};
use crate::codec::{encode, io_err};
use crate::command::{CommandResponse, OpResult};
use crate::range::FIRST_RANGE_ID;
use crate::types::{StoredMembership, Vote};

/// Applies a split at `key` into the entry's batch: both descriptors, the kept request
/// answers copied to the right half (a retry re-routed there must find them), and the
/// right half's Raft state, so that its replica starts on every node at the same
/// point: log purged up to the split, applied up to it, with the range's membership,
/// and a vote of the split's term (a new leader of the right half is then elected in
/// a later term, as log ids require). Refused (changing nothing) unless the range is
/// still at `expected_version` and `key` is strictly inside it.
pub fn apply_split(
    a: &mut Apply<'_>,
    key: &[u8],
    new_range_id: u64,
    expected_version: u64,
) -> io::Result<(CommandResponse, Effect)> {
    let refused = |why: String| {
        Ok((
            CommandResponse::refused(a.version(), why, None),
            Effect::None,
        ))
    };
    let Some(cur) = a.descriptor else {
        return refused("the range has no descriptor yet".into());
    };
    if cur.epoch.version != expected_version {
        return refused(format!(
            "the range is at epoch version {}, the split expected {expected_version}",
            cur.epoch.version
        ));
    }
    if !cur.splits_at(key) {
        return refused("the split key is not strictly inside the range".into());
    }
    if new_range_id <= FIRST_RANGE_ID || new_range_id == a.range_id {
        return refused(format!("{new_range_id} is not a new range id"));
    }
    if a.membership.membership().get_joint_config().len() > 1 {
        return refused("a membership change is under way".into());
    }
    let (left, right) = cur.split(key, new_range_id);
    let (e, range_id, log_id) = (a.engine, a.range_id, a.log_id);
    let b = &mut *a.batch;
    b.put_range_local(e, range_id, keys::DESCRIPTOR_SUFFIX, &encode(&left)?);
    b.put_range_local(e, new_range_id, keys::DESCRIPTOR_SUFFIX, &encode(&right)?);
    for prefix in [keys::REQUEST_PREFIX, keys::REQUEST_LOW_PREFIX] {
        for (suffix, value) in e
            .scan_range_local(range_id, prefix, None, usize::MAX)
            .map_err(io_err)?
        {
            b.put_range_local(e, new_range_id, &suffix, &value);
        }
    }
    let child_membership = StoredMembership::new(Some(log_id), a.membership.membership().clone());
    let applied = (Some(log_id), child_membership);
    b.put_state_of(e, new_range_id, StateKey::Applied, &encode(&applied)?);
    b.put_state_of(e, new_range_id, StateKey::LastPurged, &encode(&log_id)?);
    let vote = Vote::new(log_id.leader_id.term, log_id.leader_id.node_id);
    b.put_state_of(e, new_range_id, StateKey::Vote, &encode(&vote)?);
    b.put_state_of(e, new_range_id, StateKey::Created, &encode(&right)?);
    let resp = CommandResponse {
        version: a.version(),
        succeeded: true,
        results: vec![OpResult::RangeId(new_range_id)],
    };
    Ok((resp, Effect::Split { left, right }))
}
