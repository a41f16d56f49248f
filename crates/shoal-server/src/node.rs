//! [`Node`]: the store, the replicas, bootstrap, and the servers' lifetime.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use openraft::errors::ChangeMembershipError;
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use shoal_proto::error::{codes, not_leader, status};
use shoal_proto::v1::{admin_server::AdminServer, kv_server::KvServer, raft_server::RaftServer};
use shoal_proto::v1::{
    BootstrapRequest, HelloRequest, HelloResponse, JoinRequest, JoinResponse, NodeInfo,
};
use shoal_raft::{
    ClientWriteError, Command, Node as RaftNode, NodeHooks, OpResult, PeerPool, RaftError,
    RaftService, RangeEvent, Replica, ReplicaEnv, Router, WalSyncer, FIRST_RANGE_ID,
};
use shoal_storage::{Engine, EngineOptions};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::config::NodeConfig;
use crate::metrics::Metrics;

/// Who this store belongs to; written once, durably, when the node joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdent {
    pub cluster_id: String,
    pub node_id: u64,
}

/// A running node.
pub struct Node {
    pub cfg: NodeConfig,
    pub advertise: String,
    pub name: String,
    pub engine: Engine,
    pub pool: Arc<PeerPool>,
    pub router: Arc<Router>,
    pub metrics: Metrics,
    ident: RwLock<Option<StoreIdent>>,
    bootstrap_lock: tokio::sync::Mutex<()>,
    /// Held while founding a cluster, so two `init`s on one node do not interleave.
    init_lock: tokio::sync::Mutex<()>,
    draining: AtomicBool,
    /// What every replica of this node shares.
    pub(crate) env: ReplicaEnv,
    /// Splits reported by the state machines, until `run` takes them.
    pub(crate) events: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<RangeEvent>>>,
    /// Range bookkeeping of the leader's loops (see `ranges.rs`).
    pub(crate) ranges: crate::ranges::RangeState,
    /// The placement driver's bookkeeping (see `placement.rs`).
    pub(crate) placement: crate::placement::PlacementState,
    /// Why a replica stopped for good (a storage error): the node then exits, so its
    /// supervisor restarts it from what is durable.
    fatal: std::sync::OnceLock<String>,
    pub shutdown: CancellationToken,
}

impl Node {
    /// Opens the store and, if this node already belongs to a cluster, its replicas.
    pub async fn open(cfg: NodeConfig) -> anyhow::Result<Arc<Self>> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        let engine = Engine::open(&cfg.store_dir(), &EngineOptions::default())
            .with_context(|| format!("opening the store in {}", cfg.store_dir().display()))?;
        let ident = match engine.ident().context("reading the store identity")? {
            Some(b) => Some(
                serde_json::from_slice::<StoreIdent>(&b).context("decoding the store identity")?,
            ),
            None => None,
        };
        let syncer = WalSyncer::start(engine.clone()).context("starting the log syncer")?;
        let router = Router::new();
        let pool = PeerPool::new();
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
            events: std::sync::Mutex::new(Some(events_rx)),
            ranges: Default::default(),
            placement: Default::default(),
            advertise: cfg.advertise(),
            name: cfg.name(),
            cfg,
            engine,
            pool,
            router,
            metrics: Metrics::new(),
            ident: RwLock::new(ident.clone()),
            bootstrap_lock: tokio::sync::Mutex::new(()),
            init_lock: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            fatal: std::sync::OnceLock::new(),
            shutdown: CancellationToken::new(),
        });
        if let Some(id) = ident {
            tracing::info!(node_id = id.node_id, cluster_id = %id.cluster_id, "restarting with the identity on disk");
            node.open_replicas().await?;
        } else {
            tracing::info!("empty store: waiting for `shoal init` or a join");
        }
        Ok(node)
    }

    pub fn ident(&self) -> Option<StoreIdent> {
        self.ident.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn node_id(&self) -> u64 {
        self.ident().map_or(0, |i| i.node_id)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Opens the meta range's replica and every other replica this node's store holds.
    async fn open_replicas(&self) -> anyhow::Result<()> {
        let mut ids = vec![FIRST_RANGE_ID];
        ids.extend(
            self.engine
                .ranges_with(shoal_storage::StateKey::Created)
                .context("listing the ranges of the store")?
                .into_iter()
                .filter(|id| *id != FIRST_RANGE_ID),
        );
        for id in ids {
            self.open_range(id)
                .await
                .with_context(|| format!("opening range {id}"))?;
        }
        Ok(())
    }

    /// The replica of the first range, once this node belongs to a cluster.
    pub fn replica(&self) -> Result<Arc<Replica>, Status> {
        self.router.get(FIRST_RANGE_ID).ok_or_else(|| {
            status(
                Code::Unavailable,
                codes::NOT_INITIALIZED,
                "this node does not belong to a cluster yet: run `shoal init` once the nodes are up",
                None,
            )
        })
    }

    /// Refuses (retryably, NOT_INITIALIZED) while this node cannot route requests by
    /// key: before it belongs to a cluster, and until its meta replica has applied the
    /// cluster's first configuration (a node just founded or joined).
    pub fn routing_ready(&self) -> Result<(), Status> {
        if self.replica()?.descriptor().is_some() {
            return Ok(());
        }
        Err(status(
            Code::Unavailable,
            codes::NOT_INITIALIZED,
            "this node has not yet applied its cluster's first configuration; retry shortly",
            None,
        ))
    }

    /// Takes the identity given by the node running `init` (idempotent for the same one).
    pub async fn accept_bootstrap(&self, cluster_id: &str, node_id: u64) -> Result<(), Status> {
        let _g = self.bootstrap_lock.lock().await;
        if let Some(cur) = self.ident() {
            if cur.cluster_id == cluster_id && cur.node_id == node_id {
                return Ok(());
            }
            return Err(already(&format!(
                "node at {} already belongs to cluster {} as node {}",
                self.advertise, cur.cluster_id, cur.node_id
            )));
        }
        if cluster_id.is_empty() || node_id == 0 {
            return Err(status(
                Code::InvalidArgument,
                codes::INVALID_ARGUMENT,
                "bootstrap needs a cluster id and a node id",
                None,
            ));
        }
        let ident = StoreIdent {
            cluster_id: cluster_id.to_string(),
            node_id,
        };
        let bytes = serde_json::to_vec(&ident).map_err(|e| Status::internal(e.to_string()))?;
        self.engine
            .set_ident(&bytes)
            .map_err(|e| Status::internal(format!("writing the store identity: {e}")))?;
        *self.ident.write().unwrap_or_else(|p| p.into_inner()) = Some(ident);
        self.open_replicas()
            .await
            .map_err(|e| Status::internal(format!("{e:#}")))?;
        tracing::info!(node_id, cluster_id, "joined the cluster");
        Ok(())
    }

    /// The peers to contact: `--join`, and what `--join-service` resolves to now.
    pub async fn peer_addrs(&self) -> Vec<String> {
        let mut peers: Vec<String> = self.cfg.join.clone();
        if let Some((host, port)) = self.cfg.join_service_target() {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addrs) => peers.extend(addrs.map(|a| a.to_string())),
                Err(e) => {
                    tracing::debug!(service = %host, error = %e, "resolving the join service")
                }
            }
        }
        peers.sort();
        peers.dedup();
        peers
    }

    /// Founds the cluster from this node and its peers (`--join`, `--join-service`),
    /// once.
    pub async fn init(&self) -> Result<(String, Vec<NodeInfo>), Status> {
        let peers = self.peer_addrs().await;
        self.init_with(&peers).await
    }

    /// Refused once this node or any peer belongs to a cluster. Two `init`s started at
    /// the same moment through different nodes race: each bootstraps peers until one
    /// refuses it (a node takes one identity only), so the loser fails halfway with
    /// ALREADY_INITIALIZED rather than founding a second cluster silently; its
    /// bootstrapped peers then need their data directories cleared.
    async fn init_with(&self, peers: &[String]) -> Result<(String, Vec<NodeInfo>), Status> {
        let _g = self.init_lock.lock().await;
        if let Some(cur) = self.ident() {
            return Err(already(&format!(
                "the cluster is already initialised (cluster {}); this node is node {}",
                cur.cluster_id, cur.node_id
            )));
        }
        // Every peer must answer, and none may belong to a cluster.
        let mut members: BTreeMap<String, String> = BTreeMap::new();
        members.insert(self.advertise.clone(), self.name.clone());
        for peer in peers {
            let hello = self.hello_peer(peer, Duration::from_secs(30)).await?;
            if !hello.cluster_id.is_empty() {
                return Err(already(&format!(
                    "the cluster is already initialised: peer {peer} belongs to cluster {}",
                    hello.cluster_id
                )));
            }
            members.insert(hello.advertise_addr, hello.node_name);
        }
        let cluster_id = uuid::Uuid::new_v4().to_string();
        let assigned: Vec<(u64, String, String)> = members
            .into_iter()
            .enumerate()
            .map(|(i, (addr, name))| (i as u64 + 1, addr, name))
            .collect();
        for (id, addr, _) in &assigned {
            if *addr == self.advertise {
                continue;
            }
            let mut c = self
                .pool
                .client(addr)
                .map_err(|e| Status::internal(e.to_string()))?;
            c.bootstrap(BootstrapRequest {
                cluster_id: cluster_id.clone(),
                node_id: *id,
            })
            .await
            .map_err(|e| {
                Status::new(
                    e.code(),
                    format!("bootstrapping peer {addr}: {}", e.message()),
                )
            })?;
        }
        let my_id = assigned
            .iter()
            .find(|(_, a, _)| *a == self.advertise)
            .map(|(id, _, _)| *id)
            .ok_or_else(|| Status::internal("own address missing from the members"))?;
        self.accept_bootstrap(&cluster_id, my_id).await?;
        let voters: BTreeMap<u64, RaftNode> = assigned
            .iter()
            .map(|(id, addr, name)| {
                (
                    *id,
                    RaftNode {
                        addr: addr.clone(),
                        name: name.clone(),
                    },
                )
            })
            .collect();
        self.replica()?
            .raft
            .initialize(voters)
            .await
            .map_err(|e| Status::internal(format!("initialising raft: {e}")))?;
        tracing::info!(%cluster_id, nodes = assigned.len(), "cluster initialised");
        let nodes = assigned
            .into_iter()
            .map(|(node_id, addr, name)| NodeInfo {
                node_id,
                addr,
                name,
                role: "voter".into(),
                ..Default::default()
            })
            .collect();
        Ok((cluster_id, nodes))
    }

    async fn hello_peer(&self, peer: &str, patience: Duration) -> Result<HelloResponse, Status> {
        let deadline = Instant::now() + patience;
        loop {
            let res = match self.pool.client(peer) {
                Ok(mut c) => c.hello(HelloRequest {}).await.map(|r| r.into_inner()),
                Err(e) => Err(Status::unavailable(e.to_string())),
            };
            match res {
                Ok(h) => return Ok(h),
                Err(e) if Instant::now() >= deadline => {
                    return Err(status(
                        Code::FailedPrecondition,
                        codes::PEER_UNREACHABLE,
                        format!(
                            "peer {peer} of --join did not answer within {patience:?}: {}",
                            e.message()
                        ),
                        None,
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    pub fn hello_response(&self) -> HelloResponse {
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
        }
    }

    /// On the leader: admits a node with an empty disk under a new id, as a learner;
    /// [`Node::maintain`] promotes it to voter once it has caught up.
    pub async fn admit(&self, addr: &str, name: &str) -> Result<JoinResponse, Status> {
        crate::config::check_host_port(addr).map_err(|e| {
            status(
                Code::InvalidArgument,
                codes::INVALID_ARGUMENT,
                format!("join address {addr:?}: {e}"),
                None,
            )
        })?;
        let r = self.replica()?;
        let ident = self
            .ident()
            .ok_or_else(|| Status::internal("a node with a replica has no identity"))?;
        let resp = r
            .raft
            .client_write(Command::AllocNodeId)
            .await
            .map_err(|e| write_error(&r, e))?;
        let Some(OpResult::NodeId(id)) = resp.data.results.first().cloned() else {
            return Err(Status::internal("node id allocation returned no id"));
        };
        r.raft
            .add_learner(
                id,
                RaftNode {
                    addr: addr.to_string(),
                    name: name.to_string(),
                },
                false,
            )
            .await
            .map_err(|e| write_error(&r, e))?;
        tracing::info!(node_id = id, %addr, "admitted a new node as a learner");
        Ok(JoinResponse {
            cluster_id: ident.cluster_id,
            node_id: id,
        })
    }

    /// On the leader: removes `node_id` from the membership.
    pub async fn remove_node(&self, node_id: u64) -> Result<(), Status> {
        let r = self.replica()?;
        let m = r.metrics();
        let mem = m.membership_config.membership();
        if mem.get_node(&node_id).is_none() {
            return Err(status(
                Code::NotFound,
                codes::INVALID_ARGUMENT,
                format!("node {node_id} is not a member of the cluster"),
                None,
            ));
        }
        let ids = BTreeSet::from([node_id]);
        let change = if mem.voter_ids().any(|v| v == node_id) {
            if mem.voter_ids().count() <= 1 {
                return Err(status(
                    Code::FailedPrecondition,
                    codes::INVALID_ARGUMENT,
                    "cannot remove the last voter",
                    None,
                ));
            }
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        // Another membership change (a learner's promotion, the second half of a
        // joint change) may be under way: wait for it, then make ours.
        let deadline = std::time::Instant::now() + MEMBERSHIP_PATIENCE;
        loop {
            match r.raft.change_membership(change.clone(), false).await {
                Ok(_) => break,
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(write_error(&r, e)),
            }
        }
        tracing::info!(node_id, "removed from the cluster");
        Ok(())
    }

    /// Why the node is failing, if a replica stopped for good.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    /// Stops the node when a replica's Raft stopped on its own (a storage error: a
    /// full disk, a failed fsync). Such a replica can neither serve nor recover in
    /// this process, and what it acknowledged is durable: exiting lets the kubelet (or
    /// any supervisor) restart the node from its store, as it would a crash.
    fn check_fatal(&self) {
        if self.shutdown.is_cancelled() {
            return;
        }
        for r in self.router.all() {
            if let Some(e) = r.with_metrics(|m| m.running_state.as_ref().err().cloned()) {
                let why = format!("range {} stopped: {e}", r.range_id);
                tracing::error!(range_id = r.range_id, error = %e, "a replica stopped; exiting so the node restarts from its store");
                let _ = self.fatal.set(why);
                self.shutdown.cancel();
                return;
            }
        }
    }

    /// Leader housekeeping of the meta range, run every second: learners that caught
    /// up become voters, up to five (see `placement::meta_voters`).
    pub(crate) async fn maintain(&self) {
        if let Some(r) = self.router.get(FIRST_RANGE_ID) {
            self.maintain_meta_voters(&r).await;
        }
    }

    /// While this node has no identity: finds its peers and either joins the running
    /// cluster they report or, with `--bootstrap-expect`, founds it.
    async fn discover(self: Arc<Self>) {
        let mut failures = 0u32;
        while self.ident().is_none() && !self.shutdown.is_cancelled() {
            match self.discover_once().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    // Report every tenth failure: peers may take a while to appear.
                    if failures.is_multiple_of(10) {
                        tracing::info!(reason = %e.message(), "discovery: not in a cluster yet");
                    }
                    failures += 1;
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn discover_once(&self) -> Result<bool, Status> {
        let peers = self.peer_addrs().await;
        let mut answering = Vec::new();
        for p in &peers {
            if let Ok(Ok(h)) =
                tokio::time::timeout(Duration::from_secs(1), self.hello_peer(p, Duration::ZERO))
                    .await
            {
                if h.advertise_addr != self.advertise {
                    answering.push((p.clone(), h));
                }
            }
        }
        // A running cluster: join it through its leader, never found another.
        if let Some((_, h)) = answering
            .iter()
            .find(|(_, h)| !h.cluster_id.is_empty() && !h.leader_addr.is_empty())
        {
            let mut c = self
                .pool
                .client(&h.leader_addr)
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let resp = c
                .join(JoinRequest {
                    addr: self.advertise.clone(),
                    name: self.name.clone(),
                })
                .await?
                .into_inner();
            self.accept_bootstrap(&resp.cluster_id, resp.node_id)
                .await?;
            tracing::info!(node_id = resp.node_id, cluster_id = %resp.cluster_id, "joined the running cluster as a new node");
            return Ok(true);
        }
        if answering.iter().any(|(_, h)| !h.cluster_id.is_empty()) {
            return Err(Status::unavailable(
                "peers belong to a cluster whose leader is not known yet",
            ));
        }
        let Some(expect) = self.cfg.bootstrap_expect else {
            return Ok(false);
        };
        if answering.len() + 1 < expect {
            return Err(Status::unavailable(format!(
                "{} of the {expect} expected nodes answer",
                answering.len() + 1
            )));
        }
        let mut candidates: Vec<&str> = answering
            .iter()
            .map(|(_, h)| h.advertise_addr.as_str())
            .collect();
        candidates.push(&self.advertise);
        candidates.sort_by_key(|a| (ordinal(a).unwrap_or(u64::MAX), a.to_string()));
        if candidates.first() != Some(&self.advertise.as_str()) {
            // The founder will bootstrap this node.
            return Ok(false);
        }
        let addrs: Vec<String> = answering.into_iter().map(|(p, _)| p).collect();
        self.init_with(&addrs).await?;
        Ok(true)
    }

    /// Whether this node serves: it belongs to a cluster, its replica knows a leader,
    /// and it is a member of the range.
    pub fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let mut checks = Vec::new();
        let ident = self.ident();
        checks.push((
            "initialized",
            if ident.is_some() {
                Ok(())
            } else {
                Err("not part of a cluster yet".into())
            },
        ));
        checks.push((
            "not_draining",
            if self.is_draining() {
                Err("shutting down".into())
            } else {
                Ok(())
            },
        ));
        let joined = match self.router.get(FIRST_RANGE_ID) {
            None => Err("no replica open".to_string()),
            Some(r) => {
                let m = r.metrics();
                let member = m
                    .membership_config
                    .membership()
                    .get_node(&r.node_id)
                    .is_some();
                if !member {
                    Err("not yet a member of range 1".into())
                } else if m.current_leader.is_none() {
                    Err("range 1 has no known leader".into())
                } else {
                    Ok(())
                }
            }
        };
        checks.push(("joined", joined));
        let caught_up = match self.router.get(FIRST_RANGE_ID) {
            None => Err("no replica open".to_string()),
            Some(r) => {
                let window = Duration::from_millis((self.cfg.election_timeout_ms * 3).max(2000));
                let m = r.metrics();
                let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
                let committed = m.local_committed.as_ref().map_or(0, |l| l.index);
                match r.leader_contact_age() {
                    None => Err("no contact with a leader yet".to_string()),
                    Some(age) if age > window => Err(format!(
                        "no contact with the leader (or, on the leader, with a quorum) for {} ms",
                        age.as_millis()
                    )),
                    Some(_) if committed > applied + READY_LAG => Err(format!(
                        "applied {applied} of {committed} committed entries"
                    )),
                    Some(_) => Ok(()),
                }
            }
        };
        checks.push(("caught_up", caught_up));
        checks
    }

    /// Prepares this node to stop: readiness turns false, new requests are refused,
    /// and its leaderships move to the most caught-up voter. Returns the ranges it
    /// still leads when `patience` runs out.
    pub async fn drain(&self, patience: Duration) -> Vec<u64> {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + patience;
        let mut still = Vec::new();
        for r in self.router.all() {
            let m = r.metrics();
            if m.current_leader != Some(r.node_id) {
                continue;
            }
            let matched = m.replication.clone().unwrap_or_default();
            let target = m
                .membership_config
                .membership()
                .voter_ids()
                .filter(|id| *id != r.node_id)
                .max_by_key(|id| matched.get(id).cloned().flatten().map_or(0, |l| l.index));
            let Some(to) = target else {
                still.push(r.range_id);
                continue;
            };
            tracing::info!(range_id = r.range_id, to, "moving leadership away");
            let moved = loop {
                if r.current_leader() != Some(r.node_id) {
                    break true;
                }
                if Instant::now() >= deadline {
                    break false;
                }
                if let Err(e) = r.raft.trigger().transfer_leader(to).await {
                    tracing::warn!(error = %e, "leadership transfer");
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            if !moved {
                still.push(r.range_id);
            }
        }
        still
    }

    /// Flushes the store and stops the replicas.
    pub async fn stop(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for r in self.router.all() {
            if let Err(e) = r.raft.shutdown().await {
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

/// A replica more than this many committed entries behind is not ready.
const READY_LAG: u64 = 100;

/// How long a membership change waits for one already under way.
const MEMBERSHIP_PATIENCE: Duration = Duration::from_secs(10);

/// The StatefulSet ordinal of an address: the number after the last '-' of its first
/// DNS label (`shoal-2.shoal.ns.svc:7070` -> 2).
fn ordinal(addr: &str) -> Option<u64> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let label = host.split('.').next()?;
    label.rsplit_once('-')?.1.parse().ok()
}

/// The status of a failed proposal.
pub(crate) fn write_error(r: &Replica, e: RaftError<ClientWriteError>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            not_leader(r.range_id, f.leader_id, f.leader_node.map(|n| n.addr))
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => status(
            Code::Unavailable,
            codes::OUTCOME_UNKNOWN,
            "leadership changed while the change was in flight; it may or may not have been applied",
            None,
        ),
        RaftError::APIError(e) => status(Code::FailedPrecondition, codes::INVALID_ARGUMENT, e.to_string(), None),
        RaftError::Fatal(e) => status(Code::Unavailable, codes::SHUTTING_DOWN, format!("raft stopped: {e}"), None),
    }
}

fn already(msg: &str) -> Status {
    status(
        Code::FailedPrecondition,
        codes::ALREADY_INITIALIZED,
        msg,
        None,
    )
}

struct Hooks(Arc<Node>);

#[tonic::async_trait]
impl NodeHooks for Hooks {
    async fn hello(&self) -> HelloResponse {
        self.0.hello_response()
    }

    async fn bootstrap(&self, req: BootstrapRequest) -> Result<(), Status> {
        self.0.accept_bootstrap(&req.cluster_id, req.node_id).await
    }

    async fn join(&self, req: JoinRequest) -> Result<JoinResponse, Status> {
        self.0.admit(&req.addr, &req.name).await
    }

    async fn alloc_range_id(&self) -> Result<u64, Status> {
        self.0.alloc_range_id_here().await
    }

    async fn report_ranges(
        &self,
        descriptors: Vec<shoal_raft::RangeDescriptor>,
    ) -> Result<(), Status> {
        self.0.record_descriptors_here(descriptors).await
    }

    async fn create_replica(
        &self,
        target_node_id: u64,
        d: shoal_raft::RangeDescriptor,
    ) -> Result<(), Status> {
        self.0.create_replica(target_node_id, d).await
    }

    async fn node_heartbeat(&self, report: shoal_raft::NodeReport) -> Result<(), Status> {
        self.0.leads_meta()?;
        self.0.heartbeat_here(report);
        Ok(())
    }

    async fn change_replicas(&self, change: shoal_raft::ChangeReplicas) -> Result<(), Status> {
        self.0.change_replicas_here(change).await
    }
}

/// Runs a node until SIGTERM or SIGINT (or `node.shutdown` is cancelled).
pub async fn run(cfg: NodeConfig) -> anyhow::Result<()> {
    shoal_raft::failpoints::setup();
    let listen = cfg.listen_addr;
    let http_addr = cfg.http_addr;
    let grpc_listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the gRPC address {listen}"))?;
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {http_addr}"))?;
    let node = Node::open(cfg).await?;
    tracing::info!(grpc = %listen, http = %http_addr, advertise = %node.advertise, "serving");
    if node.ident().is_none() {
        tokio::spawn(node.clone().discover());
    }
    let range_events = tokio::spawn(node.clone().handle_range_events());
    let housekeeping = {
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = node.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        node.check_fatal();
                        for r in node.router.all() {
                            r.snapshot_if_due().await;
                        }
                        node.maintain().await;
                        node.maintain_ranges().await;
                    }
                }
            }
        })
    };

    // SIGTERM: unready at once, leaderships moved away, then the servers stop taking
    // requests and finish those in flight, all within the drain deadline.
    // Heartbeats to the placement driver, the driver itself (on the meta range's
    // leader) and the collection of removed replicas: apart from the loop above, so a
    // slow round of range upkeep never delays a heartbeat.
    let placement = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut round = 0u64;
            loop {
                tokio::select! {
                    _ = node.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(crate::placement::HEARTBEAT_INTERVAL) => {
                        node.send_heartbeat().await;
                        node.run_placement().await;
                        if round % 5 == 4 {
                            node.collect_garbage().await;
                        }
                        round += 1;
                    }
                }
            }
        })
    };
    // Idle ranges stop their Raft timers; one beat per peer node stands in for their
    // heartbeats (see shoal_raft::quiesce).
    let quiescence = {
        let node = node.clone();
        let mut q = shoal_raft::Quiescer::new(
            node.router.clone(),
            node.pool.clone(),
            shoal_raft::QuiesceOptions::from_raft(&node.env.opts),
        );
        let enabled = !node.cfg.disable_quiescence;
        tokio::spawn(async move {
            if !enabled {
                return;
            }
            loop {
                tokio::select! {
                    _ = node.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(q.options().beat_interval) => q.round(),
                }
            }
        })
    };
    let drain_timeout = Duration::from_secs(node.cfg.drain_timeout_secs);
    let signals = {
        let node = node.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            let still = node.drain(drain_timeout / 2).await;
            if !still.is_empty() {
                tracing::warn!(ranges = ?still, "still leading after the drain's half-time; stopping anyway");
            }
            node.shutdown.cancel();
        })
    };
    let max_msg = node.cfg.max_request_bytes * 2 + (1 << 20);
    let kv = KvServer::new(crate::kv::KvService::new(node.clone()))
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(usize::MAX);
    let admin = AdminServer::new(crate::admin::AdminService::new(node.clone()));
    let raft = RaftServer::new(RaftService::new(
        node.router.clone(),
        Arc::new(Hooks(node.clone())),
    ))
    .max_decoding_message_size(usize::MAX)
    .max_encoding_message_size(usize::MAX);
    let token = node.shutdown.clone();
    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(kv)
        .add_service(admin)
        .add_service(raft)
        .serve_with_incoming_shutdown(
            // TCP_NODELAY on every accepted connection: without it, small responses
            // wait for the peer's delayed ACK (tens of milliseconds).
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            token.cancelled_owned(),
        );
    let http = crate::http::serve(node.clone(), http_listener);
    let servers = async { tokio::join!(grpc, http) };
    let deadline = async {
        node.shutdown.cancelled().await;
        tokio::time::sleep(drain_timeout / 2).await;
    };
    let (g, h) = tokio::select! {
        r = servers => r,
        _ = deadline => {
            tracing::warn!("in-flight requests did not finish within the drain deadline; exiting");
            (Ok(()), Ok(()))
        }
    };
    node.stop().await;
    signals.abort();
    housekeeping.abort();
    placement.abort();
    quiescence.abort();
    range_events.abort();
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    if let Some(why) = node.fatal() {
        anyhow::bail!("{why}");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
