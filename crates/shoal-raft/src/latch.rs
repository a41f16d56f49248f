//! [`Latches`]: the writes a range's leader has in flight, by the keys they touch.
//!
//! A write takes latches on its keys and spans before it takes its commit timestamp,
//! and holds them until it is applied: writes of one key go through Raft one at a
//! time, in timestamp order, so a key's versions are applied oldest first and a
//! compare sees every write with a lower timestamp. A read at timestamp `ts` waits for
//! the latches over its keys whose write has no timestamp yet or one at or below
//! `ts`: once they are released, those writes are applied, and every later write takes
//! a timestamp above `ts` (it is taken after the read's). So a read at `ts` never
//! misses a write below `ts` that is applied after it. The table is the leader's
//! memory alone: a new leader starts with an empty one, and the writes in flight
//! under the old leader are in its log before any of its own.
//!
//! A write that also checks spans it only read (a one-phase transaction's reads, a
//! validation) holds shared latches on them: they wait for, and hold off, writes of
//! those spans (so no write below its timestamp applies after its check), but not
//! each other: transactions that all read one key (a SQL table's descriptor) do not
//! take turns on it.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use shoal_proto::span;
use tokio::sync::Notify;

use crate::command::Touch;

/// A key or a span `[start, end)` (an empty `end`: to the end of the key space).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatchSpan {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl LatchSpan {
    pub fn key(key: &[u8]) -> Self {
        Self {
            start: key.to_vec(),
            end: span::key_after(key),
        }
    }

    pub fn of(touch: &Touch<'_>) -> Self {
        match *touch {
            Touch::Key(k) => Self::key(k),
            Touch::Span(s, e) => Self {
                start: s.to_vec(),
                end: e.to_vec(),
            },
        }
    }

    fn overlaps(&self, other: &LatchSpan) -> bool {
        span::overlaps(&self.start, &self.end, &other.start, &other.end)
    }
}

/// A read at timestamp `ts` of `spans`: what a follower's read-index request carries,
/// so the leader waits for its writes in flight below `ts` first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAt {
    pub ts: u64,
    pub spans: Vec<LatchSpan>,
}

#[derive(Debug)]
struct Held {
    id: u64,
    /// What the write writes: latched alone.
    spans: Vec<LatchSpan>,
    /// What it only reads: shared with other readers.
    reads: Vec<LatchSpan>,
    /// The write's commit timestamp, once taken.
    ts: Option<u64>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    held: Vec<Held>,
}

fn any_overlap(a: &[LatchSpan], b: &[LatchSpan]) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.overlaps(y)))
}

impl Table {
    /// Whether a write of `spans` that reads `reads` must wait for a held latch.
    fn conflicts(&self, spans: &[LatchSpan], reads: &[LatchSpan]) -> bool {
        self.held.iter().any(|h| {
            any_overlap(&h.spans, spans)
                || any_overlap(&h.spans, reads)
                || any_overlap(&h.reads, spans)
        })
    }

    /// Whether a read of `spans` must wait for a write held over them (`visible`).
    fn writes_over(&self, spans: &[LatchSpan], visible: impl Fn(&Held) -> bool) -> bool {
        self.held
            .iter()
            .filter(|h| visible(h))
            .any(|h| any_overlap(&h.spans, spans))
    }
}

/// A range leader's latches (see the module's documentation).
#[derive(Debug, Default)]
pub struct Latches {
    table: Mutex<Table>,
    released: Notify,
}

/// Latches held by one write; released when dropped.
#[derive(Debug)]
pub struct LatchGuard {
    latches: Arc<Latches>,
    id: u64,
}

impl Latches {
    /// Takes latches on `spans` once no other write holds an overlapping one.
    pub async fn acquire(self: &Arc<Self>, spans: Vec<LatchSpan>) -> LatchGuard {
        self.acquire_reading(spans, Vec::new()).await
    }

    /// Takes latches on `spans`, which the write writes, alone, and shared ones on
    /// `reads`, which it only reads: once no other write holds a latch over either
    /// and no other reader shares one over `spans`.
    pub async fn acquire_reading(
        self: &Arc<Self>,
        spans: Vec<LatchSpan>,
        reads: Vec<LatchSpan>,
    ) -> LatchGuard {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut t = self.lock();
                if !t.conflicts(&spans, &reads) {
                    let id = t.next_id;
                    t.next_id += 1;
                    t.held.push(Held {
                        id,
                        spans,
                        reads,
                        ts: None,
                    });
                    return LatchGuard {
                        latches: self.clone(),
                        id,
                    };
                }
            }
            released.await;
        }
    }

    /// Returns once no write over `spans` that may commit at or below `ts` is in
    /// flight (one without a timestamp yet may).
    pub async fn wait_readable(&self, spans: &[LatchSpan], ts: u64) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self
                .lock()
                .writes_over(spans, |h| h.ts.is_none_or(|w| w <= ts))
            {
                return;
            }
            released.await;
        }
    }

    /// Writes in flight.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table is left consistent at every point a panic could occur.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LatchGuard {
    /// Records the write's commit timestamp: reads below it no longer wait for it.
    pub fn set_ts(&self, ts: u64) {
        if let Some(h) = self
            .latches
            .lock()
            .held
            .iter_mut()
            .find(|h| h.id == self.id)
        {
            h.ts = Some(ts);
        }
        self.latches.released.notify_waiters();
    }
}

impl Drop for LatchGuard {
    fn drop(&mut self) {
        self.latches.lock().held.retain(|h| h.id != self.id);
        self.latches.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn keys(ks: &[&str]) -> Vec<LatchSpan> {
        ks.iter().map(|k| LatchSpan::key(k.as_bytes())).collect()
    }

    async fn blocked<F: std::future::Future>(f: F) -> bool {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn readers_of_a_span_share_it_and_hold_off_its_writers() {
        let l = Arc::new(Latches::default());
        // Two transactions that read "d" and write keys of their own go together.
        let one = l.acquire_reading(keys(&["a"]), keys(&["d"])).await;
        let two = l.acquire_reading(keys(&["b"]), keys(&["d"])).await;
        // A write of "d" waits for both; one of a key they write waits too.
        assert!(blocked(l.acquire(keys(&["d"]))).await);
        assert!(blocked(l.acquire_reading(keys(&["c"]), keys(&["a"]))).await);
        // A read waits for writes only.
        assert!(!blocked(l.wait_readable(&keys(&["d"]), 100)).await);
        assert!(blocked(l.wait_readable(&keys(&["a"]), 100)).await);
        drop(one);
        assert!(blocked(l.acquire(keys(&["d"]))).await);
        drop(two);
        let w = l.acquire(keys(&["d"])).await;
        // And a reader of "d" waits for its writer.
        assert!(blocked(l.acquire_reading(keys(&["e"]), keys(&["d"]))).await);
        drop(w);
        assert_eq!(l.held(), 0);
    }

    #[tokio::test]
    async fn writes_of_one_key_take_turns_and_others_pass() {
        let l = Arc::new(Latches::default());
        let first = l.acquire(keys(&["a", "b"])).await;
        assert!(blocked(l.acquire(keys(&["b"]))).await);
        let range = vec![LatchSpan {
            start: b"a".to_vec(),
            end: Vec::new(),
        }];
        assert!(blocked(l.acquire(range)).await);
        let other = l.acquire(keys(&["c"])).await;
        assert_eq!(l.held(), 2);
        let waiting = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(keys(&["b"])).await.id })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        waiting.await.unwrap();
        drop(other);
        assert_eq!(l.held(), 0);
    }

    #[tokio::test]
    async fn a_read_waits_only_for_writes_that_may_commit_at_or_below_it() {
        let l = Arc::new(Latches::default());
        let w = l.acquire(keys(&["k"])).await;
        // No timestamp yet: it may commit below any read.
        assert!(blocked(l.wait_readable(&keys(&["k"]), 100)).await);
        w.set_ts(50);
        assert!(blocked(l.wait_readable(&keys(&["k"]), 100)).await);
        assert!(!blocked(l.wait_readable(&keys(&["k"]), 49)).await);
        assert!(!blocked(l.wait_readable(&keys(&["j"]), 100)).await);
        let reader = {
            let l = l.clone();
            tokio::spawn(async move { l.wait_readable(&keys(&["k"]), 100).await })
        };
        drop(w);
        reader.await.unwrap();
    }
}
