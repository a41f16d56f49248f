//! [`Bootstrap`]: how a node with an empty store comes to belong to a cluster. Either
//! `shoal init` founds the cluster through it (with its `--join` peers and what
//! `--join-service` resolves to), or it keeps looking for peers: it joins a running
//! cluster they report (through its leader, never founding a second one) or, with
//! `--bootstrap-expect N`, founds the cluster once N nodes answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_proto::v1::{
    BootstrapRequest, BootstrapResponse, HelloRequest, HelloResponse, JoinRequest, JoinResponse,
    NodeInfo,
};
use shoal_raft::Node as RaftNode;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::peer_call::call;

/// Founds or joins the cluster for a node with an empty store.
pub struct Bootstrap {
    node: Arc<Node>,
    /// Held while founding a cluster, so two `init`s on one node do not interleave.
    init_lock: tokio::sync::Mutex<()>,
}

/// The StatefulSet ordinal of an address: the number after the last '-' of its first
/// DNS label (`shoal-2.shoal.ns.svc:7070` -> 2).
fn ordinal(addr: &str) -> Option<u64> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let label = host.split('.').next()?;
    label.rsplit_once('-')?.1.parse().ok()
}

impl Bootstrap {
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            init_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The peers to contact: `--join`, and what `--join-service` resolves to now.
    async fn peer_addrs(&self) -> Vec<String> {
        let mut peers: Vec<String> = self.node.cfg.join.clone();
        if let Some((host, port)) = self.node.cfg.join_service_target() {
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
    pub async fn init(&self) -> Result<(String, Vec<NodeInfo>)> {
        let peers = self.peer_addrs().await;
        self.init_with(&peers).await
    }

    /// Refused once this node or any peer belongs to a cluster. Two `init`s started at
    /// the same moment through different nodes race: each bootstraps peers until one
    /// refuses it (a node takes one identity only), so the loser fails halfway with
    /// ALREADY_INITIALIZED rather than founding a second cluster silently; its
    /// bootstrapped peers then need their data directories cleared.
    #[tracing::instrument(skip_all)]
    async fn init_with(&self, peers: &[String]) -> Result<(String, Vec<NodeInfo>)> {
        let node = &self.node;
        let _g = self.init_lock.lock().await;
        if let Some(cur) = node.ident() {
            return Err(Error::AlreadyInitialized(format!(
                "the cluster is already initialised (cluster {}); this node is node {}",
                cur.cluster_id, cur.node_id
            )));
        }
        // Every peer must answer, and none may belong to a cluster.
        let mut members: BTreeMap<String, String> = BTreeMap::new();
        members.insert(node.advertise.clone(), node.name.clone());
        for peer in peers {
            let hello = self.hello(peer, Duration::from_secs(30)).await?;
            if !hello.cluster_id.is_empty() {
                return Err(Error::AlreadyInitialized(format!(
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
            if *addr == node.advertise {
                continue;
            }
            let req = BootstrapRequest {
                cluster_id: cluster_id.clone(),
                node_id: *id,
            };
            let done: Result<BootstrapResponse> = call(node, addr, "Bootstrap", req).await;
            if let Err(e) = done {
                return Err(match e {
                    Error::Remote(status) => Error::Peer {
                        addr: format!("bootstrapping peer {addr}"),
                        status,
                    },
                    e => e,
                });
            }
        }
        let my_id = assigned
            .iter()
            .find(|(_, a, _)| *a == node.advertise)
            .map(|(id, _, _)| *id)
            .ok_or_else(|| Error::Internal("own address missing from the members".into()))?;
        node.accept_bootstrap(&cluster_id, my_id).await?;
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
        node.meta()?.initialize(voters).await?;
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

    /// A peer's hello, asked again until it answers or `patience` runs out.
    async fn hello(&self, peer: &str, patience: Duration) -> Result<HelloResponse> {
        let deadline = Instant::now() + patience;
        loop {
            let res: Result<HelloResponse> = call(&self.node, peer, "Hello", HelloRequest {}).await;
            let res = res.map_err(|e| e.to_string());
            match res {
                Ok(h) => return Ok(h),
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::PeerUnreachable(format!(
                        "peer {peer} of --join did not answer within {patience:?}: {e}"
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// While this node has no identity: finds its peers and either joins the running
    /// cluster they report or, with `--bootstrap-expect`, founds it.
    pub async fn discover(self: Arc<Self>) {
        let mut failures = 0u32;
        while self.node.ident().is_none() && !self.node.shutdown.is_cancelled() {
            match self.discover_once().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    // Report every tenth failure: peers may take a while to appear.
                    if failures.is_multiple_of(10) {
                        tracing::info!(reason = %e, "discovery: not in a cluster yet");
                    }
                    failures += 1;
                }
            }
            tokio::select! {
                _ = self.node.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn discover_once(&self) -> Result<bool> {
        let node = &self.node;
        let peers = self.peer_addrs().await;
        let mut answering = Vec::new();
        for p in &peers {
            if let Ok(Ok(h)) =
                tokio::time::timeout(Duration::from_secs(1), self.hello(p, Duration::ZERO)).await
            {
                if h.advertise_addr != node.advertise {
                    answering.push((p.clone(), h));
                }
            }
        }
        // A running cluster: join it through its leader, never found another.
        if let Some((_, h)) = answering
            .iter()
            .find(|(_, h)| !h.cluster_id.is_empty() && !h.leader_addr.is_empty())
        {
            let join = JoinRequest {
                addr: node.advertise.clone(),
                name: node.name.clone(),
            };
            let resp: JoinResponse = call(node, &h.leader_addr, "Join", join).await?;
            node.accept_bootstrap(&resp.cluster_id, resp.node_id)
                .await?;
            tracing::info!(node_id = resp.node_id, cluster_id = %resp.cluster_id, "joined the running cluster as a new node");
            return Ok(true);
        }
        if answering.iter().any(|(_, h)| !h.cluster_id.is_empty()) {
            return Err(Error::Unavailable(
                "peers belong to a cluster whose leader is not known yet".into(),
            ));
        }
        let Some(expect) = node.cfg.bootstrap_expect else {
            return Ok(false);
        };
        if answering.len() + 1 < expect {
            return Err(Error::Unavailable(format!(
                "{} of the {expect} expected nodes answer",
                answering.len() + 1
            )));
        }
        let mut candidates: Vec<&str> = answering
            .iter()
            .map(|(_, h)| h.advertise_addr.as_str())
            .collect();
        candidates.push(&node.advertise);
        candidates.sort_by_key(|a| (ordinal(a).unwrap_or(u64::MAX), a.to_string()));
        if candidates.first() != Some(&node.advertise.as_str()) {
            // The founder will bootstrap this node.
            return Ok(false);
        }
        let addrs: Vec<String> = answering.into_iter().map(|(p, _)| p).collect();
        self.init_with(&addrs).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ordinal_is_the_number_ending_the_first_label() {
        assert_eq!(ordinal("shoal-2.shoal.ns.svc:7070"), Some(2));
        assert_eq!(ordinal("shoal-10:7070"), Some(10));
        assert_eq!(ordinal("127.0.0.1:7070"), None);
        assert_eq!(ordinal("node:7070"), None);
    }
}
