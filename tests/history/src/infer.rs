//! Inference from a list-append history, after Elle's rules: who appended each
//! element, each key's version order (the longest list read, of which every other
//! read must be a prefix), which transactions count as committed, the anomalies
//! visible without a cycle, and the ww, wr and rw edges of the dependency graph.
//!
//! Only the reads of committed transactions are taken as observations. An unknown
//! transaction counts as committed when a committed read saw one of its appends;
//! otherwise it is left out, as are aborted transactions.
//!
//! Besides Elle's rules, a list must hold each other transaction's appends to the
//! key as a leading part of them in the order it made them: a later one without an
//! earlier is an incompatible order, and some but not all of them is an
//! intermediate read (G1b) even when other elements follow. And a transaction
//! cannot find in a key an element it appends there only later. With these, when
//! every append that took effect is read by someone, a history that passes every
//! check here and has no dependency cycle has a serial order that explains it.
//!
//! Most reads see a prefix of their key's version order; the checks of single reads
//! are done once along each version order, and only reads that are not a clean
//! prefix of it are looked at element by element.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::anomaly::{Anomaly, AnomalyKind};
use crate::dep::Evidence;
use crate::graph::GraphBuilder;
use crate::history::{History, MicroOp, Outcome, Txn, TxnId};

/// What inference yields: the anomalies found so far, the graph's edges so far, and
/// which transaction each node of the graph is.
#[derive(Debug)]
pub(crate) struct Inference {
    /// Anomalies that need no cycle.
    pub(crate) anomalies: Vec<Anomaly>,
    /// The ww, wr and rw edges between the nodes.
    pub(crate) graph: GraphBuilder,
    /// For each node, the index of its transaction in the history.
    pub(crate) txn_of_node: Vec<usize>,
}

/// The transaction that appended an element, and which of its appends to that key
/// it was (0 for its first).
#[derive(Clone, Copy, Debug)]
struct Writer {
    txn: usize,
    nth: usize,
}

/// A read by a committed transaction that observed a list.
#[derive(Debug)]
struct Read<'h> {
    txn: usize,
    key: u64,
    list: &'h [u64],
    /// How many leading elements of `list` precede the transaction's own appends:
    /// the state it found, as opposed to what it wrote itself.
    external: usize,
}

/// What a transaction expects a key's list to be, from its own earlier steps.
#[derive(Debug)]
enum Expect<'h> {
    /// Exactly the list it read last, followed by what it appended since.
    Known(&'h [u64], Vec<u64>),
    /// Some list ending in what it appended (it has not read the key yet).
    EndsWith(Vec<u64>),
}

impl Expect<'_> {
    fn admits(&self, list: &[u64]) -> bool {
        match self {
            Expect::Known(read, since) => {
                list.len() == read.len() + since.len()
                    && list.starts_with(read)
                    && list.ends_with(since)
            }
            Expect::EndsWith(since) => list.ends_with(since),
        }
    }
}

impl std::fmt::Display for Expect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Known(read, since) => {
                let mut list = read.to_vec();
                list.extend(since);
                f.write_str(&show(&list))
            }
            Expect::EndsWith(since) => write!(f, "a list ending in {}", show(since)),
        }
    }
}

struct Ctx<'h> {
    txns: &'h [Txn],
    writers: HashMap<(u64, u64), Writer>,
    /// How many elements each transaction appended to each key.
    appends: HashMap<(usize, u64), usize>,
    /// Unknown transactions whose appends a committed read saw.
    seen_unknown: Vec<bool>,
    anomalies: Vec<Anomaly>,
}

/// Infers what the history shows; see the module documentation.
pub(crate) fn infer(history: &History) -> Inference {
    let txns = &history.txns[..];
    let mut cx = Ctx {
        txns,
        writers: HashMap::new(),
        appends: HashMap::new(),
        seen_unknown: vec![false; txns.len()],
        anomalies: Vec::new(),
    };
    cx.check_shape();
    cx.index_appends();
    let mut reads = Vec::new();
    for (t, txn) in txns.iter().enumerate() {
        if txn.outcome == Outcome::Committed {
            cx.committed_reads(t, &mut reads);
        }
    }
    let orders = cx.version_orders(&reads);
    let clean = cx.clean_prefixes(&orders);
    for read in &reads {
        // A read of a prefix of the version order that has nothing wrong with it
        // needs no look at each of its elements.
        let fast = match (orders.get(&read.key), clean.get(&read.key)) {
            (Some(order), Some(clean)) => {
                order.starts_with(read.list) && clean.get(read.list.len()) == Some(&true)
            }
            _ => false,
        };
        if !fast {
            cx.check_read(read);
        }
    }

    let mut node_of = vec![None; txns.len()];
    let mut txn_of_node = Vec::new();
    for (t, txn) in txns.iter().enumerate() {
        let counts = match txn.outcome {
            Outcome::Committed => true,
            Outcome::Unknown => cx.seen_unknown[t],
            Outcome::Aborted => false,
        };
        if counts {
            node_of[t] = Some(txn_of_node.len());
            txn_of_node.push(t);
        }
    }
    let mut graph = GraphBuilder::new(txn_of_node.len());
    cx.add_edges(&orders, &reads, &node_of, &mut graph);
    Inference {
        anomalies: cx.anomalies,
        graph,
        txn_of_node,
    }
}

/// A list for a report: whole when short, its ends when long.
fn show(list: &[u64]) -> String {
    if list.len() <= 10 {
        return format!("{list:?}");
    }
    let head: Vec<String> = list[..4].iter().map(u64::to_string).collect();
    let tail: Vec<String> = list[list.len() - 4..].iter().map(u64::to_string).collect();
    format!(
        "[{}, ..., {}] ({} elements)",
        head.join(", "),
        tail.join(", "),
        list.len()
    )
}

impl<'h> Ctx<'h> {
    fn id(&self, t: usize) -> TxnId {
        self.txns[t].id
    }

    fn report(&mut self, kind: AnomalyKind, txns: Vec<usize>, explanation: String) {
        let ids = txns.iter().map(|&t| self.id(t)).collect();
        self.anomalies.push(Anomaly::new(kind, ids, explanation));
    }

    /// Repeated transaction ids, and completions before invocations.
    fn check_shape(&mut self) {
        let mut first: HashMap<TxnId, usize> = HashMap::new();
        for (t, txn) in self.txns.iter().enumerate() {
            if let Some(&other) = first.get(&txn.id) {
                let why = format!("transaction id {} is used more than once", txn.id);
                self.report(AnomalyKind::Malformed, vec![other, t], why);
            } else {
                first.insert(txn.id, t);
            }
            if let Some(c) = txn.complete {
                if c < txn.invoke {
                    let why = format!(
                        "{} completed at {c}, before it was invoked at {}",
                        txn.id, txn.invoke
                    );
                    self.report(AnomalyKind::Malformed, vec![t], why);
                }
            }
        }
    }

    /// Who appended each element; an element appended twice is reported, and the
    /// first append is the one believed.
    fn index_appends(&mut self) {
        for (t, txn) in self.txns.iter().enumerate() {
            for op in &txn.ops {
                let MicroOp::Append { key, value } = *op else {
                    continue;
                };
                let count = self.appends.entry((t, key)).or_insert(0);
                let nth = *count;
                *count += 1;
                match self.writers.get(&(key, value)) {
                    Some(w) => {
                        let why = format!(
                            "{} and {} both appended {value} to key {key}",
                            self.txns[w.txn].id, txn.id
                        );
                        let first = w.txn;
                        self.report(AnomalyKind::DuplicateAppend, vec![first, t], why);
                    }
                    None => {
                        self.writers.insert((key, value), Writer { txn: t, nth });
                    }
                }
            }
        }
    }

    /// The observed reads of committed transaction `t`, each checked against the
    /// transaction's own earlier steps (internal consistency).
    fn committed_reads(&mut self, t: usize, out: &mut Vec<Read<'h>>) {
        let txns = self.txns;
        let mut expect: HashMap<u64, Expect<'h>> = HashMap::new();
        let mut own: HashMap<u64, Vec<u64>> = HashMap::new();
        for op in &txns[t].ops {
            match op {
                MicroOp::Append { key, value } => {
                    match expect.get_mut(key) {
                        Some(Expect::Known(_, l) | Expect::EndsWith(l)) => l.push(*value),
                        None => {
                            expect.insert(*key, Expect::EndsWith(vec![*value]));
                        }
                    }
                    own.entry(*key).or_default().push(*value);
                }
                MicroOp::Read { value: None, .. } => {}
                MicroOp::Read {
                    key,
                    value: Some(list),
                } => {
                    let key = *key;
                    let mine = own.get(&key).map_or(&[][..], Vec::as_slice);
                    let external = if list.ends_with(mine) {
                        list.len() - mine.len()
                    } else {
                        list.len()
                    };
                    if let Some(e) = expect.get(&key).filter(|e| !e.admits(list)) {
                        let why = format!(
                            "{} read key {key} = {}, but its own earlier steps imply {e}",
                            txns[t].id,
                            show(list)
                        );
                        self.report(AnomalyKind::InternalInconsistency, vec![t], why);
                    } else if let Some(v) = self.appended_later(t, key, &list[..external]) {
                        let why = format!(
                            "{} read key {key} = {}, which holds {v} before {} appended it",
                            txns[t].id,
                            show(list),
                            txns[t].id
                        );
                        self.report(AnomalyKind::InternalInconsistency, vec![t], why);
                    }
                    expect.insert(key, Expect::Known(list, Vec::new()));
                    out.push(Read {
                        txn: t,
                        key,
                        list,
                        external,
                    });
                }
            }
        }
    }

    /// An element of `found` (what transaction `t` found in `key` before its own
    /// appends) that `t` itself appends, which it cannot have found.
    fn appended_later(&self, t: usize, key: u64, found: &[u64]) -> Option<u64> {
        if !self.appends.contains_key(&(t, key)) {
            return None;
        }
        let mine: Vec<u64> = self.txns[t]
            .ops
            .iter()
            .filter_map(|op| match op {
                MicroOp::Append { key: k, value } if *k == key => Some(*value),
                _ => None,
            })
            .collect();
        found.iter().copied().find(|v| mine.contains(v))
    }

    /// The anomalies one read shows by itself: duplicate elements, garbage, aborted
    /// writers (G1a), and other writers' appends seen out of order or in part (G1b).
    fn check_read(&mut self, read: &Read<'_>) {
        let (t, key) = (read.txn, read.key);
        let mut distinct = HashSet::with_capacity(read.list.len());
        let duplicates: Vec<u64> = read
            .list
            .iter()
            .filter(|v| !distinct.insert(**v))
            .copied()
            .collect();
        if !duplicates.is_empty() {
            let why = format!(
                "{} read key {key} = {}, which holds {duplicates:?} more than once",
                self.id(t),
                show(read.list)
            );
            self.report(AnomalyKind::DuplicateElements, vec![t], why);
        }
        let mut garbage = Vec::new();
        let mut aborted: Vec<(usize, u64)> = Vec::new();
        // For each other writer: how many of its appends the list held so far, and
        // whether they came in the order it appended them.
        let mut progress: HashMap<usize, usize> = HashMap::new();
        let mut out_of_order: Option<usize> = None;
        for &v in read.list {
            let Some(w) = self.writers.get(&(key, v)).copied() else {
                garbage.push(v);
                continue;
            };
            match self.txns[w.txn].outcome {
                Outcome::Aborted => {
                    if !aborted.iter().any(|(a, _)| *a == w.txn) {
                        aborted.push((w.txn, v));
                    }
                }
                Outcome::Unknown => self.seen_unknown[w.txn] = true,
                Outcome::Committed => {}
            }
            if w.txn == t {
                continue;
            }
            let seen = progress.entry(w.txn).or_insert(0);
            if w.nth != *seen {
                out_of_order.get_or_insert(w.txn);
            }
            *seen = w.nth + 1;
        }
        let me = self.id(t);
        let list = show(read.list);
        if !garbage.is_empty() {
            let why = format!(
                "{me} read key {key} = {list}, but no transaction appended {}",
                show(&garbage)
            );
            self.report(AnomalyKind::GarbageRead, vec![t], why);
        }
        for (w, v) in aborted {
            let why = format!(
                "{me} read key {key} = {list}, which holds {v}, appended by aborted {}",
                self.id(w)
            );
            self.report(AnomalyKind::G1a, vec![t, w], why);
        }
        if !duplicates.is_empty() {
            return;
        }
        if let Some(w) = out_of_order {
            let why = format!(
                "{me} read key {key} = {list}, which holds {}'s appends to the key out of \
                 the order it made them, or a later one without an earlier",
                self.id(w)
            );
            self.report(AnomalyKind::IncompatibleOrder, vec![t, w], why);
            return;
        }
        let mut partial: Vec<(usize, usize)> = progress.into_iter().collect();
        partial.sort_unstable();
        for (w, seen) in partial {
            let total = self.appends.get(&(w, key)).copied().unwrap_or(0);
            if seen < total && self.txns[w].outcome != Outcome::Aborted {
                let why = format!(
                    "{me} read key {key} = {list}, which holds {seen} of the {total} \
                     elements {} appended to the key: an intermediate state",
                    self.id(w)
                );
                self.report(AnomalyKind::G1b, vec![t, w], why);
            }
        }
    }

    /// Each read key's version order: its longest observed list. Every other list
    /// read must be a prefix of it; a key where one is not is reported once.
    fn version_orders(&mut self, reads: &[Read<'_>]) -> BTreeMap<u64, Vec<u64>> {
        let mut by_key: BTreeMap<u64, Vec<&Read<'_>>> = BTreeMap::new();
        for r in reads {
            by_key.entry(r.key).or_default().push(r);
        }
        let mut orders = BTreeMap::new();
        for (key, reads) in by_key {
            let Some(long) = reads.iter().copied().max_by_key(|r| r.list.len()) else {
                continue;
            };
            orders.insert(key, long.list.to_vec());
            let mut bad = reads.iter().filter(|r| !long.list.starts_with(r.list));
            let Some(first) = bad.next() else {
                continue;
            };
            let others = bad.count();
            let at = first
                .list
                .iter()
                .zip(long.list)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let mut why = format!(
                "{} read key {key} = {} and {} read it as {}: neither is a prefix of the \
                 other (they differ at position {at})",
                self.id(first.txn),
                show(first.list),
                self.id(long.txn),
                show(long.list)
            );
            if others > 0 {
                why.push_str(&format!(
                    "; {others} more reads of the key disagree with the longest"
                ));
            }
            self.report(
                AnomalyKind::IncompatibleOrder,
                vec![first.txn, long.txn],
                why,
            );
        }
        orders
    }

    /// For each key, which prefixes of its version order a read could see with
    /// nothing for [`Ctx::check_read`] to report, whoever read it: no element
    /// repeated, unknown or appended by an aborted transaction, each writer's
    /// appends in the order it made them, and none of them present only in part.
    /// Notes on the way which unknown transactions the version orders hold.
    fn clean_prefixes(&mut self, orders: &BTreeMap<u64, Vec<u64>>) -> BTreeMap<u64, Vec<bool>> {
        let mut out = BTreeMap::new();
        for (&key, order) in orders {
            let n = order.len();
            // Prefixes longer than `dirty` hold an element with something wrong.
            let mut dirty = n;
            // open[l]: how many more writers a prefix of length l holds only in part
            // than one of length l - 1 does.
            let mut open = vec![0i64; n + 2];
            let mut seen = HashSet::with_capacity(n);
            let mut progress: HashMap<usize, (usize, usize)> = HashMap::new();
            for (i, &v) in order.iter().enumerate() {
                let mut wrong = !seen.insert(v);
                match self.writers.get(&(key, v)).copied() {
                    None => wrong = true,
                    Some(w) => {
                        match self.txns[w.txn].outcome {
                            Outcome::Aborted => wrong = true,
                            Outcome::Unknown => self.seen_unknown[w.txn] = true,
                            Outcome::Committed => {}
                        }
                        let (first, count) = progress.entry(w.txn).or_insert((i, 0));
                        wrong |= w.nth != *count;
                        *count = w.nth + 1;
                        let total = self.appends.get(&(w.txn, key)).copied().unwrap_or(0);
                        if *count == total {
                            open[*first + 1] += 1;
                            open[i + 1] -= 1;
                        }
                    }
                }
                if wrong {
                    dirty = dirty.min(i);
                }
            }
            for (&w, &(first, count)) in &progress {
                if count < self.appends.get(&(w, key)).copied().unwrap_or(0) {
                    open[first + 1] += 1;
                }
            }
            let mut partial = 0;
            let clean = (0..=n)
                .map(|len| {
                    partial += open[len];
                    len <= dirty && partial == 0
                })
                .collect();
            out.insert(key, clean);
        }
        out
    }

    /// The ww edges along each version order, and each read's wr edge (from the
    /// writer of the last element it found) and rw edge (to the writer of the next).
    fn add_edges(
        &self,
        orders: &BTreeMap<u64, Vec<u64>>,
        reads: &[Read<'_>],
        node_of: &[Option<usize>],
        graph: &mut GraphBuilder,
    ) {
        let node = |key: u64, v: u64| -> Option<usize> {
            let w = self.writers.get(&(key, v))?;
            node_of[w.txn]
        };
        let mut position: HashMap<(u64, u64), usize> = HashMap::new();
        for (&key, order) in orders {
            for (i, &v) in order.iter().enumerate() {
                position.entry((key, v)).or_insert(i);
            }
            for pair in order.windows(2) {
                if let (Some(a), Some(b)) = (node(key, pair[0]), node(key, pair[1])) {
                    let evidence = Evidence::Ww {
                        key,
                        before: pair[0],
                        after: pair[1],
                    };
                    graph.add(a, b, evidence);
                }
            }
        }
        for r in reads {
            let Some(me) = node_of[r.txn] else {
                continue;
            };
            let key = r.key;
            let found = &r.list[..r.external];
            let next = match found.last() {
                Some(&last) => {
                    if let Some(w) = node(key, last) {
                        graph.add(w, me, Evidence::Wr { key, value: last });
                    }
                    match position.get(&(key, last)) {
                        Some(p) => p + 1,
                        None => continue,
                    }
                }
                None => 0,
            };
            let Some(&v) = orders.get(&key).and_then(|o| o.get(next)) else {
                continue;
            };
            if let Some(w) = node(key, v) {
                let evidence = Evidence::Rw {
                    key,
                    last: found.last().copied(),
                    next: v,
                };
                graph.add(me, w, evidence);
            }
        }
    }
}
