//! [`Replica`]: one range's Raft instance on this node, with its stores. Every call
//! the node makes of a range goes through it, and answers [`crate::Error`]s: writes
//! ([`Replica::propose`]), membership changes, leadership transfers, linearizable
//! reads ([`Replica::linearize`], then a [`RangeView`] of its data), quiescence.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::raft::linearizable_read::{Linearizer, ReadLogId};
use openraft::{ChangeMembers, LinearizerOption};
use shoal_proto::error::{detail, ErrorCode};
use shoal_proto::v1::{error_detail, RaftMessage};
use shoal_storage::Engine;

use crate::command::{Command, CommandResponse};
use crate::error::{Error, Result};
use crate::index::RangeIndex;
use crate::latch::{Latches, ReadAt};
use crate::load::Load;
use crate::log_store::LogStore;
use crate::options::{snapshot_due, RaftOptions};
use crate::range::RangeDescriptor;
use crate::riders::Riders;
use crate::state_machine::{RangeEvent, StateMachine};
use crate::transport::network::NetworkFactory;
use crate::transport::pool::PeerPool;
use crate::types::{Node, NodeId, RaftMetrics, TypeConfig};
use crate::view::RangeView;
use crate::wal_sync::WalSyncer;

/// openraft's instance of one range.
type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// Why a replica could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("opening the range's state: {0}")]
    Io(#[from] std::io::Error),
    #[error("starting raft: {0}")]
    Fatal(#[from] openraft::errors::Fatal<TypeConfig>),
}

/// What every replica of a node shares: the store and its log syncer, the peer
/// connections, the snapshot directory and the Raft options.
#[derive(Debug, Clone)]
pub struct ReplicaEnv {
    pub engine: Engine,
    pub syncer: WalSyncer,
    pub pool: Arc<PeerPool>,
    pub snapshot_root: PathBuf,
    pub opts: RaftOptions,
    /// The node's ranges by span, kept up to date by the state machines.
    pub index: Arc<RangeIndex>,
    /// Where state machines report new ranges (splits).
    pub events: tokio::sync::mpsc::UnboundedSender<RangeEvent>,
}

/// One range replica on this node.
pub struct Replica {
    pub range_id: u64,
    pub node_id: NodeId,
    raft: Raft,
    state_machine: StateMachine,
    engine: Engine,
    pool: Arc<PeerPool>,
    /// How the leader confirms its leadership for a read ([`RaftOptions::leadership_check`]).
    leadership_check: LinearizerOption,
    snapshot_logs: u64,
    /// When the replica opened: the base of `leader_contact_ms`.
    opened: Instant,
    /// Milliseconds after `opened` of the last append accepted from a leader (0: none).
    leader_contact_ms: AtomicU64,
    /// Whether the range's ticker is stopped (see `quiesce.rs`).
    quiesced: AtomicBool,
    /// The term in which this replica, leading, last asked openraft to hand its
    /// leadership over (0: never). From then to the end of that term openraft sends no
    /// heartbeats and refuses every write and read here: the range must not quiesce,
    /// so that its followers elect if the handover fails.
    handover_term: AtomicU64,
    /// The longest a leader waking from quiescence waits for its lease (the longest
    /// election timeout).
    wake_patience: Duration,
    /// The Raft instance's metrics, held (one receiver per call was a clone and a drop
    /// of shared counters for each replica on each quiescence round).
    metrics_rx: openraft::type_config::alias::WatchReceiverOf<TypeConfig, RaftMetrics>,
    /// The writes in flight while this replica leads (see `latch.rs`).
    latches: Arc<Latches>,
    /// Commits held back to ride with the range's next proposal.
    riders: Riders,
    /// Requests served here, and a sample of their keys (see `load.rs`).
    load: Load,
    /// Held while a membership change or a merge's freeze is proposed here: a range
    /// freezes with the replicas it had, and a frozen range changes none.
    reshaping: tokio::sync::Mutex<()>,
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
    /// Opens the replica of `range_id` on this node and starts its Raft instance.
    pub async fn open(
        env: &ReplicaEnv,
        node_id: NodeId,
        range_id: u64,
    ) -> std::result::Result<Arc<Self>, OpenError> {
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
        let riders = Riders::new(raft.clone(), range_id);
        Ok(Arc::new(Self {
            range_id,
            node_id,
            metrics_rx: raft.metrics(),
            raft,
            state_machine: sm,
            engine,
            pool,
            leadership_check: env.opts.leadership_check(),
            snapshot_logs: env.opts.snapshot_logs,
            opened: Instant::now(),
            leader_contact_ms: AtomicU64::new(0),
            quiesced: AtomicBool::new(false),
            handover_term: AtomicU64::new(0),
            wake_patience: Duration::from_millis(env.opts.election_timeout_max_ms),
            latches: Arc::default(),
            riders,
            load: Load::default(),
            reshaping: tokio::sync::Mutex::new(()),
        }))
    }

    // ---- state -------------------------------------------------------------------

    /// The writes in flight while this replica leads, by key.
    pub fn latches(&self) -> &Arc<Latches> {
        &self.latches
    }

    /// This replica's descriptor of its range, once it has one (an empty replica
    /// waiting for its first snapshot has none).
    pub fn descriptor(&self) -> Option<RangeDescriptor> {
        self.state_machine.descriptor()
    }

    /// The descriptor, shared (no copy).
    pub fn shared_descriptor(&self) -> Option<Arc<RangeDescriptor>> {
        self.state_machine.shared_descriptor()
    }

    /// `f` of the range's applied descriptor, read in place (no copy).
    pub fn with_descriptor<T>(&self, f: impl FnOnce(Option<&RangeDescriptor>) -> T) -> T {
        self.state_machine.with_descriptor(f)
    }

    /// The descriptor, or [`Error::NotReady`] while the replica waits for its first
    /// snapshot.
    pub fn ready_descriptor(&self) -> Result<RangeDescriptor> {
        self.descriptor().ok_or(Error::NotReady {
            range_id: self.range_id,
        })
    }

    /// The replica's data, bounded by its range as it is now. Take it after the read
    /// barrier: a split applied meanwhile then shows as keys outside the view.
    pub fn view(&self) -> Result<RangeView> {
        let desc = self.shared_descriptor().ok_or(Error::NotReady {
            range_id: self.range_id,
        })?;
        Ok(RangeView::new(self.engine.clone(), desc))
    }

    /// Bytes of data applied since the last call (for the range's size upkeep).
    pub fn take_written(&self) -> u64 {
        self.state_machine.take_written()
    }

    /// Counts a request this replica serves, on `key` (for splits by load).
    pub fn record_load(&self, key: &[u8]) {
        self.load.record(key);
    }

    /// Requests served here since the last call, and a sample of their keys.
    pub fn take_load(&self) -> (u64, Vec<Vec<u8>>) {
        self.load.take()
    }

    /// A copy of the replica's current Raft metrics. Loops over every replica read
    /// them with [`Replica::with_metrics`] instead: a copy clones the membership and
    /// replication maps, which on 10,000 ranges cost a node a fifth of a core.
    pub fn metrics(&self) -> RaftMetrics {
        self.with_metrics(Clone::clone)
    }

    /// `f` of the replica's current Raft metrics, read in place. `f` must be quick:
    /// the replica's Raft task waits to publish new metrics while it runs.
    pub fn with_metrics<T>(&self, f: impl FnOnce(&RaftMetrics) -> T) -> T {
        use openraft::async_runtime::WatchReceiver;
        f(&self.metrics_rx.borrow_watched())
    }

    /// The leader this replica knows of.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.with_metrics(|m| m.current_leader)
    }

    /// Whether this replica leads its range.
    pub fn is_leader(&self) -> bool {
        self.current_leader() == Some(self.node_id)
    }

    /// The index of the last entry applied here (0 if none).
    pub fn applied_index(&self) -> u64 {
        self.with_metrics(|m| m.last_applied.as_ref().map_or(0, |l| l.index))
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

    /// [`Error::NotLeader`] (naming the leader, when known) unless this replica leads.
    pub fn check_leader(&self) -> Result<()> {
        match self.leader() {
            (Some(l), _) if l == self.node_id => Ok(()),
            (leader_id, leader_addr) => Err(Error::NotLeader {
                range_id: self.range_id,
                leader_id,
                leader_addr,
            }),
        }
    }

    /// How long since this replica was opened (in this process).
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Why the replica's Raft stopped on its own (a storage error), if it did.
    pub fn failure(&self) -> Option<String> {
        self.with_metrics(|m| m.running_state.as_ref().err().map(|e| e.to_string()))
    }

    /// Entries applied here that may have written a transaction's lock, and snapshots
    /// installed, since the replica opened: a range found without locks has none while
    /// this stays put.
    pub fn lock_writes(&self) -> u64 {
        self.state_machine.lock_writes()
    }

    /// Decided commits held back since the replica opened: (carried by another
    /// proposal, sent alone once none came).
    pub fn held_commits(&self) -> (u64, u64) {
        self.riders.counts()
    }

    // ---- proposals ---------------------------------------------------------------

    /// Proposes `cmd` and returns once it is committed and applied here (the leader
    /// only; a quiesced range is woken first). A deferrable commit may wait a moment to
    /// ride with another proposal (see [`crate::riders`]).
    #[tracing::instrument(level = "debug", skip_all, fields(range_id = self.range_id, cmd = %cmd))]
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse> {
        self.wake().await;
        self.riders.propose(cmd).await
    }

    /// Founds the range (the meta range of a new cluster) with `voters`.
    pub async fn initialize(&self, voters: BTreeMap<NodeId, Node>) -> Result<()> {
        self.raft.initialize(voters).await.map_err(|e| match e {
            openraft::errors::RaftError::Fatal(f) => Error::from_fatal(self.range_id, f),
            openraft::errors::RaftError::APIError(e) => {
                Error::Internal(format!("initialising range {}: {e}", self.range_id))
            }
        })
    }

    /// Adds `id` at `node` as a learner (the leader only).
    pub async fn add_learner(&self, id: NodeId, node: Node) -> Result<()> {
        let _g = self.unfrozen_for_change().await?;
        self.wake().await;
        self.raft
            .add_learner(id, node, false)
            .await
            .map(|_| ())
            .map_err(|e| Error::from_write(self.range_id, e))
    }

    /// Changes the range's membership (the leader only); with `retain`, removed voters
    /// stay on as learners.
    pub async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, Node>,
        retain: bool,
    ) -> Result<()> {
        let _g = self.unfrozen_for_change().await?;
        self.wake().await;
        self.raft
            .change_membership(change, retain)
            .await
            .map(|_| ())
            .map_err(|e| Error::from_write(self.range_id, e))
    }

    /// The guard under which the range's replicas may change: refused while the range
    /// is frozen for a merge.
    async fn unfrozen_for_change(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        let g = self.reshaping.lock().await;
        if let Some(f) = self.frozen() {
            return Err(Error::Membership {
                range_id: self.range_id,
                why: format!("the range is frozen for a merge into range {}", f.left_id),
            });
        }
        Ok(g)
    }

    /// Freezes the range for a merge into `left_id` (see `merge.rs`), between
    /// changes of its replicas: it freezes with the replicas it has.
    pub async fn freeze(&self, left_id: u64, token: u64) -> Result<CommandResponse> {
        let _g = self.reshaping.lock().await;
        self.propose(Command::Freeze { left_id, token }).await
    }

    /// The range's freeze for a merge, if it is frozen (as this replica applied it).
    pub fn frozen(&self) -> Option<crate::range::Frozen> {
        self.state_machine.frozen()
    }

    /// Asks the leadership to move to `to`.
    ///
    /// openraft's handover is one-way: from the moment it begins, this leader sends no
    /// heartbeats and refuses every request until its term ends, and `to` takes over
    /// only if it has flushed this leader's whole log under this leader's vote, which
    /// it learns from an append or a heartbeat (a replica restarted while its range was
    /// quiesced has heard neither). So the range is woken, and the handover begins only
    /// once `to` answered a heartbeat sent now and holds the whole log; otherwise this
    /// fails and the leader keeps serving. If `to` still refuses, the followers elect:
    /// the range does not quiesce while its leader hands over (see `quiesce.rs`).
    pub async fn transfer_leader(&self, to: NodeId) -> Result<()> {
        self.wake().await;
        let term = self.ready_to_take_over(to).await?;
        self.handover_term.store(term, Ordering::Relaxed);
        self.set_quiesced(false);
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| Error::from_fatal(self.range_id, e))
    }

    /// Whether this replica asked, in `term`, to hand its leadership over (openraft
    /// then keeps it from serving until the term ends).
    pub(crate) fn handing_over_in(&self, term: u64) -> bool {
        self.handover_term.load(Ordering::Relaxed) == term
    }

    /// On the leader: sends a heartbeat round and waits (at most the longest election
    /// timeout) until `to` acknowledged it, or a later append, and holds the whole log.
    /// The leader's term then; `NoQuorum` if `to` did not get there.
    async fn ready_to_take_over(&self, to: NodeId) -> Result<u64> {
        use openraft::Instant as _;
        let sent = Instant::now();
        self.raft
            .trigger()
            .heartbeat()
            .await
            .map_err(|e| Error::from_fatal(self.range_id, e))?;
        loop {
            let (leading, term, ready) = self.with_metrics(|m| {
                let heard = m
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(&to).cloned().flatten())
                    .is_some_and(|t| t.elapsed() < sent.elapsed());
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&to).cloned().flatten())
                    .map(|l| l.index);
                (
                    m.current_leader == Some(self.node_id),
                    m.current_term,
                    heard && matched.is_some() && matched == m.last_log_index,
                )
            });
            if !leading {
                self.check_leader()?;
            }
            if ready {
                return Ok(term);
            }
            if sent.elapsed() >= self.wake_patience {
                return Err(Error::NoQuorum {
                    range_id: self.range_id,
                    why: format!(
                        "node {to} did not answer a heartbeat holding the whole log within {:?}: \
                         the leadership stays",
                        self.wake_patience
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts an election here now.
    pub async fn elect(&self) -> Result<()> {
        self.raft
            .trigger()
            .elect(false)
            .await
            .map_err(|e| Error::from_fatal(self.range_id, e))
    }

    /// Starts building a snapshot now.
    pub async fn snapshot(&self) -> Result<()> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::from_fatal(self.range_id, e))
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
        if let Err(e) = self.snapshot().await {
            tracing::warn!(range_id = self.range_id, error = %e, "asking for a snapshot");
            return false;
        }
        true
    }

    /// Stops the replica's Raft instance.
    pub async fn shutdown(&self) -> Result<()> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| Error::from_fatal(self.range_id, e))
    }

    // ---- quiescence --------------------------------------------------------------

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
        if !self.is_leader() {
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
    pub(crate) fn note_leader_contact(&self) {
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

    // ---- Raft messages from peers ------------------------------------------------

    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    pub(crate) fn state_machine(&self) -> &StateMachine {
        &self.state_machine
    }

    // ---- linearizable reads ------------------------------------------------------

    /// On the leader: confirms that no other leader can have been elected (by its
    /// lease, else by a heartbeat round: [`RaftOptions::leadership_check`]) and returns
    /// the log id a replica must have applied before serving a linearizable read.
    pub async fn read_index(&self) -> Result<ReadLogId<TypeConfig>> {
        match self
            .raft
            .get_read_linearizer(self.leadership_check.clone())
            .await
        {
            Ok(l) => Ok(*l.read_log_id()),
            Err(e) => Err(Error::from_read(self.range_id, e)),
        }
    }

    /// On the leader: confirms that no other leader can have been elected, as
    /// [`Replica::read_index`] does.
    pub async fn confirm_leadership(&self) -> Result<()> {
        self.read_index().await.map(|_| ())
    }

    /// On the leader: [`Replica::read_index`], once the writes in flight over `at`'s
    /// spans that may commit at or below its timestamp are applied (a read at that
    /// timestamp then misses none of them).
    pub async fn read_index_at(
        &self,
        at: Option<&ReadAt>,
        patience: Duration,
    ) -> Result<ReadLogId<TypeConfig>> {
        if let Some(at) = at {
            let waited =
                tokio::time::timeout(patience, self.latches.wait_readable(&at.spans, at.ts)).await;
            if waited.is_err() {
                return Err(Error::NoQuorum {
                    range_id: self.range_id,
                    why: format!("writes in flight below the read's timestamp did not apply within {patience:?}"),
                });
            }
        }
        self.read_index().await
    }

    /// Returns once a read of this replica's state is linearizable: on the leader by
    /// read index; on a follower by asking the leader for the read index and waiting
    /// until the local state machine has applied it (so followers serve reads too).
    pub async fn linearize(&self, patience: Duration) -> Result<()> {
        self.linearize_at(patience, None).await
    }

    /// [`Replica::linearize`] for a read at a timestamp: the leader first waits for its
    /// writes in flight that the read must see (`at`; asked of it by a follower).
    #[tracing::instrument(level = "debug", skip_all, fields(range_id = self.range_id))]
    pub async fn linearize_at(&self, patience: Duration, at: Option<&ReadAt>) -> Result<()> {
        let (leader_id, leader_addr) = self.leader();
        let read_log_id = if leader_id == Some(self.node_id) {
            self.read_index_at(at, patience).await?
        } else {
            let (Some(leader), Some(addr)) = (leader_id, leader_addr.clone()) else {
                return Err(Error::NotLeader {
                    range_id: self.range_id,
                    leader_id,
                    leader_addr,
                });
            };
            self.read_index_of(leader, &addr, patience, at).await?
        };
        let lin = Linearizer::<TypeConfig>::new(self.node_id, read_log_id, None);
        match lin.try_await_ready(&self.raft, Some(patience)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(state)) => Err(Error::NoQuorum {
                range_id: self.range_id,
                why: format!(
                    "this replica did not apply up to the read index {} within {patience:?} (applied: {:?})",
                    state.read_log_id().index(),
                    state.applied().map(|l| l.index)
                ),
            }),
            Err(e) => Err(Error::from_fatal(self.range_id, e)),
        }
    }

    /// The read index, asked of the leader `leader` at `addr`.
    async fn read_index_of(
        &self,
        leader: NodeId,
        addr: &str,
        patience: Duration,
        at: Option<&ReadAt>,
    ) -> Result<ReadLogId<TypeConfig>> {
        let range_id = self.range_id;
        let unreachable = |e: String| Error::NoQuorum {
            range_id,
            why: format!("leader {leader} at {addr} unreachable: {e}"),
        };
        let mut client = self
            .pool
            .client(addr)
            .map_err(|e| unreachable(e.to_string()))?;
        let payload = match at {
            Some(at) => crate::codec::encode(at).map_err(|e| Error::Internal(e.to_string()))?,
            None => Vec::new(),
        };
        let req = RaftMessage {
            range_id,
            payload,
            target_node_id: leader,
        };
        let resp = match tokio::time::timeout(patience, client.read_index(req)).await {
            Err(_) => return Err(unreachable(format!("no answer within {patience:?}"))),
            Ok(Err(s)) => {
                return Err(match ErrorCode::of(&s) {
                    Some(ErrorCode::NotLeader) => {
                        let (leader_id, leader_addr) = match detail(&s).and_then(|d| d.detail) {
                            Some(error_detail::Detail::NotLeader(nl)) => (
                                (nl.leader_id != 0).then_some(nl.leader_id),
                                (!nl.leader_addr.is_empty()).then_some(nl.leader_addr),
                            ),
                            _ => (None, None),
                        };
                        Error::NotLeader {
                            range_id,
                            leader_id,
                            leader_addr,
                        }
                    }
                    Some(ErrorCode::NoQuorum) => Error::NoQuorum {
                        range_id,
                        why: s.message().to_string(),
                    },
                    _ => unreachable(s.message().to_string()),
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        crate::codec::decode(&resp.payload).map_err(|e| unreachable(e.to_string()))
    }
}
