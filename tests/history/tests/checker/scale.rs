//! A history of thousands of transactions is checked quickly, and one stale read
//! in it is still found.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_history::{check, AnomalyKind, Consistency, History, MicroOp, Outcome, Txn};

const TXNS: u64 = 5000;
const KEYS: u64 = 20;
/// How long a debug build may take to check the history (it takes far less).
const BUDGET: Duration = Duration::from_secs(5);

/// A strictly serializable history: transactions take effect one after another at
/// points 100 apart, each invoked up to 1000 before its point and completed up to
/// 1000 after it (some twenty overlap at any time); 2% abort, 2% have an unknown
/// outcome and take effect or not.
fn big_history(rng: &mut StdRng) -> History {
    let mut state = vec![Vec::new(); KEYS as usize];
    let mut next = 0;
    let mut txns = Vec::new();
    for i in 0..TXNS {
        let outcome = match rng.random_range(0..50) {
            0 => Outcome::Aborted,
            1 => Outcome::Unknown,
            _ => Outcome::Committed,
        };
        let effective = match outcome {
            Outcome::Committed => true,
            Outcome::Aborted => false,
            Outcome::Unknown => rng.random_bool(0.5),
        };
        let mut ops = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            let key = rng.random_range(0..KEYS);
            if rng.random_bool(0.5) {
                next += 1;
                ops.push(MicroOp::append(key, next));
                if effective {
                    state[key as usize].push(next);
                }
            } else if outcome == Outcome::Committed {
                ops.push(MicroOp::read(key, &state[key as usize]));
            } else {
                ops.push(MicroOp::read_unobserved(key));
            }
        }
        let point = 100 * i + 1000;
        let invoke = point - rng.random_range(0..1000);
        let complete = match outcome {
            Outcome::Unknown => None,
            _ => Some(point + rng.random_range(0..1000)),
        };
        txns.push(Txn::new(i, i % 25, invoke, complete, outcome, ops));
    }
    History::new(txns)
}

#[test]
fn a_large_valid_history_is_checked_in_well_under_the_budget() {
    let mut rng = StdRng::seed_from_u64(42);
    let history = big_history(&mut rng);
    for model in [Consistency::StrictSerializable, Consistency::Serializable] {
        let started = Instant::now();
        let report = check(&history, model);
        let took = started.elapsed();
        eprintln!("{model}: {} in {took:?}", report);
        assert!(report.is_valid(), "{report}");
        assert!(report.graph_transactions > 4800, "{report}");
        assert!(took < BUDGET, "{model}: {took:?}");
    }
}

#[test]
fn one_stale_read_in_a_large_history_is_found() {
    let mut rng = StdRng::seed_from_u64(43);
    let mut history = big_history(&mut rng);
    // A late committed read of a long list, by a transaction that does not append
    // to the key, now sees only the list's first element.
    let (t, i) = history
        .txns
        .iter()
        .enumerate()
        .skip(4000)
        .filter(|(_, txn)| txn.outcome == Outcome::Committed)
        .find_map(|(t, txn)| {
            txn.ops
                .iter()
                .position(|op| match op {
                    MicroOp::Read {
                        key,
                        value: Some(list),
                    } => {
                        list.len() > 10
                            && !txn
                                .ops
                                .iter()
                                .any(|o| matches!(o, MicroOp::Append { key: k, .. } if k == key))
                    }
                    MicroOp::Append { .. } | MicroOp::Read { .. } => false,
                })
                .map(|i| (t, i))
        })
        .expect("a late long read");
    if let MicroOp::Read {
        value: Some(list), ..
    } = &mut history.txns[t].ops[i]
    {
        list.truncate(1);
    }
    let stale = history.txns[t].id;
    let report = check(&history, Consistency::StrictSerializable);
    assert!(
        report.has(AnomalyKind::GSingle) || report.has(AnomalyKind::GSingleRealtime),
        "{report}"
    );
    assert!(report.involving(stale).count() > 0, "{report}");
}
