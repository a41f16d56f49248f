//! What the node's coordinator and the SDK's own `Batch` across ranges (`Kv.Prewrite`)
//! both keep: the bounds of a transaction committed asynchronously (answered once
//! every key is locked: its primary lock lists its other keys, and a reader that finds
//! it abandoned asks about each, so they must be few), and its locks' time to live.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most keys a transaction commits asynchronously with.
pub const ASYNC_MAX_KEYS: usize = 64;
/// The most bytes of keys, together, a transaction commits asynchronously with.
pub const ASYNC_MAX_KEY_BYTES: usize = 16 << 10;
/// The longest a prewrite's locks may live, in milliseconds after its start
/// timestamp's wall-clock time, unless heartbeats extend them.
pub const MAX_LOCK_TTL_MS: u64 = 60_000;

/// Whether a transaction writing `keys` may commit asynchronously.
pub fn commits_asynchronously<'a>(keys: impl Iterator<Item = &'a [u8]> + Clone) -> bool {
    keys.clone().count() <= ASYNC_MAX_KEYS
        && keys.map(<[u8]>::len).sum::<usize>() <= ASYNC_MAX_KEY_BYTES
}

/// How long a lock outlives the last heartbeat of its coordinator: a reader that meets
/// a lock older than this (a coordinator that died) settles its transaction.
pub const LOCK_TTL: Duration = Duration::from_secs(3);

/// This machine's wall clock, in milliseconds since the Unix epoch (a lock's time to
/// live is judged by it).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time to live of a lock of the transaction started at `start_ts` (whose bits
/// above the lowest 18 are wall-clock milliseconds), counted from its start: to
/// [`LOCK_TTL`] past now.
pub fn lock_ttl_ms(start_ts: u64) -> u64 {
    let ttl = u64::try_from(LOCK_TTL.as_millis()).unwrap_or(u64::MAX);
    wall_ms().saturating_sub(start_ts >> 18).saturating_add(ttl)
}
