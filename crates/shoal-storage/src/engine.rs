//! [`Engine`]: the node's RocksDB store.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use crate::gc::{GcState, VersionFilterFactory};
use crate::keys::{self, VersionKind};
use crate::{Result, StorageError};

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Size of each memtable of the data column family, in bytes.
    pub data_write_buffer: usize,
    /// Size of each memtable of the log column family, in bytes.
    pub log_write_buffer: usize,
    /// One block cache shared by the column families, of this many bytes (`None`:
    /// RocksDB's own, per column family).
    pub block_cache: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            data_write_buffer: 64 << 20,
            log_write_buffer: 32 << 20,
            block_cache: None,
        }
    }
}

/// Memtables a column family may hold at once (RocksDB's `max_write_buffer_number`:
/// one filling, one flushing).
const MEMTABLES_PER_CF: usize = 2;

impl EngineOptions {
    /// Sized for a process allowed `memory_limit` bytes (its container's limit;
    /// `None`: no limit, the defaults): the memtables at most 3/16 of it, the block
    /// cache 1/8, within the defaults' sizes, so the store's memory leaves the rest
    /// to the ranges, connections and the page cache.
    pub fn within(memory_limit: Option<u64>) -> Self {
        let Some(limit) = memory_limit else {
            return Self::default();
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let d = Self::default();
        Self {
            data_write_buffer: (limit / 16).clamp(4 << 20, d.data_write_buffer),
            log_write_buffer: (limit / 32).clamp(2 << 20, d.log_write_buffer),
            block_cache: Some((limit / 8).clamp(8 << 20, 256 << 20)),
        }
    }

    /// The most the memtables of the log and data column families hold at once (the
    /// Raft state's keeps RocksDB's own write buffer size, sized by neither).
    pub fn memtables_max(&self) -> usize {
        MEMTABLES_PER_CF * (self.data_write_buffer + self.log_write_buffer)
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
    pub(crate) db: Arc<DB>,
    gc: Arc<GcState>,
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

pub(crate) fn synced() -> WriteOptions {
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
        log_opts.set_max_write_buffer_number(MEMTABLES_PER_CF as i32);
        let mut data_opts = Options::default();
        data_opts.set_write_buffer_size(opts.data_write_buffer);
        data_opts.set_max_write_buffer_number(MEMTABLES_PER_CF as i32);
        let mut state_opts = Options::default();
        if let Some(bytes) = opts.block_cache {
            let cache = rocksdb::Cache::new_lru_cache(bytes);
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            for o in [&mut log_opts, &mut data_opts, &mut state_opts] {
                o.set_block_based_table_factory(&table);
            }
        }
        data_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let gc = Arc::new(GcState::default());
        data_opts.set_compaction_filter_factory(VersionFilterFactory::new(gc.clone()));
        let cfs = vec![
            ColumnFamilyDescriptor::new(keys::CF_RAFT_LOG, log_opts),
            ColumnFamilyDescriptor::new(keys::CF_RAFT_STATE, state_opts),
            ColumnFamilyDescriptor::new(keys::CF_DATA, data_opts),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        let engine = Self {
            db: Arc::new(db),
            gc,
        };
        engine.upgrade_format()?;
        Ok(engine)
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

    /// Garbage collection of old versions: its safe point, what it dropped.
    pub fn gc(&self) -> &GcState {
        &self.gc
    }

    /// Compacts the user keys of `span` now (garbage collection runs as files are
    /// rewritten; this rewrites them at once).
    pub fn compact_span(&self, span: &KeySpan) {
        let (lo, hi) = keys::user_span(&span.start, &span.end);
        self.db
            .compact_range_cf(self.cf(keys::CF_DATA), Some(lo), Some(hi));
    }

    /// Brings a store of the single-version format (one value per user key, no format
    /// marker) to this version's: every user key's value becomes its version, in one
    /// synced batch with the marker, so a crash leaves either format whole.
    fn upgrade_format(&self) -> Result<()> {
        let marker = keys::store_format_key();
        let default = self.cf(keys::CF_DEFAULT);
        if self.db.get_cf(default, &marker)?.is_some() {
            return Ok(());
        }
        let data = self.cf(keys::CF_DATA);
        let (lo, hi) = (vec![keys::USER_PREFIX], vec![keys::USER_PREFIX + 1]);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(hi);
        let mut batch = WriteBatch::default();
        let mut upgraded = 0u64;
        for item in self
            .db
            .iterator_cf_opt(data, ro, IteratorMode::From(&lo, Direction::Forward))
        {
            let (k, v) = item?;
            let (nk, nv) =
                keys::upgrade_v1_record(&k, &v).ok_or_else(|| StorageError::Corrupt {
                    what: "single-version record",
                    detail: format!("data key {k:?} holds {} bytes", v.len()),
                })?;
            batch.delete_cf(data, &k);
            batch.put_cf(data, nk, nv);
            upgraded += 1;
        }
        batch.put_cf(default, &marker, [keys::STORE_FORMAT]);
        self.db.write_opt(batch, &synced())?;
        if upgraded > 0 {
            tracing::info!(keys = upgraded, "store upgraded to multi-version records");
        }
        Ok(())
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

/// Data writes and Raft state of one range, applied atomically by [`Engine::commit`].
pub struct DataBatch {
    range_id: u64,
    pub(crate) batch: WriteBatch,
}

impl DataBatch {
    /// Version `ts` of a user key: `value`, written by a transaction that started at
    /// `start_ts` (`ts` itself for a single write).
    pub fn put(&mut self, engine: &Engine, key: &[u8], ts: u64, start_ts: u64, value: &[u8]) {
        self.put_version(engine, key, ts, VersionKind::Put, start_ts, value);
    }

    /// Version `ts` of a user key: deleted.
    pub fn delete(&mut self, engine: &Engine, key: &[u8], ts: u64, start_ts: u64) {
        self.put_version(engine, key, ts, VersionKind::Delete, start_ts, b"");
    }

    /// A version record of a user key.
    pub fn put_version(
        &mut self,
        engine: &Engine,
        key: &[u8],
        ts: u64,
        kind: VersionKind,
        start_ts: u64,
        value: &[u8],
    ) {
        self.batch.put_cf(
            engine.cf(keys::CF_DATA),
            keys::mvcc_key(key, ts),
            keys::encode_version(kind, start_ts, value),
        );
    }

    /// The lock of a user key (encoded by the transaction layer).
    pub fn put_lock(&mut self, engine: &Engine, key: &[u8], lock: &[u8]) {
        self.batch
            .put_cf(engine.cf(keys::CF_DATA), keys::lock_key(key), lock);
    }

    pub fn delete_lock(&mut self, engine: &Engine, key: &[u8]) {
        self.batch
            .delete_cf(engine.cf(keys::CF_DATA), keys::lock_key(key));
    }

    pub fn put_system(&mut self, engine: &Engine, key: &[u8], value: &[u8]) {
        self.batch
            .put_cf(engine.cf(keys::CF_DATA), keys::system_key(key), value);
    }

    pub fn delete_system(&mut self, engine: &Engine, key: &[u8]) {
        self.batch
            .delete_cf(engine.cf(keys::CF_DATA), keys::system_key(key));
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

    /// Deletes a Raft state value of another range (the right half of a merge, which
    /// the batch of the merge itself retires).
    pub fn delete_state_of(&mut self, engine: &Engine, range_id: u64, key: StateKey) {
        self.batch.delete_cf(
            engine.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, key as u8),
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
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
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
mod tests;
