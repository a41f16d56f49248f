//! [`Router`]: the node's replicas, by range id and (through its [`RangeIndex`]) by
//! the keys they hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::index::RangeIndex;
use crate::replica::Replica;
use crate::types::NodeId;

/// Refuses a message addressed to another node id than `me` (0: any): a node that
/// came back under the address of one it replaced must not take that node's messages.
pub fn addressed_to(target: u64, me: NodeId) -> Result<()> {
    if target != 0 && target != me {
        return Err(Error::WrongNode { target, me });
    }
    Ok(())
}

/// A list of replicas by range id, shared (see [`Router::all`]).
pub type Replicas = Arc<[Arc<Replica>]>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node's replicas, by range id, and by span through [`Router::index`].
#[derive(Debug, Default)]
pub struct Router {
    replicas: RwLock<HashMap<u64, Arc<Replica>>>,
    /// Every replica by range id, as [`Router::all`] last listed them: dropped by each
    /// insert and removal (under the write lock of `replicas`), listed again by the
    /// next call. The node's loops list every replica several times a second, and a
    /// fresh list of ten thousand was a copy and a sort each time.
    listed: Mutex<Option<Replicas>>,
    pub index: Arc<RangeIndex>,
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

    /// The replica holding `key` (with `before`: the keys just before it).
    pub fn locate(&self, key: &[u8], before: bool) -> Option<Arc<Replica>> {
        self.get(self.index.locate(key, before)?)
    }

    pub fn get(&self, range_id: u64) -> Option<Arc<Replica>> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&range_id)
            .cloned()
    }

    /// The replica of `range_id` a peer's message is for, if this node holds it under
    /// the node id the peer addressed (0: any).
    pub fn addressed(&self, range_id: u64, target: u64) -> Result<Arc<Replica>> {
        let r = self
            .get(range_id)
            .ok_or(Error::RangeNotFound { range_id })?;
        addressed_to(target, r.node_id)?;
        Ok(r)
    }

    pub fn insert(&self, replica: Arc<Replica>) {
        {
            let mut replicas = self.replicas.write().unwrap_or_else(|p| p.into_inner());
            replicas.insert(replica.range_id, replica);
            *lock(&self.listed) = None;
        }
        // A routing table read while the replica was opened (its descriptor set) but
        // not yet listed here lacks it: read again.
        self.index.note_change();
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
        let r = {
            let mut replicas = self.replicas.write().unwrap_or_else(|p| p.into_inner());
            *lock(&self.listed) = None;
            replicas.remove(&range_id)
        };
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

    /// Every replica of this node, by range id. Shared: a list made once after each
    /// insert or removal.
    pub fn all(&self) -> Replicas {
        let replicas = self.replicas.read().unwrap_or_else(|p| p.into_inner());
        // Listed under the read lock: no insert or removal can come between the list
        // and its keeping.
        let mut listed = lock(&self.listed);
        if let Some(l) = listed.as_ref() {
            return l.clone();
        }
        let mut v: Vec<_> = replicas.values().cloned().collect();
        v.sort_by_key(|r| r.range_id);
        let l: Replicas = v.into();
        *listed = Some(l.clone());
        l
    }
}
