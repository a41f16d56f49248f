//! The replicated data of the store, read: the sizes of spans of user keys, the meta
//! range's system keys, each range's own replicated keys; and the removal of a
//! destroyed replica's data. User keys' versions are read in [`crate::mvcc`].

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use crate::engine::{prefix_end, synced, Engine, KeySpan, SpanStats, StateKey};
use crate::keys;
use crate::Result;

impl Engine {
    /// The value of a system key.
    pub fn get_system(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_cf(self.cf(keys::CF_DATA), keys::system_key(key))?)
    }

    /// Every system key starting with `prefix` (without the system prefix byte), with
    /// its value, in key order.
    pub fn scan_system(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let lo = keys::system_key(prefix);
        self.scan_prefix(&lo, &lo, 1, usize::MAX)
    }

    /// The keys under `base` from `lo` on (at most `limit`), each without its first
    /// `head` bytes, with their values. The iterator is bounded by the end of `base`:
    /// unbounded, it would step over every deleted key past the prefix before finding
    /// out there is nothing more to read (the kept answers of other clients, deleted
    /// one by one: a scan per write went through all of them).
    fn scan_prefix(
        &self,
        lo: &[u8],
        base: &[u8],
        head: usize,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut ro = ReadOptions::default();
        if let Some(end) = prefix_end(base) {
            ro.set_iterate_upper_bound(end);
        }
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.cf(keys::CF_DATA),
            ro,
            IteratorMode::From(lo, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !k.starts_with(base) || out.len() >= limit {
                break;
            }
            out.push((k[head..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The bytes (keys and stored values) of `span`, its number of keys and, when the
    /// bytes pass `split_above`, the first key at or past half of them: where to split
    /// it (found by a second pass, only then).
    pub fn span_stats(&self, span: &KeySpan, split_above: u64) -> Result<SpanStats> {
        let (lo, hi) = keys::user_span(&span.start, &span.end);
        // A pass over the span's data, around the block cache (a size, not a read).
        let pass = || {
            let mut ro = ReadOptions::default();
            ro.set_iterate_upper_bound(hi.clone());
            ro.fill_cache(false);
            self.db.iterator_cf_opt(
                self.cf(keys::CF_DATA),
                ro,
                IteratorMode::From(&lo, Direction::Forward),
            )
        };
        let mut bytes = 0u64;
        let mut count = 0u64;
        let mut last: Option<Vec<u8>> = None;
        for item in pass() {
            let (k, v) = item?;
            bytes += (k.len() + v.len()) as u64;
            // Keys, not versions: a key's data keys are adjacent.
            let key = keys::parse_mvcc_key(&k).map(|(key, _)| key);
            if key != last {
                count += 1;
                last = key;
            }
        }
        let mut middle = None;
        if count >= 2 && bytes > split_above {
            let mut seen = 0u64;
            for item in pass() {
                let (k, v) = item?;
                seen += (k.len() + v.len()) as u64;
                if seen * 2 >= bytes {
                    middle = keys::parse_mvcc_key(&k).map(|(key, _)| key);
                    break;
                }
            }
        }
        Ok(SpanStats {
            bytes,
            keys: count,
            middle,
        })
    }

    /// The value of a range's replicated key.
    pub fn get_range_local(&self, range_id: u64, suffix: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(
            self.cf(keys::CF_DATA),
            keys::range_local_key(range_id, suffix),
        )?)
    }

    /// A range's replicated keys whose suffix starts with `prefix`, as (suffix, value),
    /// in key order, from `from` (a suffix) on.
    pub fn scan_range_local(
        &self,
        range_id: u64,
        prefix: &[u8],
        from: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let lo = keys::range_local_key(range_id, from.unwrap_or(prefix));
        let base = keys::range_local_key(range_id, prefix);
        let head = keys::range_local_key(range_id, b"").len();
        self.scan_prefix(&lo, &base, head, limit)
    }

    /// The ranges with a `key` state value on this node, in id order.
    pub fn ranges_with(&self, key: StateKey) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(keys::CF_RAFT_STATE), IteratorMode::Start)
        {
            let (k, _) = item?;
            if let Some((range_id, kind)) = keys::parse_state_key(&k) {
                if kind == key as u8 {
                    out.push(range_id);
                }
            }
        }
        Ok(out)
    }

    /// Removes everything of a replica from this node: its log, its Raft state, its
    /// replicated keys and the user keys of `span` (none for a replica that never had
    /// a descriptor), in one synced batch.
    pub fn destroy_range(&self, range_id: u64, span: Option<&KeySpan>) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete_range_cf(
            self.cf(keys::CF_RAFT_LOG),
            keys::log_key(range_id, 0),
            keys::log_key(range_id, u64::MAX),
        );
        b.delete_cf(
            self.cf(keys::CF_RAFT_LOG),
            keys::log_key(range_id, u64::MAX),
        );
        b.delete_range_cf(
            self.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, 0),
            keys::state_key(range_id, u8::MAX),
        );
        b.delete_cf(
            self.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, u8::MAX),
        );
        let (lo, hi) = keys::range_local_bounds(range_id);
        b.delete_range_cf(self.cf(keys::CF_DATA), lo, hi);
        if let Some(span) = span {
            let (lo, hi) = keys::user_span(&span.start, &span.end);
            b.delete_range_cf(self.cf(keys::CF_DATA), lo, hi);
        }
        self.db.write_opt(b, &synced())?;
        Ok(())
    }

    /// RocksDB's estimate of the bytes `span` takes in the store's files (writes still
    /// only in memtables are not counted).
    pub fn approximate_size(&self, span: &KeySpan) -> u64 {
        let (lo, hi) = keys::user_span(&span.start, &span.end);
        self.db
            .get_approximate_sizes_cf(self.cf(keys::CF_DATA), &[rocksdb::Range::new(&lo, &hi)])
            .first()
            .copied()
            .unwrap_or(0)
    }
}
