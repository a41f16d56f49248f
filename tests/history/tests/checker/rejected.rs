//! Hand-built anomalous histories, each rejected with the anomaly it shows.

use shoal_history::AnomalyKind::*;
use shoal_history::Consistency::*;
use shoal_history::{check, Dep, History, Outcome};

use super::{a, ok, pending, r, rejects, rejects_with};

const X: u64 = 0;
const Y: u64 = 1;

#[test]
fn g0_two_writers_append_to_two_keys_in_opposite_orders() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1), a(Y, 1)]),
        ok(2, 0, 10, vec![a(X, 2), a(Y, 2)]),
        ok(3, 20, 30, vec![r(X, &[1, 2]), r(Y, &[2, 1])]),
    ];
    rejects(txns.clone(), Serializable, &[G0]);
    rejects(txns.clone(), SnapshotIsolation, &[G0]);
    rejects(txns.clone(), StrictSerializable, &[G0]);
    let report = check(&History::new(txns), Serializable);
    let cycle = &report.anomalies[0].cycle;
    assert_eq!(cycle.len(), 2);
    assert!(cycle.iter().all(|s| s.dep() == Dep::Ww));
    let text = report.to_string();
    assert!(
        text.contains("T1 -ww-> T2") && text.contains("T2 -ww-> T1"),
        "{text}"
    );
}

#[test]
fn g1a_a_committed_read_sees_an_aborted_append() {
    let txns = vec![
        pending(1, Outcome::Aborted, 0, vec![a(X, 1)]),
        ok(2, 5, 15, vec![r(X, &[1])]),
    ];
    for model in [Serializable, StrictSerializable, SnapshotIsolation] {
        rejects(txns.clone(), model, &[G1a]);
    }
}

#[test]
fn g1b_a_read_ends_at_a_writer_s_intermediate_append() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1), a(X, 2)]),
        ok(2, 0, 10, vec![r(X, &[1])]),
    ];
    rejects_with(txns.clone(), SnapshotIsolation, G1b);
    rejects_with(txns, Serializable, G1b);
}

#[test]
fn g1b_a_writer_s_partial_appends_built_upon_by_another() {
    // T2 appended 3 onto a state holding only one of T1's two appends.
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1), a(X, 2)]),
        ok(2, 0, 10, vec![a(X, 3)]),
        ok(3, 20, 30, vec![r(X, &[1, 3])]),
    ];
    rejects_with(txns, Serializable, G1b);
}

#[test]
fn g1c_information_flows_in_a_circle_of_wr_and_ww() {
    // T2 read T1's x, yet T1's append to y came after T2's.
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1), a(Y, 2)]),
        ok(2, 0, 10, vec![r(X, &[1]), a(Y, 1)]),
        ok(3, 20, 30, vec![r(Y, &[1, 2])]),
    ];
    rejects(txns.clone(), Serializable, &[G1c]);
    rejects(txns, SnapshotIsolation, &[G1c]);
}

#[test]
fn g1c_two_transactions_read_each_other() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1), r(Y, &[1])]),
        ok(2, 0, 10, vec![a(Y, 1), r(X, &[1])]),
    ];
    rejects(txns, Serializable, &[G1c]);
}

#[test]
fn g_single_read_skew() {
    // T2 saw T1's y but not its x.
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1), a(Y, 1)]),
        ok(2, 0, 10, vec![r(X, &[]), r(Y, &[1])]),
        ok(3, 20, 30, vec![r(X, &[1])]),
    ];
    for model in [Serializable, StrictSerializable, SnapshotIsolation] {
        rejects(txns.clone(), model, &[GSingle]);
    }
    let report = check(&History::new(txns), Serializable);
    let deps: Vec<Dep> = report.anomalies[0].cycle.iter().map(|s| s.dep()).collect();
    assert_eq!(
        deps.iter().filter(|d| **d == Dep::Rw).count(),
        1,
        "{report}"
    );
    assert!(deps.contains(&Dep::Wr), "{report}");
}

#[test]
fn g_single_lost_update() {
    // Both read x empty and appended; the later append should have seen the first.
    let txns = vec![
        ok(1, 0, 10, vec![r(X, &[]), a(X, 1)]),
        ok(2, 0, 10, vec![r(X, &[]), a(X, 2)]),
        ok(3, 20, 30, vec![r(X, &[1, 2])]),
    ];
    rejects(txns.clone(), Serializable, &[GSingle]);
    rejects(txns, SnapshotIsolation, &[GSingle]);
}

#[test]
fn g2_item_write_skew_is_not_serializable_but_is_snapshot_isolation() {
    let txns = vec![
        ok(1, 0, 10, vec![r(X, &[]), r(Y, &[]), a(X, 1)]),
        ok(2, 0, 10, vec![r(X, &[]), r(Y, &[]), a(Y, 2)]),
        ok(3, 20, 30, vec![r(X, &[1]), r(Y, &[2])]),
    ];
    rejects(txns.clone(), Serializable, &[G2Item]);
    rejects(txns.clone(), StrictSerializable, &[G2Item]);
    super::accepts(txns.clone(), SnapshotIsolation);
    let report = check(&History::new(txns), Serializable);
    let rw = report.anomalies[0]
        .cycle
        .iter()
        .filter(|s| s.dep() == Dep::Rw)
        .count();
    assert_eq!(rw, 2, "{report}");
}

#[test]
fn incompatible_orders_of_the_same_elements() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 0, 10, vec![a(X, 2)]),
        ok(3, 20, 30, vec![r(X, &[1, 2])]),
        ok(4, 20, 30, vec![r(X, &[2, 1])]),
    ];
    rejects_with(txns, Serializable, IncompatibleOrder);
}

#[test]
fn incompatible_orders_that_diverge() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 0, 10, vec![a(X, 2)]),
        ok(3, 0, 10, vec![a(X, 3)]),
        ok(4, 20, 30, vec![r(X, &[1, 2])]),
        ok(5, 20, 30, vec![r(X, &[1, 3])]),
    ];
    rejects(txns.clone(), Serializable, &[IncompatibleOrder]);
    rejects(txns, SnapshotIsolation, &[IncompatibleOrder]);
}

#[test]
fn a_list_against_the_order_its_writer_appended_in() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1), a(X, 2)]),
        ok(2, 20, 30, vec![r(X, &[2, 1])]),
    ];
    rejects(txns, Serializable, &[IncompatibleOrder]);
}

#[test]
fn garbage_read_of_an_element_nobody_appended() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 20, 30, vec![r(X, &[1, 9])]),
    ];
    rejects(txns, Serializable, &[GarbageRead]);
}

#[test]
fn duplicate_elements_in_a_read() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 20, 30, vec![r(X, &[1, 1])]),
    ];
    rejects_with(txns, Serializable, DuplicateElements);
}

#[test]
fn internal_inconsistency_a_read_misses_the_transaction_s_own_append() {
    let txns = vec![ok(1, 0, 10, vec![a(X, 1), r(X, &[])])];
    rejects(txns, Serializable, &[InternalInconsistency]);
}

#[test]
fn internal_inconsistency_two_reads_of_a_key_differ() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 0, 10, vec![r(X, &[]), r(X, &[1])]),
    ];
    rejects_with(txns, Serializable, InternalInconsistency);
}

#[test]
fn internal_inconsistency_a_read_sees_an_append_the_transaction_makes_later() {
    let txns = vec![ok(1, 0, 10, vec![r(X, &[1]), a(X, 1)])];
    rejects(txns, Serializable, &[InternalInconsistency]);
}

#[test]
fn stale_read_is_serializable_but_not_strictly() {
    // T2 began after T1 completed, yet did not see T1's append.
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 20, 30, vec![r(X, &[])]),
        ok(3, 40, 50, vec![r(X, &[1])]),
    ];
    super::accepts(txns.clone(), Serializable);
    super::accepts(txns.clone(), SnapshotIsolation);
    rejects(txns.clone(), StrictSerializable, &[GSingleRealtime]);
    let report = check(&History::new(txns), StrictSerializable);
    let text = report.to_string();
    assert!(
        text.contains("T2 -rw-> T1") && text.contains("T1 -rt-> T2"),
        "{text}"
    );
}

#[test]
fn future_read_is_serializable_but_not_strictly() {
    // T1 completed before T2 began, yet read T2's append.
    let txns = vec![ok(1, 0, 10, vec![r(X, &[1])]), ok(2, 20, 30, vec![a(X, 1)])];
    super::accepts(txns.clone(), Serializable);
    rejects(txns, StrictSerializable, &[G1cRealtime]);
}

#[test]
fn appends_in_the_opposite_of_real_time_order() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 20, 30, vec![a(X, 2)]),
        ok(3, 40, 50, vec![r(X, &[2, 1])]),
    ];
    super::accepts(txns.clone(), Serializable);
    rejects(txns, StrictSerializable, &[G0Realtime]);
}

#[test]
fn duplicate_append_is_reported_not_a_panic() {
    let txns = vec![
        ok(1, 0, 10, vec![a(X, 1)]),
        ok(2, 0, 10, vec![a(X, 1)]),
        ok(3, 20, 30, vec![r(X, &[1])]),
    ];
    rejects_with(txns, StrictSerializable, DuplicateAppend);
}

#[test]
fn malformed_histories_are_reported() {
    let txns = vec![ok(1, 0, 10, vec![a(X, 1)]), ok(1, 0, 10, vec![a(X, 2)])];
    rejects_with(txns, Serializable, Malformed);
    let txns = vec![ok(1, 10, 5, vec![a(X, 1)])];
    rejects(txns, StrictSerializable, &[Malformed]);
}

#[test]
fn every_cycle_in_a_larger_component_is_found_by_class() {
    // Write skew between T1 and T2, a G0 between T3 and T4, and reads that join
    // them into one component: T1 and T4 read each other (G1c), and T1 missed
    // T3's append that T4's follows (G-single).
    let txns = vec![
        ok(1, 0, 10, vec![r(X, &[]), r(Y, &[]), a(X, 1), r(2, &[7])]),
        ok(2, 0, 10, vec![r(X, &[]), r(Y, &[]), a(Y, 2)]),
        ok(3, 0, 10, vec![a(2, 3), a(3, 3), r(Y, &[2])]),
        ok(4, 0, 10, vec![a(2, 7), a(3, 4), r(X, &[1])]),
        ok(
            5,
            20,
            30,
            vec![r(X, &[1]), r(Y, &[2]), r(2, &[7, 3]), r(3, &[3, 4])],
        ),
    ];
    let report = check(&History::new(txns), Serializable);
    assert_eq!(report.kinds(), [G0, G1c, GSingle], "{report}");
    let component: Vec<_> = report
        .anomalies
        .iter()
        .flat_map(|a| a.txns.clone())
        .collect();
    assert!(!component.contains(&shoal_history::TxnId(5)), "{report}");
}
