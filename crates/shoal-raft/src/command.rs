//! What a range's log carries and what applying it returns.

use serde::{Deserialize, Serialize};
use shoal_storage::{DataBatch, Engine, KeySpan, Versioned};

/// A replicated command: applied atomically, at one log index, on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Writes applied together (`Put`, `Delete`, `DeleteRange`, `Batch`).
    Write(Vec<WriteOp>),
    /// Compares, then the success or the failure branch.
    Txn {
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    /// Allocates a node id, never given before (meta range only).
    AllocNodeId,
    /// Allocates a range id, never given before (meta range only).
    AllocRangeId,
    /// Records descriptors in the meta range's routing table, each only if it is newer
    /// than the one recorded (meta range only).
    PutDescriptors(Vec<crate::RangeDescriptor>),
    /// Marks node `node_id` as decommissioning (`on`), or no longer (meta range only):
    /// the placement driver moves its replicas away.
    SetDecommissioning { node_id: u64, on: bool },
    /// Splits the range at `key`: it keeps `[start, key)` and the new range
    /// `new_range_id` takes `[key, end)` on the same replicas. Refused unless the range
    /// is still at epoch version `expected_version` and `key` falls strictly inside it.
    Split {
        key: Vec<u8>,
        new_range_id: u64,
        expected_version: u64,
    },
    /// `cmd`, applied at most once per (client_id, seq): a retried request gets the
    /// answer of its first application. Answers kept below `acked_below` are dropped
    /// (the client has them).
    Once {
        client_id: u64,
        seq: u64,
        acked_below: u64,
        cmd: Box<Command>,
    },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Write(ops) => write!(f, "write({} ops)", ops.len()),
            Command::Txn {
                compares,
                success,
                failure,
            } => write!(
                f,
                "txn({} compares, {} success ops, {} failure ops)",
                compares.len(),
                success.len(),
                failure.len()
            ),
            Command::AllocNodeId => write!(f, "alloc-node-id"),
            Command::AllocRangeId => write!(f, "alloc-range-id"),
            Command::PutDescriptors(d) => write!(f, "put-descriptors({})", d.len()),
            Command::SetDecommissioning { node_id, on } => {
                write!(f, "set-decommissioning({node_id}, {on})")
            }
            Command::Split { new_range_id, .. } => write!(f, "split(right: {new_range_id})"),
            Command::Once {
                client_id,
                seq,
                cmd,
                ..
            } => write!(f, "{cmd} as request {client_id}/{seq}"),
        }
    }
}

impl std::fmt::Display for CommandResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "applied at {} ({} results)",
            self.index,
            self.results.len()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// `[start, end)`; an empty `end` is the end of the key space.
    DeleteRange {
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Write(WriteOp),
    Get { key: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(Vec<u8>),
    /// A missing key has version 0.
    Version(u64),
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// The result of one op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A put: the version it wrote.
    Put(u64),
    /// A delete or delete-range: keys deleted.
    Deleted(u64),
    Get(Option<Found>),
    /// An allocated node id.
    NodeId(u64),
    /// An allocated range id.
    RangeId(u64),
    /// The command was refused and changed nothing: a data command touching keys the
    /// range does not hold (any more; `key` is the first of them), or a split that no
    /// longer applies.
    Refused {
        reason: String,
        key: Option<Vec<u8>>,
    },
}

/// A key read by a transaction's get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub version: u64,
}

/// What applying a command returns to its proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// Log index the command was applied at.
    pub index: u64,
    /// For a transaction: whether every compare held.
    pub succeeded: bool,
    pub results: Vec<OpResult>,
}

/// A key or a span `[start, end)` a command reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch<'a> {
    Key(&'a [u8]),
    Span(&'a [u8], &'a [u8]),
}

impl WriteOp {
    pub fn touch(&self) -> Touch<'_> {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } => Touch::Key(key),
            WriteOp::DeleteRange { start, end } => Touch::Span(start, end),
        }
    }
}

impl TxnOp {
    pub fn touch(&self) -> Touch<'_> {
        match self {
            TxnOp::Write(w) => w.touch(),
            TxnOp::Get { key } => Touch::Key(key),
        }
    }
}

impl Command {
    /// The first user key or span the command touches for which `pred` holds (a
    /// system command touches none).
    pub fn find_touch<'a>(&'a self, mut pred: impl FnMut(&Touch<'a>) -> bool) -> Option<Touch<'a>> {
        match self {
            Command::Write(ops) => ops.iter().map(WriteOp::touch).find(|t| pred(t)),
            Command::Txn {
                compares,
                success,
                failure,
            } => compares
                .iter()
                .map(|c| Touch::Key(&c.key))
                .chain(success.iter().chain(failure.iter()).map(TxnOp::touch))
                .find(|t| pred(t)),
            Command::Once { cmd, .. } => cmd.find_touch(pred),
            Command::AllocNodeId
            | Command::AllocRangeId
            | Command::PutDescriptors(_)
            | Command::SetDecommissioning { .. }
            | Command::Split { .. } => None,
        }
    }

    /// Every user key and span the command touches.
    pub fn touches(&self) -> Vec<Touch<'_>> {
        let mut all = Vec::new();
        self.find_touch(|t| {
            all.push(*t);
            false
        });
        all
    }

    /// Whether the command is kept by the meta range alone.
    pub fn is_meta_only(&self) -> bool {
        match self {
            Command::AllocNodeId
            | Command::AllocRangeId
            | Command::PutDescriptors(_)
            | Command::SetDecommissioning { .. } => true,
            Command::Once { cmd, .. } => cmd.is_meta_only(),
            _ => false,
        }
    }
}

impl<'a> Touch<'a> {
    /// The key, or the span's start.
    pub fn first_key(&self) -> &'a [u8] {
        match *self {
            Touch::Key(k) | Touch::Span(k, _) => k,
        }
    }

    /// Whether the key or span falls inside `d`.
    pub fn inside(&self, d: &crate::RangeDescriptor) -> bool {
        match *self {
            Touch::Key(k) => d.contains(k),
            Touch::Span(s, e) => d.contains_span(s, e),
        }
    }
}

impl Compare {
    /// Whether the compare holds against the key's current state.
    pub fn holds(&self, current: Option<&Versioned>) -> bool {
        use std::cmp::Ordering;
        let ord = match &self.target {
            CompareTarget::Value(v) => match current {
                // A compare on the value of a missing key never holds (as in etcd).
                None => return false,
                Some(c) => c.value.as_slice().cmp(v.as_slice()),
            },
            CompareTarget::Version(v) => current.map_or(0, |c| c.version).cmp(v),
            CompareTarget::Exists(e) => current.is_some().cmp(e),
        };
        match self.op {
            CompareOp::Equal => ord == Ordering::Equal,
            CompareOp::NotEqual => ord != Ordering::Equal,
            CompareOp::Greater => ord == Ordering::Greater,
            CompareOp::Less => ord == Ordering::Less,
        }
    }
}

/// Kept answers dropped by one command at most (the rest by the client's next ones).
const MAX_ANSWER_DROPS: u64 = 1024;

/// System key of the next node id to allocate.
const NEXT_NODE_ID: &[u8] = b"next_node_id";
/// System key of the next range id to allocate.
const NEXT_RANGE_ID: &[u8] = b"next_range_id";

/// Applies `cmd` at log `index` into `batch`, reading current state from `engine`.
/// `max_member_id` is the largest node id of the range's membership.
///
/// Reads see the store as of the previous entry: the caller commits each entry's
/// batch before applying the next. Within one command, a later op sees the earlier
/// ops' writes through `overlay`, so a batch `put k; get k` reads its own write.
pub fn apply(
    engine: &Engine,
    batch: &mut DataBatch,
    index: u64,
    cmd: &Command,
    max_member_id: u64,
) -> shoal_storage::Result<CommandResponse> {
    let mut ov = Overlay {
        index,
        ..Default::default()
    };
    let mut resp = CommandResponse {
        index,
        succeeded: true,
        results: Vec::new(),
    };
    match cmd {
        Command::Write(ops) => {
            for op in ops {
                let r = ov.write(engine, batch, index, op)?;
                resp.results.push(r);
            }
        }
        Command::Txn {
            compares,
            success,
            failure,
        } => {
            let mut ok = true;
            for c in compares {
                if !c.holds(engine.get(&c.key)?.as_ref()) {
                    ok = false;
                    break;
                }
            }
            resp.succeeded = ok;
            for op in if ok { success } else { failure } {
                let r = match op {
                    TxnOp::Write(w) => ov.write(engine, batch, index, w)?,
                    TxnOp::Get { key } => OpResult::Get(ov.get(engine, key)?.map(|v| Found {
                        key: v.key,
                        value: v.value,
                        version: v.version,
                    })),
                };
                resp.results.push(r);
            }
        }
        Command::Once {
            client_id,
            seq,
            acked_below,
            cmd,
        } => {
            use shoal_storage::keys::{request_suffix, requests_low_suffix, REQUEST_PREFIX};
            let range_id = batch.range_id();
            // Drop the answers the client has received: point deletes of the kept
            // answers from the last reported low mark (range tombstones, one per write,
            // would slow every read), at most MAX_ANSWER_DROPS per command.
            let low_key = requests_low_suffix(*client_id);
            let mut low = engine
                .get_range_local(range_id, &low_key)?
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, u64::from_be_bytes);
            if *acked_below > low {
                let mut prefix = REQUEST_PREFIX.to_vec();
                prefix.extend_from_slice(&client_id.to_be_bytes());
                let from = request_suffix(*client_id, low);
                let kept = engine.scan_range_local(
                    range_id,
                    &prefix,
                    Some(&from),
                    MAX_ANSWER_DROPS as usize + 1,
                )?;
                let mut upto = *acked_below;
                for (n, (suffix, _)) in kept.iter().enumerate() {
                    let s = suffix
                        .len()
                        .checked_sub(8)
                        .and_then(|at| <[u8; 8]>::try_from(&suffix[at..]).ok())
                        .map_or(u64::MAX, u64::from_be_bytes);
                    if s >= *acked_below {
                        break;
                    }
                    if n as u64 == MAX_ANSWER_DROPS {
                        upto = s;
                        break;
                    }
                    batch.delete_range_local(engine, range_id, suffix);
                }
                batch.put_range_local(engine, range_id, &low_key, &upto.to_be_bytes());
                low = upto;
            }
            let key = request_suffix(*client_id, *seq);
            if let Some(kept) = engine.get_range_local(range_id, &key)? {
                // A retry of a request already applied: its first answer, no effect.
                return postcard::from_bytes(&kept).map_err(|e| {
                    shoal_storage::StorageError::Corrupt {
                        what: "kept request answer",
                        detail: e.to_string(),
                    }
                });
            }
            if *seq < low {
                // Below the client's low mark: the client received this request's
                // answer and its record is gone; this is a late duplicate (an attempt
                // that timed out and was committed after the one that answered). It
                // must not apply a second time.
                return Ok(resp);
            }
            let inner = apply(engine, batch, index, cmd, max_member_id)?;
            let kept =
                postcard::to_stdvec(&inner).map_err(|e| shoal_storage::StorageError::Corrupt {
                    what: "request answer",
                    detail: e.to_string(),
                })?;
            batch.put_range_local(engine, range_id, &key, &kept);
            return Ok(inner);
        }
        Command::AllocNodeId => {
            let stored = engine
                .get_system(NEXT_NODE_ID)?
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(1, u64::from_be_bytes);
            let id = stored.max(max_member_id + 1);
            batch.put_system(engine, NEXT_NODE_ID, &(id + 1).to_be_bytes());
            resp.results.push(OpResult::NodeId(id));
        }
        Command::AllocRangeId => {
            let id = engine
                .get_system(NEXT_RANGE_ID)?
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(crate::FIRST_RANGE_ID + 1, u64::from_be_bytes);
            batch.put_system(engine, NEXT_RANGE_ID, &(id + 1).to_be_bytes());
            resp.results.push(OpResult::RangeId(id));
        }
        Command::PutDescriptors(descriptors) => {
            use shoal_storage::keys::range_descriptor_key;
            for d in descriptors {
                let key = range_descriptor_key(d.range_id);
                let newer = match engine.get_system(&key)? {
                    None => true,
                    Some(b) => match postcard::from_bytes::<crate::RangeDescriptor>(&b) {
                        Ok(cur) => d.supersedes(&cur),
                        Err(_) => true,
                    },
                };
                if newer {
                    let bytes = postcard::to_stdvec(d).map_err(|e| {
                        shoal_storage::StorageError::Corrupt {
                            what: "range descriptor",
                            detail: e.to_string(),
                        }
                    })?;
                    batch.put_system(engine, &key, &bytes);
                }
            }
        }
        Command::SetDecommissioning { node_id, on } => {
            let key = shoal_storage::keys::decommissioning_key(*node_id);
            if *on {
                batch.put_system(engine, &key, &[1]);
            } else {
                batch.delete_system(engine, &key);
            }
        }
        Command::Split { .. } => {
            // Applied by the state machine, which owns the descriptors.
            resp.succeeded = false;
            resp.results.push(OpResult::Refused {
                reason: "a split applies in its state machine".into(),
                key: None,
            });
        }
    }
    Ok(resp)
}

/// Writes of the command being applied, visible to its later ops.
#[derive(Default)]
struct Overlay {
    /// Log index of the command: the version of what it writes.
    index: u64,
    /// key -> Some(value) for a put, None for a delete; in order of application.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Spans deleted by a delete-range, each with the number of writes before it.
    cleared: Vec<(KeySpan, usize)>,
}

fn in_span(span: &KeySpan, key: &[u8]) -> bool {
    key >= span.start.as_slice() && (span.end.is_empty() || key < span.end.as_slice())
}

impl Overlay {
    fn get(&self, engine: &Engine, key: &[u8]) -> shoal_storage::Result<Option<Versioned>> {
        // The latest of: a write to this key, or a delete-range covering it.
        let last_write = self.writes.iter().rposition(|(k, _)| k == key);
        let last_clear = self
            .cleared
            .iter()
            .rev()
            .find(|(s, _)| in_span(s, key))
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
            _ => engine.get(key),
        }
    }

    fn write(
        &mut self,
        engine: &Engine,
        batch: &mut DataBatch,
        index: u64,
        op: &WriteOp,
    ) -> shoal_storage::Result<OpResult> {
        Ok(match op {
            WriteOp::Put { key, value } => {
                batch.put(engine, key, index, value);
                self.writes.push((key.clone(), Some(value.clone())));
                OpResult::Put(index)
            }
            WriteOp::Delete { key } => {
                let existed = self.get(engine, key)?.is_some();
                batch.delete(engine, key);
                self.writes.push((key.clone(), None));
                OpResult::Deleted(existed as u64)
            }
            WriteOp::DeleteRange { start, end } => {
                let span = KeySpan {
                    start: start.clone(),
                    end: end.clone(),
                };
                let mut n = 0u64;
                for k in engine.keys_in(&span)? {
                    if self.get(engine, &k)?.is_some() {
                        n += 1;
                    }
                }
                // Keys this command put into the span, not yet in the store.
                let mut added: Vec<&Vec<u8>> = self
                    .writes
                    .iter()
                    .filter(|(k, _)| in_span(&span, k))
                    .map(|(k, _)| k)
                    .collect();
                added.sort();
                added.dedup();
                for k in added {
                    if engine.get(k)?.is_none() && self.get(engine, k)?.is_some() {
                        n += 1;
                    }
                }
                batch.delete_span(engine, &span);
                self.cleared.push((span, self.writes.len()));
                OpResult::Deleted(n)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_storage::EngineOptions;

    fn run(engine: &Engine, index: u64, cmd: Command) -> CommandResponse {
        let mut b = engine.batch(1);
        let r = apply(engine, &mut b, index, &cmd, 3).unwrap();
        engine.commit(b).unwrap();
        r
    }

    fn put(k: &str, v: &str) -> WriteOp {
        WriteOp::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn txn_compares_version_value_and_existence() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        run(&e, 3, Command::Write(vec![put("a", "1")]));
        let cas = |ver: u64| Command::Txn {
            compares: vec![Compare {
                key: b"a".to_vec(),
                op: CompareOp::Equal,
                target: CompareTarget::Version(ver),
            }],
            success: vec![TxnOp::Write(put("a", "2"))],
            failure: vec![TxnOp::Get { key: b"a".to_vec() }],
        };
        let r = run(&e, 4, cas(2));
        assert!(!r.succeeded);
        assert_eq!(
            r.results,
            vec![OpResult::Get(Some(Found {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                version: 3
            }))]
        );
        let r = run(&e, 5, cas(3));
        assert!(r.succeeded);
        assert_eq!(r.results, vec![OpResult::Put(5)]);
        let missing = Compare {
            key: b"zz".to_vec(),
            op: CompareOp::Equal,
            target: CompareTarget::Exists(false),
        };
        assert!(missing.holds(None));
        let val = Compare {
            key: b"a".to_vec(),
            op: CompareOp::Greater,
            target: CompareTarget::Value(b"1".to_vec()),
        };
        assert!(val.holds(e.get(b"a").unwrap().as_ref()));
        assert!(!val.holds(None));
    }

    /// A put of `v` under "k" by client 9, as request `seq`.
    fn once(v: &str, seq: u64, acked_below: u64) -> Command {
        Command::Once {
            client_id: 9,
            seq,
            acked_below,
            cmd: Box::new(Command::Write(vec![put("k", v)])),
        }
    }

    #[test]
    fn a_retried_request_applies_once_and_gets_its_first_answer() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        assert_eq!(
            run(&e, 5, once("first", 1, 1)).results,
            vec![OpResult::Put(5)]
        );
        run(&e, 6, Command::Write(vec![put("k", "other")]));
        // The retry of request 1 answers as the first time and changes nothing.
        assert_eq!(
            run(&e, 7, once("first", 1, 1)).results,
            vec![OpResult::Put(5)]
        );
        assert_eq!(
            e.get(b"k").unwrap().map(|v| v.value),
            Some(b"other".to_vec())
        );
        // Once the client reports request 1 answered, its record is dropped.
        run(&e, 8, once("second", 2, 2));
        assert_eq!(
            e.get_range_local(1, &shoal_storage::keys::request_suffix(9, 1))
                .unwrap(),
            None
        );
        assert!(e
            .get_range_local(1, &shoal_storage::keys::request_suffix(9, 2))
            .unwrap()
            .is_some());
    }

    /// Found by the majority-ring nemesis: an attempt of a put that timed out was
    /// committed after the client had its answer (from another attempt) and had
    /// reported it received; the late duplicate applied a second time, over a newer
    /// write.
    #[test]
    fn a_late_duplicate_of_an_answered_request_never_applies() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        run(&e, 5, once("old", 1, 1));
        // The client got its answer and writes again, reporting request 1 received.
        run(&e, 6, once("new", 2, 2));
        // The other attempt of request 1 arrives late: no effect.
        assert!(run(&e, 7, once("old", 1, 1)).results.is_empty());
        assert_eq!(e.get(b"k").unwrap().map(|v| v.value), Some(b"new".to_vec()));
    }

    #[test]
    fn node_ids_are_never_given_twice() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        // Members 1..=3 exist: the first id allocated is 4, then 5.
        assert_eq!(
            run(&e, 1, Command::AllocNodeId).results,
            vec![OpResult::NodeId(4)]
        );
        assert_eq!(
            run(&e, 2, Command::AllocNodeId).results,
            vec![OpResult::NodeId(5)]
        );
    }

    #[test]
    fn ops_in_one_command_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        run(&e, 1, Command::Write(vec![put("a", "1"), put("b", "1")]));
        let r = run(
            &e,
            2,
            Command::Write(vec![
                put("c", "1"),
                WriteOp::DeleteRange {
                    start: b"a".to_vec(),
                    end: b"c\0".to_vec(),
                },
                put("b", "2"),
                WriteOp::Delete { key: b"a".to_vec() },
            ]),
        );
        assert_eq!(
            r.results,
            vec![
                OpResult::Put(2),
                OpResult::Deleted(3),
                OpResult::Put(2),
                OpResult::Deleted(0)
            ]
        );
        assert_eq!(e.get(b"a").unwrap(), None);
        assert_eq!(e.get(b"b").unwrap().map(|v| v.value), Some(b"2".to_vec()));
        assert_eq!(e.get(b"c").unwrap(), None);
    }
}
