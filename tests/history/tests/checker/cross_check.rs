//! The checker agrees with brute force on small random histories.
//!
//! Each history is made by running a few random transactions over two keys in a
//! random serial order (unknown ones taking effect or not at random, aborted ones
//! never), giving them real-time intervals that either respect that order or are
//! random, and then, in half the histories, corrupting one committed read (dropping,
//! adding, swapping, repeating or replacing elements). Brute force then decides
//! serializability by trying every order of the committed transactions (and of any
//! subset of the unknown ones), executing them against empty lists and comparing
//! every observed read; for strict serializability, an order must also put each
//! committed transaction before every transaction invoked after it completed.
//!
//! Inference of version orders is weaker than brute force when an append is never
//! read: the checker cannot place it in its key's order, while brute force knows
//! it is somewhere. Each history therefore ends with a committed transaction that,
//! invoked after every other completed, reads every key without corruption, so
//! every append that took effect is observed; and a corruption never adds an
//! element of an unknown transaction that did not take effect (which would make it
//! count as committed with the rest of its appends unread). With that, the
//! checker's verdict and brute force's must match exactly.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use shoal_history::{check, AnomalyKind, Consistency, History, MicroOp, Outcome, Txn};
use std::collections::BTreeMap;

const KEYS: u64 = 2;
/// An element no transaction appends.
const GARBAGE: u64 = 1000;

/// A random history per the module documentation.
fn generate(rng: &mut StdRng) -> History {
    let n = rng.random_range(3..=5u64);
    let mut next = 1;
    let mut txns: Vec<Txn> = (0..n)
        .map(|i| {
            let outcome = match rng.random_range(0..10) {
                0 => Outcome::Aborted,
                1 => Outcome::Unknown,
                _ => Outcome::Committed,
            };
            let ops = (0..rng.random_range(1..=3))
                .map(|_| {
                    let key = rng.random_range(0..KEYS);
                    if rng.random_bool(0.5) {
                        next += 1;
                        MicroOp::append(key, next - 1)
                    } else {
                        MicroOp::read_unobserved(key)
                    }
                })
                .collect();
            Txn::new(i, i, 0, None, outcome, ops)
        })
        .collect();
    let effective: Vec<bool> = txns
        .iter()
        .map(|t| match t.outcome {
            Outcome::Committed => true,
            Outcome::Aborted => false,
            Outcome::Unknown => rng.random_bool(0.5),
        })
        .collect();
    let mut order: Vec<usize> = (0..txns.len()).filter(|&t| effective[t]).collect();
    order.shuffle(rng);
    let mut state = vec![Vec::new(); KEYS as usize];
    for &t in &order {
        let committed = txns[t].outcome == Outcome::Committed;
        for op in &mut txns[t].ops {
            match op {
                MicroOp::Append { key, value } => state[*key as usize].push(*value),
                MicroOp::Read { key, value } if committed => {
                    *value = Some(state[*key as usize].clone());
                }
                MicroOp::Read { .. } => {}
            }
        }
    }
    let respect_order = rng.random_bool(0.6);
    for (t, txn) in txns.iter_mut().enumerate() {
        let place = order.iter().position(|&o| o == t);
        let (invoke, complete) = match (respect_order, place) {
            (true, Some(p)) => {
                let point = 10 * p as u64 + 20;
                (
                    point - rng.random_range(0..=12),
                    point + rng.random_range(0..=12),
                )
            }
            _ => {
                let invoke = rng.random_range(0..10 * n + 20);
                (invoke, invoke + rng.random_range(0..=15))
            }
        };
        txn.invoke = invoke;
        txn.complete = match txn.outcome {
            Outcome::Unknown if rng.random_bool(0.5) => None,
            _ => Some(complete),
        };
    }
    if rng.random_bool(0.5) {
        corrupt(rng, &mut txns, &effective, &state);
    }
    let last = txns
        .iter()
        .map(|t| t.complete.unwrap_or(t.invoke))
        .max()
        .unwrap_or(0);
    let reads = (0..KEYS)
        .map(|k| MicroOp::read(k, &state[k as usize]))
        .collect();
    txns.push(Txn::committed(n, n, last + 1, last + 2, reads));
    History::new(txns)
}

/// Corrupts one committed read, if there is one.
fn corrupt(rng: &mut StdRng, txns: &mut [Txn], effective: &[bool], state: &[Vec<u64>]) {
    // Elements that may be added to a list of each key: appends that took effect,
    // aborted appends, and garbage.
    let mut pool: Vec<Vec<u64>> = vec![vec![GARBAGE]; KEYS as usize];
    for (t, txn) in txns.iter().enumerate() {
        if effective[t] || txn.outcome == Outcome::Aborted {
            for op in &txn.ops {
                if let MicroOp::Append { key, value } = op {
                    pool[*key as usize].push(*value);
                }
            }
        }
    }
    let mut reads: Vec<(usize, usize)> = Vec::new();
    for (t, txn) in txns.iter().enumerate() {
        for (i, op) in txn.ops.iter().enumerate() {
            if let MicroOp::Read { value: Some(_), .. } = op {
                reads.push((t, i));
            }
        }
    }
    let Some(&(t, i)) = reads.choose(rng) else {
        return;
    };
    let MicroOp::Read {
        key,
        value: Some(list),
    } = &mut txns[t].ops[i]
    else {
        return;
    };
    let key = *key as usize;
    match rng.random_range(0..6) {
        0 => {
            list.pop();
        }
        1 => {
            if let Some(&v) = pool[key].choose(rng) {
                let at = rng.random_range(0..=list.len());
                list.insert(at, v);
            }
        }
        2 if list.len() >= 2 => {
            let at = rng.random_range(0..list.len() - 1);
            list.swap(at, at + 1);
        }
        3 => {
            let len = rng.random_range(0..=state[key].len());
            *list = state[key][..len].to_vec();
        }
        4 if !list.is_empty() => {
            let v = list[rng.random_range(0..list.len())];
            list.push(v);
        }
        _ if !list.is_empty() => {
            list.remove(rng.random_range(0..list.len()));
        }
        _ => list.push(GARBAGE),
    }
}

/// Whether some serial order of the history's transactions explains every read
/// (respecting real time when `strict`), by trying them all.
fn brute_force(history: &History, strict: bool) -> bool {
    let txns = &history.txns;
    let committed: u64 = (0..txns.len())
        .filter(|&t| txns[t].outcome == Outcome::Committed)
        .map(|t| 1 << t)
        .sum();
    // Each transaction's must-come-before set: committed transactions that
    // completed before it was invoked.
    let before: Vec<u64> = txns
        .iter()
        .map(|t| {
            (0..txns.len())
                .filter(|&u| committed & (1 << u) != 0)
                .filter(|&u| strict && txns[u].complete.is_some_and(|c| c < t.invoke))
                .map(|u| 1 << u)
                .sum()
        })
        .collect();
    let mut state = BTreeMap::new();
    search(txns, committed, &before, 0, &mut state)
}

fn search(
    txns: &[Txn],
    committed: u64,
    before: &[u64],
    placed: u64,
    state: &mut BTreeMap<u64, Vec<u64>>,
) -> bool {
    if placed & committed == committed {
        return true;
    }
    for (t, txn) in txns.iter().enumerate() {
        let bit = 1 << t;
        if placed & bit != 0 || txn.outcome == Outcome::Aborted || before[t] & !placed != 0 {
            continue;
        }
        let saved = state.clone();
        if run(txn, state) && search(txns, committed, before, placed | bit, state) {
            return true;
        }
        *state = saved;
    }
    false
}

/// Runs a transaction against the lists; false if a read saw something else.
fn run(txn: &Txn, state: &mut BTreeMap<u64, Vec<u64>>) -> bool {
    for op in &txn.ops {
        match op {
            MicroOp::Append { key, value } => state.entry(*key).or_default().push(*value),
            MicroOp::Read {
                key,
                value: Some(list),
            } => {
                if state.get(key).map_or(&[][..], Vec::as_slice) != list.as_slice() {
                    return false;
                }
            }
            MicroOp::Read { value: None, .. } => {}
        }
    }
    true
}

#[test]
fn the_checker_agrees_with_brute_force_on_small_random_histories() {
    const CASES: usize = 3000;
    let mut rng = StdRng::seed_from_u64(0x5140a1);
    let mut valid: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<AnomalyKind, usize> = BTreeMap::new();
    for case in 0..CASES {
        let history = generate(&mut rng);
        let mut verdicts = Vec::new();
        for (model, strict) in [
            (Consistency::Serializable, false),
            (Consistency::StrictSerializable, true),
        ] {
            let report = check(&history, model);
            let expected = brute_force(&history, strict);
            assert_eq!(
                report.is_valid(),
                expected,
                "case {case} under {model}: brute force says {}\n{history}{report}",
                if expected { "valid" } else { "not valid" }
            );
            *valid
                .entry(if strict { "strict" } else { "serializable" })
                .or_default() += usize::from(expected);
            for kind in report.kinds() {
                *kinds.entry(kind).or_default() += 1;
            }
            verdicts.push(expected);
        }
        // Strict serializability implies serializability implies snapshot isolation.
        let si = check(&history, Consistency::SnapshotIsolation);
        assert!(!verdicts[1] || verdicts[0], "case {case}\n{history}");
        assert!(!verdicts[0] || si.is_valid(), "case {case}\n{history}{si}");
    }
    eprintln!("valid histories of {CASES}: {valid:?}\nanomaly kinds: {kinds:?}");
    for (model, &n) in &valid {
        assert!(
            (CASES / 5..=CASES * 4 / 5).contains(&n),
            "{model}: {n} of {CASES} valid: both verdicts need exercise"
        );
    }
    for kind in [
        AnomalyKind::G0,
        AnomalyKind::G1a,
        AnomalyKind::G1b,
        AnomalyKind::G1c,
        AnomalyKind::GSingle,
        AnomalyKind::G2Item,
        AnomalyKind::GSingleRealtime,
        AnomalyKind::IncompatibleOrder,
        AnomalyKind::DuplicateElements,
        AnomalyKind::GarbageRead,
        AnomalyKind::InternalInconsistency,
    ] {
        assert!(kinds.contains_key(&kind), "no {kind} in {kinds:?}");
    }
}
