//! A range's Raft log and vote, kept in the node's store.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::time::{Duration, Instant};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use shoal_storage::{Engine, StateKey};

use crate::codec::{decode, encode, io_err};
use crate::types::{Entry, LogId, TypeConfig, Vote};
use crate::wal_sync::WalSyncer;

/// A commit index is saved at most this often per range: any commit index it saved is
/// a correct (older) one to re-apply up to on restart, and the rest is learned from
/// the leader. Saving every advance wrote once per entry per range under load spread
/// over many ranges.
const SAVE_COMMITTED_EVERY: Duration = Duration::from_secs(1);

/// A range's log store. Clones share the store.
#[derive(Debug, Clone)]
pub struct LogStore {
    engine: Engine,
    range_id: u64,
    syncer: WalSyncer,
    /// When the commit index was last saved.
    committed_saved: Option<Instant>,
}

impl LogStore {
    pub fn new(engine: Engine, range_id: u64, syncer: WalSyncer) -> Self {
        Self {
            engine,
            range_id,
            syncer,
            committed_saved: None,
        }
    }

    fn state<T: serde::de::DeserializeOwned>(&self, key: StateKey) -> io::Result<Option<T>> {
        match self.engine.state_get(self.range_id, key).map_err(io_err)? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Runs blocking store I/O off the async runtime's worker threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Engine, u64) -> shoal_storage::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (engine, range_id) = (self.engine.clone(), self.range_id);
        tokio::task::spawn_blocking(move || f(engine, range_id))
            .await
            .map_err(io::Error::other)?
            .map_err(io_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.saturating_add(1),
            Bound::Excluded(x) => *x,
            Bound::Unbounded => u64::MAX,
        };
        let raw = self
            .engine
            .log_entries(self.range_id, start, end)
            .map_err(io_err)?;
        let mut out = Vec::with_capacity(raw.len());
        for (index, bytes) in raw {
            let entry: Entry = decode(&bytes)?;
            if entry.index() != index {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("log key {index} holds entry {}", entry.index()),
                ));
            }
            out.push(entry);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.state(StateKey::Vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.state(StateKey::LastPurged)?;
        let last = match self.engine.log_last(self.range_id).map_err(io_err)? {
            Some((_, bytes)) => Some(decode::<Entry>(&bytes)?.log_id()),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = encode(vote)?;
        self.blocking(move |e, r| e.state_put(r, StateKey::Vote, &bytes, true))
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced, and not every time (SAVE_COMMITTED_EVERY): an older commit index
        // only means re-learning the rest from the leader.
        if self
            .committed_saved
            .is_some_and(|at| at.elapsed() < SAVE_COMMITTED_EVERY)
        {
            return Ok(());
        }
        self.committed_saved = Some(Instant::now());
        let bytes = encode(&committed)?;
        self.engine
            .state_put(self.range_id, StateKey::Committed, &bytes, false)
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.state::<Option<LogId>>(StateKey::Committed)?.flatten())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(range_id = self.range_id))]
    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.index(), encode(&e)?));
        }
        crate::failpoints::hit("log-append")?;
        // One write batch for the whole call, readable when it returns; reported
        // flushed only once the write-ahead log is synced (one fsync shared with every
        // append queued meanwhile, of any range).
        self.engine
            .log_append_unsynced(
                self.range_id,
                encoded.iter().map(|(i, b)| (*i, b.as_slice())),
            )
            .map_err(io_err)?;
        self.syncer.after_sync(callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.blocking(move |e, r| e.log_truncate(r, from)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let bytes = encode(&log_id)?;
        let upto = log_id.index;
        self.blocking(move |e, r| e.log_purge(r, upto, &bytes))
            .await
    }
}
