//! Exactly-once requests: a command wrapped in a request id (`Command::Once`) applies
//! at most once per (client, seq), and a retry gets the first application's answer.
//!
//! A range keeps each answer among its own replicated keys (so splits, snapshots and
//! replica moves carry them) until the client reports it received: every seq below a
//! request's `acked_below`. Those answers are dropped, and the client's low mark
//! remembers how far; a request below it is refused (`StaleRequest`), never applied a
//! second time.

use std::io;

use shoal_storage::keys;

use crate::apply::Apply;
use crate::codec::{decode, encode, io_err};
use crate::command::{CommandResponse, OpResult};

/// Kept answers dropped by one command at most (the rest by the client's next ones).
const MAX_ANSWER_DROPS: usize = 1024;

/// A request's id, as `Command::Once` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    pub client_id: u64,
    pub seq: u64,
    /// Every seq of the client below this one was answered.
    pub acked_below: u64,
}

/// Before a request's command applies: drops the answers the client has received,
/// and returns the answer the request gets without applying (its kept first answer,
/// or a refusal of a stale id), or `None` if it is to apply.
pub fn before(a: &mut Apply<'_>, id: &RequestId) -> io::Result<Option<CommandResponse>> {
    let version = a.version();
    let refuse = |low: u64| CommandResponse {
        version,
        succeeded: false,
        results: vec![OpResult::StaleRequest { low }],
    };
    // The answers the client has received are dropped first, whatever comes of this
    // request: every replica (of any version) writes the same for the same entry. A
    // request whose seq is below its own `acked_below` (the node refuses it before
    // proposing it; an older node did not) then falls below the low mark, refused.
    let low = drop_answered(a, id)?;
    let key = keys::request_suffix(id.client_id, id.seq);
    if let Some(kept) = a.engine.get_range_local(a.range_id, &key).map_err(io_err)? {
        // A retry of a request already applied: its first answer, no effect.
        return decode(&kept).map(Some);
    }
    if id.seq < low {
        // Below the client's low mark: the client received this request's answer and
        // its record is gone; this is a late duplicate (an attempt that timed out and
        // was committed after the one that answered). It must not apply again.
        return Ok(Some(refuse(low)));
    }
    Ok(None)
}

/// After a request's command applied: keeps its answer for retries.
pub fn keep(a: &mut Apply<'_>, id: &RequestId, answer: &CommandResponse) -> io::Result<()> {
    let key = keys::request_suffix(id.client_id, id.seq);
    a.batch
        .put_range_local(a.engine, a.range_id, &key, &encode(answer)?);
    Ok(())
}

/// Drops the kept answers below `acked_below` (point deletes from the last low mark:
/// range tombstones, one per write, would slow every read), at most
/// [`MAX_ANSWER_DROPS`] per command, and returns the client's low mark.
fn drop_answered(a: &mut Apply<'_>, id: &RequestId) -> io::Result<u64> {
    let (engine, range_id) = (a.engine, a.range_id);
    let low_key = keys::requests_low_suffix(id.client_id);
    let low = engine
        .get_range_local(range_id, &low_key)
        .map_err(io_err)?
        .and_then(|b| keys::decode_u64(&b))
        .unwrap_or(0);
    if id.acked_below <= low {
        return Ok(low);
    }
    let from = keys::request_suffix(id.client_id, low);
    let kept = engine
        .scan_range_local(
            range_id,
            &keys::client_requests_prefix(id.client_id),
            Some(&from),
            MAX_ANSWER_DROPS + 1,
        )
        .map_err(io_err)?;
    let mut upto = id.acked_below;
    for (n, (suffix, _)) in kept.iter().enumerate() {
        let s = keys::parse_request_seq(suffix).unwrap_or(u64::MAX);
        if s >= id.acked_below {
            break;
        }
        if n == MAX_ANSWER_DROPS {
            upto = s;
            break;
        }
        a.batch.delete_range_local(engine, range_id, suffix);
    }
    a.batch
        .put_range_local(engine, range_id, &low_key, &keys::encode_u64(upto));
    Ok(upto)
}
