//! Real-time edges for strict serializability: T1 precedes T2 when T1 completed
//! before T2 was invoked.
//!
//! The relation has up to n² pairs; the graph gets a transitive reduction of it
//! instead, built by one sweep over invocations and completions in time order (as
//! Elle does). The sweep keeps a frontier: the completed transactions not yet known
//! to precede another completed one. An invoked transaction gets an edge from each
//! member of the frontier; when it completes, it replaces in the frontier the
//! members it had edges from. A transaction that completed before another was
//! invoked is then either in the frontier at that invocation or was replaced by one
//! that completed later and still before it, so every pair of the relation is joined
//! by a path, and every path joins a pair of the relation.
//!
//! An unknown transaction has no completion here, whatever the client recorded: it
//! may take effect at any time after its invocation.

use crate::dep::Evidence;
use crate::graph::GraphBuilder;
use crate::history::{Outcome, Txn};

/// Adds the real-time edges between the graph's nodes; `txn_of_node` gives each
/// node's transaction in `txns`.
pub(crate) fn add_edges(txns: &[Txn], txn_of_node: &[usize], graph: &mut GraphBuilder) {
    let n = txn_of_node.len();
    let invoked: Vec<u64> = txn_of_node.iter().map(|&t| txns[t].invoke).collect();
    let completed: Vec<Option<u64>> = txn_of_node
        .iter()
        .map(|&t| match txns[t].outcome {
            Outcome::Unknown => None,
            _ => txns[t].complete,
        })
        .collect();
    // (time, 0 for an invocation and 1 for a completion, node): at equal times the
    // invocations come first, as equal instants do not order two transactions.
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for node in 0..n {
        events.push((invoked[node], 0, node));
        if let Some(c) = completed[node] {
            events.push((c, 1, node));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<usize> = Vec::new();
    let mut preceded_by: Vec<Vec<usize>> = vec![Vec::new(); n];
    // The node whose completion last marked a member for removal.
    let mut marked: Vec<usize> = vec![usize::MAX; n];
    for (time, what, node) in events {
        if what == 0 {
            for &p in &frontier {
                let evidence = Evidence::Rt {
                    completed: completed[p].unwrap_or(0),
                    invoked: time,
                };
                graph.add(p, node, evidence);
            }
            preceded_by[node] = frontier.clone();
        } else {
            for p in std::mem::take(&mut preceded_by[node]) {
                marked[p] = node;
            }
            frontier.retain(|&p| marked[p] != node);
            frontier.push(node);
        }
    }
}

#[cfg(test)]
mod tests;
