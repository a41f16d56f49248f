//! shoal's storage engine: one RocksDB instance per node ("store").
//!
//! - [`keys`]: the one place that lays out keys: column families, the prefix byte that
//!   separates node-local from replicated keys, `range_id | index` log keys, data keys.
//! - [`engine`]: [`Engine`], the store. It offers what the Raft layer needs in terms of
//!   bytes and ranges: log append (an unsynced write batch per call, made durable by a
//!   shared fsync of the write-ahead log), truncation and purge, small per-range Raft
//!   state values, and [`DataBatch`]es that apply data and the applied state atomically.
//! - [`mvcc`]: reads of the user keys' versions: a key or a scan as a read at a
//!   timestamp sees it (or the newest), locks, a key's version records.
//! - [`gc`]: garbage collection of old versions behind a safe point, by a compaction
//!   filter of the data column family.
//! - [`data`]: reads of the rest of the replicated data (span sizes, system keys, a
//!   range's own keys) and a destroyed replica's removal.
//! - [`snapshot`]: range snapshots written from a RocksDB snapshot into a checksummed
//!   file, streamed record by record (never the whole range in memory), and installed
//!   from such a file.
//!
//! Nothing above this crate names a RocksDB type.

pub mod data;
pub mod engine;
pub mod gc;
pub mod keys;
pub mod mvcc;
pub mod snapshot;

pub use engine::{DataBatch, Engine, EngineOptions, KeySpan, SpanStats, StateKey, Versioned};
pub use gc::GcState;
pub use keys::VersionKind;
pub use mvcc::{VersionRecord, LATEST};
pub use snapshot::SnapshotStats;

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
