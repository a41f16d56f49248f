//! [`Engine`]: the node's RocksDB store.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use crate::keys;
use crate::{Result, StorageError};

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Size of each memtable of the data column family, in bytes.
    pub data_write_buffer: usize,
    /// Size of each memtable of the log column family, in bytes.
    pub log_write_buffer: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            data_write_buffer: 64 << 20,
            log_write_buffer: 32 << 20,
        }
    }
}

/// Per-range Raft state values kept in the `raft_state` column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StateKey {
    Vote = 1,
    Committed = 2,
    LastPurged = 3,
    /// Last applied log id and membership: written in the same batch as the data.
    Applied = 4,
    /// The current snapshot's metadata.
    SnapshotMeta = 5,
    /// Set while a snapshot is being installed, cleared when done.
    Installing = 6,
    /// The replica exists on this node (written when the cluster is founded, by a
    /// split, or when the replica is created empty for a snapshot): the node opens
    /// every range that has it when it starts.
    Created = 7,
}

/// What [`Engine::span_stats`] counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanStats {
    pub bytes: u64,
    pub keys: u64,
    /// The key at about half of the bytes (`None` with fewer than 2 keys, or when the
    /// span is not over the size asked about).
    pub middle: Option<Vec<u8>>,
}

/// A user key's value and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub version: u64,
}

/// A span of user keys `[start, end)`; an empty `end` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeySpan {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeySpan {
    /// The whole user key space.
    pub fn all() -> Self {
        Self::default()
    }
}

/// The node's store. Cheap to clone: all clones share one RocksDB instance.
#[derive(Clone)]
pub struct Engine {
    db: Arc<DB>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.db.path())
            .finish()
    }
}

/// Log reads of at most this many entries use point reads instead of an iterator.
const LOG_POINT_READS: u64 = 8;

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

impl Engine {
    /// Opens (creating if missing) the store at `path`.
    pub fn open(path: &Path, opts: &EngineOptions) -> Result<Self> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_bytes_per_sync(1 << 20);
        let mut log_opts = Options::default();
        log_opts.set_write_buffer_size(opts.log_write_buffer);
        let mut data_opts = Options::default();
        data_opts.set_write_buffer_size(opts.data_write_buffer);
        data_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = vec![
            ColumnFamilyDescriptor::new(keys::CF_RAFT_LOG, log_opts),
            ColumnFamilyDescriptor::new(keys::CF_RAFT_STATE, Options::default()),
            ColumnFamilyDescriptor::new(keys::CF_DATA, data_opts),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        Ok(Self { db: Arc::new(db) })
    }

    pub(crate) fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every column family in `keys::COLUMN_FAMILIES` is created by `open`.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is opened with the store"))
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    // ---- store identity -------------------------------------------------------

    /// The encoded store identity, if this store belongs to a cluster.
    pub fn ident(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(keys::store_ident_key())?)
    }

    /// Records the store identity durably.
    pub fn set_ident(&self, ident: &[u8]) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put(keys::store_ident_key(), ident);
        self.db.write_opt(b, &synced())?;
        Ok(())
    }

    // ---- Raft log ---------------------------------------------------------------

    /// Appends entries `(index, bytes)` of a range in one write batch, without waiting
    /// for the disk: readable at once, durable after the next [`Engine::sync_wal`].
    pub fn log_append_unsynced<'a>(
        &self,
        range_id: u64,
        entries: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<()> {
        let cf = self.cf(keys::CF_RAFT_LOG);
        let mut b = WriteBatch::default();
        for (index, bytes) in entries {
            b.put_cf(cf, keys::log_key(range_id, index), bytes);
        }
        self.db.write(b)?;
        Ok(())
    }

    /// Makes every write so far durable: one fsync of the write-ahead log, shared by
    /// all the writes since the last one (group commit).
    pub fn sync_wal(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Log entries of a range with index in `[start, end)`, in order.
    pub fn log_entries(&self, range_id: u64, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let cf = self.cf(keys::CF_RAFT_LOG);
        if end - start <= LOG_POINT_READS {
            // A few entries (the one just committed, to apply or to send): point reads,
            // which find them in the memtable, cost far less than an iterator over every
            // level of the log.
            let keys = (start..end).map(|i| (cf, keys::log_key(range_id, i)));
            let mut out = Vec::new();
            for (i, got) in (start..end).zip(self.db.multi_get_cf(keys)) {
                if let Some(v) = got? {
                    out.push((i, v));
                }
            }
            return Ok(out);
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::log_key(range_id, end).to_vec());
        let from = keys::log_key(range_id, start);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(cf, ro, IteratorMode::From(&from, Direction::Forward))
        {
            let (k, v) = item?;
            match keys::parse_log_key(range_id, &k) {
                Some(i) => out.push((i, v.into_vec())),
                None => break,
            }
        }
        Ok(out)
    }

    /// The last log entry of a range.
    pub fn log_last(&self, range_id: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let cf = self.cf(keys::CF_RAFT_LOG);
        let from = keys::log_key(range_id, u64::MAX);
        let mut it = self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Reverse));
        match it.next() {
            Some(item) => {
                let (k, v) = item?;
                Ok(keys::parse_log_key(range_id, &k).map(|i| (i, v.into_vec())))
            }
            None => Ok(None),
        }
    }

    /// Deletes the log entries of a range with index `>= from`.
    pub fn log_truncate(&self, range_id: u64, from: u64) -> Result<()> {
        let cf = self.cf(keys::CF_RAFT_LOG);
        let mut b = WriteBatch::default();
        b.delete_range_cf(
            cf,
            keys::log_key(range_id, from),
            keys::log_key(range_id, u64::MAX),
        );
        b.delete_cf(cf, keys::log_key(range_id, u64::MAX));
        self.db.write_opt(b, &synced())?;
        Ok(())
    }

    /// Records `purged` under [`StateKey::LastPurged`], then deletes the log entries of a
    /// range with index `<= upto`, in one batch.
    pub fn log_purge(&self, range_id: u64, upto: u64, purged: &[u8]) -> Result<()> {
        let cf = self.cf(keys::CF_RAFT_LOG);
        let mut b = WriteBatch::default();
        b.put_cf(
            self.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, StateKey::LastPurged as u8),
            purged,
        );
        b.delete_range_cf(
            cf,
            keys::log_key(range_id, 0),
            keys::log_key(range_id, upto.saturating_add(1)),
        );
        self.db.write(b)?;
        Ok(())
    }

    // ---- Raft state -------------------------------------------------------------

    pub fn state_get(&self, range_id: u64, key: StateKey) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(
            self.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, key as u8),
        )?)
    }

    /// Writes a state value; `sync` makes it durable before returning.
    pub fn state_put(&self, range_id: u64, key: StateKey, value: &[u8], sync: bool) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(
            self.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, key as u8),
            value,
        );
        if sync {
            self.db.write_opt(b, &synced())?;
        } else {
            self.db.write(b)?;
        }
        Ok(())
    }

    pub fn state_delete(&self, range_id: u64, key: StateKey, sync: bool) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete_cf(
            self.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, key as u8),
        );
        if sync {
            self.db.write_opt(b, &synced())?;
        } else {
            self.db.write(b)?;
        }
        Ok(())
    }

    // ---- data ---------------------------------------------------------------------

    /// The value of a system key.
    pub fn get_system(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_cf(self.cf(keys::CF_DATA), keys::system_key(key))?)
    }

    /// The value and version of a user key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        let Some(stored) = self
            .db
            .get_pinned_cf(self.cf(keys::CF_DATA), keys::user_key(key))?
        else {
            return Ok(None);
        };
        let (version, value) = decode(&stored)?;
        Ok(Some(Versioned {
            key: key.to_vec(),
            value: value.to_vec(),
            version,
        }))
    }

    /// Up to `limit` pairs of `span` in key order (descending with `reverse`), and
    /// whether more remain.
    pub fn scan(
        &self,
        span: &KeySpan,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Versioned>, bool)> {
        let (lo, hi) = keys::user_span(&span.start, &span.end);
        let mut ro = ReadOptions::default();
        let mode = if reverse {
            ro.set_iterate_lower_bound(lo.clone());
            IteratorMode::From(&hi, Direction::Reverse)
        } else {
            ro.set_iterate_upper_bound(hi.clone());
            IteratorMode::From(&lo, Direction::Forward)
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf(keys::CF_DATA), ro, mode) {
            let (k, v) = item?;
            // A descending scan starts at the last key <= `hi`: the end is exclusive.
            if reverse && *k >= *hi {
                continue;
            }
            let Some(user) = keys::parse_user_key(&k) else {
                break;
            };
            if out.len() == limit {
                return Ok((out, true));
            }
            let (version, value) = decode(&v)?;
            out.push(Versioned {
                key: user.to_vec(),
                value: value.to_vec(),
                version,
            });
        }
        Ok((out, false))
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
        for item in pass() {
            let (k, v) = item?;
            bytes += (k.len() + v.len()) as u64;
            count += 1;
        }
        let mut middle = None;
        if count >= 2 && bytes > split_above {
            let mut seen = 0u64;
            for item in pass() {
                let (k, v) = item?;
                seen += (k.len() + v.len()) as u64;
                if seen * 2 >= bytes {
                    middle = keys::parse_user_key(&k).map(<[u8]>::to_vec);
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

    /// The user keys of `span`, in order.
    pub fn keys_in(&self, span: &KeySpan) -> Result<Vec<Vec<u8>>> {
        let (lo, hi) = keys::user_span(&span.start, &span.end);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(hi);
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.cf(keys::CF_DATA),
            ro,
            IteratorMode::From(&lo, Direction::Forward),
        ) {
            let (k, _) = item?;
            match keys::parse_user_key(&k) {
                Some(user) => out.push(user.to_vec()),
                None => break,
            }
        }
        Ok(out)
    }

    /// A new batch of data writes for a range.
    pub fn batch(&self, range_id: u64) -> DataBatch {
        DataBatch {
            range_id,
            batch: WriteBatch::default(),
        }
    }

    /// Applies a batch atomically. Not synced: the Raft log is the durable record, and
    /// the store's write-ahead log keeps batches in order, so a crash loses a suffix of
    /// applied batches (data and applied state together) that Raft applies again.
    pub fn commit(&self, batch: DataBatch) -> Result<()> {
        self.db.write(batch.batch)?;
        Ok(())
    }

    /// Makes every write so far durable: WAL synced and memtables flushed.
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        let cfs: Vec<&ColumnFamily> = keys::COLUMN_FAMILIES.iter().map(|n| self.cf(n)).collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        Ok(())
    }
}

pub(crate) fn decode(stored: &[u8]) -> Result<(u64, &[u8])> {
    keys::decode_value(stored).ok_or_else(|| StorageError::Corrupt {
        what: "stored value",
        detail: format!("{} bytes, shorter than its version", stored.len()),
    })
}

/// Data writes and Raft state of one range, applied atomically by [`Engine::commit`].
pub struct DataBatch {
    range_id: u64,
    pub(crate) batch: WriteBatch,
}

impl DataBatch {
    pub fn put(&mut self, engine: &Engine, key: &[u8], version: u64, value: &[u8]) {
        self.batch.put_cf(
            engine.cf(keys::CF_DATA),
            keys::user_key(key),
            keys::encode_value(version, value),
        );
    }

    pub fn delete(&mut self, engine: &Engine, key: &[u8]) {
        self.batch
            .delete_cf(engine.cf(keys::CF_DATA), keys::user_key(key));
    }

    pub fn put_system(&mut self, engine: &Engine, key: &[u8], value: &[u8]) {
        self.batch
            .put_cf(engine.cf(keys::CF_DATA), keys::system_key(key), value);
    }

    pub fn delete_system(&mut self, engine: &Engine, key: &[u8]) {
        self.batch
            .delete_cf(engine.cf(keys::CF_DATA), keys::system_key(key));
    }

    /// Deletes every user key of `span`.
    pub fn delete_span(&mut self, engine: &Engine, span: &KeySpan) {
        let (lo, hi) = keys::user_span(&span.start, &span.end);
        self.batch.delete_range_cf(engine.cf(keys::CF_DATA), lo, hi);
    }

    pub fn put_state(&mut self, engine: &Engine, key: StateKey, value: &[u8]) {
        self.put_state_of(engine, self.range_id, key, value);
    }

    /// A Raft state value of another range (the right half of a split, created by the
    /// batch of the split itself).
    pub fn put_state_of(&mut self, engine: &Engine, range_id: u64, key: StateKey, value: &[u8]) {
        self.batch.put_cf(
            engine.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, key as u8),
            value,
        );
    }

    /// A replicated key of range `range_id`.
    pub fn put_range_local(&mut self, engine: &Engine, range_id: u64, suffix: &[u8], value: &[u8]) {
        self.batch.put_cf(
            engine.cf(keys::CF_DATA),
            keys::range_local_key(range_id, suffix),
            value,
        );
    }

    pub fn delete_range_local(&mut self, engine: &Engine, range_id: u64, suffix: &[u8]) {
        self.batch.delete_cf(
            engine.cf(keys::CF_DATA),
            keys::range_local_key(range_id, suffix),
        );
    }

    /// The range this batch applies for.
    pub fn range_id(&self) -> u64 {
        self.range_id
    }

    /// Bytes of the batch's encoded form.
    pub fn size_in_bytes(&self) -> usize {
        self.batch.size_in_bytes()
    }
}

/// The least key above every key starting with `prefix` (`None`: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Engine::open(dir.path(), &EngineOptions::default()).expect("open");
        (dir, e)
    }

    #[test]
    fn prefix_end_is_the_least_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn a_prefix_scan_stops_at_the_prefix_past_deleted_keys() {
        let (_dir, e) = engine();
        let mut b = e.batch(1);
        b.put_range_local(&e, 1, b"ra", b"1");
        b.put_range_local(&e, 1, b"rb", b"2");
        b.put_range_local(&e, 1, b"s", b"3");
        for i in 0..1000u32 {
            b.put_range_local(&e, 1, &[b"t".as_slice(), &i.to_be_bytes()].concat(), b"x");
        }
        e.commit(b).unwrap();
        let mut b = e.batch(1);
        for i in 0..999u32 {
            b.delete_range_local(&e, 1, &[b"t".as_slice(), &i.to_be_bytes()].concat());
        }
        e.commit(b).unwrap();
        let got = e.scan_range_local(1, b"r", Some(b"rb"), 10).unwrap();
        assert_eq!(got, vec![(b"rb".to_vec(), b"2".to_vec())]);
        let t = e.scan_range_local(1, b"t", None, 10).unwrap();
        assert_eq!(t.len(), 1, "only the key not deleted");
        assert!(e.scan_range_local(2, b"r", None, 10).unwrap().is_empty());
    }

    #[test]
    fn log_is_per_range_and_survives_reopen() {
        let (dir, e) = engine();
        e.log_append_unsynced(1, [(1, &b"a"[..]), (2, b"b"), (3, b"c")])
            .unwrap();
        e.log_append_unsynced(2, [(1, &b"x"[..])]).unwrap();
        e.sync_wal().unwrap();
        assert_eq!(e.log_last(1).unwrap(), Some((3, b"c".to_vec())));
        assert_eq!(e.log_entries(1, 2, 10).unwrap().len(), 2);
        e.log_truncate(1, 3).unwrap();
        e.log_purge(1, 1, b"p").unwrap();
        drop(e);
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        assert_eq!(e.log_entries(1, 0, 100).unwrap(), vec![(2, b"b".to_vec())]);
        // Short spans are point reads: same answer, other ranges' entries excluded.
        assert_eq!(e.log_entries(1, 0, 4).unwrap(), vec![(2, b"b".to_vec())]);
        assert_eq!(e.log_entries(2, 1, 3).unwrap(), vec![(1, b"x".to_vec())]);
        assert_eq!(e.log_last(2).unwrap(), Some((1, b"x".to_vec())));
        assert_eq!(
            e.state_get(1, StateKey::LastPurged).unwrap(),
            Some(b"p".to_vec())
        );
        assert_eq!(e.log_last(3).unwrap(), None);
    }

    #[test]
    fn span_stats_count_bytes_and_find_the_middle_only_past_the_limit() {
        let (_dir, e) = engine();
        let mut b = e.batch(1);
        for k in [b"a", b"b", b"c", b"d"] {
            b.put(&e, k, 1, &[0u8; 91]);
        }
        e.commit(b).unwrap();
        // Each pair: data key (2 bytes) + stored value (8-byte version + 91).
        let all = e.span_stats(&KeySpan::all(), 0).unwrap();
        assert_eq!((all.bytes, all.keys), (4 * 101, 4));
        assert_eq!(all.middle, Some(b"b".to_vec()));
        let under = e.span_stats(&KeySpan::all(), 4 * 101).unwrap();
        assert_eq!((under.bytes, under.middle), (4 * 101, None));
        let part = KeySpan {
            start: b"c".to_vec(),
            end: Vec::new(),
        };
        assert_eq!(e.span_stats(&part, 0).unwrap().middle, Some(b"c".to_vec()));
    }

    #[test]
    fn destroying_a_replica_removes_its_log_state_and_keys_and_nothing_else() {
        let (_dir, e) = engine();
        for range in [5, 6] {
            e.log_append_unsynced(range, [(1, &b"a"[..]), (2, b"b")])
                .unwrap();
            e.state_put(range, StateKey::Applied, b"2", false).unwrap();
            let mut b = e.batch(range);
            b.put_range_local(&e, range, b"desc", b"d");
            e.commit(b).unwrap();
        }
        let mut b = e.batch(5);
        for k in [b"a", b"m", b"z"] {
            b.put(&e, k, 1, b"v");
        }
        e.commit(b).unwrap();
        let span = KeySpan {
            start: b"b".to_vec(),
            end: b"y".to_vec(),
        };
        e.destroy_range(5, Some(&span)).unwrap();
        assert_eq!(e.log_last(5).unwrap(), None);
        assert_eq!(e.state_get(5, StateKey::Applied).unwrap(), None);
        assert_eq!(e.get_range_local(5, b"desc").unwrap(), None);
        assert_eq!(
            e.keys_in(&KeySpan::all()).unwrap(),
            vec![b"a".to_vec(), b"z".to_vec()]
        );
        // Range 6 untouched; without a span, no user key goes.
        assert_eq!(e.log_last(6).unwrap(), Some((2, b"b".to_vec())));
        e.destroy_range(6, None).unwrap();
        assert_eq!(e.state_get(6, StateKey::Applied).unwrap(), None);
        assert_eq!(e.get_range_local(6, b"desc").unwrap(), None);
        assert_eq!(e.keys_in(&KeySpan::all()).unwrap().len(), 2);
    }

    #[test]
    fn batches_write_data_and_state_together() {
        let (_dir, e) = engine();
        let mut b = e.batch(1);
        b.put(&e, b"k1", 5, b"v1");
        b.put(&e, b"k2", 5, b"v2");
        b.put(&e, b"k3", 5, b"v3");
        b.put_state(&e, StateKey::Applied, b"5");
        e.commit(b).unwrap();
        assert_eq!(
            e.get(b"k1").unwrap().map(|v| (v.version, v.value)),
            Some((5, b"v1".to_vec()))
        );
        let (page, more) = e
            .scan(
                &KeySpan {
                    start: b"k1".to_vec(),
                    end: b"k3".to_vec(),
                },
                10,
                false,
            )
            .unwrap();
        assert_eq!(page.len(), 2);
        assert!(!more);
        let (page, more) = e.scan(&KeySpan::all(), 2, false).unwrap();
        assert_eq!((page.len(), more), (2, true));
        let (page, more) = e.scan(&KeySpan::all(), 2, true).unwrap();
        assert_eq!(page[0].key, b"k3".to_vec());
        assert!(more);
        // Descending, the end stays exclusive.
        let span = KeySpan {
            start: b"k1".to_vec(),
            end: b"k3".to_vec(),
        };
        let (page, more) = e.scan(&span, 10, true).unwrap();
        let keys: Vec<_> = page.into_iter().map(|v| v.key).collect();
        assert_eq!((keys, more), (vec![b"k2".to_vec(), b"k1".to_vec()], false));
        let mut b = e.batch(1);
        b.delete_span(
            &e,
            &KeySpan {
                start: b"k2".to_vec(),
                end: Vec::new(),
            },
        );
        e.commit(b).unwrap();
        assert_eq!(e.keys_in(&KeySpan::all()).unwrap(), vec![b"k1".to_vec()]);
        assert_eq!(
            e.state_get(1, StateKey::Applied).unwrap(),
            Some(b"5".to_vec())
        );
    }
}
