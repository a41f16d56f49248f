//! [`RangeKeeper`]: the upkeep of a node's ranges beyond the first. It opens the right
//! half of every split its state machines apply; on the leader of each range, once a
//! second, it reports the range's descriptor to the routing table, splits the range
//! once its data passes `--range-max-bytes` or once it stays hot (over `--split-qps`
//! for `--split-load-window`, at a key dividing its load: see `shoal_raft::load`),
//! and asks members that skipped a split to create their replica, and abandons the
//! merge of a range frozen too long (`merge.rs`); it retires the right-hand replica
//! of every merge its state machines apply, and destroys this node's replicas of
//! ranges that no longer count it (garbage collection). Where replicas live is the
//! placement driver's to decide (`placement/`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::v1::PeerMessage;
use shoal_raft::load::{self, SAMPLE_SIZE};
use shoal_raft::{
    Command, OpResult, RangeDescriptor, RangeEvent, Refusal, Replica, FIRST_RANGE_ID,
};

use crate::convert::peer_message;
use crate::error::{Error, Result};
use crate::merge;
use crate::node::{lock, Node, RangeEvents};
use crate::peer_call;
use crate::routing;

/// How long a member of a range may go without replicating anything before its
/// leader asks its node to create the replica (it skipped the split that made the
/// range, by installing a snapshot of the left half).
const MISSING_REPLICA_PATIENCE: Duration = Duration::from_secs(5);

/// An empty replica (created for a snapshot) left this long without one, of a range
/// that does not count this node, is destroyed.
const ORPHAN_AFTER: Duration = Duration::from_secs(10);

/// Keys sampled from a hot range's requests kept at most (the newest).
const MAX_HOT_SAMPLE: usize = 16 * SAMPLE_SIZE;

/// A range's load while this node leads it, between rounds of upkeep.
#[derive(Default)]
struct Heat {
    /// When its load was last read while this node led it.
    read: Option<Instant>,
    /// Since when it has been over `--split-qps` without a break.
    hot_since: Option<Instant>,
    /// Keys sampled from its requests since then.
    sample: Vec<Vec<u8>>,
}

/// The upkeep of a node's ranges, and what it remembers between rounds.
pub struct RangeKeeper {
    node: Arc<Node>,
    /// The descriptor the meta range last recorded from this node, per range.
    reported: Mutex<HashMap<u64, RangeDescriptor>>,
    /// Bytes applied to a range since its size was last measured; absent: never.
    unmeasured: Mutex<HashMap<u64, u64>>,
    /// The size in bytes of each range this node leads, when last measured.
    measured: Mutex<HashMap<u64, u64>>,
    /// Since when a member of a range has replicated nothing, per (range, node).
    unmatched: Mutex<HashMap<(u64, u64), Instant>>,
    /// The load of each range this node leads.
    heat: Mutex<HashMap<u64, Heat>>,
    /// Since when each range this node leads has been frozen for a merge.
    frozen_since: Mutex<HashMap<u64, Instant>>,
    /// Since when each range this node leads and the range after it have both been
    /// idle.
    idle_since: Mutex<HashMap<u64, Instant>>,
}

impl RangeKeeper {
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            reported: Mutex::default(),
            unmeasured: Mutex::default(),
            measured: Mutex::default(),
            unmatched: Mutex::default(),
            heat: Mutex::default(),
            frozen_since: Mutex::default(),
            idle_since: Mutex::default(),
        }
    }

    /// Opens the right half of every split a state machine of this node applies, and
    /// retires the right-hand replica of every merge, until the node stops.
    pub async fn follow_splits(self: Arc<Self>, mut events: RangeEvents) {
        while let Some(ev) = events.recv().await {
            match ev {
                RangeEvent::Merged { left, right } => self.retire_merged(left, right).await,
                RangeEvent::Split { left, right } => {
                    match self.node.open_range(right.range_id).await {
                        Ok(r) => self.elect_right_half(left, &r).await,
                        Err(e) => {
                            tracing::error!(left, right = right.range_id, error = %e, "opening the right half of a split")
                        }
                    }
                    // The left half's snapshot still covers the right half's keys: a
                    // node given it (a new replica) holding the right half would refuse
                    // it as overlapping. A fresh one covers the left half alone.
                    if let Some(l) = self.node.router.get(left) {
                        if let Err(e) = l.snapshot().await {
                            tracing::warn!(range_id = left, error = %e, "snapshot after a split");
                        }
                    }
                }
            }
        }
    }

    /// Range `left` absorbed `right` on this node: this node's replica of `right` goes
    /// (its keys stay: they are `left`'s), and `left` starts from a fresh snapshot (a
    /// member given the one before the merge would lack `right`'s keys). The leader of
    /// `left` tells the routing table.
    async fn retire_merged(&self, left: u64, right: u64) {
        if let Some(r) = self.node.router.get(right) {
            if let Err(e) = self.node.retire_replica(&r, false).await {
                tracing::error!(left, right, error = %e, "retiring the right-hand replica of a merge");
            }
        }
        forget(&self.frozen_since, &[right]);
        // The left range holds more now: measured again next round.
        lock(&self.unmeasured).insert(left, u64::MAX);
        let Some(l) = self.node.router.get(left) else {
            return;
        };
        if let Err(e) = l.snapshot().await {
            tracing::warn!(range_id = left, error = %e, "snapshot after a merge");
        }
        if let (true, Some(d)) = (l.is_leader(), l.descriptor()) {
            merge::announce(&self.node, &d, right).await;
        }
    }

    /// On the node leading the left half of a split: starts the right half's election
    /// at once, rather than leaving the range without a leader for an election timeout
    /// (splitting a range into 64 took two minutes that way). Every member starts the
    /// right half with the split's log and the left leader's vote, so this node wins
    /// unless another was elected meanwhile, which is as good.
    async fn elect_right_half(&self, left: u64, right: &Replica) {
        let leads_left = self.node.router.get(left).is_some_and(|l| l.is_leader());
        if !leads_left || right.current_leader().is_some() {
            return;
        }
        if let Err(e) = right.elect().await {
            tracing::warn!(range_id = right.range_id, error = %e, "electing the right half of a split");
        }
    }

    /// Upkeep of the ranges this node leads: members that skipped a split, the routing
    /// table, and splits of ranges grown too large.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn maintain(&self) {
        if self.node.node_id() == 0 {
            return;
        }
        let mut to_report = Vec::new();
        let mut following = Vec::new();
        for r in self.node.router.all().iter() {
            if !r.is_leader() {
                following.push(r.range_id);
                // Reads a follower served are not the leader's to split by.
                r.take_load();
                continue;
            }
            if r.frozen().is_some() {
                self.unfreeze_if_stalled(r).await;
                continue;
            }
            // A quiesced range holds the whole log on every member: none is missing.
            if !r.is_quiesced() {
                self.create_missing_replicas(r).await;
            }
            let Some(d) = r.shared_descriptor() else {
                continue;
            };
            let (reported, version) = {
                let rep = lock(&self.reported);
                let p = rep.get(&r.range_id);
                (p == Some(&*d), p.map(|p| p.epoch.version))
            };
            if !reported {
                // A split not reported yet (its leader's report failed, or another node
                // leads the left half now): the right half goes with the left, in the
                // same write, or the table would have a hole until the right half's own
                // leader reported it. This node holds the right half too (every member
                // of the left opens it); the meta range keeps only the newer of two
                // descriptors of a range.
                if version != Some(d.epoch.version) {
                    if let Some(rd) = self.split_right_half(&d) {
                        to_report.push(rd);
                    }
                }
                to_report.push((*d).clone());
            }
            if !self.split_if_large(r, &d).await {
                self.split_if_hot(r, &d).await;
                self.merge_if_idle(r, &d).await;
            }
        }
        // What this node kept of the ranges it no longer leads: each map locked once.
        forget(&self.reported, &following);
        forget(&self.unmeasured, &following);
        forget(&self.measured, &following);
        forget(&self.heat, &following);
        forget(&self.frozen_since, &following);
        forget(&self.idle_since, &following);
        if !to_report.is_empty() {
            match routing::report(&self.node, to_report.clone()).await {
                Ok(()) => {
                    let mut rep = lock(&self.reported);
                    for d in to_report {
                        rep.insert(d.range_id, d);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "reporting descriptors"),
            }
        }
    }

    /// Abandons the merge of `r` (led here, frozen) once it has been frozen for
    /// [`merge::FROZEN_PATIENCE`]: its coordinator is gone or stuck.
    async fn unfreeze_if_stalled(&self, r: &Replica) {
        let since = *lock(&self.frozen_since)
            .entry(r.range_id)
            .or_insert_with(Instant::now);
        if since.elapsed() < merge::FROZEN_PATIENCE {
            return;
        }
        merge::recover(&self.node, r).await;
        lock(&self.frozen_since).remove(&r.range_id);
    }

    /// Merges `r` (led here, described by `d`) with the range after it once both have
    /// been idle (quiesced: no writes) for `--merge-after` and together hold under a
    /// quarter of `--range-max-bytes`, if the two have the same replicas (see
    /// `merge.rs`): a cluster does not keep thousands of small ranges after a load that
    /// split them ended, or after a delete.
    async fn merge_if_idle(&self, r: &Replica, d: &RangeDescriptor) {
        let after = self.node.cfg.merge_after;
        if after.is_zero() || d.end.is_empty() {
            return;
        }
        let right = self.node.router.lookup(&d.end).filter(|rr| {
            rr.frozen().is_none()
                && rr.with_descriptor(|rd| {
                    rd.is_some_and(|rd| rd.start == d.end && rd.replicas == d.replicas)
                })
        });
        let Some(rr) = right.filter(|rr| r.is_quiesced() && rr.is_quiesced()) else {
            lock(&self.idle_since).remove(&r.range_id);
            return;
        };
        let since = *lock(&self.idle_since)
            .entry(r.range_id)
            .or_insert_with(Instant::now);
        if since.elapsed() < after {
            return;
        }
        let bytes = self.range_bytes(r).saturating_add(self.range_bytes(&rr));
        if bytes >= self.node.cfg.range_max_bytes / 4 {
            return;
        }
        lock(&self.idle_since).remove(&r.range_id);
        match merge::merge_range(&self.node, &d.start, "idle").await {
            Ok(m) => tracing::info!(
                range_id = m.range_id,
                right = rr.range_id,
                bytes,
                "merged two idle ranges"
            ),
            Err(e) => {
                tracing::info!(range_id = r.range_id, right = rr.range_id, error = %e, "merging two idle ranges")
            }
        }
    }

    /// This node's descriptor of the range that starts where `d` ends, if it came from
    /// the same split as `d` or a later one.
    fn split_right_half(&self, d: &RangeDescriptor) -> Option<RangeDescriptor> {
        if d.end.is_empty() {
            return None;
        }
        self.node
            .router
            .lookup(&d.end)?
            .descriptor()
            .filter(|rd| rd.start == d.end && rd.epoch.version >= d.epoch.version)
    }

    /// Reports `r`'s descriptor to the routing table at once (the leader loop would
    /// within a second).
    pub async fn report_now(&self, r: &Replica) {
        if let Some(d) = r.descriptor() {
            if let Err(e) = routing::report(&self.node, vec![d]).await {
                tracing::debug!(error = %e, "reporting a descriptor");
            }
        }
    }

    /// The size in bytes of `r`'s data: as last measured while this node led it, or
    /// else RocksDB's estimate of it in the store's files.
    pub fn range_bytes(&self, r: &Replica) -> u64 {
        if let Some(b) = lock(&self.measured).get(&r.range_id) {
            return *b;
        }
        r.descriptor()
            .map_or(0, |d| self.node.engine.approximate_size(&d.span()))
    }

    /// Splits `r` at its middle key once its data passes `--range-max-bytes`. The size
    /// is measured again after an eighth of that limit was written, or at once after a
    /// split. Whether it split the range.
    async fn split_if_large(&self, r: &Replica, d: &RangeDescriptor) -> bool {
        let max = self.node.cfg.range_max_bytes;
        let written = r.take_written();
        let due = {
            let mut m = lock(&self.unmeasured);
            let pending = m.entry(r.range_id).or_insert(u64::MAX);
            *pending = pending.saturating_add(written);
            if *pending >= (max / 8).max(1) {
                *pending = 0;
                true
            } else {
                false
            }
        };
        if !due {
            return false;
        }
        let (engine, span) = (self.node.engine.clone(), d.span());
        let stats = match tokio::task::spawn_blocking(move || engine.span_stats(&span, max)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(range_id = r.range_id, error = %e, "measuring the range");
                return false;
            }
            Err(_) => return false,
        };
        lock(&self.measured).insert(r.range_id, stats.bytes);
        if stats.bytes <= max {
            return false;
        }
        let Some(key) = stats.middle.filter(|k| d.splits_at(k)) else {
            return false;
        };
        // Measured again next round, whatever this attempt does: the left half may still
        // be over the limit (or the split may fail), and no further write need come to
        // make it due.
        lock(&self.unmeasured).insert(r.range_id, u64::MAX);
        match self.split_at(r, &key, "size").await {
            Ok((l, rt)) => {
                tracing::info!(
                    range_id = l.range_id,
                    right = rt.range_id,
                    bytes = stats.bytes,
                    "split a range past --range-max-bytes"
                );
                true
            }
            Err(e) => {
                tracing::info!(range_id = r.range_id, error = %e, "splitting a large range");
                false
            }
        }
    }

    /// Splits `r` once it has served more than `--split-qps` requests a second here for
    /// `--split-load-window` without a break, at the sampled key with as much of that
    /// load on each side (none when one key carries most of it).
    async fn split_if_hot(&self, r: &Replica, d: &RangeDescriptor) {
        let (served, sample) = r.take_load();
        let cfg = &self.node.cfg;
        if cfg.split_qps == 0 {
            return;
        }
        let now = Instant::now();
        let (key, rate) = {
            let mut heat = lock(&self.heat);
            let h = heat.entry(r.range_id).or_default();
            // The first round while leading: what was counted before is not this
            // leader's load.
            let Some(read) = h.read.replace(now) else {
                return;
            };
            let secs = now.duration_since(read).as_secs_f64();
            let rate = served as f64 / secs.max(1e-3);
            if rate < cfg.split_qps as f64 {
                h.hot_since = None;
                h.sample.clear();
                return;
            }
            let since = *h.hot_since.get_or_insert(read);
            h.sample.extend(sample);
            let excess = h.sample.len().saturating_sub(MAX_HOT_SAMPLE);
            h.sample.drain(..excess);
            if now.duration_since(since) < cfg.split_load_window {
                return;
            }
            h.hot_since = None;
            let key = load::split_key(std::mem::take(&mut h.sample), |k| d.splits_at(k));
            (key, rate)
        };
        let Some(key) = key else {
            tracing::debug!(
                range_id = r.range_id,
                rate,
                "a hot range whose load no key divides"
            );
            return;
        };
        match self.split_at(r, &key, "load").await {
            Ok((l, rt)) => {
                tracing::info!(
                    range_id = l.range_id,
                    right = rt.range_id,
                    rate = rate as u64,
                    "split a range over --split-qps"
                );
            }
            Err(e) => tracing::info!(range_id = r.range_id, error = %e, "splitting a hot range"),
        }
    }

    /// Splits the range holding `key` at `key`, on its leader. Returns both halves.
    pub async fn split_range(&self, key: &[u8]) -> Result<(RangeDescriptor, RangeDescriptor)> {
        let r =
            self.node.router.lookup(key).ok_or_else(|| {
                Error::RangeNotFound("no replica of this node holds the key".into())
            })?;
        r.check_leader()?;
        self.split_at(&r, key, "request").await
    }

    /// Splits `r` at `key`, counted in `shoal_range_splits_total` under `reason`
    /// (size, load or request) once the split is applied.
    #[tracing::instrument(skip_all, fields(range_id = r.range_id))]
    async fn split_at(
        &self,
        r: &Replica,
        key: &[u8],
        reason: &str,
    ) -> Result<(RangeDescriptor, RangeDescriptor)> {
        let d = r.ready_descriptor()?;
        if !d.splits_at(key) {
            return Err(Error::invalid(
                shoal_proto::error::ErrorCode::InvalidArgument,
                format!(
                    "range {} cannot split at this key: it is the range's start or outside it",
                    d.range_id
                ),
            ));
        }
        let new_range_id = routing::alloc_range_id(&self.node).await?;
        let resp = r
            .propose(Command::Split {
                key: key.to_vec(),
                new_range_id,
                expected_version: d.epoch.version,
            })
            .await?;
        match (resp.refusal(), resp.results.first()) {
            (None, Some(OpResult::RangeId(_))) => {}
            (Some(Refusal::Other(why)), _) => {
                // The range changed since (another split, a membership change under way).
                tracing::info!(range_id = d.range_id, %why, "split refused");
                let now = r.ready_descriptor()?;
                return Err(Error::EpochMismatch {
                    range_id: d.range_id,
                    version: now.epoch.version,
                    named: d.epoch.version,
                    current: vec![self.node.locate(now, Some(r))],
                });
            }
            other => return Err(Error::Internal(format!("split: {other:?}"))),
        }
        self.node.metrics.count_split(reason);
        let left = r.ready_descriptor()?;
        let right = RangeDescriptor {
            range_id: new_range_id,
            start: key.to_vec(),
            end: d.end.clone(),
            epoch: left.epoch,
            replicas: left.replicas.clone(),
        };
        // Tell the routing table at once; the leader loop retries if this fails.
        if let Err(e) = routing::report(&self.node, vec![left.clone(), right.clone()]).await {
            tracing::info!(error = %e, "reporting a split to the meta range; will retry");
        }
        Ok((left, right))
    }

    /// Asks the nodes of members that have replicated nothing for a while to create
    /// the replica (they skipped the split that made it).
    async fn create_missing_replicas(&self, r: &Replica) {
        let Some(matched) = r.with_metrics(|m| m.replication.clone()) else {
            return;
        };
        let Some(d) = r.descriptor() else {
            return;
        };
        let now = Instant::now();
        for (id, log) in matched {
            let key = (r.range_id, id);
            if id == r.node_id || log.is_some() {
                lock(&self.unmatched).remove(&key);
                continue;
            }
            let since = *lock(&self.unmatched).entry(key).or_insert(now);
            if now.duration_since(since) < MISSING_REPLICA_PATIENCE {
                continue;
            }
            lock(&self.unmatched).insert(key, now);
            let Some(addr) = r.with_metrics(|m| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            }) else {
                continue;
            };
            match self.create_replica_on(id, &addr, &d).await {
                Ok(()) => tracing::info!(
                    range_id = r.range_id,
                    node = id,
                    "asked a member to create its missing replica"
                ),
                Err(e) => {
                    tracing::debug!(range_id = r.range_id, node = id, error = %e, "creating a missing replica")
                }
            }
        }
    }

    /// Asks node `node_id` at `addr` to create an empty replica of the range `d`.
    pub async fn create_replica_on(
        &self,
        node_id: u64,
        addr: &str,
        d: &RangeDescriptor,
    ) -> Result<()> {
        let msg = peer_message(d.range_id, node_id, d)?;
        let _: PeerMessage = peer_call::call(&self.node, addr, "CreateReplica", msg).await?;
        Ok(())
    }

    /// Destroys this node's replicas of ranges that no longer count it as a member:
    /// the routing table holds a descriptor of the range newer than the replica's own
    /// (a later `conf_ver`: committed after it) without this node. The change that
    /// removed it is committed, so no quorum needs this replica. (A replica's own
    /// membership is no proof: a learner filled from an older snapshot applies a
    /// membership without itself before the one that added it.)
    pub async fn collect_garbage(&self) {
        let me = self.node.node_id();
        if me == 0 {
            return;
        }
        let candidates: Vec<Arc<Replica>> = self
            .node
            .router
            .all()
            .iter()
            .filter(|r| r.range_id != FIRST_RANGE_ID && !r.is_leader())
            .cloned()
            .collect();
        if candidates.is_empty() {
            return;
        }
        let table: HashMap<u64, RangeDescriptor> = match routing::table(&self.node, false).await {
            Ok(t) => t.into_iter().map(|d| (d.range_id, d)).collect(),
            Err(_) => return,
        };
        let wanted = self.node.wanted();
        for r in candidates {
            if let Some(f) = r.frozen() {
                // Absorbed by its left neighbour here (the merge's notice was lost to a
                // restart or a stop): retired, its keys kept.
                let absorbed = r.with_descriptor(|d| {
                    let left = self.node.router.get(f.left_id)?;
                    let start = d?.start.clone();
                    Some(left.with_descriptor(|l| l.is_some_and(|l| l.contains(&start))))
                });
                if absorbed == Some(true) {
                    if let Err(e) = self.node.retire_replica(&r, false).await {
                        tracing::warn!(range_id = r.range_id, error = %e, "retiring an absorbed replica");
                    }
                }
                continue;
            }
            if wanted.contains(&r.range_id) {
                // Asked for by its leader: the routing table may not count it yet.
                continue;
            }
            let Some(cur) = table.get(&r.range_id) else {
                continue;
            };
            if cur.has_replica_on(me) {
                continue;
            }
            // The routing table's descriptor, at least as new as ours, has no replica
            // here: this one was removed (it may have applied its own removal).
            let removed = match r.descriptor() {
                Some(ours) => cur.epoch.conf_ver >= ours.epoch.conf_ver,
                // An empty replica, created for a snapshot that never came.
                None => r.age() > ORPHAN_AFTER,
            };
            if removed {
                if let Err(e) = self.node.destroy_replica(&r).await {
                    tracing::warn!(range_id = r.range_id, error = %e, "destroying a removed replica");
                }
            }
        }
    }
}

/// Removes `ids` from `map`, under one lock.
fn forget<V>(map: &Mutex<HashMap<u64, V>>, ids: &[u64]) {
    let mut m = lock(map);
    if m.is_empty() {
        return;
    }
    for id in ids {
        m.remove(id);
    }
}
