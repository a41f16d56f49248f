//! A batch of puts whose keys lie in several ranges, committed by the client itself
//! as one transaction (asynchronously, as the node's coordinator commits a small one):
//! one round of prewrites, each sent straight to its range's leader (`Kv.Prewrite`),
//! instead of a hop to a coordinating node and a hop from there to each range.
//!
//! 1. A start timestamp no other transaction has, from the client's reserve (a
//!    conflict runs the batch again from a fresh one).
//! 2. The keys grouped by range, as the range cache knows them; each group prewritten
//!    on its range's leader at once, its locks naming the primary key (the first),
//!    whose lock lists the others. A group refused because its range split meanwhile
//!    is grouped again by the new bounds.
//! 3. Every key locked: the transaction is committed, at the largest `min_commit_ts`
//!    the leaders answered, and the caller is answered. The locks are committed by a
//!    node (`Txn.Finish`), asked in the background by the client's committer, which
//!    sends the commits of many batches in one call ([`Client::flush`] waits for
//!    it); a reader that meets a lock first rolls it forward from the primary's list.
//! 4. A refused key (another transaction's lock, a newer commit): every key is rolled
//!    back, and the batch runs again. A prewrite with no answer: the keys are rolled
//!    back, unless the transaction turns out committed (every key was locked).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use shoal_proto::error::ErrorCode;
use shoal_proto::txn::lock_ttl_ms;
use shoal_proto::v1 as pb;
use shoal_proto::v1::prewrite_response::Outcome;
use tokio::sync::{mpsc, oneshot};
use tonic::Code;

use crate::client::{Client, Failure, Finishing, Inner, Retry, Route};
use crate::error::Error;
use crate::retry::Backoff;
use crate::Result;

/// How many times the keys of a range that split are grouped again.
const MAX_REGROUPS: usize = 16;
/// The first pause after a conflict; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// A key and the value to put.
type Put = (Vec<u8>, Vec<u8>);

/// What the prewrites of every key answered together.
enum Prewritten {
    /// Every key locked: committed at the largest `min_commit_ts`.
    Locked(u64),
    /// Settled as committed already, at this timestamp.
    Committed(u64),
    /// A key refused its lock: why.
    Refused(String),
}

fn conflict(why: String) -> Error {
    Error::Status {
        addr: String::new(),
        code: Code::Aborted,
        message: format!("{why} ({})", ErrorCode::TxnConflict.as_str()),
        error_code: Some(ErrorCode::TxnConflict.as_str().into()),
    }
}

fn is_conflict(e: &Error) -> bool {
    e.code() == Some(ErrorCode::TxnConflict.as_str())
}

fn cross_range() -> Error {
    Error::InvalidArgument {
        code: ErrorCode::CrossRange.as_str().into(),
        message: "the keys lie in more than one range".into(),
    }
}

/// `puts` with each key once (its last value), in the order keys first appear.
fn last_value_per_key(puts: Vec<Put>) -> Vec<Put> {
    let mut at: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut out: Vec<Put> = Vec::with_capacity(puts.len());
    for (k, v) in puts {
        match at.get(&k) {
            Some(&i) => out[i].1 = v,
            None => {
                at.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// The most commits one call sends.
const MAX_COMMITS_PER_CALL: usize = 1024;

/// The client's committer: sends the commits handed to it, those that arrived while
/// the last call was in flight together in the next (an idle client sends each at
/// once, a busy one few calls). It ends with the client (the last clone dropped).
async fn commit_in_turn(client: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Finishing>) {
    while let Some(first) = rx.recv().await {
        let (mut txns, mut flushes) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(f) = next.take() {
            match f {
                Finishing::Commit(t) => txns.push(t),
                Finishing::Flush(done) => flushes.push(done),
            }
            if txns.len() < MAX_COMMITS_PER_CALL {
                next = rx.try_recv().ok();
            }
        }
        if !txns.is_empty() {
            let Some(inner) = client.upgrade() else {
                return;
            };
            (Client { inner }).commit_by_leader(txns).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

impl Client {
    /// `puts` (keys in several ranges) written atomically at one commit timestamp,
    /// which is returned; run again after conflicts until the retry deadline.
    pub(crate) async fn put_across(&self, puts: Vec<Put>) -> Result<u64> {
        let puts = last_value_per_key(puts);
        let deadline = Instant::now() + self.inner.opts.retry_deadline;
        let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
        let mut fresh = false;
        loop {
            // The transaction reads nothing: its start needs only be its own. One a
            // moment old can only meet a newer commit of a key, which a fresh start
            // does not.
            let start_ts = if fresh {
                self.timestamp().await?
            } else {
                self.unique_timestamp().await?
            };
            match self.put_across_at(start_ts, &puts).await {
                Err(e) if is_conflict(&e) && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "a batch across ranges runs again");
                    tokio::time::sleep(backoff.pause(deadline)).await;
                    fresh = true;
                }
                done => return done,
            }
        }
    }

    async fn put_across_at(&self, start_ts: u64, puts: &[Put]) -> Result<u64> {
        let keys: Vec<Vec<u8>> = puts.iter().map(|(k, _)| k.clone()).collect();
        let primary = keys[0].clone();
        // No heartbeat extends the locks: the batch is prewritten in one round.
        let ttl_ms = lock_ttl_ms(start_ts);
        let prewritten = self
            .prewrite_all(start_ts, &primary, &keys[1..], ttl_ms, puts.to_vec())
            .await;
        match prewritten {
            Ok(Prewritten::Locked(commit_ts)) | Ok(Prewritten::Committed(commit_ts)) => {
                self.finish_in_background(start_ts, primary, keys, commit_ts);
                Ok(commit_ts)
            }
            Ok(Prewritten::Refused(why)) => {
                // A key could not be locked: the transaction can never commit. Its
                // other locks go before it runs again (they would refuse it).
                if let Err(e) = self.finish(start_ts, &primary, keys, 0).await {
                    tracing::debug!(start_ts, error = %e, "rolling a batch back");
                }
                Err(conflict(why))
            }
            // Some prewrite went unanswered: every key may be locked, the transaction
            // committed. Rolling back tells.
            Err(e) => match self.finish(start_ts, &primary, keys, 0).await {
                Ok(0) => Err(e),
                Ok(commit_ts) => Ok(commit_ts),
                Err(_) => Err(Error::OutcomeUnknown(format!("prewriting: {e}"))),
            },
        }
    }

    /// Prewrites each range's group of `puts` on its leader, all at once; a group
    /// refused because its range split is grouped again.
    async fn prewrite_all(
        &self,
        start_ts: u64,
        primary: &[u8],
        secondaries: &[Vec<u8>],
        ttl_ms: u64,
        puts: Vec<Put>,
    ) -> Result<Prewritten> {
        let mut pending = vec![puts];
        let (mut min_commit_ts, mut committed, mut refused) = (0, None, None);
        for _ in 0..MAX_REGROUPS {
            let mut groups = Vec::new();
            for puts in pending.drain(..) {
                groups.extend(self.group(puts).await?);
            }
            let sent = groups.into_iter().map(|g| async move {
                let answer = self
                    .prewrite_group(start_ts, primary, secondaries, ttl_ms, &g)
                    .await;
                (g, answer)
            });
            let mut failed = None;
            for (g, answer) in futures::future::join_all(sent).await {
                match answer {
                    Err(e) if e.code() == Some(ErrorCode::CrossRange.as_str()) => pending.push(g),
                    Err(e) => failed = failed.or(Some(e)),
                    Ok(Outcome::MinCommitTs(ts)) => min_commit_ts = min_commit_ts.max(ts),
                    Ok(Outcome::CommittedAt(ts)) => committed = Some(ts),
                    Ok(Outcome::Conflict(why)) => refused = refused.or(Some(why)),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if pending.is_empty() {
                return Ok(match (committed, refused) {
                    (Some(ts), _) => Prewritten::Committed(ts),
                    (None, Some(why)) => Prewritten::Refused(why),
                    (None, None) => Prewritten::Locked(min_commit_ts),
                });
            }
        }
        Err(Error::Unavailable(format!(
            "the ranges of the batch's keys split {MAX_REGROUPS} times while it was prewritten"
        )))
    }

    /// `puts` grouped by the range holding each key, as the cache knows it.
    async fn group(&self, puts: Vec<Put>) -> Result<Vec<Vec<Put>>> {
        let mut groups: Vec<(u64, Vec<Put>)> = Vec::new();
        for (k, v) in puts {
            let range_id = self.locate(&k, false).await?.desc.range_id;
            match groups.iter_mut().find(|(id, _)| *id == range_id) {
                Some((_, g)) => g.push((k, v)),
                None => groups.push((range_id, vec![(k, v)])),
            }
        }
        Ok(groups.into_iter().map(|(_, g)| g).collect())
    }

    /// Prewrites `group` (keys of one range) on that range's leader; sent again
    /// through leader changes (a prewrite applied twice answers the same). Refused
    /// with `CROSS_RANGE`, unsent, once the range no longer holds every key.
    async fn prewrite_group(
        &self,
        start_ts: u64,
        primary: &[u8],
        secondaries: &[Vec<u8>],
        ttl_ms: u64,
        group: &[Put],
    ) -> Result<Outcome> {
        let has_primary = group.iter().any(|(k, _)| k.as_slice() == primary);
        self.run(Route::key(&group[0].0), Retry::Always, |ch, c| {
            let fits = c
                .as_ref()
                .is_none_or(|c| group.iter().all(|(k, _)| c.contains(k)));
            let req = self.request(pb::PrewriteRequest {
                start_ts,
                primary: primary.to_vec(),
                puts: group
                    .iter()
                    .map(|(key, value)| pb::PutOp {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                secondaries: if has_primary {
                    secondaries.to_vec()
                } else {
                    Vec::new()
                },
                ttl_ms,
                target: c.map(|c| c.target()),
            });
            async move {
                if !fits {
                    return Err(Failure::Refused(cross_range()));
                }
                let resp = Self::kv(ch).prewrite(req).await?.into_inner();
                resp.outcome.ok_or_else(|| {
                    Failure::Refused(Error::Unavailable("a prewrite answered nothing".into()))
                })
            }
        })
        .await
    }

    /// Asks a node to end the transaction: commit its locks at `commit_ts`, or (0)
    /// roll its keys back. The timestamp it committed at; 0: rolled back.
    async fn finish(
        &self,
        start_ts: u64,
        primary: &[u8],
        keys: Vec<Vec<u8>>,
        commit_ts: u64,
    ) -> Result<u64> {
        let txn = pb::FinishTxn {
            start_ts,
            primary: primary.to_vec(),
            keys,
            commit_ts,
        };
        let req = pb::TxnFinishRequest { txns: vec![txn] };
        let answer = self
            .run(Route::Any, Retry::Always, |ch, _| {
                let req = self.request(req.clone());
                async move { Ok(Self::txn_service(ch).finish(req).await?.into_inner()) }
            })
            .await?;
        answer
            .commit_ts
            .first()
            .copied()
            .ok_or_else(|| Error::Unavailable("finishing a transaction answered nothing".into()))
    }

    /// Sends the commits of `txns` to the nodes leading their keys' ranges, as the
    /// range cache knows them (a call per node, each transaction's keys split among
    /// them): each node commits the keys of the ranges it leads in its own process,
    /// and those ranges fold the commits into their next proposal. A call that fails
    /// leaves its locks for readers to roll forward.
    async fn commit_by_leader(&self, txns: Vec<pb::FinishTxn>) {
        // Per leader (`None`: not known), a key to route the call by, and the commits.
        let mut by_node: HashMap<Option<String>, (Vec<u8>, Vec<pb::FinishTxn>)> = HashMap::new();
        for t in txns {
            let mut parts: HashMap<Option<String>, Vec<Vec<u8>>> = HashMap::new();
            for k in t.keys {
                let leader = self.inner.cache.get(&k, false).and_then(|c| c.leader);
                parts.entry(leader).or_default().push(k);
            }
            for (leader, keys) in parts {
                let (_, commits) = by_node
                    .entry(leader)
                    .or_insert_with(|| (keys[0].clone(), Vec::new()));
                commits.push(pb::FinishTxn {
                    start_ts: t.start_ts,
                    primary: t.primary.clone(),
                    keys,
                    commit_ts: t.commit_ts,
                });
            }
        }
        let sent = by_node.into_values().map(|(key, txns)| async move {
            let n = txns.len();
            let req = pb::TxnFinishRequest { txns };
            // Routed by one of its keys: to the leader of that key's range.
            let sent = self
                .run(Route::key(&key), Retry::Always, |ch, _| {
                    let req = self.request(req.clone());
                    async move { Ok(Self::txn_service(ch).finish(req).await?.into_inner()) }
                })
                .await;
            if let Err(e) = sent {
                tracing::debug!(transactions = n, error = %e, "committing batches' locks");
            }
        });
        futures::future::join_all(sent).await;
    }

    /// Hands the commit of a transaction's locks to the client's committer, which
    /// sends those handed to it meanwhile together, one call at a time.
    fn finish_in_background(&self, start_ts: u64, primary: Vec<u8>, keys: Vec<Vec<u8>>, ts: u64) {
        let txn = pb::FinishTxn {
            start_ts,
            primary,
            keys,
            commit_ts: ts,
        };
        let _ = self.committer().send(Finishing::Commit(txn));
    }

    fn committer(&self) -> &mpsc::UnboundedSender<Finishing> {
        self.inner.committer.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(commit_in_turn(Arc::downgrade(&self.inner), rx));
            tx
        })
    }

    /// Waits until this client's work in the background is done: the commits of the
    /// locks of batches across ranges it answered. A process that exits right after
    /// such a batch calls it, so that readers do not meet the locks (and wait for
    /// them to expire, up to 3 s, before rolling them forward).
    pub async fn flush(&self) {
        let Some(committer) = self.inner.committer.get() else {
            return;
        };
        let (done, sent) = oneshot::channel();
        if committer.send(Finishing::Flush(done)).is_ok() {
            let _ = sent.await;
        }
    }

    /// A timestamp no other caller gets, from this client's reserve (taken from the
    /// oracle, at most `RESERVE_AGE` old), but not necessarily above every timestamp
    /// handed out before the call.
    async fn unique_timestamp(&self) -> Result<u64> {
        self.inner
            .reserve
            .unique(|count| self.timestamps(count))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_put_twice_keeps_its_first_place_and_last_value() {
        let kv = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        assert_eq!(
            last_value_per_key(vec![kv("b", "1"), kv("a", "2"), kv("b", "3")]),
            vec![kv("b", "3"), kv("a", "2")]
        );
    }
}
