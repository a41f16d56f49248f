//! Cycles of the dependency graph, classified as Elle does.
//!
//! The graph's strongly connected components of two or more transactions each hold
//! at least one cycle. Within each, the search goes from the most specific class to
//! the least, each with the edge kinds it may use:
//!
//! 1. G0: ww edges only.
//! 2. G1c: ww and wr edges, through some wr edge.
//! 3. G-single: one rw edge, closed by a path of ww and wr edges.
//! 4. G2-item: ww, wr and rw edges, through some rw edge, when 3 found none (so it
//!    has two or more rw edges); skipped where G2-item is allowed.
//!
//! Where there are real-time edges, the same four follow with rt edges allowed too,
//! each only when its class without them found nothing in the component, so that
//! what they find needs an rt edge and is named `-realtime`. Each search finds a
//! cycle if the component has one of its class; a cycle is named by the edges it
//! is given (each link labelled with the kind it was searched for, or otherwise the
//! first of ww, wr, rt, rw it carries).

use std::collections::HashMap;

use crate::anomaly::{Anomaly, Step};
use crate::dep::Dep;
use crate::graph::{Graph, Link, Subset};
use crate::history::TxnId;

const WW: u8 = Dep::Ww.bit();
const WR: u8 = Dep::Wr.bit();
const RW: u8 = Dep::Rw.bit();
const RT: u8 = Dep::Rt.bit();

/// The most components the reachability table of the G-single search is built
/// for (its size grows with their square); beyond it, each rw edge gets a search
/// of its own.
const TABLE_LIMIT: usize = 4096;

/// A cycle as links, each with the kind (bit) it stands for.
type Cycle = Vec<(Link, u8)>;

/// The cycles of `graph` that make anomalies, at least one for each component that
/// has any; `ids` names each node's transaction. With `g2` false, cycles with two
/// or more rw edges are not looked for (snapshot isolation allows them).
pub(crate) fn find(graph: &Graph, ids: &[TxnId], g2: bool) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let everything = WW | WR | RW | RT;
    for component in graph.components(everything, &Subset::all(graph.len())) {
        if component.len() < 2 {
            continue;
        }
        let set = Subset::of(component);
        for cycle in classify(graph, &set, g2) {
            let steps = cycle
                .into_iter()
                .map(|(link, bit)| Step {
                    from: ids[link.from as usize],
                    to: ids[link.to as usize],
                    evidence: graph.evidence(&link, bit).clone(),
                })
                .collect();
            let anomaly = Anomaly::cycle(steps);
            if !out
                .iter()
                .any(|a: &Anomaly| a.kind == anomaly.kind && a.txns == anomaly.txns)
            {
                out.push(anomaly);
            }
        }
    }
    out
}

/// The cycles of one strongly connected component, per the module documentation.
fn classify(graph: &Graph, set: &Subset, g2: bool) -> Vec<Cycle> {
    let g0 = through(graph, set, WW, WW);
    let g1c = through(graph, set, WW | WR, WR);
    let single = single_rw(graph, set, WW | WR);
    let g2_item = match (g2, &single) {
        (true, None) => through(graph, set, WW | WR | RW, RW),
        _ => None,
    };
    let realtime = set
        .nodes()
        .iter()
        .any(|&n| graph.links(n).iter().any(|l| l.kinds & RT != 0));
    let mut late = [None, None, None, None];
    if realtime {
        if g0.is_none() {
            late[0] = through(graph, set, WW | RT, RT);
        }
        if g1c.is_none() {
            late[1] = through(graph, set, WW | WR | RT, WR);
        }
        if single.is_none() {
            late[2] = single_rw(graph, set, WW | WR | RT);
        }
        if g2 && single.is_none() && g2_item.is_none() && late[2].is_none() {
            late[3] = through(graph, set, WW | WR | RW | RT, RW);
        }
    }
    [g0, g1c, single, g2_item]
        .into_iter()
        .chain(late)
        .flatten()
        .collect()
}

/// The kind a link stands for among `allowed`: the first of ww, wr, rt, rw it has.
fn label(link: &Link, allowed: u8) -> u8 {
    Dep::ALL
        .iter()
        .map(|d| d.bit())
        .find(|&bit| link.kinds & allowed & bit != 0)
        .unwrap_or(0)
}

/// A cycle of `allowed` edges that goes through an edge of a kind in `required`.
fn through(graph: &Graph, set: &Subset, allowed: u8, required: u8) -> Option<Cycle> {
    for component in graph.components(allowed, set) {
        if component.len() < 2 {
            continue;
        }
        let inner = Subset::of(component);
        for &a in inner.nodes() {
            for link in graph.links(a) {
                if link.kinds & allowed & required == 0 || inner.index(link.to).is_none() {
                    continue;
                }
                if let Some(path) = graph.path(link.to, a, allowed, &inner) {
                    return Some(close(*link, required, path, allowed));
                }
            }
        }
    }
    None
}

/// The cycle of `first` (as a `kind` edge) followed by `path` (as `allowed` edges).
fn close(first: Link, kind: u8, path: Vec<Link>, allowed: u8) -> Cycle {
    let mut cycle = vec![(first, label(&first, kind))];
    cycle.extend(path.into_iter().map(|l| (l, label(&l, allowed))));
    cycle
}

/// A cycle of one rw edge and a path of `allowed` edges (which has no rw) back.
fn single_rw(graph: &Graph, set: &Subset, allowed: u8) -> Option<Cycle> {
    let rw: Vec<Link> = set
        .nodes()
        .iter()
        .flat_map(|&n| graph.links(n))
        .filter(|l| l.kinds & RW != 0 && set.index(l.to).is_some())
        .copied()
        .collect();
    if rw.is_empty() {
        return None;
    }
    let components = graph.components(allowed, set);
    let mut table = None;
    if components.len() <= TABLE_LIMIT {
        table = Some(Reach::new(graph, allowed, &components));
    }
    for link in rw {
        let closes = match &table {
            Some(t) => t.reaches(link.to, link.from),
            None => true,
        };
        if !closes {
            continue;
        }
        if let Some(path) = graph.path(link.to, link.from, allowed, set) {
            return Some(close(link, RW, path, allowed));
        }
    }
    None
}

/// Which components of a subgraph reach which: a bit table over the condensation.
struct Reach {
    component_of: HashMap<u32, usize>,
    words: usize,
    bits: Vec<u64>,
}

impl Reach {
    /// The table for these components of a subgraph of `allowed` edges, given in
    /// the reverse topological order [`Graph::components`] yields them in.
    fn new(graph: &Graph, allowed: u8, components: &[Vec<u32>]) -> Self {
        let mut component_of = HashMap::new();
        for (c, nodes) in components.iter().enumerate() {
            for &n in nodes {
                component_of.insert(n, c);
            }
        }
        let words = components.len().div_ceil(64);
        let mut bits = vec![0u64; components.len() * words];
        for (c, nodes) in components.iter().enumerate() {
            let (done, rest) = bits.split_at_mut(c * words);
            let row = &mut rest[..words];
            row[c / 64] |= 1 << (c % 64);
            for &n in nodes {
                for link in graph.links(n) {
                    if link.kinds & allowed == 0 {
                        continue;
                    }
                    let Some(&d) = component_of.get(&link.to) else {
                        continue;
                    };
                    // Every component a link leads to came earlier, but one that
                    // did not would only make the table answer "maybe".
                    if d < c {
                        for (r, s) in row.iter_mut().zip(&done[d * words..(d + 1) * words]) {
                            *r |= *s;
                        }
                    } else if d != c {
                        row.iter_mut().for_each(|r| *r = u64::MAX);
                    }
                }
            }
        }
        Reach {
            component_of,
            words,
            bits,
        }
    }

    /// Whether `from` may reach `to` (true for nodes outside the table).
    fn reaches(&self, from: u32, to: u32) -> bool {
        match (self.component_of.get(&from), self.component_of.get(&to)) {
            (Some(&a), Some(&b)) => self.bits[a * self.words + b / 64] & (1 << (b % 64)) != 0,
            _ => true,
        }
    }
}
