//! Valid histories, accepted under every model they satisfy.

use shoal_history::Consistency::*;
use shoal_history::{check, History, Outcome, Txn};

use super::{a, accepts, ok, pending, r};

const X: u64 = 0;
const Y: u64 = 1;

#[test]
fn an_empty_history_is_valid() {
    let report = check(&History::default(), StrictSerializable);
    assert!(report.is_valid(), "{report}");
}

#[test]
fn a_sequential_history() {
    let txns = vec![
        ok(1, 0, 10, vec![r(X, &[]), a(X, 1)]),
        ok(2, 20, 30, vec![r(X, &[1]), a(X, 2), a(Y, 3), r(X, &[1, 2])]),
        ok(3, 40, 50, vec![a(Y, 4), r(Y, &[3, 4]), r(X, &[1, 2])]),
        ok(4, 60, 70, vec![r(X, &[1, 2]), r(Y, &[3, 4])]),
    ];
    for model in [StrictSerializable, Serializable, SnapshotIsolation] {
        accepts(txns.clone(), model);
    }
}

#[test]
fn concurrent_transactions_on_different_keys() {
    let txns = vec![
        ok(1, 0, 30, vec![r(X, &[]), a(X, 1), r(X, &[1])]),
        ok(2, 5, 25, vec![r(Y, &[]), a(Y, 2)]),
        ok(3, 10, 40, vec![a(2, 3), r(2, &[3])]),
        ok(4, 50, 60, vec![r(X, &[1]), r(Y, &[2]), r(2, &[3])]),
    ];
    for model in [StrictSerializable, Serializable, SnapshotIsolation] {
        accepts(txns.clone(), model);
    }
}

#[test]
fn concurrent_transactions_on_one_key_in_either_order() {
    // T2 overlaps T1 and took effect first.
    let txns = vec![
        ok(1, 0, 30, vec![a(X, 1)]),
        ok(2, 10, 20, vec![r(X, &[]), a(X, 2)]),
        ok(3, 40, 50, vec![r(X, &[2, 1])]),
    ];
    for model in [StrictSerializable, Serializable, SnapshotIsolation] {
        accepts(txns.clone(), model);
    }
}

#[test]
fn an_unknown_transaction_whose_append_was_never_seen() {
    let txns = vec![
        pending(1, Outcome::Unknown, 0, vec![a(X, 1)]),
        ok(2, 20, 30, vec![r(X, &[])]),
        ok(3, 40, 50, vec![a(X, 2), r(X, &[2])]),
    ];
    for model in [StrictSerializable, Serializable, SnapshotIsolation] {
        accepts(txns.clone(), model);
    }
}

#[test]
fn an_unknown_transaction_that_took_effect_after_its_client_gave_up() {
    // The client stopped waiting at 10; the append was not visible at 20 but was at 40.
    let txns = vec![
        Txn::new(1, 1, 0, Some(10), Outcome::Unknown, vec![a(X, 1)]),
        ok(2, 20, 30, vec![r(X, &[])]),
        ok(3, 40, 50, vec![r(X, &[1])]),
    ];
    accepts(txns.clone(), StrictSerializable);
    let report = check(&History::new(txns), StrictSerializable);
    assert_eq!(
        report.graph_transactions, 3,
        "the unknown one was seen: {report}"
    );
}

#[test]
fn an_aborted_transaction_that_nobody_read() {
    let txns = vec![
        pending(1, Outcome::Aborted, 0, vec![a(X, 1), r(Y, &[5])]),
        ok(2, 20, 30, vec![r(X, &[]), a(X, 2)]),
        ok(3, 40, 50, vec![r(X, &[2])]),
    ];
    for model in [StrictSerializable, Serializable, SnapshotIsolation] {
        accepts(txns.clone(), model);
    }
    let report = check(&History::new(txns), Serializable);
    assert_eq!(report.graph_transactions, 2, "{report}");
}

#[test]
fn a_transaction_reading_its_own_appends_after_others() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 20, 30, vec![a(X, 2), a(X, 3), r(X, &[1, 2, 3]), a(X, 4)]),
        ok(3, 40, 50, vec![r(X, &[1, 2, 3, 4])]),
    ];
    for model in [StrictSerializable, Serializable, SnapshotIsolation] {
        accepts(txns.clone(), model);
    }
}

#[test]
fn the_report_and_the_history_print() {
    let txns = vec![ok(1, 0, 10, vec![a(X, 1), r(Y, &[])])];
    let history = History::new(txns);
    assert_eq!(
        history.to_string(),
        "T1 p1 [0..10] committed: append(0, 1), read(1) = []\n"
    );
    let report = check(&history, StrictSerializable);
    assert!(report
        .to_string()
        .starts_with("valid under strict-serializable"));
}
