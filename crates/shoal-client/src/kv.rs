//! The key-value operations: get, put, delete, scans and delete-ranges stitched across
//! ranges, atomic batches, transactions. Every write carries a request id, so its
//! retries apply at most once.

use shoal_proto::span;
use shoal_proto::v1 as pb;

use crate::client::{Client, Failure, Retry, Route};
use crate::error::Error;
use crate::{ops, Compare, Consistency, KeyValue, Result, TxnOp, TxnResponse, WriteOp};

/// A scan's page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub kvs: Vec<KeyValue>,
    /// More pairs may remain: continue from `resume_key`.
    pub more: bool,
    /// Where the next page starts (with a descending scan: where it ends).
    pub resume_key: Vec<u8>,
    /// The timestamp the page was read at (0: the newest versions a replica held, a
    /// stale read): the next page, read at it, continues the same snapshot.
    pub read_ts: u64,
}

/// The first key of a write op, which routes it.
fn write_op_key(op: &WriteOp) -> Option<Vec<u8>> {
    use pb::write_op::Op;
    match op.op.as_ref()? {
        Op::Put(p) => Some(p.key.clone()),
        Op::Delete(d) => Some(d.key.clone()),
        Op::DeleteRange(d) => Some(d.start.clone()),
    }
}

fn txn_op_key(op: &TxnOp) -> Option<Vec<u8>> {
    use pb::txn_op::Op;
    match op.op.as_ref()? {
        Op::Put(p) => Some(p.key.clone()),
        Op::Delete(d) => Some(d.key.clone()),
        Op::DeleteRange(d) => Some(d.start.clone()),
        Op::Get(g) => Some(g.key.clone()),
    }
}

fn is_cross_range(e: &Error) -> bool {
    e.code() == Some(shoal_proto::error::ErrorCode::CrossRange.as_str())
}

/// The keys and values of `ops` when they are puts alone, few enough for a
/// transaction committed asynchronously (its primary lock lists its other keys).
fn puts_alone(ops: &[WriteOp]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let puts = ops
        .iter()
        .map(|op| match &op.op {
            Some(pb::write_op::Op::Put(p)) => Some((p.key.clone(), p.value.clone())),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let keys = puts.iter().map(|(k, _)| k.as_slice());
    (!puts.is_empty() && shoal_proto::txn::commits_asynchronously(keys)).then_some(puts)
}

/// Refuses (unsent) a batch or transaction whose keys fall in more than one range of
/// the cache: it goes across ranges instead.
fn one_range(c: &Option<crate::cache::CachedRange>, keys: &[Vec<u8>]) -> Result<()> {
    let Some(c) = c else { return Ok(()) };
    if keys.iter().all(|k| c.contains(k)) {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        code: shoal_proto::error::ErrorCode::CrossRange.as_str().into(),
        message: format!(
            "the keys fall in more than one range (range {} holds only part of them)",
            c.desc.range_id
        ),
    })
}

impl Client {
    /// The value and version of `key`, read linearizably.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
        self.get_with(key, Consistency::Linearizable).await
    }

    pub async fn get_with(
        &self,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>> {
        self.get_at_with(key, 0, consistency).await
    }

    /// `key` as it was at timestamp `ts` (from [`Client::timestamp`], or a version):
    /// the newest version at or below it. `SNAPSHOT_TOO_OLD` below the retention
    /// window.
    pub async fn get_at(&self, key: impl AsRef<[u8]>, ts: u64) -> Result<Option<KeyValue>> {
        self.get_at_with(key, ts, Consistency::Linearizable).await
    }

    async fn get_at_with(
        &self,
        key: impl AsRef<[u8]>,
        read_ts: u64,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>> {
        let key = key.as_ref().to_vec();
        let route = Route::Key {
            key: &key,
            before: false,
            any_replica: consistency == Consistency::Stale,
        };
        self.run(route, Retry::Always, |ch, c| {
            let req = self.request(pb::GetRequest {
                target: c.map(|c| c.target()),
                key: key.clone(),
                consistency: consistency as i32,
                read_ts,
            });
            async move { Ok(Self::kv(ch).get(req).await?.into_inner().kv) }
        })
        .await
    }

    /// Reads `key` from the node at `addr` only, without redirects: with
    /// [`Consistency::Stale`], what that replica holds.
    pub async fn get_from(
        &self,
        addr: &str,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>> {
        let req = pb::GetRequest {
            target: None,
            key: key.as_ref().to_vec(),
            consistency: consistency as i32,
            read_ts: 0,
        };
        let mut kv = Self::kv(self.channel(addr)?);
        let limit = self.inner.opts.request_timeout;
        Ok(Self::direct(addr, limit, kv.get(self.request(req)))
            .await?
            .kv)
    }

    /// Writes `value` under `key`; returns the key's new version.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        let (id, _in_flight) = self.inner.ids.next();
        let (key, value) = (key.as_ref().to_vec(), value.as_ref().to_vec());
        self.run(Route::key(&key), Retry::Always, |ch, c| {
            let req = self.request(pb::PutRequest {
                target: c.map(|c| c.target()),
                key: key.clone(),
                value: value.clone(),
                request_id: Some(id),
            });
            async move { Ok(Self::kv(ch).put(req).await?.into_inner().version) }
        })
        .await
    }

    /// Deletes `key`; returns whether it existed (on a retried attempt, whether it
    /// still existed then).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let (id, _in_flight) = self.inner.ids.next();
        let key = key.as_ref().to_vec();
        self.run(Route::key(&key), Retry::Always, |ch, c| {
            let req = self.request(pb::DeleteRequest {
                target: c.map(|c| c.target()),
                key: key.clone(),
                request_id: Some(id),
            });
            async move { Ok(Self::kv(ch).delete(req).await?.into_inner().deleted) }
        })
        .await
    }

    /// One page of `[start, end)` (an empty `end` is unbounded), at most `limit` pairs
    /// (0: the server's page size), from one range: `more` and `resume_key` tell
    /// where to go on. With `reverse`, in descending order from the end.
    pub async fn scan_page_with(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: u32,
        consistency: Consistency,
        reverse: bool,
    ) -> Result<ScanPage> {
        self.scan_page_at(start, end, limit, consistency, reverse, 0)
            .await
    }

    /// As [`Client::scan_page_with`], as the keys were at timestamp `read_ts` (0: a
    /// fresh timestamp, which the page names).
    pub async fn scan_page_at(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: u32,
        consistency: Consistency,
        reverse: bool,
        read_ts: u64,
    ) -> Result<ScanPage> {
        let (start, end) = (start.as_ref().to_vec(), end.as_ref().to_vec());
        let route = Route::Key {
            key: if reverse { &end } else { &start },
            before: reverse,
            any_replica: consistency == Consistency::Stale,
        };
        self.run(route, Retry::Always, |ch, c| {
            let req = self.request(pb::ScanRequest {
                target: c.map(|c| c.target()),
                start: start.clone(),
                end: end.clone(),
                limit,
                consistency: consistency as i32,
                reverse,
                read_ts,
            });
            async move {
                let r = Self::kv(ch).scan(req).await?.into_inner();
                Ok(ScanPage {
                    kvs: r.kvs,
                    more: r.more,
                    resume_key: r.resume_key,
                    read_ts: r.header.map_or(0, |h| h.read_ts),
                })
            }
        })
        .await
    }

    /// One page of `[start, end)` in key order (see [`Client::scan_page_with`]).
    pub async fn scan_page(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: u32,
        consistency: Consistency,
    ) -> Result<ScanPage> {
        self.scan_page_with(start, end, limit, consistency, false)
            .await
    }

    /// Every pair of `[start, end)` in key order, up to `limit` (0: no limit),
    /// fetched page by page and range by range.
    pub async fn scan(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        self.scan_with(start, end, limit, Consistency::Linearizable, false)
            .await
    }

    /// As [`Client::scan`], with a consistency and, with `reverse`, in descending key
    /// order (the last `limit` pairs of the span, last first). A linearizable scan
    /// reads one snapshot of every range it crosses: its first page's timestamp.
    pub async fn scan_with(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: usize,
        consistency: Consistency,
        reverse: bool,
    ) -> Result<Vec<KeyValue>> {
        self.scan_at_with(start, end, limit, consistency, reverse, 0)
            .await
    }

    /// Every pair of `[start, end)` as it was at timestamp `ts`, in key order, up to
    /// `limit` (0: no limit).
    pub async fn scan_at(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: usize,
        ts: u64,
    ) -> Result<Vec<KeyValue>> {
        self.scan_at_with(start, end, limit, Consistency::Linearizable, false, ts)
            .await
    }

    async fn scan_at_with(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: usize,
        consistency: Consistency,
        reverse: bool,
        mut read_ts: u64,
    ) -> Result<Vec<KeyValue>> {
        let (mut lo, mut hi) = (start.as_ref().to_vec(), end.as_ref().to_vec());
        let mut out = Vec::new();
        loop {
            let want = if limit == 0 {
                0
            } else {
                (limit - out.len()).min(u32::MAX as usize) as u32
            };
            let page = self
                .scan_page_at(&lo, &hi, want, consistency, reverse, read_ts)
                .await?;
            read_ts = page.read_ts;
            out.extend(page.kvs);
            if limit != 0 && out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            if !page.more {
                return Ok(out);
            }
            if reverse {
                hi = page.resume_key;
                if hi.as_slice() <= lo.as_slice() {
                    return Ok(out);
                }
            } else {
                lo = page.resume_key;
                if !hi.is_empty() && lo >= hi {
                    return Ok(out);
                }
            }
        }
    }

    /// Deletes every key of `[start, end)`; returns how many were deleted. Each range
    /// the span crosses deletes its part atomically; the parts apply one after the
    /// other.
    pub async fn delete_range(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
    ) -> Result<u64> {
        let end = end.as_ref().to_vec();
        let mut lo = start.as_ref().to_vec();
        let mut total = 0;
        loop {
            let (id, _in_flight) = self.inner.ids.next();
            // The part in the range holding `lo`, as routed on each attempt.
            let reached = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let deleted = self
                .run(Route::key(&lo), Retry::Always, |ch, c| {
                    let part_end = match &c {
                        Some(c) if !c.desc.end.is_empty() => {
                            span::clip(&c.desc.start, &c.desc.end, &lo, &end).1.to_vec()
                        }
                        _ => end.clone(),
                    };
                    *reached.lock().unwrap_or_else(|p| p.into_inner()) = part_end.clone();
                    let req = self.request(pb::DeleteRangeRequest {
                        target: c.map(|c| c.target()),
                        start: lo.clone(),
                        end: part_end,
                        request_id: Some(id),
                    });
                    async move { Ok(Self::kv(ch).delete_range(req).await?.into_inner().deleted) }
                })
                .await?;
            total += deleted;
            let part_end = reached.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if part_end == end || part_end.is_empty() {
                return Ok(total);
            }
            lo = part_end;
        }
    }

    /// Applies `ops` atomically; returns the version they were written at. Keys in
    /// one range: one command there (retried with its request id, applied once).
    /// Keys in several: one transaction across them. Puts alone (up to 64 keys, 16 KiB
    /// of keys): committed by this client, its prewrites sent to each range's leader
    /// (see [`crate::across`]). Others: coordinated by a node; not sent again once
    /// it may have reached one (an unanswered one is [`Error::OutcomeUnknown`]).
    pub async fn batch(&self, ops: Vec<WriteOp>) -> Result<u64> {
        let keys: Vec<Vec<u8>> = ops.iter().filter_map(write_op_key).collect();
        let first = keys.first().cloned().unwrap_or_default();
        let one = {
            let (id, _in_flight) = self.inner.ids.next();
            self.run(Route::key(&first), Retry::Always, |ch, c| {
                let check = one_range(&c, &keys);
                let req = self.request(pb::BatchRequest {
                    target: c.map(|c| c.target()),
                    ops: ops.clone(),
                    request_id: Some(id),
                });
                async move {
                    check.map_err(Failure::Refused)?;
                    Ok(Self::kv(ch).batch(req).await?.into_inner().version)
                }
            })
            .await
        };
        match one {
            Err(e) if is_cross_range(&e) => {}
            done => return done,
        }
        if let Some(puts) = puts_alone(&ops) {
            return self.put_across(puts).await;
        }
        self.run(Route::key(&first), Retry::IfNotApplied, |ch, _| {
            let req = self.request(pb::BatchRequest {
                target: None,
                ops: ops.clone(),
                request_id: None,
            });
            async move { Ok(Self::kv(ch).batch(req).await?.into_inner().version) }
        })
        .await
    }

    /// An etcd-style transaction: if every compare holds, the `success` ops, else the
    /// `failure` ops, atomically. Keys in one range: one command there (retried with
    /// its request id, applied once). Keys in several: one serializable transaction
    /// across them, coordinated by a node; not sent again once it may have reached
    /// one (an unanswered one is [`Error::OutcomeUnknown`]).
    pub async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> Result<TxnResponse> {
        let keys: Vec<Vec<u8>> = compares
            .iter()
            .map(|c| c.key.clone())
            .chain(success.iter().chain(failure.iter()).filter_map(txn_op_key))
            .collect();
        let first = keys.first().cloned().unwrap_or_default();
        let one = {
            let (id, _in_flight) = self.inner.ids.next();
            // Retries carry the same request id: the cluster applies it once.
            self.run(Route::key(&first), Retry::Always, |ch, c| {
                let check = one_range(&c, &keys);
                let req = self.request(pb::TxnRequest {
                    target: c.map(|c| c.target()),
                    compares: compares.clone(),
                    success: success.clone(),
                    failure: failure.clone(),
                    request_id: Some(id),
                });
                async move {
                    check.map_err(Failure::Refused)?;
                    Ok(Self::kv(ch).txn(req).await?.into_inner())
                }
            })
            .await
        };
        match one {
            Err(e) if is_cross_range(&e) => {}
            done => return done,
        }
        self.run(Route::key(&first), Retry::IfNotApplied, |ch, _| {
            let req = self.request(pb::TxnRequest {
                target: None,
                compares: compares.clone(),
                success: success.clone(),
                failure: failure.clone(),
                request_id: None,
            });
            async move { Ok(Self::kv(ch).txn(req).await?.into_inner()) }
        })
        .await
    }

    /// Writes `value` under `key` only if the key's version is `expected` (0: absent);
    /// returns `Ok(Some(new_version))` on success, `Ok(None)` if the version differed.
    pub async fn compare_and_put(
        &self,
        key: impl AsRef<[u8]>,
        expected: u64,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<u64>> {
        let key = key.as_ref().to_vec();
        let r = self
            .txn(
                vec![ops::version_is(&key, expected)],
                vec![ops::put(&key, value.as_ref())],
                vec![],
            )
            .await?;
        Ok(r.succeeded.then_some(r.version))
    }
}
