//! A node's ranges beyond the first: opening replicas, splits (on demand and when a
//! range outgrows `--range-max-bytes`), the descriptors each range's leader reports to
//! the meta range's routing table (also read here), and members that skipped a split.
//! Where replicas live is decided in `placement.rs`.
//!
//! Every loop here runs on the leader of the range it looks after, once a second
//! (`Node::maintain_ranges`), so a range's upkeep moves with its leadership.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::error::{codes, not_leader, status};
use shoal_proto::v1::RaftMessage;
use shoal_raft::codec::{decode, encode};
use shoal_raft::read_error;
use shoal_raft::{
    Command, Node as RaftNode, OpResult, RangeDescriptor, RangeEvent, Replica, FIRST_RANGE_ID,
};
use shoal_storage::{keys, StateKey};
use tonic::{Code, Status};

use crate::node::{write_error, Node};

/// How long a member of a range may go without replicating anything before its
/// leader asks its node to create the replica (it skipped the split that made the
/// range, by installing a snapshot of the left half).
const MISSING_REPLICA_PATIENCE: Duration = Duration::from_secs(5);

/// Bookkeeping of the leader loops.
#[derive(Debug, Default)]
pub(crate) struct RangeState {
    /// The descriptor the meta range last recorded from this node, per range.
    reported: Mutex<HashMap<u64, RangeDescriptor>>,
    /// Bytes applied to a range since its size was last measured; absent: never.
    unmeasured: Mutex<HashMap<u64, u64>>,
    /// The size in bytes of each range this node leads, when last measured.
    measured: Mutex<HashMap<u64, u64>>,
    /// Since when a member of a range has replicated nothing, per (range, node).
    unmatched: Mutex<HashMap<(u64, u64), Instant>>,
    /// When a range's leader last asked for this node's replica of it (to add it as a
    /// learner): the replica is kept that long even before the routing table counts it.
    pub(crate) wanted: Mutex<HashMap<u64, Instant>>,
    /// Held while a replica is opened, so one range is never opened twice.
    pub(crate) open_lock: tokio::sync::Mutex<()>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    status(
        Code::Internal,
        codes::INTERNAL,
        format!("{what}: {e}"),
        None,
    )
}

impl Node {
    /// Opens this node's replica of `range_id` (once) and starts its Raft instance.
    pub(crate) async fn open_range(&self, range_id: u64) -> anyhow::Result<Arc<Replica>> {
        let _g = self.ranges.open_lock.lock().await;
        if let Some(r) = self.router.get(range_id) {
            return Ok(r);
        }
        let r = Replica::open(&self.env, self.node_id(), range_id).await?;
        self.router.insert(r.clone());
        Ok(r)
    }

    /// The routing table: every range's descriptor, read from this node's replica of
    /// the meta range (`linearizable`: after a read barrier), in key order.
    pub async fn routing_table(&self, linearizable: bool) -> Result<Vec<RangeDescriptor>, Status> {
        let r = self.replica()?;
        if linearizable {
            r.linearize(Duration::from_secs(3))
                .await
                .map_err(|e| read_error(r.range_id, e))?;
        }
        let mut by_id: HashMap<u64, RangeDescriptor> = HashMap::new();
        let stored = self
            .engine
            .scan_system(keys::RANGE_DESCRIPTOR_PREFIX)
            .map_err(|e| Status::internal(format!("reading range descriptors: {e}")))?;
        for (key, value) in stored {
            let d: RangeDescriptor = shoal_raft::codec::decode(&value).map_err(|e| {
                Status::internal(format!("range descriptor {key:?} does not decode: {e}"))
            })?;
            by_id.insert(d.range_id, d);
        }
        // Ranges whose leaders have not reported yet (a split a moment ago, a cluster
        // just founded): this node's own descriptors fill the gaps.
        for rep in self.router.all() {
            let Some(d) = rep.descriptor() else { continue };
            match by_id.get(&d.range_id) {
                Some(o) if !d.supersedes(o) => {}
                _ => {
                    by_id.insert(d.range_id, d);
                }
            }
        }
        // Newest first, each kept unless a newer one of another range overlaps it (the
        // left half of a split reported before the right): kept spans never overlap.
        let mut all: Vec<RangeDescriptor> = by_id.into_values().collect();
        all.sort_by(|a, b| b.epoch.cmp(&a.epoch).then(a.range_id.cmp(&b.range_id)));
        let mut kept: BTreeMap<Vec<u8>, RangeDescriptor> = BTreeMap::new();
        for d in all {
            // Among disjoint spans, only the last one starting before `d`'s end can
            // overlap it.
            let upto = if d.end.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(d.end.as_slice())
            };
            let overlapped = kept
                .range::<[u8], _>((Bound::Unbounded, upto))
                .next_back()
                .is_some_and(|(_, o)| o.overlaps(&d.start, &d.end));
            if !overlapped {
                kept.insert(d.start.clone(), d);
            }
        }
        Ok(kept.into_values().collect())
    }

    /// The range of this node's routing table (no read barrier) holding `key`, or with
    /// `before` the keys just before it (an empty `key`: the last range), as a reverse
    /// scan ending at `key` reads.
    pub(crate) async fn range_for(
        &self,
        key: &[u8],
        before: bool,
    ) -> Result<Option<RangeDescriptor>, Status> {
        Ok(self.routing_table(false).await?.into_iter().find(|d| {
            if !before {
                d.contains(key)
            } else if key.is_empty() {
                d.end.is_empty()
            } else {
                d.start.as_slice() < key && (d.end.is_empty() || key <= d.end.as_slice())
            }
        }))
    }

    /// Opens the right half of every split a state machine of this node applies.
    pub(crate) async fn handle_range_events(self: Arc<Self>) {
        let Some(mut rx) = lock(&self.events).take() else {
            return;
        };
        while let Some(ev) = rx.recv().await {
            match ev {
                RangeEvent::Split { left, right } => {
                    match self.open_range(right.range_id).await {
                        Ok(r) => self.elect_right_half(left, &r).await,
                        Err(e) => {
                            tracing::error!(left, right = right.range_id, error = %format!("{e:#}"), "opening the right half of a split")
                        }
                    }
                    // The left half's snapshot still covers the right half's keys: a
                    // node given it (a new replica) holding the right half would refuse
                    // it as overlapping. A fresh one covers the left half alone.
                    if let Some(l) = self.router.get(left) {
                        if let Err(e) = l.raft.trigger().snapshot().await {
                            tracing::warn!(range_id = left, error = %e, "snapshot after a split");
                        }
                    }
                }
            }
        }
    }

    /// On the node leading the left half of a split: starts the right half's election
    /// at once, rather than leaving the range without a leader for an election timeout
    /// (splitting a range into 64 took two minutes that way). Every member starts the
    /// right half with the split's log and the left leader's vote, so this node wins
    /// unless another was elected meanwhile, which is as good.
    async fn elect_right_half(&self, left: u64, right: &Replica) {
        let me = self.node_id();
        let leads_left = self
            .router
            .get(left)
            .is_some_and(|l| l.current_leader() == Some(me));
        if !leads_left || right.current_leader().is_some() {
            return;
        }
        if let Err(e) = right.raft.trigger().elect(false).await {
            tracing::warn!(range_id = right.range_id, error = %e, "electing the right half of a split");
        }
    }

    /// Creates an empty replica of the range `d` describes, for its leader to fill
    /// with a snapshot. Idempotent; refused while a replica here overlaps its span.
    /// A request for another node id is refused (`WRONG_NODE`): a node that came back
    /// under the address of one it replaced must not take that node's replicas.
    pub async fn create_replica(
        &self,
        target_node_id: u64,
        d: RangeDescriptor,
    ) -> Result<(), Status> {
        let me = self.node_id();
        if me == 0 {
            return Err(status(
                Code::Unavailable,
                codes::NOT_INITIALIZED,
                "this node does not belong to a cluster yet",
                None,
            ));
        }
        shoal_raft::service::addressed_to(target_node_id, me)?;
        // A replica left from an earlier membership is kept too: the new learner's
        // leader brings its log up to date.
        lock(&self.ranges.wanted).insert(d.range_id, Instant::now());
        if self.router.get(d.range_id).is_some() {
            return Ok(());
        }
        let overlapping = self.router.index.overlapping(&d.start, &d.end);
        if !overlapping.is_empty() {
            return Err(status(
                Code::Unavailable,
                codes::RANGE_OVERLAP,
                format!(
                    "ranges {overlapping:?} on this node overlap range {}",
                    d.range_id
                ),
                None,
            ));
        }
        let bytes = encode(&d).map_err(|e| internal("encoding", e))?;
        self.engine
            .state_put(d.range_id, StateKey::Created, &bytes, true)
            .map_err(|e| internal("recording the replica", e))?;
        self.open_range(d.range_id)
            .await
            .map_err(|e| internal("opening the replica", format!("{e:#}")))?;
        tracing::info!(
            range_id = d.range_id,
            "created an empty replica for a snapshot"
        );
        Ok(())
    }

    /// The meta range's leader: `None` when it is this node; else its id and address.
    pub(crate) fn meta_leader(&self) -> Result<Option<(u64, String)>, Status> {
        let meta = self.replica()?;
        match meta.leader() {
            (Some(id), _) if id == self.node_id() => Ok(None),
            (Some(id), Some(addr)) => Ok(Some((id, addr))),
            _ => Err(not_leader(FIRST_RANGE_ID, None, None)),
        }
    }

    /// `NOT_LEADER` (with the leader, if known) unless this node leads the meta range.
    pub(crate) fn leads_meta(&self) -> Result<(), Status> {
        match self.meta_leader()? {
            None => Ok(()),
            Some((id, addr)) => Err(not_leader(FIRST_RANGE_ID, Some(id), Some(addr))),
        }
    }

    /// A node of the cluster (a member of the meta range), as this node knows it.
    pub(crate) fn member(&self, node_id: u64) -> Option<RaftNode> {
        self.replica()
            .ok()?
            .metrics()
            .membership_config
            .membership()
            .get_node(&node_id)
            .cloned()
    }

    /// On the meta range's leader: allocates a range id.
    pub async fn alloc_range_id_here(&self) -> Result<u64, Status> {
        let meta = self.replica()?;
        let resp = meta
            .raft
            .client_write(Command::AllocRangeId)
            .await
            .map_err(|e| write_error(&meta, e))?;
        match resp.data.results.first() {
            Some(OpResult::RangeId(id)) => Ok(*id),
            other => Err(internal("range id allocation", format!("{other:?}"))),
        }
    }

    /// A new range id, from the meta range's leader.
    pub async fn alloc_range_id(&self) -> Result<u64, Status> {
        let Some((id, addr)) = self.meta_leader()? else {
            return self.alloc_range_id_here().await;
        };
        let mut c = self
            .pool
            .client(&addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let resp = c
            .alloc_range_id(RaftMessage {
                range_id: FIRST_RANGE_ID,
                payload: Vec::new(),
                target_node_id: id,
            })
            .await?
            .into_inner();
        decode(&resp.payload).map_err(|e| internal("range id allocation", e))
    }

    /// On the meta range's leader: records descriptors in the routing table (each only
    /// if newer than the recorded one).
    pub async fn record_descriptors_here(&self, ds: Vec<RangeDescriptor>) -> Result<(), Status> {
        let meta = self.replica()?;
        meta.raft
            .client_write(Command::PutDescriptors(ds))
            .await
            .map_err(|e| write_error(&meta, e))?;
        Ok(())
    }

    /// Reports descriptors to the meta range's leader.
    pub(crate) async fn report_descriptors(&self, ds: Vec<RangeDescriptor>) -> Result<(), Status> {
        let Some((id, addr)) = self.meta_leader()? else {
            return self.record_descriptors_here(ds).await;
        };
        let mut c = self
            .pool
            .client(&addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let payload = encode(&ds).map_err(|e| internal("encoding", e))?;
        c.report_ranges(RaftMessage {
            range_id: FIRST_RANGE_ID,
            payload,
            target_node_id: id,
        })
        .await?;
        Ok(())
    }

    /// Splits the range holding `key` at `key`, on its leader. Returns both halves.
    pub async fn split_range(
        &self,
        key: &[u8],
    ) -> Result<(RangeDescriptor, RangeDescriptor), Status> {
        let r = self.router.lookup(key).ok_or_else(|| {
            status(
                Code::NotFound,
                codes::RANGE_NOT_FOUND,
                "no replica of this node holds the key",
                None,
            )
        })?;
        let (leader, addr) = r.leader();
        if leader != Some(self.node_id()) {
            return Err(not_leader(r.range_id, leader, addr));
        }
        self.split_at(&r, key).await
    }

    async fn split_at(
        &self,
        r: &Replica,
        key: &[u8],
    ) -> Result<(RangeDescriptor, RangeDescriptor), Status> {
        let d = r
            .descriptor()
            .ok_or_else(|| Status::unavailable("the range has no descriptor yet"))?;
        if !d.splits_at(key) {
            return Err(status(
                Code::InvalidArgument,
                codes::INVALID_ARGUMENT,
                format!(
                    "range {} cannot split at this key: it is the range's start or outside it",
                    d.range_id
                ),
                None,
            ));
        }
        let new_range_id = self.alloc_range_id().await?;
        r.wake().await;
        let resp = r
            .raft
            .client_write(Command::Split {
                key: key.to_vec(),
                new_range_id,
                expected_version: d.epoch.version,
            })
            .await
            .map_err(|e| write_error(r, e))?;
        match resp.data.results.first() {
            Some(OpResult::RangeId(_)) => {}
            Some(OpResult::Refused { reason, .. }) => {
                return Err(status(
                    Code::FailedPrecondition,
                    codes::EPOCH_MISMATCH,
                    format!("split refused: {reason}"),
                    None,
                ))
            }
            other => return Err(internal("split", format!("{other:?}"))),
        }
        let left = r
            .descriptor()
            .ok_or_else(|| internal("split", "no descriptor after the split"))?;
        let right = RangeDescriptor {
            range_id: new_range_id,
            start: key.to_vec(),
            end: d.end.clone(),
            epoch: left.epoch,
            replicas: left.replicas.clone(),
        };
        // Tell the routing table at once; the leader loop retries if this fails.
        if let Err(e) = self
            .report_descriptors(vec![left.clone(), right.clone()])
            .await
        {
            tracing::info!(error = %e.message(), "reporting a split to the meta range; will retry");
        }
        Ok((left, right))
    }

    /// Upkeep of the ranges this node leads: members that skipped a split, the
    /// routing table, and splits of ranges grown too large. (Where replicas go is the
    /// placement driver's: `placement.rs`.)
    pub(crate) async fn maintain_ranges(&self) {
        let me = self.node_id();
        if me == 0 {
            return;
        }
        let mut to_report = Vec::new();
        for r in self.router.all() {
            if r.current_leader() != Some(me) {
                lock(&self.ranges.reported).remove(&r.range_id);
                lock(&self.ranges.unmeasured).remove(&r.range_id);
                lock(&self.ranges.measured).remove(&r.range_id);
                continue;
            }
            self.create_missing_replicas(&r).await;
            let Some(d) = r.descriptor() else {
                continue;
            };
            let reported = lock(&self.ranges.reported).get(&r.range_id).cloned();
            if reported.as_ref() != Some(&d) {
                // A split not reported yet (its leader's report failed, or another
                // node leads the left half now): the right half goes with the left,
                // in the same write, or the table would have a hole until the right
                // half's own leader reported it. This node holds the right half too
                // (every member of the left opens it); the meta range keeps only
                // the newer of two descriptors of a range.
                if reported.is_none_or(|p| p.epoch.version != d.epoch.version) {
                    if let Some(rd) = self.split_right_half(&d) {
                        to_report.push(rd);
                    }
                }
                to_report.push(d.clone());
            }
            self.split_if_large(&r, &d).await;
        }
        if !to_report.is_empty() {
            match self.report_descriptors(to_report.clone()).await {
                Ok(()) => {
                    let mut rep = lock(&self.ranges.reported);
                    for d in to_report {
                        rep.insert(d.range_id, d);
                    }
                }
                Err(e) => tracing::debug!(error = %e.message(), "reporting descriptors"),
            }
        }
    }

    /// This node's descriptor of the range that starts where `d` ends, if it came from
    /// the same split as `d` or a later one.
    fn split_right_half(&self, d: &RangeDescriptor) -> Option<RangeDescriptor> {
        if d.end.is_empty() {
            return None;
        }
        self.router
            .lookup(&d.end)?
            .descriptor()
            .filter(|rd| rd.start == d.end && rd.epoch.version >= d.epoch.version)
    }

    /// The size in bytes of `r`'s data: as last measured while this node led it, or
    /// else RocksDB's estimate of it in the store's files.
    pub(crate) fn range_bytes(&self, r: &Replica) -> u64 {
        if let Some(b) = lock(&self.ranges.measured).get(&r.range_id) {
            return *b;
        }
        r.descriptor()
            .map_or(0, |d| self.engine.approximate_size(&d.span()))
    }

    /// Splits `r` at its middle key once its data passes `--range-max-bytes`. The size
    /// is measured again after an eighth of that limit was written, or at once after a
    /// split.
    async fn split_if_large(&self, r: &Replica, d: &RangeDescriptor) {
        let max = self.cfg.range_max_bytes;
        let written = r.state_machine.take_written();
        let due = {
            let mut m = lock(&self.ranges.unmeasured);
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
            return;
        }
        let (engine, span) = (self.engine.clone(), d.span());
        let stats = match tokio::task::spawn_blocking(move || engine.span_stats(&span, max)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(range_id = r.range_id, error = %e, "measuring the range");
                return;
            }
            Err(_) => return,
        };
        lock(&self.ranges.measured).insert(r.range_id, stats.bytes);
        if stats.bytes <= max {
            return;
        }
        let Some(key) = stats.middle.filter(|k| d.splits_at(k)) else {
            return;
        };
        // Measured again next round, whatever this attempt does: the left half may
        // still be over the limit (or the split may fail), and no further write
        // need come to make it due.
        lock(&self.ranges.unmeasured).insert(r.range_id, u64::MAX);
        match self.split_at(r, &key).await {
            Ok((l, rt)) => tracing::info!(
                range_id = l.range_id,
                right = rt.range_id,
                bytes = stats.bytes,
                "split a range past --range-max-bytes"
            ),
            Err(e) => {
                tracing::info!(range_id = r.range_id, error = %e.message(), "splitting a large range")
            }
        }
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
                lock(&self.ranges.unmatched).remove(&key);
                continue;
            }
            let since = *lock(&self.ranges.unmatched).entry(key).or_insert(now);
            if now.duration_since(since) < MISSING_REPLICA_PATIENCE {
                continue;
            }
            lock(&self.ranges.unmatched).insert(key, now);
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
                    tracing::debug!(range_id = r.range_id, node = id, error = %e.message(), "creating a missing replica")
                }
            }
        }
    }

    pub(crate) async fn create_replica_on(
        &self,
        node_id: u64,
        addr: &str,
        d: &RangeDescriptor,
    ) -> Result<(), Status> {
        let mut c = self
            .pool
            .client(addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let payload = encode(d).map_err(|e| internal("encoding", e))?;
        c.create_replica(RaftMessage {
            range_id: d.range_id,
            payload,
            target_node_id: node_id,
        })
        .await?;
        Ok(())
    }
}
