//! Transactions across ranges, coordinated by a node (the `Txn` service): a
//! [`Transaction`] handle on the node that began it, [`Client::transaction`] which
//! runs a closure in one and begins it again on conflicts, and the cluster's
//! timestamps.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::password::Conn;
use shoal_proto::error::ErrorCode;
use shoal_proto::v1 as pb;

use crate::client::{Client, Failure, Retry, Route};
use crate::error::Error;
use crate::retry::Backoff;
use crate::{KeyValue, Result};

pub use pb::Isolation;

/// How a transaction is begun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnOptions {
    /// Serializable (the default): reads are checked at commit. Snapshot: only
    /// writes are (first committer wins; write skew is possible).
    pub isolation: Isolation,
    /// Writes are refused (`TXN_READ_ONLY`): the transaction reads one snapshot.
    pub read_only: bool,
}

/// A transaction open on a node (its coordinator). Cheap to clone; clones name the
/// same transaction, whose calls the node runs one at a time.
#[derive(Clone)]
pub struct Transaction {
    client: Client,
    channel: Conn,
    handle: u64,
    start_ts: u64,
    node_id: u64,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("handle", &self.handle)
            .field("start_ts", &self.start_ts)
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl Error {
    /// Whether running the transaction again from its start may succeed: it
    /// conflicted with another, its coordinator lost it before commit, or the
    /// cluster could not be reached before commit. Nothing of it was written.
    pub fn is_txn_retriable(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            Error::Status {
                code, error_code, ..
            } => match error_code.as_deref() {
                Some(c) => [
                    ErrorCode::TxnConflict,
                    ErrorCode::TxnNotFound,
                    ErrorCode::Unavailable,
                ]
                .iter()
                .any(|k| k.as_str() == c),
                // No node's code: the connection to the coordinator failed.
                None => matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ),
            },
            _ => false,
        }
    }
}

impl Transaction {
    /// The snapshot the transaction reads.
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    /// The node coordinating it.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// One call to the coordinator, with the client's attempt deadline (`limit` for
    /// a commit).
    async fn call<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        Client::direct(&format!("node {}", self.node_id), limit, call).await
    }

    fn service(&self) -> pb::txn_client::TxnClient<Conn> {
        Client::txn_service(self.channel.clone())
    }

    fn timeout(&self) -> Duration {
        self.client.inner.opts.request_timeout
    }

    /// `key` as the transaction sees it: its own write (version 0), else the
    /// snapshot at its start.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
        let req = pb::TxnGetRequest {
            handle: self.handle,
            key: key.as_ref().to_vec(),
        };
        let mut s = self.service();
        Ok(self.call(self.timeout(), s.get(req)).await?.kv)
    }

    /// Up to `limit` pairs of `[start, end)` (0: all; an empty `end`: to the end of
    /// the key space) as the transaction sees them.
    pub async fn scan(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: u32,
    ) -> Result<Vec<KeyValue>> {
        let req = pb::TxnScanRequest {
            handle: self.handle,
            start: start.as_ref().to_vec(),
            end: end.as_ref().to_vec(),
            limit,
        };
        let mut s = self.service();
        Ok(self.call(self.timeout(), s.scan(req)).await?.kvs)
    }

    /// Buffers `key = value`, written at commit.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let req = pb::TxnPutRequest {
            handle: self.handle,
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        };
        let mut s = self.service();
        self.call(self.timeout(), s.put(req)).await.map(drop)
    }

    /// Buffers a delete of `key`.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let req = pb::TxnDeleteRequest {
            handle: self.handle,
            key: key.as_ref().to_vec(),
        };
        let mut s = self.service();
        self.call(self.timeout(), s.delete(req)).await.map(drop)
    }

    /// Commits: every write takes effect at the returned commit timestamp, or none
    /// (`TXN_CONFLICT`). Without an answer the outcome is unknown
    /// ([`Error::OutcomeUnknown`]): it is not sent again.
    pub async fn commit(&self) -> Result<u64> {
        let req = pb::TxnCommitRequest {
            handle: self.handle,
        };
        let mut s = self.service();
        let limit = self.client.inner.opts.retry_deadline;
        match self.call(limit, s.commit(req)).await {
            Ok(r) => Ok(r.commit_ts),
            // No answer: the commit may have reached the coordinator.
            Err(e @ Error::Unavailable(_)) => Err(Error::OutcomeUnknown(e.to_string())),
            // An answer without a node's code: the connection failed.
            Err(Error::Status {
                error_code: None,
                message,
                ..
            }) => Err(Error::OutcomeUnknown(message)),
            Err(e) => Err(e),
        }
    }

    /// Drops the transaction's writes. Again: nothing; after a commit: `TXN_CLOSED`.
    pub async fn rollback(&self) -> Result<()> {
        let req = pb::TxnRollbackRequest {
            handle: self.handle,
        };
        let mut s = self.service();
        self.call(self.timeout(), s.rollback(req)).await.map(drop)
    }
}

impl Client {
    /// Begins a serializable transaction on a node of the cluster.
    pub async fn begin(&self) -> Result<Transaction> {
        self.begin_with(TxnOptions::default()).await
    }

    pub async fn begin_with(&self, opts: TxnOptions) -> Result<Transaction> {
        let (r, channel) = self
            .run(Route::Any, Retry::Always, |ch, _| {
                let req = self.request(pb::TxnBeginRequest {
                    isolation: opts.isolation as i32,
                    read_only: opts.read_only,
                });
                async move {
                    let r = Self::txn_service(ch.clone()).begin(req).await?;
                    Ok::<_, Failure>((r.into_inner(), ch))
                }
            })
            .await?;
        Ok(Transaction {
            client: self.clone(),
            channel,
            handle: r.handle,
            start_ts: r.start_ts,
            node_id: r.node_id,
        })
    }

    /// Runs `f` in a serializable transaction and commits it; on a conflict (or a
    /// coordinator lost before commit) begins it again, with backoff, until the
    /// client's retry deadline. `f` may run several times: it must do nothing outside
    /// the transaction that cannot be repeated. An error of `f` rolls back and is
    /// returned as is.
    pub async fn transaction<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.transaction_with(TxnOptions::default(), f).await
    }

    pub async fn transaction_with<T, F, Fut>(&self, opts: TxnOptions, mut f: F) -> Result<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let o = &self.inner.opts;
        let deadline = Instant::now() + o.retry_deadline;
        let mut backoff = Backoff::new(o.initial_backoff, o.max_backoff);
        loop {
            let attempt = async {
                let txn = self.begin_with(opts).await?;
                match f(txn.clone()).await {
                    Ok(v) => txn.commit().await.map(|_| v),
                    Err(e) => {
                        // Nothing of it is in the cluster before commit: a lost
                        // rollback leaves nothing behind.
                        let _ = txn.rollback().await;
                        Err(e)
                    }
                }
            }
            .await;
            match attempt {
                Err(e) if e.is_txn_retriable() && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "transaction retried");
                    tokio::time::sleep(backoff.pause(deadline)).await;
                }
                other => return other,
            }
        }
    }

    /// A timestamp of the cluster's time line, above every timestamp handed out before
    /// this call began (so above the commit of every write acknowledged before it).
    pub async fn timestamp(&self) -> Result<u64> {
        self.timestamps(1).await
    }

    /// A transaction's step in the range holding `key`, whose keys end before `end`
    /// (exclusive; empty: the end of the key space). The nodes' own wire for
    /// transactions across ranges: `step` and the answer are encodings of the node's
    /// range commands. Steps are idempotent: retried through leader changes. Refused
    /// with `CROSS_RANGE`, unsent, when the range holding `key` ends before `end`.
    #[doc(hidden)]
    pub async fn txn_step(&self, key: &[u8], end: &[u8], step: Vec<u8>) -> Result<Vec<u8>> {
        self.run(Route::key(key), Retry::Always, |ch, c| {
            let fits = c
                .as_ref()
                .is_none_or(|c| c.contains(key) && c.holds_before(end));
            let req = self.request(pb::TxnStepRequest {
                step: step.clone(),
                target: c.map(|c| c.target()),
            });
            async move {
                if !fits {
                    return Err(Failure::Refused(Error::InvalidArgument {
                        code: ErrorCode::CrossRange.as_str().into(),
                        message: "the step's keys lie in more than one range".into(),
                    }));
                }
                Ok(Self::kv(ch).txn_step(req).await?.into_inner().result)
            }
        })
        .await
    }

    /// The bounds `(start, end)` of the range holding `key`, as the client's range
    /// cache knows them (looked up when it knows none).
    #[doc(hidden)]
    pub async fn range_bounds(&self, key: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        let c = self.locate(key, false).await?;
        Ok((c.desc.start.clone(), c.desc.end.clone()))
    }

    /// The first of `count` consecutive timestamps (1 to 65536).
    pub async fn timestamps(&self, count: u64) -> Result<u64> {
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = self.request(pb::TxnTimestampsRequest { count });
            async move {
                Ok(Self::txn_service(ch)
                    .timestamps(req)
                    .await?
                    .into_inner()
                    .first)
            }
        })
        .await
    }
}
