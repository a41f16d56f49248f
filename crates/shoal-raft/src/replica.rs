//! [`Replica`]: one range's Raft instance and its stores; [`Router`]: the node's
//! replicas by range id.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::raft::linearizable_read::{Linearizer, ReadLogId};
use openraft::{Config, ReadPolicy, SnapshotPolicy};
use shoal_proto::error::{codes, detail};
use shoal_proto::v1::{error_detail, RaftMessage};
use shoal_storage::Engine;

use crate::log_store::LogStore;
use crate::network::{NetworkFactory, PeerPool};
use crate::state_machine::StateMachine;
use crate::types::{LinearizableReadError, NodeId, Raft, RaftError, TypeConfig};

/// Raft timing and log compaction of a node's replicas.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot once this many entries were applied since the last one (and
    /// enough bytes: see [`snapshot_due`]).
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot, for slow followers.
    pub keep_logs: u64,
    /// How the leader confirms a linearizable read: a read-index round to a quorum,
    /// or its lease (no round trip while the quorum's last acknowledgement is recent).
    pub lease_reads: bool,
}

impl Default for RaftOptions {
    fn default() -> Self {
        Self {
            heartbeat_ms: 150,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs: 10_000,
            keep_logs: 1_000,
            lease_reads: false,
        }
    }
}

impl RaftOptions {
    fn config(&self) -> Result<Config, openraft::ConfigError> {
        Config {
            cluster_name: "shoal".to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            // Snapshots are taken by `Replica::snapshot_if_due`, which weighs bytes
            // as well as entries.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.keep_logs,
            purge_batch_size: 256,
            install_snapshot_timeout: 60_000,
            enable_pre_vote: Some(true),
            // Replicate entries as soon as they are written, while the local fsync runs:
            // the leader's and the followers' fsyncs overlap instead of adding up.
            broadcast_submitted_on_append: Some(true),
            ..Default::default()
        }
        .validate()
    }
}

/// Past this many bytes applied since the last snapshot, a snapshot is due whatever the
/// entry count: a log of large values stays bounded.
pub const SNAPSHOT_LOG_BYTES: u64 = 16 << 20;

/// Whether a replica should build a snapshot, `entries` and `bytes` having been applied
/// since its last one, whose file holds `snapshot_bytes`.
///
/// A snapshot writes the whole range, so building one after a fixed number of entries
/// costs a range near its split size many times what the entries wrote (64 MiB per 10,000
/// small writes). One is due only once the log since the last holds at least half the
/// last snapshot's bytes, which bounds that cost to about twice the bytes written, and
/// once it holds `snapshot_logs` entries or [`SNAPSHOT_LOG_BYTES`] (the log's own bound).
pub fn snapshot_due(entries: u64, bytes: u64, snapshot_bytes: u64, snapshot_logs: u64) -> bool {
    bytes >= snapshot_bytes / 2 && (entries >= snapshot_logs || bytes >= SNAPSHOT_LOG_BYTES)
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("invalid raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("opening the range's state: {0}")]
    Io(#[from] std::io::Error),
    #[error("starting raft: {0}")]
    Fatal(#[from] openraft::errors::Fatal<crate::TypeConfig>),
}

/// What every replica of a node shares: the store and its log syncer, the peer
/// connections, the snapshot directory and the Raft options.
#[derive(Debug, Clone)]
pub struct ReplicaEnv {
    pub engine: Engine,
    pub syncer: crate::WalSyncer,
    pub pool: Arc<PeerPool>,
    pub snapshot_root: PathBuf,
    pub opts: RaftOptions,
    /// The node's ranges by span, kept up to date by the state machines.
    pub index: Arc<crate::RangeIndex>,
    /// Where state machines report new ranges (splits).
    pub events: tokio::sync::mpsc::UnboundedSender<crate::RangeEvent>,
}

/// Why a linearizable read cannot be served here now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// This node cannot confirm the read; the leader (when known) can.
    #[error("not the leader")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// Leadership cannot be confirmed with a quorum (or the leader is unreachable).
    #[error("{0}")]
    NoQuorum(String),
    /// Raft has stopped on this node.
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// One range replica on this node.
pub struct Replica {
    pub range_id: u64,
    pub node_id: NodeId,
    pub raft: Raft,
    pub state_machine: StateMachine,
    pub engine: Engine,
    pool: Arc<PeerPool>,
    lease_reads: bool,
    snapshot_logs: u64,
    /// When the replica opened: the base of `leader_contact_ms`.
    opened: Instant,
    /// Milliseconds after `opened` of the last append accepted from a leader (0: none).
    leader_contact_ms: AtomicU64,
    /// Whether the range's ticker is stopped (see `quiesce.rs`).
    quiesced: AtomicBool,
    /// The longest a leader waking from quiescence waits for its lease (the longest
    /// election timeout).
    wake_patience: Duration,
    /// The Raft instance's metrics, held (one receiver per call was a clone and a drop
    /// of shared counters for each replica on each quiescence round).
    metrics_rx: openraft::type_config::alias::WatchReceiverOf<TypeConfig, crate::RaftMetrics>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("range_id", &self.range_id)
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl Replica {
    /// This replica's descriptor of its range, once it has one (an empty replica
    /// waiting for its first snapshot has none).
    pub fn descriptor(&self) -> Option<crate::RangeDescriptor> {
        self.state_machine.descriptor()
    }

    /// A copy of the replica's current Raft metrics. Loops over every replica read
    /// them with [`Replica::with_metrics`] instead: a copy clones the membership and
    /// replication maps, which on 10,000 ranges cost a node a fifth of a core.
    pub fn metrics(&self) -> crate::RaftMetrics {
        self.with_metrics(Clone::clone)
    }

    /// `f` of the replica's current Raft metrics, read in place. `f` must be quick:
    /// the replica's Raft task waits to publish new metrics while it runs.
    pub fn with_metrics<T>(&self, f: impl FnOnce(&crate::RaftMetrics) -> T) -> T {
        use openraft::async_runtime::WatchReceiver;
        f(&self.metrics_rx.borrow_watched())
    }

    /// The leader this replica knows of.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.with_metrics(|m| m.current_leader)
    }

    /// The index of the last entry applied here (0 if none).
    pub fn applied_index(&self) -> u64 {
        self.with_metrics(|m| m.last_applied.as_ref().map_or(0, |l| l.index))
    }

    /// Opens the replica of `range_id` on this node and starts its Raft instance.
    pub async fn open(
        env: &ReplicaEnv,
        node_id: NodeId,
        range_id: u64,
    ) -> Result<Arc<Self>, ReplicaError> {
        let (engine, pool) = (env.engine.clone(), env.pool.clone());
        let config = Arc::new(env.opts.config()?);
        let log = LogStore::new(engine.clone(), range_id, env.syncer.clone());
        let sm = StateMachine::open_with(
            engine.clone(),
            range_id,
            &env.snapshot_root,
            Some(env.index.clone()),
            Some(env.events.clone()),
        )?;
        let raft = Raft::new(
            node_id,
            config,
            NetworkFactory::new(pool.clone(), range_id)
                .with_min_ttl(Duration::from_millis(env.opts.election_timeout_min_ms)),
            log,
            sm.clone(),
        )
        .await?;
        Ok(Arc::new(Self {
            range_id,
            node_id,
            metrics_rx: raft.metrics(),
            raft,
            state_machine: sm,
            engine,
            pool,
            lease_reads: env.opts.lease_reads,
            snapshot_logs: env.opts.snapshot_logs,
            opened: Instant::now(),
            leader_contact_ms: AtomicU64::new(0),
            quiesced: AtomicBool::new(false),
            wake_patience: Duration::from_millis(env.opts.election_timeout_max_ms),
        }))
    }

    /// Starts building a snapshot if one is due (see [`snapshot_due`]). Returns whether
    /// it asked for one. A build already under way makes the request a no-op.
    pub async fn snapshot_if_due(&self) -> bool {
        let (applied, snapshot) = self.with_metrics(|m| {
            (
                m.last_applied.as_ref().map_or(0, |l| l.index),
                m.snapshot.as_ref().map_or(0, |l| l.index),
            )
        });
        let (bytes, snapshot_bytes) = self.state_machine.snapshot_progress();
        if !snapshot_due(
            applied.saturating_sub(snapshot),
            bytes,
            snapshot_bytes,
            self.snapshot_logs,
        ) {
            return false;
        }
        if let Err(e) = self.raft.trigger().snapshot().await {
            tracing::warn!(range_id = self.range_id, error = %e, "asking for a snapshot");
            return false;
        }
        true
    }

    /// How long since this replica was opened (in this process).
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Whether this replica's ticker is stopped: its range is idle (see `quiesce.rs`).
    pub fn is_quiesced(&self) -> bool {
        self.quiesced.load(Ordering::Relaxed)
    }

    /// Stops (`true`) or restarts this replica's ticker: no heartbeats sent, no
    /// election timer while stopped.
    pub(crate) fn set_quiesced(&self, on: bool) {
        if self.quiesced.swap(on, Ordering::Relaxed) != on {
            tracing::debug!(range_id = self.range_id, quiesced = on, "range ticker");
            self.raft.runtime_config().tick(!on);
        }
    }

    /// Readies this replica for a write or a membership change. While its range was
    /// quiesced, its leader sent no heartbeats, so the lease openraft requires of a
    /// leader taking writes has lapsed: the ticker starts again, a heartbeat round goes
    /// out at once, and this returns once a quorum acknowledged it (or after the longest
    /// election timeout; the write then fails as it would have, and is retried).
    pub async fn wake(&self) {
        if !self.is_quiesced() {
            return;
        }
        self.set_quiesced(false);
        if self.current_leader() != Some(self.node_id) {
            return;
        }
        let sent = Instant::now();
        if self.raft.trigger().heartbeat().await.is_err() {
            return;
        }
        while sent.elapsed() < self.wake_patience {
            if self
                .leader_contact_age()
                .is_some_and(|age| age < sent.elapsed())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Records that a leader's append was accepted now.
    pub fn note_leader_contact(&self) {
        let ms = self.opened.elapsed().as_millis().max(1) as u64;
        self.leader_contact_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since this replica last heard from its leader: for the leader itself,
    /// since a quorum last acknowledged it. `None` if never.
    pub fn leader_contact_age(&self) -> Option<Duration> {
        use openraft::Instant as _;
        if let Some(acked) = self.with_metrics(|m| {
            (m.current_leader == Some(self.node_id)).then_some(m.last_quorum_acked)
        }) {
            return acked.map(|t| t.elapsed());
        }
        match self.leader_contact_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.opened
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// The leader's id and address, as this replica knows them.
    pub fn leader(&self) -> (Option<NodeId>, Option<String>) {
        self.with_metrics(|m| {
            let addr = m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            (m.current_leader, addr)
        })
    }

    /// On the leader: confirms leadership with a quorum (read index) and returns the log
    /// id a replica must have applied before serving a linearizable read.
    pub async fn read_index(&self) -> Result<ReadLogId<TypeConfig>, ReadError> {
        let policy = if self.lease_reads {
            ReadPolicy::LeaseRead
        } else {
            ReadPolicy::ReadIndex
        };
        match self.raft.get_read_linearizer(policy).await {
            Ok(l) => Ok(*l.read_log_id()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(ReadError::NotLeader {
                    leader_id: f.leader_id,
                    leader_addr: f.leader_node.map(|n| n.addr),
                })
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => Err(
                ReadError::NoQuorum(format!("cannot confirm leadership with a quorum: {e}")),
            ),
            Err(RaftError::Fatal(e)) => Err(ReadError::Stopped(e.to_string())),
        }
    }

    /// Returns once a read of this replica's state is linearizable: on the leader by
    /// read index; on a follower by asking the leader for the read index and waiting
    /// until the local state machine has applied it (so followers serve reads too).
    pub async fn linearize(&self, patience: Duration) -> Result<(), ReadError> {
        let (leader_id, leader_addr) = self.leader();
        let read_log_id = if leader_id == Some(self.node_id) {
            self.read_index().await?
        } else {
            let (Some(leader), Some(addr)) = (leader_id, leader_addr.clone()) else {
                return Err(ReadError::NotLeader {
                    leader_id,
                    leader_addr,
                });
            };
            let unreachable = |e: String| {
                ReadError::NoQuorum(format!("leader {leader} at {addr} unreachable: {e}"))
            };
            let mut client = self
                .pool
                .client(&addr)
                .map_err(|e| unreachable(e.to_string()))?;
            let req = RaftMessage {
                range_id: self.range_id,
                payload: Vec::new(),
                target_node_id: leader,
            };
            let resp = match tokio::time::timeout(patience, client.read_index(req)).await {
                Err(_) => return Err(unreachable(format!("no answer within {patience:?}"))),
                Ok(Err(s)) => {
                    let d = detail(&s);
                    return Err(match d.as_ref().map(|d| d.code.as_str()) {
                        Some(codes::NOT_LEADER) => match d.and_then(|d| d.detail) {
                            Some(error_detail::Detail::NotLeader(nl)) => ReadError::NotLeader {
                                leader_id: (nl.leader_id != 0).then_some(nl.leader_id),
                                leader_addr: (!nl.leader_addr.is_empty()).then_some(nl.leader_addr),
                            },
                            _ => ReadError::NotLeader {
                                leader_id: None,
                                leader_addr: None,
                            },
                        },
                        Some(codes::NO_QUORUM) => ReadError::NoQuorum(s.message().to_string()),
                        _ => unreachable(s.message().to_string()),
                    });
                }
                Ok(Ok(r)) => r.into_inner(),
            };
            crate::codec::decode(&resp.payload).map_err(|e| unreachable(e.to_string()))?
        };
        let lin = Linearizer::<TypeConfig>::new(self.node_id, read_log_id, None);
        match lin.try_await_ready(&self.raft, Some(patience)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(state)) => Err(ReadError::NoQuorum(format!(
                "this replica did not apply up to the read index {} within {patience:?} (applied: {:?})",
                state.read_log_id().index(),
                state.applied().map(|l| l.index)
            ))),
            Err(e) => Err(ReadError::Stopped(e.to_string())),
        }
    }
}

/// The node's replicas, by range id, and by span through [`Router::index`].
#[derive(Debug, Default)]
pub struct Router {
    replicas: RwLock<HashMap<u64, Arc<Replica>>>,
    pub index: Arc<crate::RangeIndex>,
    /// The latest quiescence beat of each peer node.
    pub beats: crate::quiesce::Beats,
    /// Woken whenever a replica is inserted.
    inserted: tokio::sync::Notify,
}

impl Router {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The replica holding `key`, if this node holds one.
    pub fn lookup(&self, key: &[u8]) -> Option<Arc<Replica>> {
        self.get(self.index.lookup(key)?)
    }

    pub fn get(&self, range_id: u64) -> Option<Arc<Replica>> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&range_id)
            .cloned()
    }

    pub fn insert(&self, replica: Arc<Replica>) {
        self.replicas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(replica.range_id, replica);
        self.inserted.notify_waiters();
    }

    /// The replica of `range_id`, waiting up to `patience` for it to be opened: the
    /// right half of a split is opened as each node applies the split, and its new
    /// leader's first messages may arrive before a follower got that far.
    pub async fn get_soon(&self, range_id: u64, patience: Duration) -> Option<Arc<Replica>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Created before the check, so an insert between the two still wakes it.
            let inserted = self.inserted.notified();
            if let Some(r) = self.get(range_id) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, inserted).await.is_err() {
                return None;
            }
        }
    }

    /// Forgets a replica (destroyed, or never to serve again): no longer routed to.
    pub fn remove(&self, range_id: u64) -> Option<Arc<Replica>> {
        let r = self
            .replicas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&range_id);
        self.index.set(range_id, None);
        r
    }

    /// This node's id, as its replicas know it (`None` before the first opens).
    pub fn node_id(&self) -> Option<NodeId> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .next()
            .map(|r| r.node_id)
    }

    pub fn all(&self) -> Vec<Arc<Replica>> {
        let mut v: Vec<_> = self
            .replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|r| r.range_id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_after_enough_entries_and_half_the_last_snapshot_in_bytes() {
        // No snapshot yet: the entry count alone decides.
        assert!(!snapshot_due(9_999, 1 << 20, 0, 10_000));
        assert!(snapshot_due(10_000, 10, 0, 10_000));
        // A 64 MiB range: 10,000 small writes are not worth rewriting it ...
        let range = 64 << 20;
        assert!(!snapshot_due(10_000, 1 << 20, range, 10_000));
        // ... half of it written again is.
        assert!(snapshot_due(300_000, 32 << 20, range, 10_000));
        // Few large entries: the log's byte bound decides, past half the snapshot.
        assert!(!snapshot_due(100, (16 << 20) - 1, 1 << 20, 10_000));
        assert!(snapshot_due(100, 16 << 20, 1 << 20, 10_000));
        assert!(!snapshot_due(100, 16 << 20, range, 10_000));
    }
}
