//! [`NodeRanges`]: how this node reaches the cluster's ranges for transactions
//! (`shoal_txn::Ranges`): a step of a range this node leads, or a read of a range
//! whose replica here leads it or follows a leader it knows, is served here ([`Here`],
//! no gRPC loopback); any other, through the node's own client of the
//! cluster, which routes each to its range, follows redirects and splits, and sends
//! idempotent steps again after ambiguous failures, as it does any request; and its
//! timestamps through the node's [`Clock`].

use std::sync::{Arc, OnceLock, Weak};

use futures::future::BoxFuture;
use shoal_client::{Client, ClientOptions};
use shoal_proto::error::ErrorCode;
use shoal_raft::codec::{decode, encode};
use shoal_raft::{Command, CommandResponse, ScanPage, Touch};
use shoal_storage::Versioned;
use shoal_txn::ranges::{Bounds, Read};
use shoal_txn::Ranges;

use crate::clock::Clock;

/// Serves a transaction's step or read on this node's replica of its range, when that
/// replica leads it (a read: or follows a leader it knows): `None` otherwise, or when
/// serving it here failed (the step, idempotent, or the read then goes through the
/// client, which retries and re-routes).
pub trait Here: Send + Sync {
    fn step_here<'a>(
        &'a self,
        key: &'a [u8],
        step: &'a Command,
    ) -> BoxFuture<'a, Option<CommandResponse>>;

    /// `key` as a linearizable read at `ts` sees it.
    fn get_here<'a>(&'a self, key: &'a [u8], ts: u64) -> BoxFuture<'a, Option<Option<Versioned>>>;

    /// A page of up to `limit` pairs (0: the server's page) of `[start, end)` at `ts`,
    /// from the range holding `start`.
    fn scan_here<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
        ts: u64,
        limit: usize,
    ) -> BoxFuture<'a, Option<ScanPage>>;
}

/// The node's way to reach any range.
#[derive(Clone)]
pub struct NodeRanges {
    client: Client,
    clock: Clock,
    /// Set once the node's `Kv` service exists (it holds a clone of this).
    local: Arc<OnceLock<Weak<dyn Here>>>,
}

impl NodeRanges {
    /// Reaches the cluster through this node (at `advertise`): it knows the rest.
    /// `tls`: a secure node's connections, with its node certificate.
    pub fn new(
        advertise: &str,
        clock: Clock,
        tls: Option<shoal_client::ClientTls>,
    ) -> std::result::Result<Self, shoal_client::Error> {
        let opts = ClientOptions {
            tls,
            ..ClientOptions::default()
        };
        Ok(Self {
            client: Client::with_options([advertise.to_string()], opts)?,
            clock,
            local: Arc::default(),
        })
    }

    /// Steps and reads of ranges this node holds go to `here` from now on (every
    /// clone).
    pub fn serve_here_with(&self, here: Weak<dyn Here>) {
        let _ = self.local.set(here);
    }

    fn here(&self) -> Option<Arc<dyn Here>> {
        self.local.get().and_then(Weak::upgrade)
    }
}

/// The end (exclusive; empty: unbounded) of what `step` touches.
fn extent_end(step: &Command) -> Vec<u8> {
    let mut end: Option<Vec<u8>> = None;
    for t in step.touches() {
        let e = match t {
            Touch::Key(k) => {
                let mut e = k.to_vec();
                e.push(0);
                e
            }
            Touch::Span(_, []) => return Vec::new(),
            Touch::Span(_, e) => e.to_vec(),
        };
        if end.as_ref().is_none_or(|cur| &e > cur) {
            end = Some(e);
        }
    }
    end.unwrap_or_default()
}

/// A client's failure, as the transaction layer sees it.
fn failed(what: impl std::fmt::Display, e: shoal_client::Error) -> shoal_txn::Error {
    if e.code() == Some(ErrorCode::CrossRange.as_str()) {
        return shoal_txn::Error::Regroup;
    }
    shoal_txn::Error::Unavailable(format!("{what}: {e}"))
}

/// A timestamp from the node's clock, as the transaction layer takes it.
fn stamp(ts: crate::error::Result<shoal_txn::Timestamp>) -> shoal_txn::Result<u64> {
    ts.map(|ts| ts.0)
        .map_err(|e| shoal_txn::Error::Unavailable(format!("a timestamp: {e}")))
}

fn read_of(kv: shoal_client::KeyValue) -> Read {
    Read {
        key: kv.key,
        value: kv.value,
        version: kv.version,
    }
}

fn read_stored(v: Versioned) -> Read {
    Read {
        key: v.key,
        value: v.value,
        version: v.version,
    }
}

impl Ranges for NodeRanges {
    fn step<'a>(
        &'a self,
        key: &'a [u8],
        step: Command,
    ) -> BoxFuture<'a, shoal_txn::Result<CommandResponse>> {
        Box::pin(async move {
            if let Some(here) = self.here() {
                if let Some(answer) = here.step_here(key, &step).await {
                    return Ok(answer);
                }
            }
            let bytes = encode(&step).map_err(|e| shoal_txn::Error::Internal(e.to_string()))?;
            let end = extent_end(&step);
            let answer = self
                .client
                .txn_step(key, &end, bytes)
                .await
                .map_err(|e| failed(&step, e))?;
            decode(&answer).map_err(|e| shoal_txn::Error::Internal(format!("{step}: {e}")))
        })
    }

    fn locate<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, shoal_txn::Result<Bounds>> {
        Box::pin(async move {
            let (start, end) = self
                .client
                .range_bounds(key)
                .await
                .map_err(|e| failed("locating a key's range", e))?;
            Ok(Bounds { start, end })
        })
    }

    fn get<'a>(&'a self, key: &'a [u8], ts: u64) -> BoxFuture<'a, shoal_txn::Result<Option<Read>>> {
        Box::pin(async move {
            if let Some(here) = self.here() {
                if let Some(found) = here.get_here(key, ts).await {
                    return Ok(found.map(read_stored));
                }
            }
            let kv = self
                .client
                .get_at(key, ts)
                .await
                .map_err(|e| failed("a transaction's read", e))?;
            Ok(kv.map(read_of))
        })
    }

    fn scan<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
        ts: u64,
        limit: usize,
    ) -> BoxFuture<'a, shoal_txn::Result<Vec<Read>>> {
        Box::pin(async move {
            // Pages of ranges this node holds are read here, the rest through the
            // client, from where the last page here stopped.
            let mut out = Vec::new();
            let mut from = start.to_vec();
            let want = |got: usize| if limit == 0 { 0 } else { limit - got };
            if let Some(here) = self.here() {
                while let Some(page) = here.scan_here(&from, end, ts, want(out.len())).await {
                    out.extend(page.kvs.into_iter().map(read_stored));
                    if !page.more || (limit != 0 && out.len() >= limit) {
                        return Ok(out);
                    }
                    from = page.resume_key;
                }
            }
            let kvs = self
                .client
                .scan_at(&from, end, want(out.len()), ts)
                .await
                .map_err(|e| failed("a transaction's scan", e))?;
            out.extend(kvs.into_iter().map(read_of));
            Ok(out)
        })
    }

    fn now(&self) -> BoxFuture<'_, shoal_txn::Result<u64>> {
        Box::pin(async move { stamp(self.clock.now().await) })
    }

    fn unique(&self) -> BoxFuture<'_, shoal_txn::Result<u64>> {
        Box::pin(async move { stamp(self.clock.unique().await) })
    }
}
