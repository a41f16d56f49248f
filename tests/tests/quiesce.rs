//! Quiescence: idle ranges stop their Raft timers on every replica; a write wakes its
//! range; when the node leading quiesced ranges dies, their followers notice (its
//! beats stop) and elect new leaders, and no acknowledged write is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

const RANGES: usize = 12;

fn key(r: usize, i: usize) -> String {
    format!("r{r:02}/{i:03}")
}

/// Per node: the ranges it holds -> whether quiesced (1) or not (0).
fn quiesced(c: &TestCluster, nodes: &[usize]) -> BTreeMap<usize, BTreeMap<u64, u64>> {
    nodes
        .iter()
        .map(|&i| (i, c.raft_gauges(i, "quiesced").unwrap_or_default()))
        .collect()
}

/// Waits until every replica of every range but the meta range is quiesced on
/// `nodes` (each holding `RANGES` ranges); fails after `within`.
async fn wait_all_quiesced(c: &TestCluster, nodes: &[usize], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let q = quiesced(c, nodes);
        let done = q.values().all(|per| {
            per.len() == RANGES
                && per
                    .iter()
                    .all(|(&range, &v)| (range == 1 && v == 0) || (range != 1 && v == 1))
        });
        if done {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not all quiesced: {q:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A 3-node cluster of `RANGES` ranges, 10 keys written in each.
async fn start_with_ranges() -> TestCluster {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    for r in 1..RANGES {
        client.split_range(key(r, 0)).await.expect("split");
    }
    for r in 0..RANGES {
        for i in 0..10 {
            client.put(key(r, i), format!("v{i}")).await.unwrap();
        }
    }
    c
}

/// How many ranges but the meta range node `i` leads.
fn leads(c: &TestCluster, i: usize) -> usize {
    c.raft_gauges(i, "is_leader")
        .unwrap_or_default()
        .iter()
        .filter(|(&r, &v)| r != 1 && v == 1)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ranges_quiesce_wake_on_writes_and_elect_when_their_leader_dies() {
    let mut c = start_with_ranges().await;
    let client = c.client();
    let took = wait_all_quiesced(&c, &[0, 1, 2], Duration::from_secs(30)).await;
    eprintln!(
        "{} ranges quiesced on 3 nodes {took:?} after the writes",
        RANGES - 1
    );

    // A write wakes its range (its leader ticks again), and is read back at once.
    client.put(key(5, 100), "awake").await.unwrap();
    assert_eq!(
        client.get(key(5, 100)).await.unwrap().unwrap().value,
        b"awake"
    );
    // Reads of quiesced ranges need no wake-up: their leader confirms its leadership
    // with a round of its own.
    for r in 0..RANGES {
        assert_eq!(
            client.get(key(r, 3)).await.unwrap().unwrap().value,
            b"v3",
            "range of {}",
            key(r, 3)
        );
    }
    wait_all_quiesced(&c, &[0, 1, 2], Duration::from_secs(30)).await;

    // The node leading the most quiesced ranges dies for good: the followers of those
    // ranges stop hearing its beats, tick again and elect among themselves.
    let leads: Vec<usize> = (0..3).map(|i| leads(&c, i)).collect();
    let victim = (0..3).max_by_key(|&i| leads[i]).unwrap();
    assert!(leads[victim] > 0, "{leads:?}");
    let victim_id = c.status(victim).await.unwrap().node_id;
    eprintln!("leaders per node {leads:?}; killing node {victim}");
    c.kill9(victim);
    let live: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let start = Instant::now();
    let survivors = c.client_of(live.clone());
    for r in 0..RANGES {
        // Writes to every range succeed (the SDK retries while the range elects).
        survivors
            .put(key(r, 200), "after")
            .await
            .unwrap_or_else(|e| panic!("range of {}: {e}", key(r, 200)));
    }
    eprintln!(
        "every range took writes again {:?} after the leader's node died",
        start.elapsed()
    );
    for r in 0..RANGES {
        for i in 0..10 {
            let kv = survivors.get(key(r, i)).await.unwrap();
            assert_eq!(kv.unwrap().value, format!("v{i}").into_bytes());
        }
    }
    // Every range has a leader among the survivors, as both of them know it.
    for &i in &live {
        let leaders = c.raft_gauges(i, "leader").unwrap();
        assert_eq!(leaders.len(), RANGES);
        assert!(
            leaders.values().all(|&l| l != 0 && l != victim_id),
            "node {i}: {leaders:?} (dead node {victim_id})"
        );
    }

    // Back again, the node catches up and the ranges quiesce on all three once more.
    c.restart(victim).unwrap();
    wait_all_quiesced(&c, &[0, 1, 2], Duration::from_secs(60)).await;
    for r in 0..RANGES {
        let kv = c.client_via(victim).get(key(r, 200)).await.unwrap();
        assert_eq!(kv.unwrap().value, b"after");
    }
}

/// A node restarted while its ranges were quiesced has heard nothing from their leaders
/// since (an idle range sends nothing). The leaderships the placement driver then moves
/// to it must still move, and no range may be left with a leader that serves nothing.
/// (A leader whose handover is refused stays leader of its term, silent and refusing
/// every request: a handover now begins only once the target is ready, and a range
/// whose leader hands over never quiesces, so its followers would elect.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderships_move_to_a_node_restarted_while_its_ranges_were_quiesced() {
    let mut c = start_with_ranges().await;
    // Node 2 hands its leaderships over, then every range goes idle.
    let out = shoal(&["node", "drain", "--host", &c.nodes[2].grpc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_all_quiesced(&c, &[0, 1, 2], Duration::from_secs(30)).await;
    eprintln!("before the restart, node 2 leads {} ranges", leads(&c, 2));

    c.kill9(2);
    c.restart(2).unwrap();
    // The driver evens the leaderships out: node 2 takes some.
    let start = Instant::now();
    while leads(&c, 2) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node 2 leads {} ranges after {:?}; leaders on nodes 0 and 1: {}, {}",
            leads(&c, 2),
            start.elapsed(),
            leads(&c, 0),
            leads(&c, 1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "node 2 leads {} ranges {:?} after its restart",
        leads(&c, 2),
        start.elapsed()
    );
    // Every range serves writes and reads through every node.
    for via in 0..3 {
        let client = c.client_via(via);
        for r in 0..RANGES {
            client
                .put(key(r, 300 + via), "after")
                .await
                .unwrap_or_else(|e| panic!("via node {via}, range of {}: {e}", key(r, 300)));
            let kv = client.get(key(r, 4)).await.unwrap();
            assert_eq!(kv.unwrap().value, b"v4");
        }
    }
}
