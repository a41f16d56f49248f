//! Recording a history as a workload runs: clients (threads or async tasks) share
//! one [`Recorder`] and note each transaction when they send it and when they learn
//! its outcome, on a clock that starts when the recorder is made.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::history::{History, MicroOp, Outcome, Txn, TxnId};

/// Why a completion could not be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// No transaction with this id was invoked.
    NotInvoked(TxnId),
    /// The transaction already has an outcome.
    AlreadyComplete(TxnId),
    /// The number of lists given is not the number of reads the transaction had.
    ReadCount {
        /// The transaction.
        id: TxnId,
        /// How many reads it had.
        reads: usize,
        /// How many lists were given.
        lists: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NotInvoked(id) => write!(f, "{id} was never invoked"),
            RecordError::AlreadyComplete(id) => write!(f, "{id} already has an outcome"),
            RecordError::ReadCount { id, reads, lists } => {
                write!(f, "{id} has {reads} reads but {lists} lists were given")
            }
        }
    }
}

impl std::error::Error for RecordError {}

#[derive(Debug, Default)]
struct Inner {
    txns: Vec<Txn>,
    /// Transactions invoked and not yet complete, by id, to their place in `txns`.
    open: HashMap<TxnId, usize>,
    /// The last instant handed out.
    last: u64,
}

/// A thread-safe log of transactions; time is nanoseconds since it was made.
///
/// Every invocation and completion gets an instant later than all those before
/// it, so one that happened after another (as a client's next invocation after its
/// last completion) is never recorded at the same instant.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Nanoseconds since the recorder was made.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A client that panicked mid-record leaves the log as consistent as ever.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instant for an event being recorded under the lock.
    fn tick(&self, inner: &mut Inner) -> u64 {
        inner.last = self.now().max(inner.last.saturating_add(1));
        inner.last
    }

    /// Notes that `process` is sending a transaction of these steps (reads' lists
    /// are filled in at completion), and returns its id.
    pub fn invoke(&self, process: u64, ops: Vec<MicroOp>) -> TxnId {
        let mut inner = self.lock();
        let invoke = self.tick(&mut inner);
        let id = TxnId(inner.txns.len() as u64);
        let ops = ops
            .into_iter()
            .map(|op| match op {
                MicroOp::Read { key, .. } => MicroOp::Read { key, value: None },
                append => append,
            })
            .collect();
        let at = inner.txns.len();
        inner.txns.push(Txn {
            id,
            process,
            invoke,
            complete: None,
            outcome: Outcome::Unknown,
            ops,
        });
        inner.open.insert(id, at);
        id
    }

    /// Notes the outcome of transaction `id` and the lists its reads observed, in
    /// the order of its reads (none when nothing was observed, as for an aborted or
    /// unknown outcome).
    pub fn complete(
        &self,
        id: TxnId,
        outcome: Outcome,
        lists: Vec<Vec<u64>>,
    ) -> Result<(), RecordError> {
        let mut inner = self.lock();

        let at = match inner.open.get(&id) {
            Some(&at) => at,
            None if inner.txns.iter().any(|t| t.id == id) => {
                return Err(RecordError::AlreadyComplete(id));
            }
            None => return Err(RecordError::NotInvoked(id)),
        };
        let complete = self.tick(&mut inner);
        let txn = &mut inner.txns[at];
        let reads = txn
            .ops
            .iter()
            .filter(|op| matches!(op, MicroOp::Read { .. }))
            .count();
        if !lists.is_empty() && lists.len() != reads {
            let lists = lists.len();
            return Err(RecordError::ReadCount { id, reads, lists });
        }
        let mut lists = lists.into_iter();
        for op in &mut txn.ops {
            if let MicroOp::Read { value, .. } = op {
                *value = lists.next();
            }
        }
        txn.complete = Some(complete);
        txn.outcome = outcome;
        inner.open.remove(&id);
        Ok(())
    }

    /// The history so far; transactions still awaiting their outcome appear as
    /// unknown and never completed.
    pub fn history(&self) -> History {
        History::new(self.lock().txns.clone())
    }

    /// The history, consuming the recorder.
    pub fn into_history(self) -> History {
        let inner = self.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        History::new(inner.txns)
    }
}
