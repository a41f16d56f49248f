//! The dependency graph: transactions as nodes `0..n`, edges labelled with the kinds
//! of dependency they carry and the evidence for each; strongly connected components
//! (an iterative Tarjan, so that long chains do not exhaust the stack) and shortest
//! paths, both restricted to a set of nodes and a set of edge kinds.

use std::collections::{HashMap, VecDeque};

use crate::dep::Evidence;

/// One observed dependency.
#[derive(Debug)]
struct RawEdge {
    from: u32,
    to: u32,
    evidence: Evidence,
}

/// Collects edges, then freezes them into a [`Graph`].
#[derive(Debug)]
pub(crate) struct GraphBuilder {
    nodes: usize,
    edges: Vec<RawEdge>,
}

impl GraphBuilder {
    /// A builder for a graph of nodes `0..nodes`.
    pub(crate) fn new(nodes: usize) -> Self {
        GraphBuilder {
            nodes,
            edges: Vec::new(),
        }
    }

    /// Records that `from` precedes `to`; a node's edge to itself is dropped.
    pub(crate) fn add(&mut self, from: usize, to: usize, evidence: Evidence) {
        if from != to && from < self.nodes && to < self.nodes {
            self.edges.push(RawEdge {
                from: from as u32,
                to: to as u32,
                evidence,
            });
        }
    }

    /// The graph, with the edges between the same two nodes merged into one link
    /// that keeps the first evidence of each kind.
    pub(crate) fn build(mut self) -> Graph {
        self.edges.sort_by_key(|e| (e.from, e.to, e.evidence.dep()));
        self.edges
            .dedup_by_key(|e| (e.from, e.to, e.evidence.dep()));
        let mut start = vec![0usize; self.nodes + 1];
        let mut links: Vec<Link> = Vec::new();
        for (i, e) in self.edges.iter().enumerate() {
            match links.last_mut() {
                Some(l) if l.from == e.from && l.to == e.to => {
                    l.kinds |= e.evidence.dep().bit();
                    l.count += 1;
                }
                _ => {
                    links.push(Link {
                        from: e.from,
                        to: e.to,
                        kinds: e.evidence.dep().bit(),
                        first: i as u32,
                        count: 1,
                    });
                    start[e.from as usize + 1] += 1;
                }
            }
        }
        for i in 0..self.nodes {
            start[i + 1] += start[i];
        }
        Graph {
            start,
            links,
            raw: self.edges,
        }
    }
}

/// All the dependencies from one node to another.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Link {
    /// The node that must come first.
    pub(crate) from: u32,
    /// The node that must come after.
    pub(crate) to: u32,
    /// The kinds of dependency between them, as a set of `Dep::bit`s.
    pub(crate) kinds: u8,
    first: u32,
    count: u32,
}

/// The frozen dependency graph.
#[derive(Debug)]
pub(crate) struct Graph {
    start: Vec<usize>,
    links: Vec<Link>,
    raw: Vec<RawEdge>,
}

/// A set of nodes that a search stays within.
#[derive(Debug)]
pub(crate) struct Subset {
    nodes: Vec<u32>,
    /// Node to its position in `nodes`; `None` when `nodes` is `0..n` itself.
    local: Option<HashMap<u32, usize>>,
}

impl Subset {
    /// Every node of a graph of `n` nodes.
    pub(crate) fn all(n: usize) -> Self {
        Subset {
            nodes: (0..n as u32).collect(),
            local: None,
        }
    }

    /// These nodes.
    pub(crate) fn of(nodes: Vec<u32>) -> Self {
        let local = nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        Subset {
            nodes,
            local: Some(local),
        }
    }

    /// The nodes, in the order given.
    pub(crate) fn nodes(&self) -> &[u32] {
        &self.nodes
    }

    /// The position of `node` in the set, if it is in it.
    pub(crate) fn index(&self, node: u32) -> Option<usize> {
        match &self.local {
            Some(map) => map.get(&node).copied(),
            None => ((node as usize) < self.nodes.len()).then_some(node as usize),
        }
    }
}

impl Graph {
    /// How many nodes it has.
    pub(crate) fn len(&self) -> usize {
        self.start.len() - 1
    }

    /// How many edges it has, one per kind between the same two nodes.
    pub(crate) fn edge_count(&self) -> usize {
        self.raw.len()
    }

    /// The links out of `node`.
    pub(crate) fn links(&self, node: u32) -> &[Link] {
        let n = node as usize;
        match (self.start.get(n), self.start.get(n + 1)) {
            (Some(&a), Some(&b)) => &self.links[a..b],
            _ => &[],
        }
    }

    /// The evidence of the dependency of kind `bit` that `link` carries (or of its
    /// first kind, if it carries no such one).
    pub(crate) fn evidence(&self, link: &Link, bit: u8) -> &Evidence {
        let first = link.first as usize;
        let raw = &self.raw[first..first + link.count as usize];
        let found = raw.iter().find(|e| e.evidence.dep().bit() == bit);
        &found.unwrap_or(&raw[0]).evidence
    }

    /// The strongly connected components of the subgraph of `set` and the edges
    /// that carry one of `kinds`, single nodes included, each component emitted
    /// after every component it reaches (reverse topological order).
    pub(crate) fn components(&self, kinds: u8, set: &Subset) -> Vec<Vec<u32>> {
        const UNSEEN: u32 = u32::MAX;
        let n = set.nodes.len();
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<usize> = Vec::new();
        // A frame is a node being visited and the position of its next link.
        let mut frames: Vec<(usize, usize)> = Vec::new();
        let mut counter = 0u32;
        let mut out = Vec::new();
        for root in 0..n {
            if index[root] != UNSEEN {
                continue;
            }
            index[root] = counter;
            low[root] = counter;
            counter += 1;
            stack.push(root);
            on_stack[root] = true;
            frames.push((root, 0));
            while let Some(frame) = frames.last_mut() {
                let v = frame.0;
                let links = self.links(set.nodes[v]);
                if let Some(link) = links.get(frame.1) {
                    frame.1 += 1;
                    if link.kinds & kinds == 0 {
                        continue;
                    }
                    let Some(w) = set.index(link.to) else {
                        continue;
                    };
                    if index[w] == UNSEEN {
                        index[w] = counter;
                        low[w] = counter;
                        counter += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        frames.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                frames.pop();
                if let Some(&(parent, _)) = frames.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(set.nodes[w]);
                        if w == v {
                            break;
                        }
                    }
                    out.push(component);
                }
            }
        }
        out
    }

    /// A shortest path from `from` to `to` through `set` along edges that carry one
    /// of `kinds`, as its links in order; empty when `from` is `to`.
    pub(crate) fn path(&self, from: u32, to: u32, kinds: u8, set: &Subset) -> Option<Vec<Link>> {
        let start = set.index(from)?;
        let end = set.index(to)?;
        let mut came_by: Vec<Option<Link>> = vec![None; set.nodes.len()];
        let mut seen = vec![false; set.nodes.len()];
        seen[start] = true;
        let mut queue = VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            if v == end {
                let mut path = Vec::new();
                let mut at = v;
                while let Some(link) = came_by[at] {
                    path.push(link);
                    at = set.index(link.from)?;
                }
                path.reverse();
                return Some(path);
            }
            for link in self.links(set.nodes[v]) {
                if link.kinds & kinds == 0 {
                    continue;
                }
                if let Some(w) = set.index(link.to) {
                    if !seen[w] {
                        seen[w] = true;
                        came_by[w] = Some(*link);
                        queue.push_back(w);
                    }
                }
            }
        }
        None
    }
}
