//! The coordinator's choices, over fake ranges that record the steps sent and answer
//! as told: one phase or two, which range gets which keys, the order of commit and
//! rollback, regrouping after a split, read validation, own writes in reads, limits.
//! (The steps themselves run on real ranges in `shoal-raft`'s percolator tests and
//! in the cluster tests.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use shoal_raft::txn_record::{Prewrite, TxnConflict};
use shoal_raft::{Command, CommandResponse, OpResult, Touch};

use super::*;

/// Ranges split at `splits`; `data` read at any timestamp; every step recorded and
/// answered by `answer` (default: done).
#[derive(Default)]
struct Fake {
    splits: Mutex<Vec<Vec<u8>>>,
    /// Splits the ranges have that `locate` does not tell until a step finds them.
    hidden_splits: Mutex<Vec<Vec<u8>>>,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    steps: Mutex<Vec<Command>>,
    #[allow(clippy::type_complexity)]
    answer: Mutex<Option<Box<dyn FnMut(&Command) -> Option<OpResult> + Send>>>,
}

const NOW: u64 = 5_000 << 18;

/// The fake's `min_commit_ts` for an asynchronous prewrite: after `NOW`, by its first
/// key.
fn min_commit_ts(p: &Prewrite) -> u64 {
    NOW + 100 + u64::from(p.mutations[0].key()[0])
}

impl Fake {
    fn split_at(keys: &[&str]) -> Self {
        Self {
            splits: Mutex::new(keys.iter().map(|k| k.as_bytes().to_vec()).collect()),
            ..Self::default()
        }
    }

    fn bounds(splits: &[Vec<u8>], key: &[u8]) -> Bounds {
        let start = splits
            .iter()
            .filter(|s| s.as_slice() <= key)
            .max()
            .cloned()
            .unwrap_or_default();
        let end = splits
            .iter()
            .filter(|s| s.as_slice() > key)
            .min()
            .cloned()
            .unwrap_or_default();
        Bounds { start, end }
    }

    fn steps(&self) -> Vec<Command> {
        self.steps.lock().unwrap().clone()
    }
}

impl Ranges for Fake {
    fn step<'a>(&'a self, key: &'a [u8], step: Command) -> BoxFuture<'a, Result<CommandResponse>> {
        Box::pin(async move {
            let all: Vec<Vec<u8>> = self.splits.lock().unwrap().clone();
            let mut real = all.clone();
            real.extend(self.hidden_splits.lock().unwrap().clone());
            let b = Self::bounds(&real, key);
            let inside = |t: &Touch<'_>| match t {
                Touch::Key(k) => b.contains(k),
                Touch::Span(s, e) => within(&b, s, e),
            };
            if !step.touches().iter().all(inside) {
                // The step's keys span a split: the caller learns of it.
                *self.splits.lock().unwrap() = real;
                return Err(Error::Regroup);
            }
            self.steps.lock().unwrap().push(step.clone());
            let answer = self
                .answer
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|f| f(&step))
                .unwrap_or(OpResult::TxnDone);
            Ok(CommandResponse {
                version: match &step {
                    // An asynchronous commit's prewrite: its locks' `min_commit_ts`.
                    Command::Prewrite(p) if p.async_commit.is_some() => min_commit_ts(p),
                    _ => 77,
                },
                succeeded: true,
                results: vec![answer],
            })
        })
    }

    fn locate<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Bounds>> {
        Box::pin(async move { Ok(Self::bounds(&self.splits.lock().unwrap(), key)) })
    }

    fn get<'a>(&'a self, key: &'a [u8], _ts: u64) -> BoxFuture<'a, Result<Option<Read>>> {
        Box::pin(async move {
            Ok(self.data.get(key).map(|v| Read {
                key: key.to_vec(),
                value: v.clone(),
                version: 1,
            }))
        })
    }

    fn scan<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
        _ts: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Read>>> {
        Box::pin(async move {
            let out = self
                .data
                .range((Bound::Included(start.to_vec()), upper(end)))
                .map(|(k, v)| Read {
                    key: k.clone(),
                    value: v.clone(),
                    version: 1,
                })
                .take(if limit == 0 { usize::MAX } else { limit })
                .collect();
            Ok(out)
        })
    }

    fn now(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async { Ok(NOW + 9) })
    }

    fn unique(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async { Ok(RESERVED) })
    }
}

/// What the fake's `unique` answers: a timestamp from a reserve, below `NOW`.
const RESERVED: u64 = NOW - 50;

const LIMITS: Limits = Limits {
    max_keys: 3,
    max_bytes: 100,
};

fn txn(opts: Options) -> Transaction {
    Transaction::new(NOW, opts, LIMITS)
}

fn keys(ks: &[&str]) -> Vec<Vec<u8>> {
    ks.iter().map(|k| k.as_bytes().to_vec()).collect()
}

/// The steps of kind `name` (as `Display` names them), in order.
fn named(steps: &[Command], name: &str) -> Vec<Command> {
    steps
        .iter()
        .filter(|s| s.to_string().starts_with(name))
        .cloned()
        .collect()
}

async fn settle() {
    // The secondaries commit in a background task.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn keys_of_one_range_commit_in_one_phase_with_the_reads_to_check() {
    let fake = Arc::new(Fake {
        data: [(b"c".to_vec(), b"3".to_vec())].into(),
        ..Fake::split_at(&["m"])
    });
    let mut t = txn(Options::default());
    assert_eq!(t.get(&*fake, b"c").await.unwrap().unwrap().value, b"3");
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.delete(b"b".to_vec()).unwrap();
    assert_eq!(t.commit(fake.clone()).await.unwrap(), 77);
    let steps = fake.steps();
    let [Command::OnePhase(p)] = steps.as_slice() else {
        panic!("{steps:?}")
    };
    assert_eq!(p.start_ts, NOW);
    assert_eq!(p.mutations.len(), 2);
    assert_eq!(p.reads, vec![(b"c".to_vec(), b"c\0".to_vec())]);
    assert_eq!(t.state(), State::Committed { commit_ts: 77 });
    assert!(matches!(
        t.put(b"a".to_vec(), b"2".to_vec()),
        Err(Error::Closed(_))
    ));
}

#[tokio::test]
async fn keys_of_two_ranges_prewrite_both_then_commit_the_primary_then_the_rest() {
    let fake = Arc::new(Fake {
        data: [(b"c".to_vec(), b"3".to_vec())].into(),
        ..Fake::split_at(&["m"])
    });
    let mut t = txn(Options::default());
    // A read to check: two phases.
    t.get(&*fake, b"c").await.unwrap();
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"b".to_vec(), b"1".to_vec()).unwrap();
    assert_eq!(t.commit(fake.clone()).await.unwrap(), NOW + 9);
    settle().await;
    let steps = fake.steps();
    let prewrites = named(&steps, "prewrite");
    assert_eq!(prewrites.len(), 2, "{steps:?}");
    for p in &prewrites {
        let Command::Prewrite(p) = p else { panic!() };
        assert_eq!(p.primary, b"a", "the first key written is the primary");
    }
    let commits = named(&steps, "commit");
    assert_eq!(
        commits,
        vec![
            Command::CommitKeys {
                start_ts: NOW,
                commit_ts: NOW + 9,
                keys: keys(&["a", "b"])
            },
            // Decided once the primary is: a commit its range may hold back.
            Command::Deferrable(Box::new(Command::CommitKeys {
                start_ts: NOW,
                commit_ts: NOW + 9,
                keys: keys(&["x"])
            })),
        ]
    );
    let first_commit = steps.iter().position(|s| s == &commits[0]).unwrap();
    assert!(steps[..first_commit]
        .iter()
        .all(|s| !s.to_string().starts_with("commit")));
    assert_eq!(named(&steps, "validate").len(), 1, "{steps:?}");
}

#[tokio::test]
async fn writes_alone_commit_asynchronously_at_the_largest_min_commit_ts() {
    let fake = Arc::new(Fake::split_at(&["m"]));
    let mut t = txn(Options::default());
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"b".to_vec(), b"1".to_vec()).unwrap();
    // The ranges' answers: NOW + 100 + 'a' and NOW + 100 + 'x'; the larger is the
    // commit timestamp, known once every key is locked.
    let commit_ts = NOW + 100 + u64::from(b'x');
    assert_eq!(t.commit(fake.clone()).await.unwrap(), commit_ts);
    settle().await;
    let steps = fake.steps();
    let prewrites = named(&steps, "prewrite");
    assert_eq!(prewrites.len(), 2, "{steps:?}");
    for p in &prewrites {
        let Command::Prewrite(p) = p else { panic!() };
        assert_eq!(p.primary, b"a");
        // The primary's range carries the other keys, for its lock.
        let expected = if p.mutations[0].key() == b"a" {
            keys(&["b", "x"])
        } else {
            Vec::new()
        };
        assert_eq!(p.async_commit, Some(expected), "{p:?}");
    }
    let mut commits = named(&steps, "commit");
    commits.sort_by_key(|c| c.to_string());
    assert_eq!(commits.len(), 2, "{steps:?}");
    for c in commits {
        // Decided already: every range may hold its commit back.
        let Some(Command::CommitKeys {
            commit_ts: ts,
            start_ts,
            ..
        }) = c.deferred_commit().cloned()
        else {
            panic!("{c:?}")
        };
        assert_eq!((start_ts, ts), (NOW, commit_ts));
    }
    assert!(named(&steps, "validate").is_empty(), "no reads to check");
}

#[tokio::test]
async fn a_lost_asynchronous_prewrite_is_decided_by_the_primary_record() {
    // The prewrite of x fails without an answer: every key may be locked. The
    // rollback of the primary decides; here a reader had settled it committed.
    let fake = Arc::new(Fake::split_at(&["m"]));
    *fake.answer.lock().unwrap() = Some(Box::new(|c: &Command| match c {
        Command::RollbackKeys { keys, .. } if keys[0] == b"a" => {
            Some(OpResult::TxnConflict(TxnConflict::Committed {
                key: b"a".to_vec(),
                commit_ts: NOW + 500,
            }))
        }
        _ => None,
    }));
    struct Lossy(Arc<Fake>);
    impl Ranges for Lossy {
        fn step<'a>(
            &'a self,
            key: &'a [u8],
            step: Command,
        ) -> BoxFuture<'a, Result<CommandResponse>> {
            Box::pin(async move {
                let answer = self.0.step(key, step.clone()).await;
                match step {
                    Command::Prewrite(_) if key == b"x" => {
                        Err(Error::Unavailable("no answer".into()))
                    }
                    _ => answer,
                }
            })
        }
        fn locate<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Bounds>> {
            self.0.locate(key)
        }
        fn get<'a>(&'a self, key: &'a [u8], ts: u64) -> BoxFuture<'a, Result<Option<Read>>> {
            self.0.get(key, ts)
        }
        fn scan<'a>(
            &'a self,
            start: &'a [u8],
            end: &'a [u8],
            ts: u64,
            limit: usize,
        ) -> BoxFuture<'a, Result<Vec<Read>>> {
            self.0.scan(start, end, ts, limit)
        }
        fn now(&self) -> BoxFuture<'_, Result<u64>> {
            self.0.now()
        }
    }
    let mut t = txn(Options::default());
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    assert_eq!(
        t.commit(Arc::new(Lossy(fake.clone()))).await.unwrap(),
        NOW + 500
    );
    // Rolled back instead: the error stands, and the outcome is known.
    let fake = Arc::new(Fake::split_at(&["m"]));
    let mut t = txn(Options::default());
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    let e = t.commit(Arc::new(Lossy(fake.clone()))).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    assert_eq!(t.state(), State::RolledBack);
    assert_eq!(named(&fake.steps(), "rollback").len(), 2);
}

#[tokio::test]
async fn a_refused_prewrite_rolls_every_key_back_primary_first() {
    let fake = Arc::new(Fake::split_at(&["m"]));
    *fake.answer.lock().unwrap() = Some(Box::new(|c: &Command| match c {
        Command::Prewrite(p) if p.mutations[0].key() == b"x" => {
            Some(OpResult::TxnConflict(TxnConflict::WriteConflict {
                key: b"x".to_vec(),
                commit_ts: NOW + 1,
            }))
        }
        _ => None,
    }));
    let mut t = txn(Options::default());
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    let e = t.commit(fake.clone()).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert_eq!(t.state(), State::RolledBack);
    let steps = fake.steps();
    assert!(named(&steps, "commit").is_empty(), "{steps:?}");
    assert_eq!(
        named(&steps, "rollback"),
        vec![
            Command::RollbackKeys {
                start_ts: NOW,
                keys: keys(&["a"])
            },
            Command::RollbackKeys {
                start_ts: NOW,
                keys: keys(&["x"])
            },
        ]
    );
}

#[tokio::test]
async fn a_range_split_under_a_step_sends_its_keys_to_each_range_apart() {
    let fake = Arc::new(Fake::split_at(&[]));
    fake.hidden_splits.lock().unwrap().push(b"m".to_vec());
    let mut t = txn(Options {
        isolation: Isolation::Snapshot,
        read_only: false,
    });
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    // One range as far as the coordinator knows: one phase, refused for the split,
    // then asynchronous.
    let commit_ts = NOW + 100 + u64::from(b'x');
    assert_eq!(t.commit(fake.clone()).await.unwrap(), commit_ts);
    settle().await;
    let steps = fake.steps();
    assert!(named(&steps, "one-phase").is_empty(), "{steps:?}");
    assert_eq!(named(&steps, "prewrite").len(), 2, "{steps:?}");
    assert_eq!(named(&steps, "commit").len(), 2, "{steps:?}");
}

/// A span read, `[start, end)`.
type Span = (Vec<u8>, Vec<u8>);

/// The (start, commit) timestamps of every check of reads among `steps`, and the
/// spans they checked, sorted.
fn checked_spans(steps: &[Command]) -> (Vec<(u64, u64)>, Vec<Span>) {
    let (mut at, mut all) = (Vec::new(), Vec::new());
    for s in named(steps, "validate") {
        let Command::ValidateReads {
            start_ts,
            commit_ts,
            spans,
        } = s
        else {
            unreachable!()
        };
        at.push((start_ts, commit_ts));
        all.extend(spans);
    }
    all.sort();
    (at, all)
}

/// `[b, o)`, cut at `m`.
fn b_to_o_cut_at_m() -> Vec<Span> {
    vec![
        (b"b".to_vec(), b"m".to_vec()),
        (b"m".to_vec(), b"o".to_vec()),
    ]
}

#[tokio::test]
async fn a_span_read_across_a_split_the_coordinator_did_not_know_is_checked_in_each_range() {
    let fake = Arc::new(Fake::split_at(&["x"]));
    let mut t = txn(Options::default());
    t.scan(&*fake, b"b", b"o", 0).await.unwrap();
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"y".to_vec(), b"1".to_vec()).unwrap();
    // `m` splits the span read after it was cut: its check is refused, then cut again.
    fake.hidden_splits.lock().unwrap().push(b"m".to_vec());
    t.commit(fake.clone()).await.unwrap();
    assert_eq!(checked_spans(&fake.steps()).1, b_to_o_cut_at_m());
}

#[tokio::test]
async fn a_serializable_commit_checks_its_reads_at_the_commit_timestamp() {
    let fake = Arc::new(Fake {
        data: [
            (b"c".to_vec(), b"3".to_vec()),
            (b"n".to_vec(), b"4".to_vec()),
        ]
        .into(),
        ..Fake::split_at(&["m"])
    });
    let mut t = txn(Options::default());
    t.get(&*fake, b"c").await.unwrap();
    // A scan across the split: checked in each range.
    t.scan(&*fake, b"b", b"o", 0).await.unwrap();
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    t.commit(fake.clone()).await.unwrap();
    let (at, spans) = checked_spans(&fake.steps());
    assert!(at.iter().all(|&ts| ts == (NOW, NOW + 9)), "{at:?}");
    // `c` lies inside the scanned span: merged into it.
    assert_eq!(spans, b_to_o_cut_at_m());
    // Snapshot isolation checks no reads.
    let fake = Arc::new(Fake::split_at(&["m"]));
    let mut t = txn(Options {
        isolation: Isolation::Snapshot,
        read_only: false,
    });
    t.get(&*fake, b"c").await.unwrap();
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    t.commit(fake.clone()).await.unwrap();
    assert!(named(&fake.steps(), "validate").is_empty());
}

#[tokio::test]
async fn a_changed_read_rolls_the_transaction_back() {
    let fake = Arc::new(Fake::split_at(&["m"]));
    *fake.answer.lock().unwrap() = Some(Box::new(|c: &Command| match c {
        Command::ValidateReads { .. } => Some(OpResult::TxnConflict(TxnConflict::ReadConflict {
            key: b"c".to_vec(),
            commit_ts: NOW + 3,
        })),
        _ => None,
    }));
    let mut t = txn(Options::default());
    t.get(&*fake, b"c").await.unwrap();
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    assert!(matches!(
        t.commit(fake.clone()).await,
        Err(Error::Conflict(_))
    ));
    let steps = fake.steps();
    assert!(named(&steps, "commit").is_empty(), "{steps:?}");
    assert_eq!(named(&steps, "rollback").len(), 2, "{steps:?}");
}

#[tokio::test]
async fn reads_see_the_transactions_own_writes_over_its_snapshot() {
    let fake = Fake {
        data: [
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"c".to_vec(), b"3".to_vec()),
        ]
        .into(),
        ..Fake::default()
    };
    let mut t = txn(Options::default());
    t.delete(b"b".to_vec()).unwrap();
    t.put(b"bb".to_vec(), b"x".to_vec()).unwrap();
    t.put(b"d".to_vec(), b"y".to_vec()).unwrap();
    assert_eq!(t.get(&fake, b"b").await.unwrap(), None);
    assert_eq!(t.get(&fake, b"bb").await.unwrap().unwrap().version, 0);
    let keys_of = |rs: Vec<Read>| -> Vec<String> {
        rs.into_iter()
            .map(|r| String::from_utf8(r.key).unwrap())
            .collect()
    };
    assert_eq!(
        keys_of(t.scan(&fake, b"", b"", 0).await.unwrap()),
        ["a", "bb", "c", "d"]
    );
    assert_eq!(
        keys_of(t.scan(&fake, b"a", b"", 2).await.unwrap()),
        ["a", "bb"]
    );
    assert_eq!(keys_of(t.scan(&fake, b"b", b"c", 0).await.unwrap()), ["bb"]);
}

#[tokio::test]
async fn limits_read_only_and_closed_transactions_refuse_with_nothing_written() {
    let fake = Arc::new(Fake::default());
    let mut t = txn(Options::default());
    for k in ["a", "b", "c"] {
        t.put(k.into(), b"v".to_vec()).unwrap();
    }
    // A key written again does not count twice.
    t.put(b"a".to_vec(), b"w".to_vec()).unwrap();
    assert!(matches!(
        t.put(b"d".to_vec(), b"v".to_vec()),
        Err(Error::TooLarge(_))
    ));
    assert_eq!(t.state(), State::RolledBack);
    assert!(matches!(
        t.commit(fake.clone()).await,
        Err(Error::Closed(_))
    ));
    assert!(fake.steps().is_empty());

    let mut t = txn(Options::default());
    assert!(matches!(
        t.put(b"a".to_vec(), vec![0; 100]),
        Err(Error::TooLarge(_))
    ));

    let mut t = txn(Options {
        isolation: Isolation::Serializable,
        read_only: true,
    });
    assert!(matches!(
        t.put(b"a".to_vec(), b"1".to_vec()),
        Err(Error::ReadOnly)
    ));
    assert_eq!(
        t.commit(fake.clone()).await.unwrap(),
        NOW,
        "a read-only commit"
    );

    let mut t = txn(Options::default());
    t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    t.rollback().unwrap();
    t.rollback().unwrap();
    assert!(matches!(
        t.commit(fake.clone()).await,
        Err(Error::Closed("rolled back"))
    ));
    assert!(fake.steps().is_empty());
}

#[test]
fn spans_read_merge_when_they_overlap_or_touch() {
    let s = |a: &str, b: &str| (a.as_bytes().to_vec(), b.as_bytes().to_vec());
    assert_eq!(
        merge_spans(vec![s("c", "d"), s("a", "b"), s("b", "c\0"), s("x", "")]),
        vec![s("a", "d"), s("x", "")]
    );
    assert_eq!(merge_spans(vec![s("a", ""), s("b", "c")]), vec![s("a", "")]);
}

/// The start timestamps of the prewrites in `steps`, in order.
fn prewrite_starts(steps: &[Command]) -> Vec<u64> {
    steps
        .iter()
        .filter_map(|s| match s {
            Command::Prewrite(p) => Some(p.start_ts),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_batch_of_puts_starts_at_a_reserved_timestamp_and_again_fresh_after_a_conflict() {
    use shoal_raft::{TxnOp, WriteOp};
    let put = |k: &str| {
        TxnOp::Write(WriteOp::Put {
            key: k.as_bytes().to_vec(),
            value: b"v".to_vec(),
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let fake = Arc::new(Fake::split_at(&["m"]));
    // A commit of "x" after the reserved timestamp: the first attempt's prewrite of
    // "x" meets it.
    *fake.answer.lock().unwrap() = Some(Box::new(|c: &Command| match c {
        Command::Prewrite(p) if p.mutations[0].key() == b"x" && p.start_ts < NOW => {
            Some(OpResult::TxnConflict(TxnConflict::WriteConflict {
                key: b"x".to_vec(),
                commit_ts: NOW - 10,
            }))
        }
        _ => None,
    }));
    let ranges: Arc<dyn Ranges> = fake.clone();
    let done = crate::across::run(ranges, LIMITS, deadline, &[], &[put("a"), put("x")], &[])
        .await
        .unwrap();
    assert!(done.succeeded);
    let starts = prewrite_starts(&fake.steps());
    // Both keys prewritten at the reserved start, refused; then both again, fresh.
    assert_eq!(starts[..2], [RESERVED, RESERVED], "{starts:?}");
    assert_eq!(starts[2..], [NOW + 9, NOW + 9], "{starts:?}");

    // A batch that reads (a delete counts what it deletes) starts fresh at once.
    let fake = Arc::new(Fake::split_at(&["m"]));
    let del = TxnOp::Write(WriteOp::Delete { key: b"x".to_vec() });
    let ranges: Arc<dyn Ranges> = fake.clone();
    crate::across::run(ranges, LIMITS, deadline, &[], &[put("a"), del], &[])
        .await
        .unwrap();
    assert_eq!(prewrite_starts(&fake.steps()), [NOW + 9, NOW + 9]);
}
