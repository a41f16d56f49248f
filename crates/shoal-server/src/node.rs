//! [`Node`]: who this node is (its identity on disk), what it holds (its store, its
//! replicas and their lifecycle), who its peers are (the cluster's membership, which
//! is the meta range's), and the shared parts every driver and service uses.
//!
//! The drivers that work on a node (the range keeper, the placement driver, the
//! bootstrap) are types of their own that hold an `Arc<Node>`; `serve.rs` wires them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use shoal_proto::error::ErrorCode;
use shoal_proto::v1::{HelloResponse, JoinResponse};
use shoal_raft::{
    Command, Node as RaftNode, OpResult, PeerPool, RangeDescriptor, RangeEvent, Replica,
    ReplicaEnv, Router, WalSyncer, FIRST_RANGE_ID,
};
use shoal_storage::{Engine, EngineOptions, StateKey};
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::located::LocatedRange;
use crate::metrics::Metrics;
use crate::tls::Tls;

/// Who this store belongs to; written once, durably, when the node joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdent {
    pub cluster_id: String,
    pub node_id: u64,
}

/// Splits reported by this node's state machines, for the range keeper.
pub type RangeEvents = tokio::sync::mpsc::UnboundedReceiver<RangeEvent>;

/// How long a membership change waits for one already under way.
const MEMBERSHIP_PATIENCE: Duration = Duration::from_secs(10);

/// A replica asked for by its range's leader is kept this long even before the
/// routing table counts it (see [`Node::wanted`]).
const WANTED_FOR: Duration = Duration::from_secs(10);

/// A running node.
pub struct Node {
    pub cfg: NodeConfig,
    /// Where clients reach this node; the address the cluster's membership records.
    pub advertise: String,
    /// Where peers reach this node's peer server (their `Hello` asks for it).
    pub advertise_peer: String,
    pub name: String,
    pub engine: Engine,
    pub pool: Arc<PeerPool>,
    pub router: Arc<Router>,
    pub metrics: Metrics,
    /// The node's certificates (`--certs-dir`); `None` on an insecure node.
    pub tls: Option<Arc<Tls>>,
    /// Cancelled when the node stops: every loop and server ends with it.
    pub shutdown: CancellationToken,
    /// What every replica of this node shares.
    env: ReplicaEnv,
    ident: RwLock<Option<StoreIdent>>,
    /// Held while taking an identity, so two bootstraps do not interleave.
    bootstrap_lock: tokio::sync::Mutex<()>,
    draining: AtomicBool,
    /// Why a replica stopped for good (a storage error): the node then exits, so its
    /// supervisor restarts it from what is durable.
    fatal: OnceLock<String>,
    /// Held while a replica is opened or destroyed, so a range is never opened twice.
    open_lock: tokio::sync::Mutex<()>,
    /// When a range's leader last asked for this node's replica of it (to add it as a
    /// learner): the replica is kept a while even before the routing table counts it.
    wanted: Mutex<HashMap<u64, Instant>>,
    /// The routing table as last read, and the count of descriptor changes it was read
    /// at (`RangeIndex::changes`): kept while that count stays (see `routing::table`).
    pub(crate) table: Mutex<Option<(u64, Arc<[RangeDescriptor]>)>>,
}

/// A storage error saying what failed.
fn storage<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> Error {
    move |e| Error::Storage(format!("{what}: {e}"))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node's metrics, with what it sized itself by and to.
fn sized(r: &crate::cgroup::Resources, engine: &EngineOptions) -> Metrics {
    let m = Metrics::new();
    let workers = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or(1);
    tracing::info!(
        cpu_quota = ?r.cpu_quota,
        memory_limit = ?r.memory_limit,
        workers,
        memtables_max = engine.memtables_max(),
        block_cache = ?engine.block_cache,
        "sized by the container's limits"
    );
    m.set_resource(
        "cpu_quota_millicores",
        r.cpu_quota.map_or(0, |q| (q * 1000.0).round() as i64),
    );
    m.set_resource(
        "memory_limit_bytes",
        r.memory_limit
            .map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)),
    );
    m.set_resource("runtime_workers", workers as i64);
    m.set_resource("memtables_max_bytes", engine.memtables_max() as i64);
    m.set_resource("block_cache_bytes", engine.block_cache.unwrap_or(0) as i64);
    m
}

impl Node {
    /// Opens the store and, if this node already belongs to a cluster, its replicas.
    pub async fn open(cfg: NodeConfig) -> Result<(Arc<Self>, RangeEvents)> {
        cfg.validate()
            .map_err(|m| Error::invalid(ErrorCode::InvalidArgument, m))?;
        let tls = match &cfg.certs_dir {
            Some(dir) => Some(Arc::new(Tls::load(dir).map_err(|e| {
                Error::invalid(ErrorCode::InvalidArgument, format!("--certs-dir: {e}"))
            })?)),
            None => None,
        };
        std::fs::create_dir_all(&cfg.data_dir).map_err(storage(format!(
            "creating data dir {}",
            cfg.data_dir.display()
        )))?;
        // Sized by the container's limits, not the host's.
        let resources = crate::cgroup::Resources::detect();
        let engine_opts = EngineOptions::within(resources.memory_limit);
        let engine = Engine::open(&cfg.store_dir(), &engine_opts).map_err(storage(format!(
            "opening the store in {}",
            cfg.store_dir().display()
        )))?;
        let ident = match engine
            .ident()
            .map_err(storage("reading the store identity"))?
        {
            Some(b) => Some(
                serde_json::from_slice::<StoreIdent>(&b)
                    .map_err(storage("decoding the store identity"))?,
            ),
            None => None,
        };
        let syncer =
            WalSyncer::start(engine.clone()).map_err(storage("starting the log syncer"))?;
        let router = Router::new();
        let pool = match &tls {
            Some(tls) => PeerPool::with_dial(tls.dial()),
            None => PeerPool::new(),
        };
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let env = ReplicaEnv {
            engine: engine.clone(),
            syncer,
            pool: pool.clone(),
            snapshot_root: cfg.snapshot_dir(),
            opts: cfg.raft_options(),
            index: router.index.clone(),
            events: events_tx,
        };
        let node = Arc::new(Self {
            env,
            advertise: cfg.advertise(),
            advertise_peer: cfg.advertise_peer(),
            name: cfg.name(),
            cfg,
            engine,
            pool,
            router,
            metrics: sized(&resources, &engine_opts),
            tls,
            shutdown: CancellationToken::new(),
            ident: RwLock::new(ident.clone()),
            bootstrap_lock: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            fatal: OnceLock::new(),
            open_lock: tokio::sync::Mutex::new(()),
            wanted: Mutex::new(HashMap::new()),
            table: Mutex::new(None),
        });
        if let Some(id) = ident {
            tracing::info!(node_id = id.node_id, cluster_id = %id.cluster_id, "restarting with the identity on disk");
            node.open_replicas().await?;
        } else {
            tracing::info!("empty store: waiting for `shoal init` or a join");
        }
        Ok((node, events_rx))
    }

    // ---- identity ----------------------------------------------------------------

    pub fn ident(&self) -> Option<StoreIdent> {
        self.ident.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// This node's id (0 before it belongs to a cluster).
    pub fn node_id(&self) -> u64 {
        self.ident().map_or(0, |i| i.node_id)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// From now on, readiness is false and new requests are refused.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Refuses (SHUTTING_DOWN) once the node drains.
    pub fn check_serving(&self) -> Result<()> {
        if self.is_draining() {
            return Err(Error::ShuttingDown("node is shutting down".into()));
        }
        Ok(())
    }

    /// Why the node is failing, if a replica stopped for good.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    /// Records why the node must stop, and stops it.
    pub fn set_fatal(&self, why: String) {
        let _ = self.fatal.set(why);
        self.shutdown.cancel();
    }

    /// Takes the identity given by the node running `init`, or by the leader a new
    /// node joined through (idempotent for the same one).
    pub async fn accept_bootstrap(&self, cluster_id: &str, node_id: u64) -> Result<()> {
        let _g = self.bootstrap_lock.lock().await;
        if let Some(cur) = self.ident() {
            if cur.cluster_id == cluster_id && cur.node_id == node_id {
                return Ok(());
            }
            return Err(Error::AlreadyInitialized(format!(
                "node at {} already belongs to cluster {} as node {}",
                self.advertise, cur.cluster_id, cur.node_id
            )));
        }
        if cluster_id.is_empty() || node_id == 0 {
            return Err(Error::invalid(
                ErrorCode::InvalidArgument,
                "bootstrap needs a cluster id and a node id",
            ));
        }
        let ident = StoreIdent {
            cluster_id: cluster_id.to_string(),
            node_id,
        };
        let bytes = serde_json::to_vec(&ident).map_err(|e| Error::Internal(e.to_string()))?;
        self.engine
            .set_ident(&bytes)
            .map_err(storage("writing the store identity"))?;
        *self.ident.write().unwrap_or_else(|p| p.into_inner()) = Some(ident);
        self.open_replicas().await?;
        tracing::info!(node_id, cluster_id, "joined the cluster");
        Ok(())
    }

    /// What this node tells a peer that says hello.
    pub fn hello(&self) -> HelloResponse {
        let ident = self.ident();
        let leader_addr = self
            .router
            .get(FIRST_RANGE_ID)
            .and_then(|r| r.leader().1)
            .unwrap_or_default();
        HelloResponse {
            cluster_id: ident
                .as_ref()
                .map(|i| i.cluster_id.clone())
                .unwrap_or_default(),
            node_id: ident.as_ref().map_or(0, |i| i.node_id),
            advertise_addr: self.advertise.clone(),
            initialized: ident.is_some(),
            leader_addr,
            node_name: self.name.clone(),
            peer_addr: self.advertise_peer.clone(),
        }
    }

    // ---- the meta range and the cluster's membership -----------------------------

    /// The replica of the meta range, once this node belongs to a cluster.
    pub fn meta(&self) -> Result<Arc<Replica>> {
        self.router.get(FIRST_RANGE_ID).ok_or_else(|| {
            Error::NotInitialized(
                "this node does not belong to a cluster yet: run `shoal init` once the nodes are up"
                    .into(),
            )
        })
    }

    /// Refuses (retryably, NOT_INITIALIZED) while this node cannot route requests by
    /// key: before it belongs to a cluster, and until its meta replica has applied the
    /// cluster's first configuration (a node just founded or joined).
    pub fn routing_ready(&self) -> Result<()> {
        if self.meta()?.with_descriptor(|d| d.is_some()) {
            return Ok(());
        }
        Err(Error::NotInitialized(
            "this node has not yet applied its cluster's first configuration; retry shortly".into(),
        ))
    }

    /// A node of the cluster (a member of the meta range), as this node knows it.
    pub fn member(&self, node_id: u64) -> Option<RaftNode> {
        self.meta()
            .ok()?
            .with_metrics(|m| m.membership_config.membership().get_node(&node_id).cloned())
    }

    /// The cluster's nodes: the meta range's members.
    pub fn members(&self) -> Vec<u64> {
        match self.meta() {
            Ok(meta) => meta.with_metrics(|m| {
                m.membership_config
                    .membership()
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect()
            }),
            Err(_) => Vec::new(),
        }
    }

    /// `d` with the addresses of its replicas' nodes, as the cluster's membership (or,
    /// before this node has it, `r`'s own membership) knows them.
    pub fn locate(&self, d: RangeDescriptor, r: Option<&Replica>) -> LocatedRange {
        let addrs_of = |r: &Replica| -> BTreeMap<u64, String> {
            r.with_metrics(|m| {
                let mem = m.membership_config.membership();
                d.replicas
                    .iter()
                    .filter_map(|rep| {
                        mem.get_node(&rep.node_id)
                            .map(|n| (rep.node_id, n.addr.clone()))
                    })
                    .collect()
            })
        };
        let addrs = match (self.meta(), r) {
            (Ok(meta), _) => addrs_of(&meta),
            (Err(_), Some(r)) => addrs_of(r),
            (Err(_), None) => BTreeMap::new(),
        };
        LocatedRange { desc: d, addrs }
    }

    /// The meta range's leader: `None` when it is this node; else its id and address.
    pub fn meta_leader(&self) -> Result<Option<(u64, String)>> {
        let meta = self.meta()?;
        match meta.leader() {
            (Some(id), _) if id == self.node_id() => Ok(None),
            (Some(id), Some(addr)) => Ok(Some((id, addr))),
            _ => Err(Error::NotLeader {
                range_id: FIRST_RANGE_ID,
                leader_id: None,
                leader_addr: None,
            }),
        }
    }

    /// `NOT_LEADER` (with the leader, if known) unless this node leads the meta range.
    pub fn leads_meta(&self) -> Result<()> {
        match self.meta_leader()? {
            None => Ok(()),
            Some((id, addr)) => Err(Error::NotLeader {
                range_id: FIRST_RANGE_ID,
                leader_id: Some(id),
                leader_addr: Some(addr),
            }),
        }
    }

    /// On the meta range's leader: admits a node with an empty disk under a new id, as
    /// a learner (the placement driver makes it a voter once it caught up).
    pub async fn admit(&self, addr: &str, name: &str) -> Result<JoinResponse> {
        crate::config::check_host_port(addr).map_err(|e| {
            Error::invalid(
                ErrorCode::InvalidArgument,
                format!("join address {addr:?}: {e}"),
            )
        })?;
        let r = self.meta()?;
        let ident = self
            .ident()
            .ok_or_else(|| Error::Internal("a node with a replica has no identity".into()))?;
        let resp = r.propose(Command::AllocNodeId).await?;
        let Some(OpResult::NodeId(id)) = resp.results.first().cloned() else {
            return Err(Error::Internal("node id allocation returned no id".into()));
        };
        let node = RaftNode {
            addr: addr.to_string(),
            name: name.to_string(),
        };
        r.add_learner(id, node).await?;
        tracing::info!(node_id = id, %addr, "admitted a new node as a learner");
        Ok(JoinResponse {
            cluster_id: ident.cluster_id,
            node_id: id,
        })
    }

    /// On the meta range's leader: removes `node_id` from the cluster's membership.
    pub async fn remove_node(&self, node_id: u64) -> Result<()> {
        let r = self.meta()?;
        let mem = r.with_metrics(|m| m.membership_config.membership().clone());
        if mem.get_node(&node_id).is_none() {
            return Err(Error::UnknownNode(node_id));
        }
        let ids = BTreeSet::from([node_id]);
        let change = if mem.voter_ids().any(|v| v == node_id) {
            if mem.voter_ids().count() <= 1 {
                return Err(Error::Refused("cannot remove the last voter".into()));
            }
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        // Another membership change (a learner's promotion, the second half of a
        // joint change) may be under way: wait for it, then make ours.
        let deadline = Instant::now() + MEMBERSHIP_PATIENCE;
        loop {
            match r.change_membership(change.clone(), false).await {
                Ok(()) => break,
                Err(shoal_raft::Error::MembershipInProgress { .. })
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(node_id, "removed from the cluster");
        Ok(())
    }

    // ---- replicas ----------------------------------------------------------------

    /// Opens the meta range's replica and every other replica this node's store holds.
    async fn open_replicas(&self) -> Result<()> {
        let mut ids = vec![FIRST_RANGE_ID];
        ids.extend(
            self.engine
                .ranges_with(StateKey::Created)
                .map_err(storage("listing the ranges of the store"))?
                .into_iter()
                .filter(|id| *id != FIRST_RANGE_ID),
        );
        for id in ids {
            self.open_range(id).await?;
        }
        Ok(())
    }

    /// Opens this node's replica of `range_id` (once) and starts its Raft instance.
    pub async fn open_range(&self, range_id: u64) -> Result<Arc<Replica>> {
        let _g = self.open_lock.lock().await;
        if let Some(r) = self.router.get(range_id) {
            return Ok(r);
        }
        let r = Replica::open(&self.env, self.node_id(), range_id)
            .await
            .map_err(storage(format!("opening range {range_id}")))?;
        self.router.insert(r.clone());
        Ok(r)
    }

    /// Creates an empty replica of the range `d` describes, for its leader to fill
    /// with a snapshot. Idempotent; refused while a replica here overlaps its span.
    /// A request for another node id is refused (`WRONG_NODE`): a node that came back
    /// under the address of one it replaced must not take that node's replicas.
    pub async fn create_replica(&self, target_node_id: u64, d: RangeDescriptor) -> Result<()> {
        let me = self.node_id();
        if me == 0 {
            return Err(Error::NotInitialized(
                "this node does not belong to a cluster yet".into(),
            ));
        }
        shoal_raft::router::addressed_to(target_node_id, me)?;
        // A replica left from an earlier membership is kept too: the new learner's
        // leader brings its log up to date.
        lock(&self.wanted).insert(d.range_id, Instant::now());
        if self.router.get(d.range_id).is_some() {
            return Ok(());
        }
        let overlapping = self.router.index.overlapping(&d.start, &d.end);
        if !overlapping.is_empty() {
            return Err(Error::RangeOverlap {
                range_id: d.range_id,
                overlapping,
            });
        }
        let bytes = shoal_raft::codec::encode(&d).map_err(|e| Error::Internal(e.to_string()))?;
        self.engine
            .state_put(d.range_id, StateKey::Created, &bytes, true)
            .map_err(storage("recording the replica"))?;
        self.open_range(d.range_id).await?;
        tracing::info!(
            range_id = d.range_id,
            "created an empty replica for a snapshot"
        );
        Ok(())
    }

    /// The ranges whose replicas on this node their leaders asked for lately.
    pub fn wanted(&self) -> HashSet<u64> {
        let mut w = lock(&self.wanted);
        w.retain(|_, at| at.elapsed() < WANTED_FOR);
        w.keys().copied().collect()
    }

    /// Stops a replica and deletes all of it from this node.
    pub async fn destroy_replica(&self, r: &Replica) -> Result<()> {
        self.retire_replica(r, true).await
    }

    /// Stops a replica and deletes it from this node; its keys too with `with_keys`
    /// (not for the right-hand range of a merge, whose keys its left neighbour holds).
    pub async fn retire_replica(&self, r: &Replica, with_keys: bool) -> Result<()> {
        let _g = self.open_lock.lock().await;
        let span = r.descriptor().map(|d| d.span()).filter(|_| with_keys);
        self.router.remove(r.range_id);
        if let Err(e) = r.shutdown().await {
            tracing::warn!(range_id = r.range_id, error = %e, "stopping a removed replica");
        }
        // Without a descriptor the replica never held data: nothing of the key space.
        self.engine.destroy_range(r.range_id, span.as_ref())?;
        let snapshots = shoal_raft::StateMachine::snapshot_dir(&self.env.snapshot_root, r.range_id);
        if let Err(e) = std::fs::remove_dir_all(&snapshots) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(range_id = r.range_id, error = %e, "removing a destroyed replica's snapshots");
            }
        }
        tracing::info!(
            range_id = r.range_id,
            "destroyed a replica this node no longer holds"
        );
        Ok(())
    }

    /// Flushes the store and stops the replicas.
    pub async fn stop(&self) {
        self.set_draining();
        for r in self.router.all().iter() {
            if let Err(e) = r.shutdown().await {
                tracing::warn!(range_id = r.range_id, error = %e, "stopping raft");
            }
        }
        if let Err(e) = self.engine.flush() {
            tracing::error!(error = %e, "flushing the store");
        }
        // The syncer thread holds the store: stopped and joined here, it cannot be
        // the one that closes it while the process exits (RocksDB aborts then).
        self.env.syncer.stop();
    }
}
