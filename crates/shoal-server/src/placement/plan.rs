//! The placement planner: pure functions from what the driver knows (the nodes'
//! liveness, the ranges' descriptors and leaders) to the changes it wants. Repairs
//! first (replicas on dead, decommissioning or removed nodes replaced, never dropped
//! for none; too few or too many replicas), then replicas, then leaderships, spread
//! evenly. Tested here without a cluster.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use shoal_raft::{RangeDescriptor, FIRST_RANGE_ID};

use crate::placement::messages::{ChangeReplicas, ReplicaChange};

/// A learner within this many entries of the leader's log is caught up: it may become
/// a voter.
pub const CAUGHT_UP_LAG: u64 = 20;

/// What the placement driver knows of a node of the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Heard from lately: it may take new replicas.
    pub live: bool,
    /// Not heard from for `--time-until-dead`: its replicas are made again elsewhere.
    pub dead: bool,
    pub decommissioning: bool,
}

impl NodeView {
    /// Whether its replicas stay where they are.
    fn keeps(&self) -> bool {
        !self.dead && !self.decommissioning
    }

    /// Whether it may take new replicas.
    fn takes(&self) -> bool {
        self.live && self.keeps()
    }
}

/// The most voters the meta range has. Every node holds a copy of it (its members are
/// the cluster's nodes), but past five voters a larger quorum only makes its writes
/// wait for more nodes: the others follow it as learners.
pub const META_VOTERS: usize = 5;

/// The meta range's voters as the driver wants them, from the current `voters`, the
/// learners `ready` to vote (caught up) and what it knows of the nodes; `me`, its
/// leader, stays a voter. A dead or decommissioning voter is swapped for a ready
/// learner, never dropped for none; learners are promoted up to [`META_VOTERS`], and
/// past it voters step down to learners, those leaving first.
pub fn meta_voters(
    voters: &BTreeSet<u64>,
    ready: &BTreeSet<u64>,
    nodes: &BTreeMap<u64, NodeView>,
    me: u64,
) -> BTreeSet<u64> {
    let keeps = |id: &u64| *id == me || nodes.get(id).is_none_or(NodeView::keeps);
    let mut spare = ready
        .iter()
        .filter(|id| !voters.contains(id) && nodes.get(id).is_some_and(NodeView::keeps))
        .copied();
    let mut goal = voters.clone();
    for leaving in voters.iter().filter(|v| !keeps(v)) {
        let Some(s) = spare.next() else { break };
        goal.remove(leaving);
        goal.insert(s);
    }
    while goal.len() < META_VOTERS {
        let Some(s) = spare.next() else { break };
        goal.insert(s);
    }
    // Dead nodes step down first, then decommissioning ones, then the newest.
    let leaving = |id: &u64| {
        nodes
            .get(id)
            .map_or((false, false), |n| (n.dead, !keeps(id)))
    };
    while goal.len() > META_VOTERS {
        let Some(out) = goal
            .iter()
            .filter(|v| **v != me)
            .max_by_key(|v| (leaving(v), **v))
            .copied()
        else {
            break;
        };
        goal.remove(&out);
    }
    goal
}

/// A change the driver plans, for the range's leader `leader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub leader: u64,
    pub change: ChangeReplicas,
}

/// Plans at most `budget` replica changes for the ranges in `ranges` (descriptor and
/// leader, if known), given the cluster's nodes (a replica on a node not among them
/// is on a node removed from the cluster). Ranges in `busy` have a change in flight.
///
/// In order: repairs (learners left over, too few replicas on nodes that keep them,
/// too many replicas); only when none is needed, replica counts evened out (a move
/// when a node holds at least two more than another), then leaderships.
pub fn plan(
    nodes: &BTreeMap<u64, NodeView>,
    ranges: &[(RangeDescriptor, Option<u64>)],
    rf: usize,
    busy: &HashSet<u64>,
    budget: usize,
) -> Vec<Planned> {
    // A cluster of fewer nodes holds each range on all of them.
    let rf = rf.min(nodes.len()).max(1);
    let keeps = |id: u64| nodes.get(&id).is_some_and(NodeView::keeps);
    let takes = |id: u64| nodes.get(&id).is_some_and(NodeView::takes);
    let mut counts: BTreeMap<u64, usize> = nodes.keys().map(|id| (*id, 0)).collect();
    let mut leaders = counts.clone();
    let data: Vec<&(RangeDescriptor, Option<u64>)> = ranges
        .iter()
        .filter(|(d, _)| d.range_id != FIRST_RANGE_ID)
        .collect();
    for (d, leader) in &data {
        for r in &d.replicas {
            *counts.entry(r.node_id).or_default() += 1;
        }
        if let Some(l) = leader {
            *leaders.entry(*l).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    let push = |out: &mut Vec<Planned>, d: &RangeDescriptor, leader: u64, change| {
        out.push(Planned {
            leader,
            change: ChangeReplicas {
                range_id: d.range_id,
                conf_ver: d.epoch.conf_ver,
                change,
            },
        })
    };

    // Repairs.
    let mut wanting = false;
    for (d, leader) in &data {
        let voters: Vec<u64> = d
            .replicas
            .iter()
            .filter(|r| r.voter)
            .map(|r| r.node_id)
            .collect();
        let learner = d.replicas.iter().find(|r| !r.voter).map(|r| r.node_id);
        let good = voters.iter().filter(|v| keeps(**v)).count();
        if learner.is_none() && good == voters.len() && voters.len() == rf {
            continue;
        }
        wanting = true;
        let (Some(leader), false) = (*leader, busy.contains(&d.range_id)) else {
            continue;
        };
        if out.len() >= budget {
            break;
        }
        // A replica leaving: one on a node removed from the cluster first, then on a
        // dead one, then on a decommissioning one.
        let leaving = voters
            .iter()
            .copied()
            .filter(|v| !keeps(*v))
            .min_by_key(|v| match nodes.get(v) {
                None => 0,
                Some(n) if n.dead => 1,
                Some(_) => 2,
            });
        let replacing = if voters.len() >= rf { leaving } else { None };
        let change = if let Some(l) = learner {
            if keeps(l) && good < rf {
                Some(ReplicaChange::Add { node: l, replacing })
            } else {
                Some(ReplicaChange::Remove { node: l })
            }
        } else if good < rf {
            let target = counts
                .iter()
                .filter(|(id, _)| takes(**id) && !d.replicas.iter().any(|r| r.node_id == **id))
                .min_by_key(|(id, c)| (**c, leaders.get(id).copied().unwrap_or(0), **id))
                .map(|(id, _)| *id);
            match target {
                Some(node) => Some(ReplicaChange::Add { node, replacing }),
                // Nowhere to go: a replica on a node removed from the cluster is
                // dropped (it can never come back); others wait for a node.
                None => voters
                    .iter()
                    .copied()
                    .find(|v| !nodes.contains_key(v))
                    .filter(|_| voters.len() > 1)
                    .map(|node| ReplicaChange::Remove { node }),
            }
        } else if voters.len() > rf {
            let victim = leaving.unwrap_or_else(|| {
                *voters
                    .iter()
                    .max_by_key(|v| (counts.get(v).copied().unwrap_or(0), **v != leader, **v))
                    .expect("more voters than the replication factor")
            });
            Some(ReplicaChange::Remove { node: victim })
        } else {
            None
        };
        if let Some(change) = change {
            match change {
                ReplicaChange::Add { node, replacing } => {
                    *counts.entry(node).or_default() += 1;
                    if let Some(r) = replacing {
                        *counts.entry(r).or_default() -= 1;
                    }
                }
                ReplicaChange::Remove { node } => *counts.entry(node).or_default() -= 1,
                ReplicaChange::TransferLeader { .. } => {}
            }
            push(&mut out, d, leader, change);
        }
    }
    if wanting || !out.is_empty() {
        return out;
    }

    // Replica counts evened out across the nodes that take replicas.
    let takers: Vec<u64> = nodes
        .iter()
        .filter(|(_, n)| n.takes())
        .map(|(id, _)| *id)
        .collect();
    if takers.len() > rf {
        let total: usize = takers.iter().map(|id| counts[id]).sum();
        let mean = total as f64 / takers.len() as f64;
        for (d, leader) in &data {
            if out.len() >= budget {
                break;
            }
            let Some(leader) = *leader else { continue };
            if busy.contains(&d.range_id) {
                continue;
            }
            let Some(src) = d
                .replicas
                .iter()
                .map(|r| r.node_id)
                .max_by_key(|n| (counts[n], *n != leader, *n))
            else {
                continue;
            };
            let Some(dst) = takers
                .iter()
                .copied()
                .filter(|id| !d.replicas.iter().any(|r| r.node_id == *id))
                .min_by_key(|id| (counts[id], leaders[id], *id))
            else {
                continue;
            };
            let (s, t) = (counts[&src], counts[&dst]);
            if s >= t + 2 && (s as f64 > mean || (t as f64) < mean) {
                *counts.get_mut(&src).expect("counted") -= 1;
                *counts.get_mut(&dst).expect("counted") += 1;
                let change = ReplicaChange::Add {
                    node: dst,
                    replacing: Some(src),
                };
                push(&mut out, d, leader, change);
            }
        }
    }
    if !out.is_empty() || !busy.is_empty() {
        return out;
    }

    // Leaderships evened out among each range's voters.
    for (d, leader) in &data {
        if out.len() >= budget {
            break;
        }
        let Some(leader) = *leader else { continue };
        let Some(to) = d
            .replicas
            .iter()
            .filter(|r| r.voter && r.node_id != leader && takes(r.node_id))
            .map(|r| r.node_id)
            .min_by_key(|id| (leaders[id], *id))
        else {
            continue;
        };
        if leaders[&leader] >= leaders[&to] + 2 {
            *leaders.get_mut(&leader).expect("counted") -= 1;
            *leaders.get_mut(&to).expect("counted") += 1;
            push(&mut out, d, leader, ReplicaChange::TransferLeader { to });
        }
    }
    out
}

/// The driver's bookkeeping (on the meta range's leader; reset when it loses the
#[cfg(test)]
mod tests {
    use super::*;
    use shoal_raft::{RangeEpoch, ReplicaDescriptor};

    fn range(id: u64, voters: &[u64], learners: &[u64]) -> RangeDescriptor {
        let mut replicas: Vec<ReplicaDescriptor> = voters
            .iter()
            .map(|n| ReplicaDescriptor {
                node_id: *n,
                voter: true,
            })
            .collect();
        replicas.extend(learners.iter().map(|n| ReplicaDescriptor {
            node_id: *n,
            voter: false,
        }));
        RangeDescriptor {
            range_id: id,
            start: vec![id as u8],
            end: vec![id as u8 + 1],
            epoch: RangeEpoch {
                version: 1,
                conf_ver: 7,
            },
            replicas,
        }
    }

    fn live(ids: &[u64]) -> BTreeMap<u64, NodeView> {
        ids.iter()
            .map(|id| {
                (
                    *id,
                    NodeView {
                        live: true,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    fn changes(p: &[Planned]) -> Vec<(u64, ReplicaChange)> {
        p.iter()
            .map(|p| (p.change.range_id, p.change.change))
            .collect()
    }

    /// Applies planned changes as the leaders would (all at once).
    fn apply(ranges: &mut [(RangeDescriptor, Option<u64>)], planned: &[Planned]) {
        for p in planned {
            let (d, leader) = ranges
                .iter_mut()
                .find(|(d, _)| d.range_id == p.change.range_id)
                .unwrap();
            match p.change.change {
                ReplicaChange::Add { node, replacing } => {
                    d.replicas.retain(|r| r.node_id != node);
                    d.replicas.push(ReplicaDescriptor {
                        node_id: node,
                        voter: true,
                    });
                    if let Some(old) = replacing {
                        d.replicas.retain(|r| r.node_id != old);
                        if *leader == Some(old) {
                            *leader = Some(node);
                        }
                    }
                }
                ReplicaChange::Remove { node } => d.replicas.retain(|r| r.node_id != node),
                ReplicaChange::TransferLeader { to } => *leader = Some(to),
            }
            d.epoch.conf_ver += 1;
        }
    }

    #[test]
    fn a_range_short_of_replicas_gets_one_on_the_least_loaded_live_node() {
        let nodes = live(&[1, 2, 3, 4]);
        let ranges = vec![
            (range(2, &[1, 2], &[]), Some(1)),
            (range(3, &[1, 2, 3], &[]), Some(1)),
        ];
        let p = plan(&nodes, &ranges, 3, &HashSet::new(), 10);
        assert_eq!(
            changes(&p),
            vec![(
                2,
                ReplicaChange::Add {
                    node: 4,
                    replacing: None
                }
            )]
        );
        assert_eq!(p[0].leader, 1);
        assert_eq!(p[0].change.conf_ver, 7);
        // The meta range is never planned.
        let meta = vec![(range(FIRST_RANGE_ID, &[1], &[]), Some(1))];
        assert!(plan(&nodes, &meta, 3, &HashSet::new(), 10).is_empty());
    }

    #[test]
    fn replicas_on_dead_decommissioning_or_removed_nodes_are_replaced_not_dropped() {
        let mut nodes = live(&[1, 2, 3, 4, 5]);
        nodes.get_mut(&2).unwrap().dead = true;
        nodes.get_mut(&2).unwrap().live = false;
        nodes.get_mut(&3).unwrap().decommissioning = true;
        let ranges = vec![
            (range(2, &[1, 2, 4], &[]), Some(1)),
            (range(3, &[1, 3, 4], &[]), Some(4)),
            // Node 9 was removed from the cluster.
            (range(4, &[1, 4, 9], &[]), Some(1)),
        ];
        let p = plan(&nodes, &ranges, 3, &HashSet::new(), 10);
        assert_eq!(
            changes(&p),
            vec![
                (
                    2,
                    ReplicaChange::Add {
                        node: 5,
                        replacing: Some(2)
                    }
                ),
                (
                    3,
                    ReplicaChange::Add {
                        node: 5,
                        replacing: Some(3)
                    }
                ),
                // Node 5 has two now; node 3 (decommissioning) takes none.
                (
                    4,
                    ReplicaChange::Add {
                        node: 5,
                        replacing: Some(9)
                    }
                ),
            ]
        );
        // A suspect node (not live, not dead yet) keeps its replicas and takes none.
        let mut nodes = live(&[1, 2, 3, 4]);
        nodes.get_mut(&2).unwrap().live = false;
        let ranges = vec![(range(2, &[1, 3], &[]), Some(1))];
        assert_eq!(
            changes(&plan(
                &nodes,
                &[(range(2, &[1, 2, 3], &[]), Some(1))],
                3,
                &HashSet::new(),
                10
            )),
            vec![]
        );
        assert_eq!(
            changes(&plan(&nodes, &ranges, 3, &HashSet::new(), 10)),
            vec![(
                2,
                ReplicaChange::Add {
                    node: 4,
                    replacing: None
                }
            )]
        );
    }

    #[test]
    fn with_nowhere_to_go_only_replicas_of_removed_nodes_are_dropped() {
        let mut nodes = live(&[1, 2, 3]);
        nodes.get_mut(&3).unwrap().decommissioning = true;
        let ranges = vec![
            (range(2, &[1, 2, 3], &[]), Some(1)),
            (range(3, &[1, 2, 9], &[]), Some(1)),
        ];
        assert_eq!(
            changes(&plan(&nodes, &ranges, 3, &HashSet::new(), 10)),
            vec![(3, ReplicaChange::Remove { node: 9 })]
        );
    }

    #[test]
    fn leftover_learners_are_finished_or_removed_and_surplus_voters_dropped() {
        let nodes = live(&[1, 2, 3, 4]);
        let ranges = vec![
            (range(2, &[1, 2], &[4]), Some(1)),
            (range(3, &[1, 2, 3], &[4]), Some(1)),
            (range(4, &[1, 2, 3, 4], &[]), Some(1)),
        ];
        let p = plan(&nodes, &ranges, 3, &HashSet::new(), 10);
        assert_eq!(
            changes(&p),
            vec![
                (
                    2,
                    ReplicaChange::Add {
                        node: 4,
                        replacing: None
                    }
                ),
                (3, ReplicaChange::Remove { node: 4 }),
                // The most loaded non-leader goes.
                (4, ReplicaChange::Remove { node: 4 }),
            ]
        );
        // Busy ranges and the budget are respected; no leader known: nothing.
        let busy = HashSet::from([2]);
        assert_eq!(plan(&nodes, &ranges, 3, &busy, 1).len(), 1);
        assert_eq!(plan(&nodes, &ranges, 3, &busy, 1)[0].change.range_id, 3);
        let unled = vec![(range(2, &[1, 2], &[]), None)];
        assert!(plan(&nodes, &unled, 3, &HashSet::new(), 10).is_empty());
    }

    #[test]
    fn scale_up_then_down_converges_to_even_replicas_and_leaders() {
        // 30 ranges on nodes 1..3, all led by node 1; nodes 4 and 5 join.
        let mut ranges: Vec<(RangeDescriptor, Option<u64>)> = (2..32)
            .map(|id| (range(id, &[1, 2, 3], &[]), Some(1)))
            .collect();
        let nodes = live(&[1, 2, 3, 4, 5]);
        let mut rounds = 0;
        loop {
            let p = plan(&nodes, &ranges, 3, &HashSet::new(), 4);
            if p.is_empty() {
                break;
            }
            apply(&mut ranges, &p);
            rounds += 1;
            assert!(rounds < 200, "never settles");
        }
        let count = |n: u64| {
            ranges
                .iter()
                .filter(|(d, _)| d.replicas.iter().any(|r| r.node_id == n))
                .count()
        };
        let led = |n: u64| ranges.iter().filter(|(_, l)| *l == Some(n)).count();
        // 90 replicas on 5 nodes: 18 each, give or take one; 30 leaders: 6 each.
        for n in 1..=5 {
            assert!((17..=19).contains(&count(n)), "node {n}: {}", count(n));
            assert!((5..=7).contains(&led(n)), "node {n} leads {}", led(n));
        }
        for (d, _) in &ranges {
            assert_eq!(d.replicas.len(), 3, "{d:?}");
        }

        // Nodes 4 and 5 decommissioned: everything back on 1..3, 3 replicas each.
        let mut nodes = nodes;
        nodes.get_mut(&4).unwrap().decommissioning = true;
        nodes.get_mut(&5).unwrap().decommissioning = true;
        loop {
            let p = plan(&nodes, &ranges, 3, &HashSet::new(), 4);
            if p.is_empty() {
                break;
            }
            // Never a removal that leaves a range short: adds come with their removal.
            for x in &p {
                if let ReplicaChange::Remove { .. } = x.change.change {
                    panic!("a bare removal while replicas were only moving: {x:?}");
                }
            }
            apply(&mut ranges, &p);
            rounds += 1;
            assert!(rounds < 400, "never settles");
        }
        for (d, _) in &ranges {
            let mut on: Vec<u64> = d.replicas.iter().map(|r| r.node_id).collect();
            on.sort();
            assert_eq!(on, vec![1, 2, 3], "{d:?}");
        }
    }

    #[test]
    fn the_meta_range_keeps_five_voters_swapping_leaving_ones_for_caught_up_learners() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
        let mut nodes = live(&[1, 2, 3, 4, 5, 6, 7]);
        // Learners are promoted up to five voters.
        assert_eq!(
            meta_voters(&set(&[1, 2, 3]), &set(&[4, 5, 6, 7]), &nodes, 1),
            set(&[1, 2, 3, 4, 5])
        );
        // Seven voters (a cluster founded with seven): two step down, never the leader.
        assert_eq!(
            meta_voters(&set(&[1, 2, 3, 4, 5, 6, 7]), &set(&[]), &nodes, 7),
            set(&[1, 2, 3, 4, 7])
        );
        // A dead voter and a decommissioning one are swapped for ready learners ...
        nodes.get_mut(&2).unwrap().dead = true;
        nodes.get_mut(&3).unwrap().decommissioning = true;
        let five = set(&[1, 2, 3, 4, 5]);
        assert_eq!(
            meta_voters(&five, &set(&[6, 7]), &nodes, 1),
            set(&[1, 4, 5, 6, 7])
        );
        // ... one at a time as learners catch up, and never dropped for none: the
        // quorum does not shrink.
        assert_eq!(
            meta_voters(&five, &set(&[6]), &nodes, 1),
            set(&[1, 3, 4, 5, 6])
        );
        assert_eq!(meta_voters(&five, &set(&[]), &nodes, 1), five);
        // A learner that is itself leaving is no replacement.
        nodes.get_mut(&6).unwrap().dead = true;
        assert_eq!(meta_voters(&five, &set(&[6]), &nodes, 1), five);
        // Past five, the leaving voters step down first, the dead before the rest.
        assert_eq!(
            meta_voters(&set(&[1, 2, 3, 4, 5, 7]), &set(&[]), &nodes, 1),
            set(&[1, 3, 4, 5, 7])
        );
    }
}
