//! The checker against histories with known verdicts: hand-built anomalies it must
//! reject and valid histories it must accept, a brute-force cross-check on small
//! random histories, a large history for speed, and the recorder.

mod accepted;
mod cross_check;
mod recorder;
mod rejected;
mod scale;

use shoal_history::{check, AnomalyKind, Consistency, History, MicroOp, Outcome, Txn};

/// An append of `v` to key `k`.
fn a(k: u64, v: u64) -> MicroOp {
    MicroOp::append(k, v)
}

/// A read of key `k` that observed `list`.
fn r(k: u64, list: &[u64]) -> MicroOp {
    MicroOp::read(k, list)
}

/// A committed transaction `id` (run by process `id`) from `invoke` to `complete`.
fn ok(id: u64, invoke: u64, complete: u64, ops: Vec<MicroOp>) -> Txn {
    Txn::committed(id, id, invoke, complete, ops)
}

/// A transaction with the given outcome, invoked at `invoke`, never completed.
fn pending(id: u64, outcome: Outcome, invoke: u64, ops: Vec<MicroOp>) -> Txn {
    Txn::new(id, id, invoke, None, outcome, ops)
}

/// Asserts that the history is rejected under `model` with exactly these kinds.
fn rejects(txns: Vec<Txn>, model: Consistency, kinds: &[AnomalyKind]) {
    let history = History::new(txns);
    let report = check(&history, model);
    assert!(!report.is_valid(), "accepted:\n{history}{report}");
    assert_eq!(report.kinds(), kinds, "\n{history}{report}");
    for anomaly in &report.anomalies {
        assert!(!anomaly.explanation.is_empty());
        assert!(!anomaly.txns.is_empty(), "{anomaly}");
    }
}

/// Asserts that the history is rejected under `model` with (at least) this kind.
fn rejects_with(txns: Vec<Txn>, model: Consistency, kind: AnomalyKind) {
    let history = History::new(txns);
    let report = check(&history, model);
    assert!(report.has(kind), "no {kind}:\n{history}{report}");
}

/// Asserts that the history is valid under `model`.
fn accepts(txns: Vec<Txn>, model: Consistency) {
    let history = History::new(txns);
    let report = check(&history, model);
    assert!(report.is_valid(), "rejected:\n{history}{report}");
}
