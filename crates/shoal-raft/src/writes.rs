//! The data commands: writes (`Put`, `Delete`, `DeleteRange`, `Batch`) and etcd-style
//! transactions. Within one command a later op sees the earlier ops' writes through
//! an [`Overlay`], so a batch `put k; get k` reads its own write.

use std::io;

use shoal_proto::span;
use shoal_storage::{Engine, KeySpan, Versioned};

use crate::apply::Apply;
use crate::codec::io_err;
use crate::command::{Compare, Found, OpResult, TxnOp, WriteOp};

/// Applies a write command's ops, in order.
pub fn apply_write(a: &mut Apply<'_>, ops: &[WriteOp]) -> io::Result<Vec<OpResult>> {
    let mut ov = Overlay::new(a.version());
    ops.iter().map(|op| ov.write(a, op)).collect()
}

/// Applies a transaction: its compares against the current state, then the success
/// or the failure branch. Returns whether the compares held, and each op's result.
pub fn apply_txn(
    a: &mut Apply<'_>,
    compares: &[Compare],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> io::Result<(bool, Vec<OpResult>)> {
    let mut ok = true;
    for c in compares {
        if !c.holds(a.engine.get(&c.key).map_err(io_err)?.as_ref()) {
            ok = false;
            break;
        }
    }
    let mut ov = Overlay::new(a.version());
    let mut results = Vec::new();
    for op in if ok { success } else { failure } {
        results.push(match op {
            TxnOp::Write(w) => ov.write(a, w)?,
            TxnOp::Get { key } => OpResult::Get(ov.get(a.engine, key)?.map(|v| Found {
                key: v.key,
                value: v.value,
                version: v.version,
            })),
        });
    }
    Ok((ok, results))
}

/// Writes of the command being applied, visible to its later ops.
struct Overlay {
    /// The version of what the command writes.
    index: u64,
    /// key -> Some(value) for a put, None for a delete; in order of application.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Spans deleted by a delete-range, each with the number of writes before it.
    cleared: Vec<(KeySpan, usize)>,
}

impl Overlay {
    fn new(index: u64) -> Self {
        Self {
            index,
            writes: Vec::new(),
            cleared: Vec::new(),
        }
    }

    fn get(&self, engine: &Engine, key: &[u8]) -> io::Result<Option<Versioned>> {
        // The latest of: a write to this key, or a delete-range covering it.
        let last_write = self.writes.iter().rposition(|(k, _)| k == key);
        let last_clear = self
            .cleared
            .iter()
            .rev()
            .find(|(s, _)| span::contains(&s.start, &s.end, key))
            .map(|(_, at)| *at);
        match (last_write, last_clear) {
            (Some(w), c) if c.is_none_or(|at| w >= at) => {
                Ok(self.writes[w].1.clone().map(|value| Versioned {
                    key: key.to_vec(),
                    value,
                    version: self.index,
                }))
            }
            (_, Some(_)) => Ok(None),
            _ => engine.get(key).map_err(io_err),
        }
    }

    fn write(&mut self, a: &mut Apply<'_>, op: &WriteOp) -> io::Result<OpResult> {
        let (engine, index) = (a.engine, self.index);
        Ok(match op {
            WriteOp::Put { key, value } => {
                a.batch.put(engine, key, index, index, value);
                self.writes.push((key.clone(), Some(value.clone())));
                OpResult::Put(index)
            }
            WriteOp::Delete { key } => {
                let existed = self.get(engine, key)?.is_some();
                // A key with no value needs no tombstone.
                if existed {
                    a.batch.delete(engine, key, index, index);
                }
                self.writes.push((key.clone(), None));
                OpResult::Deleted(existed as u64)
            }
            WriteOp::DeleteRange { start, end } => {
                let span = KeySpan {
                    start: start.clone(),
                    end: end.clone(),
                };
                // The span's keys with a value: in the store, or put by this command.
                let mut candidates = engine.keys_in(&span).map_err(io_err)?;
                candidates.extend(
                    self.writes
                        .iter()
                        .filter(|(k, _)| span::contains(start, end, k))
                        .map(|(k, _)| k.clone()),
                );
                candidates.sort();
                candidates.dedup();
                let mut n = 0u64;
                for k in candidates {
                    if self.get(engine, &k)?.is_some() {
                        a.batch.delete(engine, &k, index, index);
                        n += 1;
                    }
                }
                self.cleared.push((span, self.writes.len()));
                OpResult::Deleted(n)
            }
        })
    }
}
