//! A checker of transactional histories of shoal, after Elle (Kingsbury and Alvaro,
//! "Elle: Inferring Isolation Anomalies from Experimental Observations", VLDB 2020),
//! for the list-append workload: each key holds a list of `u64`, transactions append
//! unique elements and read whole lists, and the order in which elements appear in
//! the lists read reveals the order in which the transactions took effect.
//!
//! The map of the crate, and what flows between its modules:
//!
//! - `history`: the model: [`History`], [`Txn`], [`TxnId`], [`Outcome`], [`MicroOp`],
//!   and their text dump (`Display`). Every other module reads it.
//! - `recorder`: [`Recorder`], which clients share to build a [`History`] as a
//!   workload runs.
//! - `dep`: the kinds of dependency ([`Dep`]: ww, wr, rw, rt) and the [`Evidence`]
//!   for an edge. Used by `graph`, `infer`, `realtime`, `cycles` and `anomaly`.
//! - `anomaly`: [`Anomaly`], [`AnomalyKind`] and the cycle [`Step`]s that `infer`
//!   and `cycles` report.
//! - `graph`: the dependency graph over transaction indices (a builder that `infer`
//!   and `realtime` add edges to), its strongly connected components and paths,
//!   which `cycles` searches.
//! - `infer`: from a [`History`], the writers of elements, version orders and
//!   committed transactions, the anomalies that need no cycle, and the ww, wr and rw
//!   edges, handed to `check` as a graph builder.
//! - `realtime`: the real-time (rt) edges that `check` adds for strict
//!   serializability, as a transitive reduction.
//! - `cycles`: from the built graph, one example cycle per class (G0, G1c, G-single,
//!   G2-item and their `-realtime` forms) per strongly connected component, as
//!   [`Anomaly`]s.
//! - `check`: [`check`], which runs `infer`, `realtime` and `cycles` for a
//!   [`Consistency`] model and gathers the anomalies into a [`Report`].
//!
//! ```
//! use shoal_history::{check, AnomalyKind, Consistency, MicroOp, Outcome, Recorder};
//!
//! let recorder = Recorder::new();
//! let t0 = recorder.invoke(1, vec![MicroOp::append(7, 1)]);
//! recorder.complete(t0, Outcome::Committed, vec![]).unwrap();
//! // Invoked after T0 completed, yet it misses T0's append: a stale read.
//! let t1 = recorder.invoke(2, vec![MicroOp::read_unobserved(7)]);
//! recorder.complete(t1, Outcome::Committed, vec![vec![]]).unwrap();
//! let t2 = recorder.invoke(3, vec![MicroOp::read_unobserved(7)]);
//! recorder.complete(t2, Outcome::Committed, vec![vec![1]]).unwrap();
//!
//! let history = recorder.into_history();
//! assert!(check(&history, Consistency::Serializable).is_valid());
//! let strict = check(&history, Consistency::StrictSerializable);
//! assert_eq!(strict.kinds(), [AnomalyKind::GSingleRealtime], "{history}{strict}");
//! ```

mod anomaly;
mod check;
mod cycles;
mod dep;
mod graph;
mod history;
mod infer;
mod realtime;
mod recorder;

pub use anomaly::{Anomaly, AnomalyKind, Step};
pub use check::{check, Consistency, Report};
pub use dep::{Dep, Evidence};
pub use history::{History, MicroOp, Outcome, Txn, TxnId};
pub use recorder::{RecordError, Recorder};
