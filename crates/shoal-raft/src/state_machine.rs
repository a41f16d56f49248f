//! A range's state machine: applies commands to the store and keeps its snapshots.
//!
//! Snapshots are files under `<snapshot dir>/range-<id>/`, written from a RocksDB
//! snapshot by the storage engine. The current snapshot's metadata and file name are
//! kept in the range's Raft state. Installing a snapshot first records its intent
//! ([`StateKey::Installing`]); a node that crashes mid-install installs it again when
//! it reopens the range.

use std::io;
use std::path::{Path, PathBuf};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use shoal_storage::{keys, Engine, KeySpan, StateKey};

use crate::codec::{decode, encode, io_err};
use crate::command::{self, CommandResponse};
use crate::failpoints;
use crate::range::RangeDescriptor;
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// A snapshot's data: a file written by the storage engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// What the range's Raft state records of its current snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub file: String,
}

/// The applied state, written in the same batch as the data it describes.
type Applied = (Option<LogId>, StoredMembership);

/// A range's state machine. Clones share the store.
#[derive(Debug, Clone)]
pub struct StateMachine {
    engine: Engine,
    range_id: u64,
    span: KeySpan,
    /// The meta range also replicates the system keys.
    with_system: bool,
    dir: PathBuf,
}

impl StateMachine {
    /// Opens the state machine of `range_id` covering `span`, keeping snapshots under
    /// `snapshot_root`. Finishes a snapshot install a crash interrupted.
    pub fn open(
        engine: Engine,
        range_id: u64,
        span: KeySpan,
        snapshot_root: &Path,
    ) -> io::Result<Self> {
        let dir = snapshot_root.join(format!("range-{range_id}"));
        std::fs::create_dir_all(dir.join("incoming"))?;
        let sm = Self {
            engine,
            range_id,
            span,
            with_system: range_id == crate::FIRST_RANGE_ID,
            dir,
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
        Ok(sm)
    }

    pub fn range_id(&self) -> u64 {
        self.range_id
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

    /// The range's descriptor as the meta range's system keys hold it (only the meta
    /// range holds descriptors until ranges split).
    pub fn descriptor(&self) -> io::Result<Option<RangeDescriptor>> {
        let key = keys::range_descriptor_key(self.range_id);
        match self.engine.get_system(&key).map_err(io_err)? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    /// The stored descriptor or, in a store from before descriptors were kept, the one
    /// `membership` (the range's current one) describes, until its next change
    /// writes it down.
    pub fn descriptor_or(&self, membership: &StoredMembership) -> io::Result<RangeDescriptor> {
        Ok(self.descriptor()?.unwrap_or_else(|| {
            RangeDescriptor::new(self.range_id, &self.span).with_membership(membership)
        }))
    }

    /// Rewrites the descriptor for `membership`, in the batch of the membership entry.
    fn record_descriptor(
        &self,
        batch: &mut shoal_storage::DataBatch,
        membership: &StoredMembership,
    ) -> io::Result<()> {
        if !self.with_system {
            return Ok(());
        }
        let current = self
            .descriptor()?
            .unwrap_or_else(|| RangeDescriptor::new(self.range_id, &self.span));
        let next = current.with_membership(membership);
        batch.put_system(
            &self.engine,
            &keys::range_descriptor_key(self.range_id),
            &encode(&next)?,
        );
        Ok(())
    }

    /// Installs the snapshot recorded in `stored`: data and applied state, then the
    /// snapshot record, then clears the intent.
    fn install_stored(&self, stored: &StoredSnapshot) -> io::Result<()> {
        let path = self.dir.join(&stored.file);
        let applied: Applied = (stored.meta.last_log_id, stored.meta.last_membership.clone());
        self.engine
            .install_range_snapshot(
                self.range_id,
                &self.span,
                self.with_system,
                &path,
                &encode(&applied)?,
            )
            .map_err(io_err)?;
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

/// Builds a snapshot from a RocksDB snapshot of the range.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    sm: StateMachine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let sm = self.sm.clone();
        tokio::task::spawn_blocking(move || {
            let tmp = sm.dir.join(format!("building-{:08x}.snap", rand::random::<u32>()));
            let stats = sm
                .engine
                .write_range_snapshot(sm.range_id, &sm.span, sm.with_system, &tmp)
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
            tracing::info!(range_id = sm.range_id, records = stats.records, bytes = stats.bytes, file = %file, "snapshot built");
            Ok(Snapshot {
                meta,
                snapshot: SnapshotFile {
                    path: sm.dir.join(file),
                },
            })
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<Applied, io::Error> {
        self.applied()
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let (_, mut membership) = self.applied()?;
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.log_id.index;
            let mut batch = self.engine.batch(self.range_id);
            let resp = match &entry.payload {
                EntryPayload::Blank => CommandResponse {
                    index,
                    ..Default::default()
                },
                EntryPayload::Normal(cmd) => {
                    let max_member = membership
                        .membership()
                        .nodes()
                        .map(|(id, _)| *id)
                        .max()
                        .unwrap_or(0);
                    command::apply(&self.engine, &mut batch, index, cmd, max_member)
                        .map_err(io_err)?
                }
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    self.record_descriptor(&mut batch, &membership)?;
                    CommandResponse {
                        index,
                        ..Default::default()
                    }
                }
            };
            let applied: Applied = (Some(entry.log_id), membership.clone());
            batch.put_state(&self.engine, StateKey::Applied, &encode(&applied)?);
            failpoints::hit("apply-before-commit")?;
            self.engine.commit(batch).map_err(io_err)?;
            failpoints::hit("apply-after-commit")?;
            if let Some(r) = responder {
                r.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { sm: self.clone() }
    }

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
