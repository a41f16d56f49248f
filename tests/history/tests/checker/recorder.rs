//! Clients on several threads record into one recorder; the history of a store
//! that runs each transaction atomically checks as strictly serializable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_history::{check, Consistency, MicroOp, Outcome, RecordError, Recorder, TxnId};

#[test]
fn threads_recording_an_atomic_store_give_a_strictly_serializable_history() {
    let recorder = Recorder::new();
    let store: Mutex<BTreeMap<u64, Vec<u64>>> = Mutex::new(BTreeMap::new());
    let next = AtomicU64::new(1);
    std::thread::scope(|s| {
        for process in 0..4u64 {
            let (recorder, store, next) = (&recorder, &store, &next);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(process);
                for _ in 0..50 {
                    let ops: Vec<MicroOp> = (0..rng.random_range(1..=3))
                        .map(|_| {
                            let key = rng.random_range(0..3);
                            if rng.random_bool(0.5) {
                                MicroOp::append(key, next.fetch_add(1, Ordering::Relaxed))
                            } else {
                                MicroOp::read_unobserved(key)
                            }
                        })
                        .collect();
                    let id = recorder.invoke(process, ops.clone());
                    let abort = rng.random_bool(0.1);
                    let mut lists = Vec::new();
                    {
                        let mut lists_of = store.lock().expect("store");
                        let mut scratch = lists_of.clone();
                        for op in &ops {
                            match op {
                                MicroOp::Append { key, value } => {
                                    scratch.entry(*key).or_default().push(*value);
                                }
                                MicroOp::Read { key, .. } => {
                                    lists.push(scratch.get(key).cloned().unwrap_or_default());
                                }
                            }
                        }
                        if !abort {
                            *lists_of = scratch;
                        }
                    }
                    let result = if abort {
                        recorder.complete(id, Outcome::Aborted, Vec::new())
                    } else {
                        recorder.complete(id, Outcome::Committed, lists)
                    };
                    result.expect("complete");
                }
            });
        }
    });
    let history = recorder.into_history();
    assert_eq!(history.len(), 200);
    let report = check(&history, Consistency::StrictSerializable);
    assert!(report.is_valid(), "{history}{report}");
}

#[test]
fn the_recorder_refuses_completions_it_cannot_place() {
    let recorder = Recorder::new();
    let id = recorder.invoke(1, vec![MicroOp::read_unobserved(0), MicroOp::append(0, 1)]);
    assert_eq!(
        recorder.complete(id, Outcome::Committed, vec![vec![], vec![]]),
        Err(RecordError::ReadCount {
            id,
            reads: 1,
            lists: 2
        })
    );
    assert_eq!(
        recorder.complete(TxnId(9), Outcome::Committed, Vec::new()),
        Err(RecordError::NotInvoked(TxnId(9)))
    );
    let pending = recorder.invoke(2, vec![MicroOp::append(0, 2)]);
    assert_eq!(
        recorder.complete(id, Outcome::Committed, vec![vec![]]),
        Ok(())
    );
    assert_eq!(
        recorder.complete(id, Outcome::Committed, vec![vec![]]),
        Err(RecordError::AlreadyComplete(id))
    );
    let history = recorder.history();
    let t = history.get(id).expect("recorded");
    assert_eq!(t.ops[0], MicroOp::read(0, &[]));
    assert!(t.complete.is_some_and(|c| c > t.invoke));
    let p = history.get(pending).expect("recorded");
    assert_eq!((p.outcome, p.complete), (Outcome::Unknown, None));
}
