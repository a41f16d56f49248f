//! [`RangeView`]: reads of one replica's data, bounded by the range's descriptor as it
//! was when the view was taken. A key outside the range is refused rather than read
//! (the range split since the request was routed); a scan stops at the range's edge
//! and says where the next range takes over.

use std::sync::Arc;

use shoal_proto::span;
use shoal_storage::{Engine, KeySpan, Versioned};

use crate::codec::decode;
use crate::error::{Error, Result};
use crate::range::RangeDescriptor;
use crate::txn_record::{Lock, TxnConflict};

/// A page of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub kvs: Vec<Versioned>,
    /// More pairs may follow in the scan's span: go on from `resume_key`.
    pub more: bool,
    /// Where the next page starts (with a descending scan: the end before which it
    /// reads).
    pub resume_key: Vec<u8>,
}

/// A replica's data within its range.
#[derive(Debug, Clone)]
pub struct RangeView {
    engine: Engine,
    desc: Arc<RangeDescriptor>,
}

impl RangeView {
    pub(crate) fn new(engine: Engine, desc: Arc<RangeDescriptor>) -> Self {
        Self { engine, desc }
    }

    /// The descriptor the view is bounded by.
    pub fn descriptor(&self) -> &RangeDescriptor {
        &self.desc
    }

    /// The transaction's lock on `key`, if any (`key` in the range).
    pub fn lock(&self, key: &[u8]) -> Result<Option<Lock>> {
        match self.engine.lock(key)? {
            Some(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|e| Error::Storage(format!("the lock of {key:?}: {e}"))),
            None => Ok(None),
        }
    }

    /// Up to `limit` locks of the part of `[start, end)` the range holds, with their
    /// keys, in key order.
    pub fn locks(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Lock)>> {
        let (lo, hi) = span::clip(&self.desc.start, &self.desc.end, start, end);
        let span = KeySpan {
            start: lo.to_vec(),
            end: hi.to_vec(),
        };
        self.engine
            .locks_in(&span, limit)?
            .into_iter()
            .map(|(k, bytes)| {
                let lock = decode(&bytes)
                    .map_err(|e| Error::Storage(format!("the lock of {k:?}: {e}")))?;
                Ok((k, lock))
            })
            .collect()
    }

    /// What a transaction that started at `start_ts`, read `spans` and commits at
    /// `commit_ts` would have missed there (`None`: nothing): a lock of another
    /// transaction that started at or below `commit_ts` (it may commit below it: the
    /// caller resolves it and asks again), or a key changed after `start_ts` and at or
    /// below `commit_ts`. Every span must lie in the range.
    pub fn validate_reads(
        &self,
        spans: &[(Vec<u8>, Vec<u8>)],
        start_ts: u64,
        commit_ts: u64,
    ) -> Result<Option<TxnConflict>> {
        for (start, end) in spans {
            if !self.desc.contains(start) {
                return Err(self.outside(start));
            }
            if !self.desc.holds_before(end) {
                return Err(self.outside(end));
            }
            for (key, lock) in self.locks(start, end, usize::MAX)? {
                if lock.start_ts != start_ts && lock.may_commit_at_or_below(commit_ts) {
                    return Ok(Some(TxnConflict::Locked { key, lock }));
                }
            }
            let span = KeySpan {
                start: start.clone(),
                end: end.clone(),
            };
            if let Some((key, ts)) = self.engine.changed_between(&span, start_ts, commit_ts)? {
                return Ok(Some(TxnConflict::ReadConflict { key, commit_ts: ts }));
            }
        }
        Ok(None)
    }

    fn outside(&self, key: &[u8]) -> Error {
        Error::KeyNotInRange {
            range_id: self.desc.range_id,
            key: key.to_vec(),
        }
    }

    /// The value and version of `key` a read at `ts` sees (`LATEST`: the newest);
    /// `key` must lie in the range.
    pub fn get(&self, key: &[u8], ts: u64) -> Result<Option<Versioned>> {
        if !self.desc.contains(key) {
            return Err(self.outside(key));
        }
        Ok(self.engine.get_at(key, ts)?)
    }

    /// Up to `limit` pairs of `[start, end)` (an empty `end` is unbounded) that lie in
    /// the range, in key order (descending with `reverse`, from `end`). The range must
    /// hold `start` (with `reverse`: the keys just before `end`). Keys as a read at `ts`
    /// sees them.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        ts: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<ScanPage> {
        let d = &self.desc;
        if reverse && !d.holds_before(end) {
            return Err(self.outside(end));
        }
        if !reverse && !d.contains(start) {
            return Err(self.outside(start));
        }
        let (lo, hi) = span::clip(&d.start, &d.end, start, end);
        // Whether the range ends before the scan does, in the scan's direction.
        let cut = if reverse { lo != start } else { hi != end };
        let bounded = KeySpan {
            start: lo.to_vec(),
            end: hi.to_vec(),
        };
        let (kvs, full) = self.engine.scan_at(&bounded, ts, limit, reverse)?;
        let (more, resume_key) = if full {
            let last = kvs.last().map(|v| v.key.as_slice()).unwrap_or_default();
            let resume = if reverse {
                last.to_vec()
            } else {
                span::key_after(last)
            };
            (true, resume)
        } else if cut {
            (true, if reverse { lo.to_vec() } else { hi.to_vec() })
        } else {
            (false, Vec::new())
        };
        Ok(ScanPage {
            kvs,
            more,
            resume_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_storage::{EngineOptions, LATEST};

    fn view(keys: &[&str], start: &str, end: &str) -> (tempfile::TempDir, RangeView) {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        let mut b = e.batch(1);
        for k in keys {
            b.put(&e, k.as_bytes(), 1, 1, b"v");
        }
        e.commit(b).unwrap();
        let desc = RangeDescriptor::new(
            1,
            &KeySpan {
                start: start.into(),
                end: end.into(),
            },
        );
        (dir, RangeView::new(e, Arc::new(desc)))
    }

    fn keys(p: &ScanPage) -> Vec<String> {
        p.kvs
            .iter()
            .map(|v| String::from_utf8_lossy(&v.key).into_owned())
            .collect()
    }

    #[test]
    fn reads_stay_inside_the_range_and_say_where_to_go_on() {
        let (_d, v) = view(&["a", "c", "e", "g", "k"], "c", "h");
        assert!(matches!(
            v.get(b"a", LATEST),
            Err(Error::KeyNotInRange { .. })
        ));
        assert!(v.get(b"c", LATEST).unwrap().is_some());
        // Forward, past the range's end: its keys, then go on at its end.
        let p = v.scan(b"c", b"", LATEST, 10, false).unwrap();
        assert_eq!(keys(&p), ["c", "e", "g"]);
        assert_eq!((p.more, p.resume_key.as_slice()), (true, &b"h"[..]));
        // A full page: go on just after its last key.
        let p = v.scan(b"c", b"f", LATEST, 1, false).unwrap();
        assert_eq!((keys(&p), p.more), (vec!["c".to_string()], true));
        assert_eq!(p.resume_key, b"c\0".to_vec());
        // Within the range: done.
        let p = v.scan(b"d", b"f", LATEST, 10, false).unwrap();
        assert_eq!((keys(&p), p.more), (vec!["e".to_string()], false));
        // Descending from past the range's end is not this range's to serve ...
        assert!(v.scan(b"a", b"z", LATEST, 10, true).is_err());
        // ... from its end it is, down to its start, then the range before it.
        let p = v.scan(b"", b"h", LATEST, 10, true).unwrap();
        assert_eq!(keys(&p), ["g", "e", "c"]);
        assert_eq!((p.more, p.resume_key.as_slice()), (true, &b"c"[..]));
        assert!(v.scan(b"a", b"c", LATEST, 10, false).is_err());
    }
}
