//! The checker's entry point: inference, real-time edges where the model asks for
//! them, cycle search, and the report.

use std::fmt;

use crate::anomaly::{Anomaly, AnomalyKind};
use crate::cycles;
use crate::history::{History, TxnId};
use crate::infer;
use crate::realtime;

/// The isolation level a history is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Serializable, and a transaction that completed before another was invoked
    /// precedes it: every cycle, with or without real-time edges, is an anomaly.
    StrictSerializable,
    /// Some serial order explains every read: every dependency cycle is an anomaly.
    Serializable,
    /// Snapshot isolation: G0, G1a, G1b, G1c and G-single are anomalies; cycles of
    /// two or more rw edges (G2-item, such as write skew) are allowed.
    SnapshotIsolation,
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Consistency::StrictSerializable => "strict-serializable",
            Consistency::Serializable => "serializable",
            Consistency::SnapshotIsolation => "snapshot-isolation",
        })
    }
}

/// The result of checking a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The model checked against.
    pub consistency: Consistency,
    /// How many transactions the history held.
    pub transactions: usize,
    /// How many of them the dependency graph holds (committed ones, and unknown
    /// ones whose appends were read).
    pub graph_transactions: usize,
    /// How many edges the dependency graph had.
    pub graph_edges: usize,
    /// The anomalies found, those without cycles first.
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    /// Whether the history satisfies the model: no anomaly was found.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// The kinds of anomaly found, each once, in order.
    pub fn kinds(&self) -> Vec<AnomalyKind> {
        let mut kinds: Vec<AnomalyKind> = self.anomalies.iter().map(|a| a.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }

    /// Whether an anomaly of this kind was found.
    pub fn has(&self, kind: AnomalyKind) -> bool {
        self.anomalies.iter().any(|a| a.kind == kind)
    }

    /// The anomalies that involve this transaction.
    pub fn involving(&self, id: TxnId) -> impl Iterator<Item = &Anomaly> + '_ {
        self.anomalies.iter().filter(move |a| a.txns.contains(&id))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_valid() {
            "valid"
        } else {
            "NOT valid"
        };
        write!(
            f,
            "{verdict} under {}: {} transactions ({} in a graph of {} edges), {} anomalies",
            self.consistency,
            self.transactions,
            self.graph_transactions,
            self.graph_edges,
            self.anomalies.len()
        )?;
        for (i, a) in self.anomalies.iter().enumerate() {
            write!(f, "\n  {}. {a}", i + 1)?;
        }
        Ok(())
    }
}

/// Checks a list-append history against a consistency model.
pub fn check(history: &History, consistency: Consistency) -> Report {
    let mut inference = infer::infer(history);
    if consistency == Consistency::StrictSerializable {
        realtime::add_edges(&history.txns, &inference.txn_of_node, &mut inference.graph);
    }
    let graph = inference.graph.build();
    let ids: Vec<TxnId> = inference
        .txn_of_node
        .iter()
        .map(|&t| history.txns[t].id)
        .collect();
    let g2 = consistency != Consistency::SnapshotIsolation;
    let mut anomalies = inference.anomalies;
    anomalies.extend(cycles::find(&graph, &ids, g2));
    Report {
        consistency,
        transactions: history.len(),
        graph_transactions: graph.len(),
        graph_edges: graph.edge_count(),
        anomalies,
    }
}
