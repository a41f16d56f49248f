//! Percolator's steps, applied by the dispatcher to a real store as a range's state
//! machine applies them: each step all-or-nothing, idempotent, and what a reader or a
//! late message finds afterwards.

use crate::command::{Command, OpResult};
use crate::dispatch::tests::Harness;
use crate::txn_record::{Lock, Mutation, OnePhase, Prewrite, TxnConflict, TxnStatus};

/// Wall-clock millisecond 1000 as a timestamp, plus `logical`.
fn ts(ms: u64, logical: u64) -> u64 {
    (ms << 18) + logical
}

fn put(k: &str, v: &str) -> Mutation {
    Mutation::Put {
        key: k.into(),
        value: v.into(),
    }
}

fn prewrite(start_ts: u64, primary: &str, mutations: Vec<Mutation>) -> Command {
    Command::Prewrite(Prewrite {
        start_ts,
        primary: primary.into(),
        mutations,
        ttl_ms: 3_000,
        async_commit: None,
    })
}

/// An asynchronous commit's prewrite, proposed at `min_commit_ts` (its `At`).
fn prewrite_async(
    start_ts: u64,
    min_commit_ts: u64,
    primary: &str,
    mutations: Vec<Mutation>,
    secondaries: &[&str],
) -> Command {
    Command::At {
        ts: min_commit_ts,
        cmd: Box::new(Command::Prewrite(Prewrite {
            start_ts,
            primary: primary.into(),
            mutations,
            ttl_ms: 3_000,
            async_commit: Some(secondaries.iter().map(|k| k.as_bytes().to_vec()).collect()),
        })),
    }
}

fn check_secondaries(start_ts: u64, keys: &[&str]) -> Command {
    Command::CheckSecondaries {
        start_ts,
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
    }
}

fn commit(start_ts: u64, commit_ts: u64, keys: &[&str]) -> Command {
    Command::CommitKeys {
        start_ts,
        commit_ts,
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
    }
}

fn rollback(start_ts: u64, keys: &[&str]) -> Command {
    Command::RollbackKeys {
        start_ts,
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
    }
}

fn check(primary: &str, start_ts: u64, now_ms: u64, rollback_if_missing: bool) -> Command {
    Command::CheckTxn {
        primary: primary.into(),
        start_ts,
        now_ms,
        rollback_if_missing,
    }
}

fn one(h: &mut Harness, index: u64, cmd: Command) -> OpResult {
    let r = h.run(index, cmd);
    assert_eq!(r.results.len(), 1, "{r:?}");
    r.results[0].clone()
}

fn value(h: &Harness, key: &str, at: u64) -> Option<String> {
    h.engine
        .get_at(key.as_bytes(), at)
        .unwrap()
        .map(|v| String::from_utf8(v.value).unwrap())
}

fn locked(h: &Harness, key: &str) -> bool {
    h.engine.lock(key.as_bytes()).unwrap().is_some()
}

#[test]
fn prewrite_then_commit_makes_the_values_visible_at_the_commit_timestamp_only() {
    let mut h = Harness::new();
    let (start, at) = (ts(1000, 0), ts(1000, 5));
    assert_eq!(
        one(
            &mut h,
            1,
            prewrite(start, "a", vec![put("a", "1"), put("b", "2")])
        ),
        OpResult::TxnDone
    );
    assert!(locked(&h, "a") && locked(&h, "b"));
    assert_eq!(value(&h, "a", at), None, "a lock is not a version");
    // A prewrite applied again (a retry) answers the same and changes nothing.
    assert_eq!(
        one(
            &mut h,
            2,
            prewrite(start, "a", vec![put("a", "1"), put("b", "2")])
        ),
        OpResult::TxnDone
    );
    assert_eq!(one(&mut h, 3, commit(start, at, &["a"])), OpResult::TxnDone);
    assert_eq!(one(&mut h, 4, commit(start, at, &["b"])), OpResult::TxnDone);
    assert!(!locked(&h, "a") && !locked(&h, "b"));
    assert_eq!(value(&h, "a", at), Some("1".into()));
    assert_eq!(value(&h, "b", at - 1), None);
    // Committed again: the same answer; and a prewrite replayed after the commit does
    // not lock the key again: it says when the transaction committed.
    assert_eq!(
        one(&mut h, 5, commit(start, at, &["a", "b"])),
        OpResult::TxnDone
    );
    assert_eq!(
        one(&mut h, 6, prewrite(start, "a", vec![put("a", "1")])),
        OpResult::TxnConflict(TxnConflict::Committed {
            key: b"a".to_vec(),
            commit_ts: at
        })
    );
    assert!(!locked(&h, "a"));
    let versions = h.engine.versions_of(b"a").unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!((versions[0].ts, versions[0].start_ts), (at, start));
}

#[test]
fn first_committer_wins_and_a_locked_key_refuses_others_whole() {
    let mut h = Harness::new();
    let (t1, t2) = (ts(1000, 1), ts(1000, 2));
    one(&mut h, 1, prewrite(t1, "k", vec![put("k", "t1")]));
    // T2 wants k and j: k is locked by T1, so nothing of T2 is written.
    let r = one(
        &mut h,
        2,
        prewrite(t2, "j", vec![put("j", "t2"), put("k", "t2")]),
    );
    assert!(
        matches!(&r, OpResult::TxnConflict(TxnConflict::Locked { key, lock: Lock { start_ts, .. } })
            if key == b"k" && *start_ts == t1),
        "{r:?}"
    );
    assert!(!locked(&h, "j"));
    one(&mut h, 3, commit(t1, ts(1000, 3), &["k"]));
    // T2 started before T1 committed: its write to k conflicts.
    let r = one(&mut h, 4, prewrite(t2, "k", vec![put("k", "t2")]));
    assert_eq!(
        r,
        OpResult::TxnConflict(TxnConflict::WriteConflict {
            key: b"k".to_vec(),
            commit_ts: ts(1000, 3)
        })
    );
    // T3, started after, may write it.
    assert_eq!(
        one(&mut h, 5, prewrite(ts(1000, 4), "k", vec![put("k", "t3")])),
        OpResult::TxnDone
    );
}

#[test]
fn a_rolled_back_transaction_cannot_prewrite_or_commit_later() {
    let mut h = Harness::new();
    let t = ts(1000, 1);
    one(
        &mut h,
        1,
        prewrite(t, "p", vec![put("p", "1"), put("s", "2")]),
    );
    assert_eq!(one(&mut h, 2, rollback(t, &["p", "s"])), OpResult::TxnDone);
    assert!(!locked(&h, "p") && !locked(&h, "s"));
    // A late prewrite (a message delayed in the network) finds the rollback mark.
    assert_eq!(
        one(&mut h, 3, prewrite(t, "p", vec![put("p", "1")])),
        OpResult::TxnConflict(TxnConflict::RolledBack { key: b"p".to_vec() })
    );
    assert_eq!(
        one(&mut h, 4, commit(t, ts(1000, 9), &["p"])),
        OpResult::TxnConflict(TxnConflict::RolledBack { key: b"p".to_vec() })
    );
    assert_eq!(value(&h, "p", ts(2000, 0)), None);
    // Rolling back again: the same answer.
    assert_eq!(one(&mut h, 5, rollback(t, &["p"])), OpResult::TxnDone);
    // A commit of keys never prewritten is refused.
    assert_eq!(
        one(&mut h, 6, commit(ts(1000, 7), ts(1000, 8), &["x"])),
        OpResult::TxnConflict(TxnConflict::LockNotFound { key: b"x".to_vec() })
    );
}

#[test]
fn a_committed_key_cannot_be_rolled_back() {
    let mut h = Harness::new();
    let t = ts(1000, 1);
    one(&mut h, 1, prewrite(t, "p", vec![put("p", "1")]));
    one(&mut h, 2, commit(t, ts(1000, 2), &["p"]));
    assert_eq!(
        one(&mut h, 3, rollback(t, &["p"])),
        OpResult::TxnConflict(TxnConflict::Committed {
            key: b"p".to_vec(),
            commit_ts: ts(1000, 2)
        })
    );
    assert_eq!(value(&h, "p", ts(1000, 2)), Some("1".into()));
}

#[test]
fn checking_a_transaction_rolls_back_an_expired_lock_and_reports_a_commit() {
    let mut h = Harness::new();
    let t = ts(1000, 1);
    one(&mut h, 1, prewrite(t, "p", vec![put("p", "1")]));
    // Alive until 1000 + 3000 ms.
    assert_eq!(
        one(&mut h, 2, check("p", t, 3_999, true)),
        OpResult::TxnStatus(TxnStatus::Alive { ttl_ms: 3_000 })
    );
    // A heartbeat extends it; a shorter one does not shorten it.
    let hb = |ttl_ms| Command::HeartbeatTxn {
        primary: b"p".to_vec(),
        start_ts: t,
        ttl_ms,
    };
    assert_eq!(
        one(&mut h, 3, hb(10_000)),
        OpResult::TxnStatus(TxnStatus::Alive { ttl_ms: 10_000 })
    );
    one(&mut h, 4, hb(5_000));
    assert_eq!(
        one(&mut h, 5, check("p", t, 10_999, true)),
        OpResult::TxnStatus(TxnStatus::Alive { ttl_ms: 10_000 })
    );
    // Past it: rolled back, and stays so.
    assert_eq!(
        one(&mut h, 6, check("p", t, 11_001, true)),
        OpResult::TxnStatus(TxnStatus::RolledBack)
    );
    assert!(!locked(&h, "p"));
    assert_eq!(
        one(&mut h, 7, check("p", t, 0, false)),
        OpResult::TxnStatus(TxnStatus::RolledBack)
    );
    assert_eq!(
        one(&mut h, 8, hb(99_000)),
        OpResult::TxnStatus(TxnStatus::RolledBack)
    );
    // A committed transaction reports its commit timestamp.
    let u = ts(1000, 2);
    one(&mut h, 9, prewrite(u, "q", vec![put("q", "1")]));
    one(&mut h, 10, commit(u, ts(1000, 3), &["q"]));
    assert_eq!(
        one(&mut h, 11, check("q", u, 99_999, true)),
        OpResult::TxnStatus(TxnStatus::Committed {
            commit_ts: ts(1000, 3)
        })
    );
    // No trace of it: left alone, unless asked to roll it back (then its late
    // prewrite fails).
    let w = ts(1000, 4);
    assert_eq!(
        one(&mut h, 12, check("w", w, 99_999, false)),
        OpResult::TxnStatus(TxnStatus::Alive { ttl_ms: 0 })
    );
    assert_eq!(
        one(&mut h, 13, check("w", w, 99_999, true)),
        OpResult::TxnStatus(TxnStatus::RolledBack)
    );
    assert!(matches!(
        one(&mut h, 14, prewrite(w, "w", vec![put("w", "1")])),
        OpResult::TxnConflict(TxnConflict::RolledBack { .. })
    ));
}

#[test]
fn one_phase_validates_writes_and_reads_then_writes_at_its_timestamp() {
    let mut h = Harness::new();
    let at = |ts, t: OnePhase| Command::At {
        ts,
        cmd: Box::new(Command::OnePhase(t)),
    };
    let (start, commit_ts) = (ts(1000, 1), ts(1000, 5));
    let t = OnePhase {
        start_ts: start,
        mutations: vec![put("a", "1"), Mutation::Delete { key: b"b".to_vec() }],
        reads: vec![(b"c".to_vec(), b"d".to_vec())],
    };
    assert_eq!(one(&mut h, 1, at(commit_ts, t.clone())), OpResult::TxnDone);
    assert_eq!(value(&h, "a", commit_ts), Some("1".into()));
    assert!(!locked(&h, "a"));
    // Sent again (its answer was lost) at a fresh timestamp: committed at the first,
    // nothing written again.
    assert_eq!(
        one(&mut h, 2, at(ts(1000, 8), t.clone())),
        OpResult::TxnConflict(TxnConflict::Committed {
            key: b"a".to_vec(),
            commit_ts
        })
    );
    assert_eq!(value(&h, "a", ts(1000, 8)), Some("1".into()));
    // Even once another write went over it.
    let later = OnePhase {
        start_ts: ts(1000, 20),
        mutations: vec![put("a", "later")],
        reads: Vec::new(),
    };
    assert_eq!(one(&mut h, 3, at(ts(1000, 21), later)), OpResult::TxnDone);
    assert_eq!(
        one(&mut h, 4, at(ts(1000, 22), t.clone())),
        OpResult::TxnConflict(TxnConflict::Committed {
            key: b"a".to_vec(),
            commit_ts
        })
    );
    assert_eq!(value(&h, "a", ts(1000, 22)), Some("later".into()));
    // A key read by a later one-phase transaction changed after its start: refused.
    one(&mut h, 2, prewrite(ts(1000, 6), "c1", vec![put("c1", "x")]));
    one(&mut h, 3, commit(ts(1000, 6), ts(1000, 7), &["c1"]));
    let r = one(
        &mut h,
        4,
        at(
            ts(1000, 9),
            OnePhase {
                start_ts: ts(1000, 2),
                mutations: vec![put("z", "1")],
                reads: vec![(b"c".to_vec(), b"d".to_vec())],
            },
        ),
    );
    assert_eq!(
        r,
        OpResult::TxnConflict(TxnConflict::ReadConflict {
            key: b"c1".to_vec(),
            commit_ts: ts(1000, 7)
        })
    );
    assert_eq!(value(&h, "z", ts(2000, 0)), None);
    // A write after its start to a key it writes: refused.
    let r = one(
        &mut h,
        5,
        at(
            ts(1000, 10),
            OnePhase {
                start_ts: ts(1000, 3),
                mutations: vec![put("a", "2")],
                reads: Vec::new(),
            },
        ),
    );
    assert!(
        matches!(r, OpResult::TxnConflict(TxnConflict::WriteConflict { .. })),
        "{r:?}"
    );
    // Without a commit timestamp: refused, nothing written.
    let r = h.run(6, Command::OnePhase(t));
    assert!(r.refusal().is_some(), "{r:?}");
}

#[test]
fn an_asynchronous_prewrite_answers_its_min_commit_ts_and_again_the_first_one() {
    let mut h = Harness::new();
    let start = ts(1000, 0);
    let cmd = prewrite_async(start, ts(1000, 7), "a", vec![put("a", "1")], &["x"]);
    let r = h.run(1, cmd);
    assert_eq!(r.results, vec![OpResult::TxnDone]);
    assert_eq!(r.version, ts(1000, 7));
    // Sent again (an answer lost), proposed at a later timestamp: the lock stands,
    // and so does its `min_commit_ts`.
    let again = prewrite_async(start, ts(1000, 9), "a", vec![put("a", "1")], &["x"]);
    assert_eq!(h.run(2, again).version, ts(1000, 7));
    let lock: Lock = crate::codec::decode(&h.engine.lock(b"a").unwrap().unwrap()).unwrap();
    let c = lock.async_commit.expect("an asynchronous lock");
    assert_eq!(c.min_commit_ts, ts(1000, 7));
    assert_eq!(c.secondaries, vec![b"x".to_vec()]);
    // Without a timestamp it is refused, and locks nothing.
    let bare = match prewrite_async(ts(900, 0), 1, "b", vec![put("b", "1")], &[]) {
        Command::At { cmd, .. } => *cmd,
        _ => unreachable!(),
    };
    assert!(h.run(3, bare).refusal().is_some());
    assert!(!locked(&h, "b"));
}

#[test]
fn an_expired_asynchronous_primary_is_judged_by_its_secondaries() {
    let mut h = Harness::new();
    let start = ts(1000, 0);
    let p = prewrite_async(start, ts(1000, 5), "a", vec![put("a", "1")], &["x", "y"]);
    assert_eq!(one(&mut h, 1, p), OpResult::TxnDone);
    // Alive: left to its coordinator.
    assert!(matches!(
        one(&mut h, 2, check("a", start, 1_500, true)),
        OpResult::TxnStatus(TxnStatus::Alive { .. })
    ));
    // Past its time to live: not rolled back, but handed to the reader with the
    // keys to ask about.
    assert_eq!(
        one(&mut h, 3, check("a", start, 10_000, true)),
        OpResult::TxnStatus(TxnStatus::Prewritten {
            min_commit_ts: ts(1000, 5),
            secondaries: vec![b"x".to_vec(), b"y".to_vec()],
        })
    );
    assert!(locked(&h, "a"));
    // x is locked (at a larger min_commit_ts); y never was: asked together, y is
    // marked rolled back, and its late prewrite fails.
    let x = prewrite_async(start, ts(1000, 8), "a", vec![put("x", "1")], &[]);
    assert_eq!(one(&mut h, 4, x), OpResult::TxnDone);
    assert_eq!(
        one(&mut h, 5, check_secondaries(start, &["x"])),
        OpResult::TxnStatus(TxnStatus::Prewritten {
            min_commit_ts: ts(1000, 8),
            secondaries: Vec::new(),
        })
    );
    assert_eq!(
        one(&mut h, 6, check_secondaries(start, &["x", "y"])),
        OpResult::TxnStatus(TxnStatus::RolledBack)
    );
    let late = prewrite_async(start, ts(1000, 9), "a", vec![put("y", "1")], &[]);
    assert!(matches!(
        one(&mut h, 7, late),
        OpResult::TxnConflict(TxnConflict::RolledBack { .. })
    ));
    assert!(!locked(&h, "y"));
    // Another transaction, one of whose secondaries a reader committed already: the
    // transaction was committed, at that key's timestamp.
    let start2 = ts(2000, 0);
    let z = prewrite_async(start2, ts(2000, 3), "b", vec![put("z", "2")], &[]);
    assert_eq!(one(&mut h, 8, z), OpResult::TxnDone);
    assert_eq!(
        one(&mut h, 9, commit(start2, ts(2000, 4), &["z"])),
        OpResult::TxnDone
    );
    assert_eq!(
        one(&mut h, 10, check_secondaries(start2, &["z"])),
        OpResult::TxnStatus(TxnStatus::Committed {
            commit_ts: ts(2000, 4)
        })
    );
}

#[test]
fn commits_riding_with_a_prewrite_apply_first_and_each_is_answered() {
    let mut h = Harness::new();
    let (t1, t2) = (ts(1000, 0), ts(1000, 10));
    assert_eq!(
        one(
            &mut h,
            1,
            prewrite(t1, "a", vec![put("a", "1"), put("b", "1")])
        ),
        OpResult::TxnDone
    );
    // Alone, t2's prewrite of `a` meets t1's lock.
    assert!(matches!(
        one(&mut h, 2, prewrite(t2, "a", vec![put("a", "2")])),
        OpResult::TxnConflict(TxnConflict::Locked { .. })
    ));
    // With t1's commit riding (a duplicate of it too, and a rider that is no
    // commit), the prewrite sees `a` committed: it locks it.
    let riding = Command::Riding {
        riders: vec![
            commit(t1, ts(1000, 5), &["a", "b"]),
            rollback(t1, &["a"]),
            commit(t1, ts(1000, 5), &["a"]),
        ],
        cmd: Box::new(prewrite(t2, "a", vec![put("a", "2")])),
    };
    let r = h.run(3, riding);
    assert_eq!(r.results.len(), 4, "{r:?}");
    assert_eq!(
        r.results[0],
        OpResult::TxnDone,
        "the carrier's own answer first"
    );
    let riders: Vec<_> = r.results[1..]
        .iter()
        .map(|o| match o {
            OpResult::Rider(r) => r.results[0].clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(riders[0], OpResult::TxnDone);
    assert!(
        matches!(&riders[1], OpResult::Refused { reason, .. } if reason.contains("only a transaction's commit")),
        "{riders:?}"
    );
    assert_eq!(riders[2], OpResult::TxnDone, "a commit applied again");
    assert_eq!(value(&h, "a", ts(1000, 5)).as_deref(), Some("1"));
    assert_eq!(value(&h, "b", ts(1000, 5)).as_deref(), Some("1"));
    assert!(!locked(&h, "b"));
    assert!(locked(&h, "a"), "t2's lock");
    // The entry replayed (a crash after the riders' writes): the same answers.
    let again = Command::Riding {
        riders: vec![commit(t1, ts(1000, 5), &["a", "b"])],
        cmd: Box::new(prewrite(t2, "a", vec![put("a", "2")])),
    };
    let r = h.run(3, again);
    assert_eq!(r.results[0], OpResult::TxnDone);
    assert!(matches!(&r.results[1], OpResult::Rider(r) if r.results[0] == OpResult::TxnDone));
}

#[test]
fn a_deferrable_commit_applies_as_its_commit() {
    let mut h = Harness::new();
    let (t1, at) = (ts(1000, 0), ts(1000, 5));
    one(&mut h, 1, prewrite(t1, "a", vec![put("a", "1")]));
    let deferrable = Command::Deferrable(Box::new(commit(t1, at, &["a"])));
    assert!(deferrable.is_txn_step() && deferrable.carries_its_timestamps());
    assert_eq!(one(&mut h, 2, deferrable), OpResult::TxnDone);
    assert_eq!(value(&h, "a", at).as_deref(), Some("1"));
    assert!(Command::Deferrable(Box::new(rollback(t1, &["a"])))
        .deferred_commit()
        .is_none());
}
