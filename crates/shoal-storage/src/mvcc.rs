//! Multi-version reads of the user key space. A user key's data keys are its lock slot
//! (timestamp [`keys::LOCK_TS`]), then its version records newest first
//! ([`keys::mvcc_key`]): a read at timestamp `ts` takes the newest put or delete at or
//! below `ts`, passing over rollback marks. [`LATEST`] reads the newest version.

use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, DB};

use crate::engine::{prefix_end, Engine, KeySpan, Versioned};
use crate::keys::{self, VersionKind};
use crate::{Result, StorageError};

pub use crate::keys::LATEST;

/// One version record of a key, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// Its commit timestamp (a rollback mark's: the rolled back transaction's start).
    pub ts: u64,
    pub kind: VersionKind,
    /// The start timestamp of the transaction that wrote it.
    pub start_ts: u64,
    pub value: Vec<u8>,
}

fn corrupt(key: &[u8], what: &str) -> StorageError {
    StorageError::Corrupt {
        what: "version record",
        detail: format!("{} of data key {key:?}", what),
    }
}

fn decode(key: &[u8], stored: &[u8]) -> Result<(VersionKind, u64, Vec<u8>)> {
    let (kind, start, value) =
        keys::decode_version(stored).ok_or_else(|| corrupt(key, "undecodable record"))?;
    Ok((kind, start, value.to_vec()))
}

type Raw<'a> = DBRawIteratorWithThreadMode<'a, DB>;

impl Engine {
    /// The newest version of a user key (its value and version), or `None` if it has
    /// none or the newest is a delete.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        self.get_at(key, LATEST)
    }

    /// The version of a user key a read at `ts` sees.
    pub fn get_at(&self, key: &[u8], ts: u64) -> Result<Option<Versioned>> {
        let prefix = keys::mvcc_prefix(key);
        let mut ro = ReadOptions::default();
        if let Some(end) = prefix_end(&prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(keys::CF_DATA), ro);
        visible(&mut it, key, &prefix, ts)
    }

    /// Up to `limit` keys of `span` as a read at `ts` sees them, in key order
    /// (descending with `reverse`), and whether more remain.
    pub fn scan_at(
        &self,
        span: &KeySpan,
        ts: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Versioned>, bool)> {
        let mut out = Vec::new();
        let mut more = false;
        self.each_key(span, reverse, |it, key, prefix| {
            let Some(v) = visible(it, &key, prefix, ts)? else {
                return Ok(true);
            };
            if out.len() == limit {
                more = true;
                return Ok(false);
            }
            out.push(v);
            Ok(true)
        })?;
        Ok((out, more))
    }

    /// Up to `limit` keys of `span` with their newest versions, in key order
    /// (descending with `reverse`), and whether more remain.
    pub fn scan(
        &self,
        span: &KeySpan,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Versioned>, bool)> {
        self.scan_at(span, LATEST, limit, reverse)
    }

    /// The user keys of `span` whose newest version is a put, in order.
    pub fn keys_in(&self, span: &KeySpan) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        self.each_key(span, false, |it, key, prefix| {
            if visible(it, &key, prefix, LATEST)?.is_some() {
                out.push(key);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// The lock of a user key, as stored (the transaction layer encodes it).
    pub fn lock(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_cf(self.cf(keys::CF_DATA), keys::lock_key(key))?)
    }

    /// Up to `limit` locks of `span`, with their keys, in key order.
    pub fn locks_in(&self, span: &KeySpan, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.locks_where(span, limit, |_| true)
    }

    /// Up to `limit` locks of `span` whose stored value `pick` accepts, with their
    /// keys, in key order. Visits every key of the span (locks live beside their keys'
    /// versions).
    pub fn locks_where(
        &self,
        span: &KeySpan,
        limit: usize,
        mut pick: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.each_key(span, false, |it, key, prefix| {
            if out.len() == limit {
                return Ok(false);
            }
            let lock = keys::lock_key(&key);
            it.seek(&lock);
            match (it.key(), it.value()) {
                (Some(k), Some(v)) if k == lock.as_slice() && k.starts_with(prefix) => {
                    if pick(v) {
                        out.push((key, v.to_vec()));
                    }
                }
                _ => it.status()?,
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Every version record of a user key, newest first (its lock not included).
    pub fn versions_of(&self, key: &[u8]) -> Result<Vec<VersionRecord>> {
        self.versions_since(key, 0)
    }

    /// The version records of a user key at or above timestamp `since`, newest first.
    pub fn versions_since(&self, key: &[u8], since: u64) -> Result<Vec<VersionRecord>> {
        let prefix = keys::mvcc_prefix(key);
        let mut ro = ReadOptions::default();
        if let Some(end) = prefix_end(&prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(keys::CF_DATA), ro);
        it.seek(keys::mvcc_key(key, LATEST));
        let mut out = Vec::new();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let (_, ts) = keys::parse_mvcc_key(k).ok_or_else(|| corrupt(k, "undecodable key"))?;
            if ts < since {
                break;
            }
            let (kind, start_ts, value) = decode(k, v)?;
            out.push(VersionRecord {
                ts,
                kind,
                start_ts,
                value,
            });
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The first key of `span` (in key order) with a put or a delete committed above
    /// timestamp `after` and at or below `upto`, with that version's timestamp: what a
    /// transaction that read `span` at `after` and commits at `upto` would have
    /// missed.
    pub fn changed_between(
        &self,
        span: &KeySpan,
        after: u64,
        upto: u64,
    ) -> Result<Option<(Vec<u8>, u64)>> {
        let mut found = None;
        self.each_key(span, false, |it, key, prefix| {
            it.seek(keys::mvcc_key(&key, upto.min(LATEST)));
            while it.valid() {
                let (Some(k), Some(v)) = (it.key(), it.value()) else {
                    break;
                };
                if !k.starts_with(prefix) {
                    break;
                }
                let (_, ts) =
                    keys::parse_mvcc_key(k).ok_or_else(|| corrupt(k, "undecodable key"))?;
                if ts <= after {
                    break;
                }
                if decode(k, v)?.0 != VersionKind::Rollback {
                    found = Some((key, ts));
                    return Ok(false);
                }
                it.next();
            }
            it.status()?;
            Ok(true)
        })?;
        Ok(found)
    }

    /// Calls `f` with an iterator over `span`, every user key of `span` that has any
    /// data key (a lock, a version of any kind) and that key's [`keys::mvcc_prefix`],
    /// in key order (descending with `reverse`), until it returns `false`. `f` may move
    /// the iterator; one seek then steps over the rest of the key's versions.
    fn each_key(
        &self,
        span: &KeySpan,
        reverse: bool,
        mut f: impl FnMut(&mut Raw<'_>, Vec<u8>, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let (lo, hi) = keys::user_span(&span.start, &span.end);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(lo.clone());
        ro.set_iterate_upper_bound(hi.clone());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(keys::CF_DATA), ro);
        if reverse {
            it.seek_for_prev(&hi);
        } else {
            it.seek(&lo);
        }
        while it.valid() {
            let Some(k) = it.key() else { break };
            let (key, _) = keys::parse_mvcc_key(k).ok_or_else(|| corrupt(k, "undecodable key"))?;
            let prefix = keys::mvcc_prefix(&key);
            if !f(&mut it, key, &prefix)? {
                return Ok(());
            }
            if reverse {
                // No data key equals a prefix: this is the previous key's last one.
                it.seek_for_prev(&prefix);
            } else {
                match prefix_end(&prefix) {
                    Some(next) => it.seek(&next),
                    None => break,
                }
            }
        }
        it.status()?;
        Ok(())
    }
}

/// The version of `key` (whose data keys start with `prefix`) a read at `ts` sees:
/// the first put or delete at or below `ts`, passing over rollback marks. Moves `it`.
fn visible(it: &mut Raw<'_>, key: &[u8], prefix: &[u8], ts: u64) -> Result<Option<Versioned>> {
    it.seek(keys::mvcc_key(key, ts.min(LATEST)));
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        if !k.starts_with(prefix) {
            return Ok(None);
        }
        let ts = k
            .len()
            .checked_sub(8)
            .filter(|&at| at >= prefix.len())
            .and_then(|at| keys::decode_u64(&k[at..]))
            .map(|inverted| !inverted)
            .ok_or_else(|| corrupt(k, "undecodable key"))?;
        match decode(k, v)? {
            (VersionKind::Put, _, value) => {
                return Ok(Some(Versioned {
                    key: key.to_vec(),
                    value,
                    version: ts,
                }))
            }
            (VersionKind::Delete, _, _) => return Ok(None),
            (VersionKind::Rollback, _, _) => it.next(),
        }
    }
    it.status()?;
    Ok(None)
}
