//! A range's state machine: applies commands to the store and keeps its snapshots.
//!
//! It owns the range's descriptor (one of the range's replicated keys): a membership
//! entry rewrites its replicas, a split cuts its span and creates the right half's
//! replica state in the same write batch. Every data command is checked against the
//! descriptor when it applies, so a write that was routed before a split and committed
//! after it is refused rather than written into the other half's keys.
//!
//! Snapshots are files under `<snapshot dir>/range-<id>/`, written from a RocksDB
//! snapshot by the storage engine. The current snapshot's metadata and file name are
//! kept in the range's Raft state. Installing a snapshot first records its intent
//! ([`StateKey::Installing`]); a node that crashes mid-install installs it again when
//! it reopens the range.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use shoal_storage::{keys, Engine, KeySpan, StateKey};

use crate::apply::{Apply, Effect};
use crate::codec::{decode, encode, io_err};
use crate::command::CommandResponse;
use crate::failpoints;
use crate::index::RangeIndex;
use crate::range::{Frozen, RangeDescriptor, FIRST_RANGE_ID};
use crate::types::{LogId, Snapshot, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig};

/// What a state machine tells its node about ranges that appear.
#[derive(Debug, Clone)]
pub enum RangeEvent {
    /// A split applied here created the right half's replica on this node.
    Split { left: u64, right: RangeDescriptor },
    /// A merge applied here: range `left` absorbed `right`, whose replica on this node
    /// is to be retired (its keys are `left`'s now).
    Merged { left: u64, right: u64 },
}

/// What the range's Raft state records of its current snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub file: String,
}

/// The applied state, written in the same batch as the data it describes.
type Applied = (Option<LogId>, StoredMembership);

/// A range's state machine. Clones share the store and the descriptor.
#[derive(Debug, Clone)]
pub struct StateMachine {
    engine: Engine,
    range_id: u64,
    /// The meta range also replicates the system keys.
    with_system: bool,
    dir: PathBuf,
    /// The applied descriptor; `None` until the replica has one (an empty replica
    /// waiting for its first snapshot).
    desc: Arc<RwLock<Option<Arc<RangeDescriptor>>>>,
    /// The range's freeze for a merge, as applied.
    frozen: Arc<RwLock<Option<Frozen>>>,
    /// Bytes of data applied since the size of the range was last measured.
    written: Arc<AtomicU64>,
    /// Bytes applied since the last snapshot was built or installed, and the size of
    /// that snapshot's file: what [`crate::replica::snapshot_due`] weighs.
    since_snapshot: Arc<AtomicU64>,
    snapshot_bytes: Arc<AtomicU64>,
    /// Entries applied that may have written a transaction's lock (prewrites), and
    /// snapshots installed: a range that had no lock has none while this stays put.
    lock_writes: Arc<AtomicU64>,
    index: Option<Arc<RangeIndex>>,
    events: Option<tokio::sync::mpsc::UnboundedSender<RangeEvent>>,
}

impl StateMachine {
    /// The directory of `range_id`'s snapshots under `snapshot_root`.
    pub fn snapshot_dir(snapshot_root: &Path, range_id: u64) -> PathBuf {
        snapshot_root.join(format!("range-{range_id}"))
    }

    /// Opens the state machine of `range_id`, keeping snapshots under `snapshot_root`.
    /// Finishes a snapshot install a crash interrupted.
    pub fn open(engine: Engine, range_id: u64, snapshot_root: &Path) -> io::Result<Self> {
        Self::open_with(engine, range_id, snapshot_root, None, None)
    }

    /// As [`StateMachine::open`], keeping `index` up to date with the range's span and
    /// reporting splits to `events`.
    pub fn open_with(
        engine: Engine,
        range_id: u64,
        snapshot_root: &Path,
        index: Option<Arc<RangeIndex>>,
        events: Option<tokio::sync::mpsc::UnboundedSender<RangeEvent>>,
    ) -> io::Result<Self> {
        let dir = Self::snapshot_dir(snapshot_root, range_id);
        std::fs::create_dir_all(dir.join("incoming"))?;
        let sm = Self {
            engine,
            range_id,
            with_system: range_id == FIRST_RANGE_ID,
            dir,
            desc: Arc::new(RwLock::new(None)),
            frozen: Arc::new(RwLock::new(None)),
            written: Arc::new(AtomicU64::new(0)),
            since_snapshot: Arc::new(AtomicU64::new(0)),
            snapshot_bytes: Arc::new(AtomicU64::new(0)),
            lock_writes: Arc::new(AtomicU64::new(0)),
            index,
            events,
        };
        if let Some(bytes) = sm
            .engine
            .state_get(range_id, StateKey::Installing)
            .map_err(io_err)?
        {
            let stored: StoredSnapshot = decode(&bytes)?;
            tracing::warn!(range_id, file = %stored.file, "finishing a snapshot install interrupted by a restart");
            sm.install_stored(&stored)?;
        }
        // Files of interrupted transfers and superseded snapshots.
        sm.remove_files_except(sm.current()?.map(|s| s.file).as_deref(), true)?;
        let stored = match sm.stored_descriptor()? {
            Some(d) => Some(d),
            None => sm.legacy_meta_descriptor()?,
        };
        sm.set_descriptor(stored);
        sm.load_frozen()?;
        // What was applied since the snapshot before this process is not known: it
        // counts as enough, and the entry count alone decides the next snapshot.
        let snap_bytes = match sm.current()? {
            Some(s) => std::fs::metadata(sm.dir.join(&s.file)).map_or(0, |m| m.len()),
            None => 0,
        };
        sm.snapshot_bytes.store(snap_bytes, Ordering::Relaxed);
        sm.since_snapshot.store(snap_bytes, Ordering::Relaxed);
        Ok(sm)
    }

    /// A meta range written before descriptors were kept among the range's own keys:
    /// the descriptor its applied membership describes, over every key (it never split),
    /// until its next membership change writes one down.
    fn legacy_meta_descriptor(&self) -> io::Result<Option<RangeDescriptor>> {
        if !self.with_system {
            return Ok(None);
        }
        let (applied, membership) = self.applied()?;
        if applied.is_none() || membership.log_id().is_none() {
            return Ok(None);
        }
        Ok(Some(with_membership(
            &RangeDescriptor::new(self.range_id, &KeySpan::all()),
            &membership,
        )))
    }

    pub fn range_id(&self) -> u64 {
        self.range_id
    }

    /// The range's applied descriptor, if the replica has one yet.
    pub fn descriptor(&self) -> Option<RangeDescriptor> {
        self.with_descriptor(|d| d.cloned())
    }

    /// The range's applied descriptor, shared (no copy of its keys).
    pub fn shared_descriptor(&self) -> Option<Arc<RangeDescriptor>> {
        self.desc.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `f` of the range's applied descriptor, read in place (no copy).
    pub fn with_descriptor<T>(&self, f: impl FnOnce(Option<&RangeDescriptor>) -> T) -> T {
        f(self
            .desc
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref())
    }

    /// The range's freeze for a merge, if it is frozen.
    pub fn frozen(&self) -> Option<Frozen> {
        *self.frozen.read().unwrap_or_else(|p| p.into_inner())
    }

    fn set_frozen(&self, f: Option<Frozen>) {
        *self.frozen.write().unwrap_or_else(|p| p.into_inner()) = f;
    }

    fn load_frozen(&self) -> io::Result<()> {
        self.set_frozen(crate::merge::frozen(&self.engine, self.range_id)?);
        Ok(())
    }

    /// How many entries that may have written a lock were applied, and snapshots
    /// installed, since the replica opened.
    pub fn lock_writes(&self) -> u64 {
        self.lock_writes.load(Ordering::Relaxed)
    }

    pub fn take_written(&self) -> u64 {
        self.written.swap(0, Ordering::Relaxed)
    }

    /// Bytes applied since the last snapshot, and the size of that snapshot's file.
    pub fn snapshot_progress(&self) -> (u64, u64) {
        (
            self.since_snapshot.load(Ordering::Relaxed),
            self.snapshot_bytes.load(Ordering::Relaxed),
        )
    }

    /// Records a new current snapshot of `bytes`.
    fn snapshot_taken(&self, bytes: u64) {
        self.snapshot_bytes.store(bytes, Ordering::Relaxed);
    }

    fn set_descriptor(&self, d: Option<RangeDescriptor>) {
        let d = d.map(Arc::new);
        *self.desc.write().unwrap_or_else(|p| p.into_inner()) = d.clone();
        // After the descriptor: whoever saw the index's count of changes move sees it.
        if let Some(index) = &self.index {
            index.set(self.range_id, d.as_deref());
        }
    }

    fn stored_descriptor(&self) -> io::Result<Option<RangeDescriptor>> {
        match self
            .engine
            .get_range_local(self.range_id, keys::DESCRIPTOR_SUFFIX)
            .map_err(io_err)?
        {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    fn applied(&self) -> io::Result<Applied> {
        match self
            .engine
            .state_get(self.range_id, StateKey::Applied)
            .map_err(io_err)?
        {
            Some(b) => decode(&b),
            None => Ok((None, StoredMembership::default())),
        }
    }

    fn current(&self) -> io::Result<Option<StoredSnapshot>> {
        match self
            .engine
            .state_get(self.range_id, StateKey::SnapshotMeta)
            .map_err(io_err)?
        {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Removes snapshot files other than `keep`. With `transient`, also files of
    /// builds and transfers in progress: only when nothing else can be writing them.
    fn remove_files_except(&self, keep: Option<&str>, transient: bool) -> io::Result<()> {
        let mut dirs = vec![self.dir.clone()];
        if transient {
            dirs.push(self.dir.join("incoming"));
        }
        for dir in dirs {
            for ent in std::fs::read_dir(&dir)? {
                let ent = ent?;
                let name = ent.file_name().to_string_lossy().into_owned();
                let in_progress = name.starts_with("building-");
                if ent.file_type()?.is_file()
                    && Some(name.as_str()) != keep
                    && (transient || !in_progress)
                {
                    std::fs::remove_file(ent.path())?;
                }
            }
        }
        Ok(())
    }

    /// Where an incoming snapshot of this range is received before it is installed.
    pub fn incoming_path(&self) -> PathBuf {
        self.dir
            .join("incoming")
            .join(format!("{:016x}.snap", rand::random::<u64>()))
    }

    fn snapshot_name(meta: &SnapshotMeta) -> String {
        let (term, index) = meta
            .last_log_id
            .as_ref()
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        format!("{term}-{index}-{:08x}.snap", rand::random::<u32>())
    }

    /// Rewrites the descriptor for `membership`, in the batch of the membership entry.
    fn record_membership(
        &self,
        batch: &mut shoal_storage::DataBatch,
        membership: &StoredMembership,
    ) -> io::Result<RangeDescriptor> {
        let current = self
            .descriptor()
            .unwrap_or_else(|| RangeDescriptor::new(self.range_id, &KeySpan::all()));
        let next = with_membership(&current, membership);
        batch.put_range_local(
            &self.engine,
            self.range_id,
            keys::DESCRIPTOR_SUFFIX,
            &encode(&next)?,
        );
        Ok(next)
    }

    /// The descriptor a snapshot file of `range_id` carries.
    pub fn snapshot_descriptor(range_id: u64, path: &Path) -> io::Result<Option<RangeDescriptor>> {
        let key = keys::range_local_key(range_id, keys::DESCRIPTOR_SUFFIX);
        match Engine::snapshot_value(path, &key).map_err(io_err)? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Installs the snapshot recorded in `stored`: data and applied state, then the
    /// snapshot record, then clears the intent.
    fn install_stored(&self, stored: &StoredSnapshot) -> io::Result<()> {
        let path = self.dir.join(&stored.file);
        let applied: Applied = (stored.meta.last_log_id, stored.meta.last_membership.clone());
        let desc = Self::snapshot_descriptor(self.range_id, &path)?;
        let span = desc
            .as_ref()
            .map_or_else(KeySpan::all, RangeDescriptor::span);
        let old = self.descriptor().map(|d| d.span());
        self.engine
            .install_range_snapshot(
                self.range_id,
                &span,
                self.with_system,
                &path,
                &encode(&applied)?,
                old.as_ref().filter(|o| **o != span),
            )
            .map_err(io_err)?;
        self.set_descriptor(desc);
        self.load_frozen()?;
        failpoints::hit("snapshot-install-after-data")?;
        self.engine
            .state_put(
                self.range_id,
                StateKey::SnapshotMeta,
                &encode(stored)?,
                true,
            )
            .map_err(io_err)?;
        self.engine
            .state_delete(self.range_id, StateKey::Installing, true)
            .map_err(io_err)?;
        Ok(())
    }
}

/// `d` once `membership` is applied: its voters and learners, and the next `conf_ver`.
fn with_membership(d: &RangeDescriptor, membership: &StoredMembership) -> RangeDescriptor {
    let m = membership.membership();
    d.with_replicas(&m.voter_ids().collect(), m.nodes().map(|(id, _)| *id))
}

/// Builds a snapshot from a RocksDB snapshot of the range.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    sm: StateMachine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let sm = self.sm.clone();
        // Counted from the RocksDB snapshot the file is written from, near enough: what
        // applies meanwhile counts towards the next one.
        let since = sm.since_snapshot.swap(0, Ordering::Relaxed);
        let built = tokio::task::spawn_blocking(move || {
            let tmp = sm.dir.join(format!("building-{:08x}.snap", rand::random::<u32>()));
            let stats = sm
                .engine
                .write_range_snapshot(sm.range_id, sm.with_system, &tmp, |desc| match desc {
                    Some(b) => decode::<RangeDescriptor>(b)
                        .map(|d| d.span())
                        .map_err(|e| shoal_storage::StorageError::Corrupt {
                            what: "range descriptor",
                            detail: e.to_string(),
                        }),
                    None => Ok(KeySpan::all()),
                })
                .map_err(io_err)?;
            let (last_log_id, last_membership): Applied = match stats.applied {
                Some(b) => decode(&b)?,
                None => (None, StoredMembership::default()),
            };
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
            };
            let file = StateMachine::snapshot_name(&meta);
            failpoints::hit("snapshot-build")?;
            std::fs::rename(&tmp, sm.dir.join(&file))?;
            let stored = StoredSnapshot {
                meta: meta.clone(),
                file: file.clone(),
            };
            sm.engine
                .state_put(sm.range_id, StateKey::SnapshotMeta, &encode(&stored)?, true)
                .map_err(io_err)?;
            sm.remove_files_except(Some(&file), false)?;
            let path = sm.dir.join(file);
            sm.snapshot_taken(std::fs::metadata(&path)?.len());
            tracing::info!(range_id = sm.range_id, records = stats.records, bytes = stats.bytes, file = %path.display(), "snapshot built");
            Ok(Snapshot {
                meta,
                snapshot: SnapshotFile { path },
            })
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        if built.is_err() {
            self.sm.since_snapshot.fetch_add(since, Ordering::Relaxed);
        }
        built
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<Applied, io::Error> {
        self.applied()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(range_id = self.range_id))]
    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let (_, mut membership) = self.applied()?;
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.log_id.index;
            let mut batch = self.engine.batch(self.range_id);
            let mut new_desc = None;
            let mut split = None;
            let mut merged = None;
            let mut frozen = None;
            let resp = match &entry.payload {
                EntryPayload::Blank => CommandResponse {
                    version: index,
                    ..Default::default()
                },
                EntryPayload::Normal(cmd) => {
                    if cmd.may_lock() {
                        self.lock_writes.fetch_add(1, Ordering::Relaxed);
                    }
                    let (resp, effect) = self.with_descriptor(|descriptor| {
                        let mut a = Apply {
                            engine: &self.engine,
                            batch: &mut batch,
                            range_id: self.range_id,
                            log_id: entry.log_id,
                            membership: &membership,
                            descriptor,
                            ts: None,
                            frozen: self.frozen(),
                        };
                        crate::dispatch::apply(&mut a, cmd)
                    })?;
                    match effect {
                        Effect::Split { left, right } => {
                            new_desc = Some(left.clone());
                            split = Some((left, right));
                        }
                        Effect::Merged { left, right_id } => {
                            new_desc = Some(left);
                            merged = Some(right_id);
                        }
                        Effect::Frozen(f) => frozen = Some(f),
                        Effect::None => {}
                    }
                    resp
                }
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    new_desc = Some(self.record_membership(&mut batch, &membership)?);
                    CommandResponse {
                        version: index,
                        ..Default::default()
                    }
                }
            };
            let applied: Applied = (Some(entry.log_id), membership.clone());
            batch.put_state(&self.engine, StateKey::Applied, &encode(&applied)?);
            failpoints::hit("apply-before-commit")?;
            let size = batch.size_in_bytes() as u64;
            self.engine.commit(batch).map_err(io_err)?;
            failpoints::hit("apply-after-commit")?;
            if let (EntryPayload::Normal(cmd), Some(ranges)) = (&entry.payload, &self.index) {
                if cmd.writes_descriptors() {
                    ranges.note_change();
                }
            }
            self.written.fetch_add(size, Ordering::Relaxed);
            self.since_snapshot.fetch_add(size, Ordering::Relaxed);
            if new_desc.is_some() {
                self.set_descriptor(new_desc);
            }
            if let Some(f) = frozen {
                tracing::info!(
                    range_id = self.range_id,
                    ?f,
                    "range frozen for a merge (None: thawed)"
                );
                self.set_frozen(f);
            }
            if let Some(right) = merged {
                tracing::info!(range_id = self.range_id, right, "range merged");
                if let Some(ev) = &self.events {
                    let _ = ev.send(RangeEvent::Merged {
                        left: self.range_id,
                        right,
                    });
                }
            }
            if let Some((left, right)) = split {
                tracing::info!(range_id = self.range_id, right = right.range_id, at = ?String::from_utf8_lossy(&right.start), "range split");
                if let Some(ev) = &self.events {
                    let _ = ev.send(RangeEvent::Split {
                        left: left.range_id,
                        right,
                    });
                }
            }
            if let Some(r) = responder {
                r.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { sm: self.clone() }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(range_id = self.range_id))]
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let sm = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            let file = StateMachine::snapshot_name(&meta);
            let dest = sm.dir.join(&file);
            // A received file is ours to move; any other (a local test's) is copied.
            if snapshot.path.parent() == Some(sm.dir.join("incoming").as_path()) {
                std::fs::rename(&snapshot.path, &dest)?;
            } else {
                std::fs::copy(&snapshot.path, &dest)?;
                std::fs::File::open(&dest)?.sync_all()?;
            }
            std::fs::File::open(&sm.dir)?.sync_all()?;
            // Only a file that verifies becomes an install intent: a restart finishes
            // what the intent names, and could not with a bad file.
            Engine::verify_snapshot_file(&dest).map_err(io_err)?;
            let stored = StoredSnapshot { meta, file };
            sm.engine
                .state_put(sm.range_id, StateKey::Installing, &encode(&stored)?, true)
                .map_err(io_err)?;
            failpoints::hit("snapshot-install-before-data")?;
            sm.install_stored(&stored)?;
            sm.remove_files_except(Some(&stored.file), false)?;
            sm.snapshot_taken(std::fs::metadata(sm.dir.join(&stored.file))?.len());
            sm.since_snapshot.store(0, Ordering::Relaxed);
            sm.lock_writes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(range_id = sm.range_id, file = %stored.file, "snapshot installed");
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let Some(stored) = self.current()? else {
            return Ok(None);
        };
        let path = self.dir.join(&stored.file);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: SnapshotFile { path },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_storage::EngineOptions;

    #[test]
    fn a_meta_range_stored_before_descriptors_were_kept_gets_one_from_its_membership() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&dir.path().join("store"), &EngineOptions::default()).unwrap();
        let nodes: std::collections::BTreeSet<u64> = [1, 2, 3].into();
        let m = openraft::Membership::new_with_defaults(vec![nodes], []);
        let log_id = LogId::new(
            openraft::vote::leader_id_adv::LeaderId {
                term: 1,
                node_id: 1,
            },
            7,
        );
        let applied: Applied = (Some(log_id), StoredMembership::new(Some(log_id), m));
        engine
            .state_put(1, StateKey::Applied, &encode(&applied).unwrap(), true)
            .unwrap();
        let snaps = dir.path().join("snapshots");
        let meta = StateMachine::open(engine.clone(), 1, &snaps).unwrap();
        let d = meta.descriptor().expect("a descriptor from the membership");
        assert!(d.start.is_empty() && d.end.is_empty());
        let ids: Vec<u64> = d.replicas.iter().map(|r| r.node_id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        // Any other range with no descriptor has none: it waits for its snapshot.
        engine
            .state_put(5, StateKey::Applied, &encode(&applied).unwrap(), true)
            .unwrap();
        assert_eq!(
            StateMachine::open(engine, 5, &snaps).unwrap().descriptor(),
            None
        );
    }
}
