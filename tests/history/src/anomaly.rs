//! What the checker reports: the kinds of anomaly, and each anomaly with the
//! transactions involved, the dependency cycle where there is one, and an
//! explanation in words.

use std::fmt;

use crate::dep::{Dep, Evidence};
use crate::history::TxnId;

/// A kind of anomaly, named as in Adya's and Elle's taxonomies where they have one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// A cycle of write-write dependencies only.
    G0,
    /// A committed transaction read an element an aborted transaction appended.
    G1a,
    /// A committed transaction read another's intermediate state: the list held some
    /// but not all of that transaction's appends to the key.
    G1b,
    /// A cycle of write-write and write-read dependencies, at least one write-read.
    G1c,
    /// A cycle with exactly one read-write (anti-)dependency.
    GSingle,
    /// A cycle with two or more read-write dependencies.
    G2Item,
    /// [`AnomalyKind::G0`] that needs real-time edges to close.
    G0Realtime,
    /// [`AnomalyKind::G1c`] that needs real-time edges to close.
    G1cRealtime,
    /// [`AnomalyKind::GSingle`] that needs real-time edges to close.
    GSingleRealtime,
    /// [`AnomalyKind::G2Item`] that needs real-time edges to close.
    G2ItemRealtime,
    /// Two reads of a key saw lists neither of which is a prefix of the other, or a
    /// list that contradicts the order in which one transaction appended to the key.
    IncompatibleOrder,
    /// A read list holds the same element more than once.
    DuplicateElements,
    /// A read list holds an element that no transaction appended.
    GarbageRead,
    /// A transaction's read contradicts its own earlier reads and appends.
    InternalInconsistency,
    /// The same element was appended to a key more than once: the history breaks the
    /// workload's promise of unique elements.
    DuplicateAppend,
    /// The history itself is ill-formed: a repeated transaction id, or a transaction
    /// that completed before it was invoked.
    Malformed,
}

impl AnomalyKind {
    /// The name used in reports, such as `G-single-realtime`.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::G0 => "G0",
            AnomalyKind::G1a => "G1a",
            AnomalyKind::G1b => "G1b",
            AnomalyKind::G1c => "G1c",
            AnomalyKind::GSingle => "G-single",
            AnomalyKind::G2Item => "G2-item",
            AnomalyKind::G0Realtime => "G0-realtime",
            AnomalyKind::G1cRealtime => "G1c-realtime",
            AnomalyKind::GSingleRealtime => "G-single-realtime",
            AnomalyKind::G2ItemRealtime => "G2-item-realtime",
            AnomalyKind::IncompatibleOrder => "incompatible-order",
            AnomalyKind::DuplicateElements => "duplicate-elements",
            AnomalyKind::GarbageRead => "garbage-read",
            AnomalyKind::InternalInconsistency => "internal",
            AnomalyKind::DuplicateAppend => "duplicate-append",
            AnomalyKind::Malformed => "malformed",
        }
    }

    /// Whether anomalies of this kind are dependency cycles.
    pub fn is_cycle(self) -> bool {
        self.is_realtime()
            || matches!(
                self,
                AnomalyKind::G0 | AnomalyKind::G1c | AnomalyKind::GSingle | AnomalyKind::G2Item
            )
    }

    /// Whether this is one of the `-realtime` cycle kinds.
    pub fn is_realtime(self) -> bool {
        matches!(
            self,
            AnomalyKind::G0Realtime
                | AnomalyKind::G1cRealtime
                | AnomalyKind::GSingleRealtime
                | AnomalyKind::G2ItemRealtime
        )
    }

    /// The kind of a cycle with `rw` read-write edges, whether it has a write-read
    /// edge, and whether it needs a real-time edge.
    pub(crate) fn of_cycle(rw: usize, has_wr: bool, has_rt: bool) -> AnomalyKind {
        match (rw, has_wr, has_rt) {
            (0, false, false) => AnomalyKind::G0,
            (0, true, false) => AnomalyKind::G1c,
            (1, _, false) => AnomalyKind::GSingle,
            (_, _, false) => AnomalyKind::G2Item,
            (0, false, true) => AnomalyKind::G0Realtime,
            (0, true, true) => AnomalyKind::G1cRealtime,
            (1, _, true) => AnomalyKind::GSingleRealtime,
            (_, _, true) => AnomalyKind::G2ItemRealtime,
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One edge of a dependency cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The transaction that must come first.
    pub from: TxnId,
    /// The transaction that must come after it.
    pub to: TxnId,
    /// What was observed that orders them.
    pub evidence: Evidence,
}

impl Step {
    /// The kind of dependency.
    pub fn dep(&self) -> Dep {
        self.evidence.dep()
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (self.from, self.to);
        write!(f, "{a} -{}-> {b}: ", self.dep())?;
        match &self.evidence {
            Evidence::Ww { key, before, after } => write!(
                f,
                "on key {key}, {b} appended {after} right after {a}'s {before}"
            ),
            Evidence::Wr { key, value } => write!(
                f,
                "{b} read key {key} as a list ending in {value}, which {a} appended"
            ),
            Evidence::Rw {
                key,
                last: Some(last),
                next,
            } => write!(
                f,
                "{a} read key {key} as a list ending in {last}; {b} appended {next}, the next element"
            ),
            Evidence::Rw {
                key,
                last: None,
                next,
            } => write!(
                f,
                "{a} read key {key} as empty; {b} appended {next}, its first element"
            ),
            Evidence::Rt { completed, invoked } => write!(
                f,
                "{a} completed at {completed}, before {b} was invoked at {invoked}"
            ),
        }
    }
}

/// One anomaly found in a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// Its kind.
    pub kind: AnomalyKind,
    /// The transactions involved.
    pub txns: Vec<TxnId>,
    /// For a cycle, its edges in order, the last leading back to the first
    /// transaction; empty otherwise.
    pub cycle: Vec<Step>,
    /// What was observed, in words.
    pub explanation: String,
}

impl Anomaly {
    /// An anomaly that is not a cycle.
    pub(crate) fn new(kind: AnomalyKind, txns: Vec<TxnId>, explanation: String) -> Self {
        Anomaly {
            kind,
            txns,
            cycle: Vec::new(),
            explanation,
        }
    }

    /// A cycle of these steps, of the kind its edges make it.
    pub(crate) fn cycle(steps: Vec<Step>) -> Self {
        let rw = steps.iter().filter(|s| s.dep() == Dep::Rw).count();
        let has_wr = steps.iter().any(|s| s.dep() == Dep::Wr);
        let has_rt = steps.iter().any(|s| s.dep() == Dep::Rt);
        let kind = AnomalyKind::of_cycle(rw, has_wr, has_rt);
        let txns: Vec<TxnId> = steps.iter().map(|s| s.from).collect();
        let mut explanation = String::from("a cycle ");
        for s in &steps {
            explanation.push_str(&format!("{} -{}-> ", s.from, s.dep()));
        }
        if let Some(first) = txns.first() {
            explanation.push_str(&first.to_string());
        }
        explanation.push_str(match kind {
            AnomalyKind::G0 | AnomalyKind::G0Realtime => {
                ": each transaction appended right after the one before it, so no order of \
                 them agrees with every key's order of elements"
            }
            AnomalyKind::G1c | AnomalyKind::G1cRealtime => {
                ": each transaction read or appended after the writes of the one before it"
            }
            AnomalyKind::GSingle | AnomalyKind::GSingleRealtime => {
                ": a transaction missed an append of one that, by the other edges, precedes it"
            }
            _ => ": the transactions missed each other's appends, so none of them can be first",
        });
        if kind.is_realtime() {
            explanation.push_str(" (the cycle closes only through real-time order)");
        }
        Anomaly {
            kind,
            txns,
            cycle: steps,
            explanation,
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.explanation)?;
        for step in &self.cycle {
            write!(f, "\n    {step}")?;
        }
        Ok(())
    }
}
