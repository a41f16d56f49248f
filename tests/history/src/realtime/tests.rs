//! The real-time edges are a transitive reduction: a path of them joins two
//! transactions exactly when the first completed before the second was invoked.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dep::Dep;
use crate::graph::{GraphBuilder, Subset};
use crate::history::{Outcome, Txn};

use super::add_edges;

#[test]
fn paths_of_rt_edges_are_exactly_the_real_time_order() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let n = rng.random_range(1..30);
        let txns: Vec<Txn> = (0..n)
            .map(|i| {
                let invoke = rng.random_range(0..100);
                let outcome = if rng.random_bool(0.2) {
                    Outcome::Unknown
                } else {
                    Outcome::Committed
                };
                let complete = Some(invoke + rng.random_range(0..20));
                Txn::new(i, 0, invoke, complete, outcome, Vec::new())
            })
            .collect();
        let nodes: Vec<usize> = (0..txns.len()).collect();
        let mut builder = GraphBuilder::new(nodes.len());
        add_edges(&txns, &nodes, &mut builder);
        let graph = builder.build();
        let all = Subset::all(graph.len());
        for (a, ta) in txns.iter().enumerate() {
            for (b, tb) in txns.iter().enumerate() {
                if a == b {
                    continue;
                }
                let before =
                    ta.outcome == Outcome::Committed && ta.complete.is_some_and(|c| c < tb.invoke);
                let path = graph.path(a as u32, b as u32, Dep::Rt.bit(), &all);
                assert_eq!(before, path.is_some(), "{ta} / {tb}");
            }
        }
        // A reduction: far fewer edges than ordered pairs once there are many.
        assert!(graph.edge_count() <= n as usize * n as usize);
    }
}
