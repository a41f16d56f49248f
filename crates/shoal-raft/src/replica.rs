//! [`Replica`]: one range's Raft instance and its stores; [`Router`]: the node's
//! replicas by range id.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::{Config, SnapshotPolicy};
use shoal_storage::{Engine, KeySpan};

use crate::log_store::LogStore;
use crate::network::{NetworkFactory, PeerPool};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Raft};

/// Raft timing and log compaction of a node's replicas.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot once this many entries were applied since the last one.
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot, for slow followers.
    pub keep_logs: u64,
}

impl Default for RaftOptions {
    fn default() -> Self {
        Self {
            heartbeat_ms: 150,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs: 10_000,
            keep_logs: 1_000,
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
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.keep_logs,
            purge_batch_size: 256,
            install_snapshot_timeout: 60_000,
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
    }
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

/// One range replica on this node.
pub struct Replica {
    pub range_id: u64,
    pub node_id: NodeId,
    pub raft: Raft,
    pub state_machine: StateMachine,
    pub engine: Engine,
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
    /// A copy of the replica's current Raft metrics.
    pub fn metrics(&self) -> crate::RaftMetrics {
        use openraft::async_runtime::WatchReceiver;
        self.raft.metrics().borrow_watched().clone()
    }

    /// Opens the replica of `range_id` on this node and starts its Raft instance.
    pub async fn open(
        engine: Engine,
        pool: Arc<PeerPool>,
        node_id: NodeId,
        range_id: u64,
        span: KeySpan,
        snapshot_root: &Path,
        opts: &RaftOptions,
    ) -> Result<Arc<Self>, ReplicaError> {
        let config = Arc::new(opts.config()?);
        let log = LogStore::new(engine.clone(), range_id);
        let sm = StateMachine::open(engine.clone(), range_id, span, snapshot_root)?;
        let raft = Raft::new(
            node_id,
            config,
            NetworkFactory::new(pool, range_id),
            log,
            sm.clone(),
        )
        .await?;
        Ok(Arc::new(Self {
            range_id,
            node_id,
            raft,
            state_machine: sm,
            engine,
        }))
    }
}

/// The node's replicas, by range id.
#[derive(Debug, Default)]
pub struct Router {
    replicas: RwLock<HashMap<u64, Arc<Replica>>>,
}

impl Router {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
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
