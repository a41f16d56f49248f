//! [`Transaction`]: a transaction across ranges as its coordinator (the gateway node)
//! runs it: reads at its start timestamp, writes buffered here until commit, then
//! Percolator's two phases over the ranges its keys lie in, or one phase when they
//! all lie in one range.
//!
//! Commit, in order:
//!
//! 1. The buffered writes are grouped by range. Keys (and, serializable, the spans
//!    read) all in one range: one `OnePhase` command there, validated and written at
//!    its commit timestamp, no lock left. Done.
//! 2. Otherwise every range's keys are prewritten at once (locks naming the primary
//!    key, the first written), while a heartbeat keeps the primary lock's time to
//!    live ahead of the clock. Any refusal: every key is rolled back, primary first.
//! 3. A commit timestamp from the oracle, taken after every prewrite is applied: a
//!    transaction that committed below it has its writes or locks in place.
//! 4. Serializable: every span read is checked at the commit timestamp (a read, after
//!    the range's writes in flight below it): nothing changed there since the start,
//!    and no other transaction's lock that may commit below it.
//! 5. The primary's range commits its keys: the transaction is committed, and the
//!    client is answered. The other ranges' locks are committed in the background; a
//!    reader that meets one before asks the primary and rolls it forward.
//!
//! A transaction with no reads to check and few keys commits asynchronously instead of
//! steps 2 to 5 (see `async_commit.rs`): answered once every key is locked.
//!
//! A step refused because its keys no longer lie in one range (a split in between)
//! goes again as one step per range.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use shoal_proto::txn::lock_ttl_ms;
pub use shoal_proto::txn::LOCK_TTL;
use shoal_raft::txn_record::{Mutation, OnePhase, TxnConflict};
use shoal_raft::{Command, OpResult};

/// A failpoint (see `shoal_raft::failpoints`): an injected error stops the commit on
/// the spot, as a crash of the coordinator would.
fn hit(name: &str) -> Result<()> {
    shoal_raft::failpoints::hit(name).map_err(|e| Error::Unavailable(e.to_string()))
}

use crate::error::{Error, Result};
use crate::ranges::{Bounds, Ranges, Read};
use crate::resolve::result_of;

/// How often the coordinator extends its primary lock's time to live while it
/// commits.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(1000);
/// How many times a step goes again after the ranges it was sent to split.
const MAX_REGROUPS: usize = 16;
/// What a transaction guarantees of its reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Its reads are checked at commit: it takes effect, whole, at its commit
    /// timestamp.
    #[default]
    Serializable,
    /// Its reads see one snapshot (the start); only its writes are checked (first
    /// committer wins): write skew is possible.
    Snapshot,
}

/// How a transaction is begun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub isolation: Isolation,
    /// Refuses writes: the transaction reads one snapshot and commits nothing.
    pub read_only: bool,
}

/// The most a transaction may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Keys written, and spans read, each.
    pub max_keys: usize,
    /// Keys and values written, together (each range's prewrite is one command).
    pub max_bytes: usize,
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Committed {
        commit_ts: u64,
    },
    RolledBack,
    /// Its commit was sent and not answered: it may have committed.
    Unknown,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Committed { .. } => "committed",
            State::RolledBack => "rolled back",
            State::Unknown => "in an unknown state (its commit was not answered)",
        }
    }
}

/// A transaction, as its coordinator holds it.
#[derive(Debug)]
pub struct Transaction {
    start_ts: u64,
    opts: Options,
    limits: Limits,
    /// The writes, by key (`None`: a delete).
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
    /// The spans read `[start, end)`, to check at commit (serializable).
    reads: Vec<(Vec<u8>, Vec<u8>)>,
    state: State,
}

/// The first key after `key`.
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

fn upper(end: &[u8]) -> Bound<Vec<u8>> {
    if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end.to_vec())
    }
}

impl Transaction {
    pub fn new(start_ts: u64, opts: Options, limits: Limits) -> Self {
        Self {
            start_ts,
            opts,
            limits,
            writes: BTreeMap::new(),
            bytes: 0,
            reads: Vec::new(),
            state: State::Active,
        }
    }

    /// The snapshot its reads see.
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn options(&self) -> Options {
        self.opts
    }

    fn check_active(&self) -> Result<()> {
        match self.state {
            State::Active => Ok(()),
            s => Err(Error::Closed(s.name())),
        }
    }

    fn note_read(&mut self, start: Vec<u8>, end: Vec<u8>) -> Result<()> {
        if self.opts.isolation != Isolation::Serializable || self.opts.read_only {
            return Ok(());
        }
        if self.reads.len() >= self.limits.max_keys {
            self.state = State::RolledBack;
            return Err(Error::TooLarge(format!(
                "the transaction read more than {} keys or spans",
                self.limits.max_keys
            )));
        }
        self.reads.push((start, end));
        Ok(())
    }

    /// `key` as the transaction sees it: its own write, else the snapshot at its start.
    /// A key it wrote has version 0 (not committed yet).
    pub async fn get(&mut self, ranges: &dyn Ranges, key: &[u8]) -> Result<Option<Read>> {
        self.check_active()?;
        if let Some(w) = self.writes.get(key) {
            return Ok(w.as_ref().map(|v| Read {
                key: key.to_vec(),
                value: v.clone(),
                version: 0,
            }));
        }
        let read = ranges.get(key, self.start_ts).await?;
        self.note_read(key.to_vec(), key_after(key))?;
        Ok(read)
    }

    /// Up to `limit` pairs of `[start, end)` (0: all) as the transaction sees them: the
    /// snapshot at its start with its own writes over it.
    pub async fn scan(
        &mut self,
        ranges: &dyn Ranges,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Read>> {
        self.check_active()?;
        let span = (Bound::Included(start.to_vec()), upper(end));
        let own: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .writes
            .range(span)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let deletes = own.iter().filter(|(_, v)| v.is_none()).count();
        // Enough stored pairs that, less the deleted ones, `limit` remain.
        let want = if limit == 0 { 0 } else { limit + deletes };
        let stored = ranges.scan(start, end, self.start_ts, want).await?;
        // A page cut short: the transaction's own keys beyond its last key are not
        // known to come before the stored ones not fetched.
        let cut = (want != 0 && stored.len() >= want).then(|| stored[stored.len() - 1].key.clone());
        let mut merged: BTreeMap<Vec<u8>, Read> =
            stored.into_iter().map(|r| (r.key.clone(), r)).collect();
        for (key, value) in own {
            if cut.as_ref().is_some_and(|c| &key > c) {
                continue;
            }
            match value {
                Some(value) => {
                    merged.insert(
                        key.clone(),
                        Read {
                            key,
                            value,
                            version: 0,
                        },
                    );
                }
                None => {
                    merged.remove(&key);
                }
            }
        }
        let mut out: Vec<Read> = merged.into_values().collect();
        let read_end = if limit != 0 && out.len() >= limit {
            out.truncate(limit);
            key_after(&out[limit - 1].key)
        } else if let Some(c) = cut {
            key_after(&c)
        } else {
            end.to_vec()
        };
        self.note_read(start.to_vec(), read_end)?;
        Ok(out)
    }

    /// Buffers a put of `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.write(key, Some(value))
    }

    /// Buffers a delete of `key`.
    pub fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.write(key, None)
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        self.check_active()?;
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let size = key.len() + value.as_ref().map_or(0, Vec::len);
        let old = self
            .writes
            .get(&key)
            .map(|v| key.len() + v.as_ref().map_or(0, Vec::len));
        let bytes = self.bytes + size - old.unwrap_or(0);
        if old.is_none() && self.writes.len() >= self.limits.max_keys {
            self.state = State::RolledBack;
            return Err(Error::TooLarge(format!(
                "the transaction writes more than {} keys",
                self.limits.max_keys
            )));
        }
        if bytes > self.limits.max_bytes {
            self.state = State::RolledBack;
            return Err(Error::TooLarge(format!(
                "the transaction writes {bytes} bytes of keys and values; the limit is {}",
                self.limits.max_bytes
            )));
        }
        self.bytes = bytes;
        self.writes.insert(key, value);
        Ok(())
    }

    /// Rolls the transaction back (nothing of it is in the cluster before commit).
    /// Again: nothing; after a commit: refused.
    pub fn rollback(&mut self) -> Result<()> {
        match self.state {
            State::Active | State::RolledBack => {
                self.state = State::RolledBack;
                Ok(())
            }
            s => Err(Error::Closed(s.name())),
        }
    }

    /// Commits the transaction: its commit timestamp (a read-only one: its start).
    /// `Conflict`: rolled back, nothing written.
    pub async fn commit(&mut self, ranges: Arc<dyn Ranges>) -> Result<u64> {
        self.check_active()?;
        if self.writes.is_empty() {
            // Its reads saw one snapshot: it takes effect there.
            self.state = State::Committed {
                commit_ts: self.start_ts,
            };
            return Ok(self.start_ts);
        }
        let mutations: Vec<Mutation> = std::mem::take(&mut self.writes)
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => Mutation::Put { key, value },
                None => Mutation::Delete { key },
            })
            .collect();
        let reads = merge_spans(std::mem::take(&mut self.reads));
        let result = commit(ranges, self.start_ts, mutations, reads).await;
        self.state = match &result {
            Ok(commit_ts) => State::Committed {
                commit_ts: *commit_ts,
            },
            Err(Error::OutcomeUnknown(_)) => State::Unknown,
            Err(_) => State::RolledBack,
        };
        result
    }
}

/// Sorted spans, those that overlap or touch merged.
fn merge_spans(mut spans: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    spans.sort();
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (s, e) in spans {
        if let Some(last) = out.last_mut() {
            if last.1.is_empty() || s <= last.1 {
                if !last.1.is_empty() && (e.is_empty() || e > last.1) {
                    last.1 = e;
                }
                continue;
            }
        }
        out.push((s, e));
    }
    out
}

fn within(b: &Bounds, start: &[u8], end: &[u8]) -> bool {
    b.contains(start) && (b.end.is_empty() || (!end.is_empty() && end <= b.end.as_slice()))
}

fn conflict(c: &TxnConflict) -> Error {
    Error::Conflict(describe(c))
}

/// Why a step was refused, for people.
pub fn describe(c: &TxnConflict) -> String {
    let key = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    match c {
        TxnConflict::Locked { key: k, lock } => format!(
            "key {:?} is locked by the transaction started at {}",
            key(k),
            lock.start_ts
        ),
        TxnConflict::WriteConflict { key: k, commit_ts } => format!(
            "key {:?} was written at {commit_ts}, after the transaction started",
            key(k)
        ),
        TxnConflict::ReadConflict { key: k, commit_ts } => format!(
            "key {:?}, which the transaction read, was written at {commit_ts}",
            key(k)
        ),
        TxnConflict::RolledBack { key: k } | TxnConflict::LockNotFound { key: k } => format!(
            "the transaction's lock on {:?} was rolled back (it outlived its time to live)",
            key(k)
        ),
        TxnConflict::Committed { key: k, commit_ts } => {
            format!("key {:?} was committed at {commit_ts}", key(k))
        }
    }
}

/// `items` grouped by the range holding each one's key, as last known.
async fn group<T>(
    ranges: &dyn Ranges,
    items: Vec<T>,
    key: &(dyn Fn(&T) -> &[u8] + Sync),
) -> Result<Vec<Vec<T>>> {
    let mut groups: Vec<(Bounds, Vec<T>)> = Vec::new();
    for item in items {
        if let Some((_, g)) = groups.iter_mut().find(|(b, _)| b.contains(key(&item))) {
            g.push(item);
            continue;
        }
        let b = ranges.locate(key(&item)).await?;
        groups.push((b, vec![item]));
    }
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}

/// Sends `make(group)` for each range's group of `items`, all at once; a group whose
/// range split meanwhile goes again, one step per range. The first refusal among the
/// answers (`TxnDone` when none).
async fn step_all<T: Clone + Send + Sync>(
    ranges: &dyn Ranges,
    items: Vec<T>,
    key: &(dyn Fn(&T) -> &[u8] + Sync),
    make: &(dyn Fn(Vec<T>) -> Command + Sync),
) -> Result<OpResult> {
    Ok(step_all_versions(ranges, items, key, make).await?.0)
}

/// [`step_all`], with the largest version among the answers (an asynchronous commit's
/// prewrites answer their locks' `min_commit_ts` there).
async fn step_all_versions<T: Clone + Send + Sync>(
    ranges: &dyn Ranges,
    items: Vec<T>,
    key: &(dyn Fn(&T) -> &[u8] + Sync),
    make: &(dyn Fn(Vec<T>) -> Command + Sync),
) -> Result<(OpResult, u64)> {
    let as_they_are =
        |items: Vec<T>| -> BoxFuture<'_, Result<Vec<T>>> { Box::pin(async { Ok(items) }) };
    step_all_recut(ranges, items, key, make, &as_they_are).await
}

/// [`step_all_versions`], where `recut` prepares the items of a group refused after a
/// split before they are grouped again (spans read are cut at the ranges' new
/// bounds: a span across one would be refused for ever).
async fn step_all_recut<'r, T: Clone + Send + Sync>(
    ranges: &'r dyn Ranges,
    items: Vec<T>,
    key: &(dyn Fn(&T) -> &[u8] + Sync),
    make: &(dyn Fn(Vec<T>) -> Command + Sync),
    recut: &(dyn Fn(Vec<T>) -> BoxFuture<'r, Result<Vec<T>>> + Sync),
) -> Result<(OpResult, u64)> {
    let mut pending = vec![items];
    let mut refused = None;
    let mut version = 0;
    for round in 0..MAX_REGROUPS {
        let mut groups = Vec::new();
        for items in pending.drain(..) {
            let items = if round == 0 {
                items
            } else {
                recut(items).await?
            };
            groups.extend(group(ranges, items, key).await?);
        }
        let sent = join_all(groups.into_iter().map(|g| async move {
            let answer = ranges.step(key(&g[0]), make(g.clone())).await;
            (g, answer)
        }))
        .await;
        let mut failed = None;
        for (g, answer) in sent {
            match answer {
                Err(Error::Regroup) => pending.push(g),
                Err(e) => failed = failed.or(Some(e)),
                Ok(resp) => {
                    version = version.max(resp.version);
                    match result_of(resp)? {
                        OpResult::TxnDone => {}
                        other => refused = refused.or(Some(other)),
                    }
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if pending.is_empty() {
            return Ok((refused.unwrap_or(OpResult::TxnDone), version));
        }
    }
    Err(Error::Unavailable(
        "the transaction's ranges kept splitting under its steps".into(),
    ))
}

fn mutation_key(m: &Mutation) -> &[u8] {
    m.key()
}

fn plain_key(k: &Vec<u8>) -> &[u8] {
    k
}

/// Commits the transaction started at `start_ts` writing `mutations` (sorted by key,
/// not empty) after reading `reads` (sorted, merged; empty under snapshot isolation).
async fn commit(
    ranges: Arc<dyn Ranges>,
    start_ts: u64,
    mutations: Vec<Mutation>,
    reads: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<u64> {
    let first = ranges.locate(mutations[0].key()).await?;
    let one_range = mutations.iter().all(|m| first.contains(m.key()))
        && reads.iter().all(|(s, e)| within(&first, s, e));
    if one_range {
        match one_phase(&*ranges, start_ts, &mutations, &reads).await {
            Err(Error::Regroup) => {}
            done => return done,
        }
    }
    if reads.is_empty() && commits_asynchronously(&mutations) {
        return async_commit(ranges, start_ts, mutations).await;
    }
    two_phase(ranges, start_ts, mutations, reads).await
}

/// The whole transaction in its one range, at the command's commit timestamp.
async fn one_phase(
    ranges: &dyn Ranges,
    start_ts: u64,
    mutations: &[Mutation],
    reads: &[(Vec<u8>, Vec<u8>)],
) -> Result<u64> {
    let step = Command::OnePhase(OnePhase {
        start_ts,
        mutations: mutations.to_vec(),
        reads: reads.to_vec(),
    });
    let resp = ranges
        .step(mutations[0].key(), step)
        .await
        .map_err(|e| match e {
            // Sent again after an ambiguous failure, a one-phase commit that applied
            // answers `Committed`; one that never answered leaves its fate unknown.
            Error::Unavailable(m) => Error::OutcomeUnknown(m),
            e => e,
        })?;
    let commit_ts = resp.version;
    match result_of(resp)? {
        OpResult::TxnDone => Ok(commit_ts),
        // A retry of a step that had applied: committed then.
        OpResult::TxnConflict(TxnConflict::Committed { commit_ts, .. }) => Ok(commit_ts),
        OpResult::TxnConflict(c) => Err(conflict(&c)),
        other => Err(Error::Internal(format!(
            "a one-phase commit answered {other:?}"
        ))),
    }
}

/// Extends the primary lock's time to live until dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(ranges: Arc<dyn Ranges>, primary: Vec<u8>, start_ts: u64) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let step = Command::HeartbeatTxn {
                    primary: primary.clone(),
                    start_ts,
                    ttl_ms: lock_ttl_ms(start_ts),
                };
                if let Err(e) = ranges.step(&primary, step).await {
                    tracing::debug!(start_ts, error = %e, "heartbeat failed");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Commits the locks on `keys` of the transaction committed at `commit_ts`, in a task
/// of its own (the client has its answer); a lock this leaves is rolled forward by its
/// first reader.
fn commit_in_background(
    ranges: Arc<dyn Ranges>,
    start_ts: u64,
    commit_ts: u64,
    keys: Vec<Vec<u8>>,
) {
    if keys.is_empty() {
        return;
    }
    tokio::spawn(async move {
        // Decided already: each range's leader may hold the commit back to send it
        // with its next proposal (the next prewrites of a busy range no longer queue
        // behind it).
        let commit = |keys: Vec<Vec<u8>>| {
            Command::Deferrable(Box::new(Command::CommitKeys {
                start_ts,
                commit_ts,
                keys,
            }))
        };
        match step_all(&*ranges, keys, &plain_key, &commit).await {
            Ok(OpResult::TxnDone) => {}
            other => tracing::warn!(start_ts, commit_ts, ?other, "committing keys"),
        }
    });
}

/// Rolls the transaction's `keys` back, its primary's first, so its record says so
/// before its other locks go. `Some(commit_ts)`: the primary was committed instead (a
/// transaction committed asynchronously, settled by a reader meanwhile). Failures are
/// left to the readers that meet its locks (they settle it once its time to live has
/// passed).
async fn roll_back(
    ranges: &dyn Ranges,
    start_ts: u64,
    primary: &[u8],
    keys: Vec<Vec<u8>>,
) -> Result<Option<u64>> {
    let rollback = |keys: Vec<Vec<u8>>| Command::RollbackKeys { start_ts, keys };
    let (first, rest): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        keys.into_iter().partition(|k| k.as_slice() == primary);
    for keys in [first, rest] {
        if keys.is_empty() {
            continue;
        }
        match step_all(ranges, keys, &plain_key, &rollback).await {
            Ok(OpResult::TxnConflict(TxnConflict::Committed { commit_ts, .. })) => {
                return Ok(Some(commit_ts))
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(start_ts, error = %e, "rolling back");
                return Err(e);
            }
        }
    }
    Ok(None)
}

mod async_commit;
mod two_phase;
pub use async_commit::finish;
use async_commit::{async_commit, commits_asynchronously};
use two_phase::two_phase;

#[cfg(test)]
mod tests;
