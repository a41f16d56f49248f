//! The bounds of a transaction committed asynchronously (answered once every key is
//! locked), which the node's coordinator and the SDK's own `Batch` across ranges
//! (`Kv.Prewrite`) both keep: its primary lock lists its other keys, and a reader that
//! finds it abandoned asks about each, so they must be few.

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
