//! Placement: three replicas of every range, spread over the nodes by the meta
//! range's leader. Scale-out moves replicas and leaderships onto new nodes; a
//! decommission moves them off again (never below quorum: a reader running all along
//! sees no error); a node dead past `--time-until-dead` has its replicas made again on
//! live nodes; replicas a node no longer holds are destroyed there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::Client;
use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

const KEYS: usize = 2_000;

fn key(i: usize) -> String {
    format!("key-{i:05}")
}

/// The key of the `i`th write made while replicas move: in any of the ranges.
fn written(i: usize) -> String {
    format!("{}/w{i}", key(i * 7919 % KEYS))
}

/// Writes `KEYS` keys and splits them into `ranges` ranges (the meta range's share
/// included).
async fn fill_and_split(client: &Client, ranges: usize) {
    for i in 0..KEYS {
        client.put(key(i), format!("v{i}")).await.expect("put");
    }
    let step = KEYS / ranges;
    for r in 1..ranges {
        client.split_range(key(r * step)).await.expect("split");
    }
}

/// Replicas per node id (voters and learners), as the routing table says.
fn replicas_per_node(
    ranges: &shoal_proto::v1::RangesResponse,
    data_only: bool,
) -> BTreeMap<u64, usize> {
    let mut per = BTreeMap::new();
    for r in &ranges.ranges {
        let d = r.descriptor.as_ref().unwrap();
        if data_only && d.range_id == 1 {
            continue;
        }
        for rep in &d.replicas {
            *per.entry(rep.node_id).or_default() += 1;
        }
    }
    per
}

/// Whether every range but the meta range has exactly three voters, on `nodes`.
fn three_voters_on(ranges: &shoal_proto::v1::RangesResponse, nodes: &BTreeSet<u64>) -> bool {
    ranges.ranges.iter().all(|r| {
        let d = r.descriptor.as_ref().unwrap();
        d.range_id == 1
            || (d.replicas.len() == 3
                && d.replicas
                    .iter()
                    .all(|x| x.role == "voter" && nodes.contains(&x.node_id)))
    })
}

/// Reads one key of every range again and again (linearizable reads through the SDK),
/// and writes new keys; counts the errors that came out of the SDK and keeps the
/// acknowledged writes.
struct Traffic {
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<Vec<usize>>>,
    reads: Arc<Mutex<u64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(client: Client, ranges: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let reads = Arc::new(Mutex::new(0));
        let step = KEYS / ranges;
        let reader = {
            let (client, stop, errors, reads) =
                (client.clone(), stop.clone(), errors.clone(), reads.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    for r in 0..ranges {
                        let i = r * step + step / 2;
                        match client.get(key(i)).await {
                            Ok(Some(kv)) if kv.value == format!("v{i}").as_bytes() => {}
                            Ok(other) => errors
                                .lock()
                                .unwrap()
                                .push(format!("read {}: {other:?}", key(i))),
                            Err(e) => errors.lock().unwrap().push(format!("read {}: {e}", key(i))),
                        }
                        *reads.lock().unwrap() += 1;
                    }
                }
            })
        };
        let writer = {
            let (stop, errors, acked) = (stop.clone(), errors.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    // Spread over every range: next to the keys written first.
                    let k = written(i);
                    match client.put(&k, format!("w{i}")).await {
                        Ok(_) => acked.lock().unwrap().push(i),
                        Err(e) => errors.lock().unwrap().push(format!("write {k}: {e}")),
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self {
            stop,
            errors,
            acked,
            reads,
            tasks: vec![reader, writer],
        }
    }

    async fn stop(self) -> (Vec<String>, Vec<usize>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        let acked = self.acked.lock().unwrap().clone();
        let reads = *self.reads.lock().unwrap();
        (errors, acked, reads)
    }
}

async fn node_id(c: &TestCluster, i: usize) -> u64 {
    c.status(i).await.unwrap().node_id
}

/// Waits until `ok` holds of the routing table and the node list, or fails with the
/// last of them.
async fn wait_for(
    client: &Client,
    within: Duration,
    what: &str,
    ok: impl Fn(&shoal_proto::v1::RangesResponse, &shoal_proto::v1::NodesResponse) -> bool,
) -> (
    shoal_proto::v1::RangesResponse,
    shoal_proto::v1::NodesResponse,
) {
    let deadline = Instant::now() + within;
    loop {
        if let (Ok(r), Ok(n)) = (client.ranges().await, client.nodes().await) {
            if ok(&r, &n) {
                return (r, n);
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {within:?}\nreplicas per node: {:?}\nnodes: {:?}",
                    replicas_per_node(&r, true),
                    n.nodes
                        .iter()
                        .map(|x| (x.node_id, x.liveness.clone(), x.replicas, x.leaders))
                        .collect::<Vec<_>>()
                );
            }
        } else if Instant::now() > deadline {
            panic!("{what}: the cluster did not answer within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_spreads_replicas_and_leaders_and_decommission_moves_them_back() {
    const RANGES: usize = 20;
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    fill_and_split(&client, RANGES).await;
    let first: BTreeSet<u64> = [
        node_id(&c, 0).await,
        node_id(&c, 1).await,
        node_id(&c, 2).await,
    ]
    .into();
    let traffic = Traffic::start(client.clone(), RANGES);

    // Scale 3 -> 5.
    let a = c.add_node(FAST_ELECTIONS).unwrap();
    let b = c.add_node(FAST_ELECTIONS).unwrap();
    let started = Instant::now();
    let client = c.client();
    let (ranges, nodes) = wait_for(
        &client,
        Duration::from_secs(180),
        "replicas and leaders spread over 5 nodes",
        |r, n| {
            if n.nodes.len() != 5 || r.ranges.len() != RANGES {
                return false;
            }
            let all: BTreeSet<u64> = n.nodes.iter().map(|x| x.node_id).collect();
            let per = replicas_per_node(r, false);
            let mean = per.values().sum::<usize>() as f64 / 5.0;
            let leaders: Vec<u64> = n.nodes.iter().map(|x| x.leaders).collect();
            three_voters_on(r, &all)
                && per.len() == 5
                && per.values().all(|c| (*c as f64 - mean).abs() <= 0.2 * mean)
                && leaders.iter().all(|l| *l >= 2)
                // Every range's leader and size are known, though no node holds them all.
                && r.ranges.iter().all(|x| x.leader_id != 0 && x.approximate_bytes > 0)
        },
    )
    .await;
    // The sizes count the data: at least each key and its value.
    let bytes: u64 = ranges.ranges.iter().map(|r| r.approximate_bytes).sum();
    let least = (0..KEYS)
        .map(|i| key(i).len() + format!("v{i}").len())
        .sum::<usize>();
    assert!(bytes >= least as u64, "{bytes} bytes in all, under {least}");
    println!(
        "spread over 5 nodes in {:?}: replicas {:?}, leaders {:?}",
        started.elapsed(),
        replicas_per_node(&ranges, false),
        nodes
            .nodes
            .iter()
            .map(|n| (n.node_id, n.leaders))
            .collect::<Vec<_>>()
    );

    // Decommission the two new nodes, through the CLI as an operator would.
    let hosts = c.addrs()[..3].join(",");
    for i in [a, b] {
        let id = node_id(&c, i).await;
        let out = shoal(&["node", "decommission", &id.to_string(), "--host", &hosts]);
        assert!(
            out.status.success(),
            "decommission {id}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.nodes[i].log_tail(30)
        );
        let progress = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(progress.contains("replicas left"), "{progress}");
    }
    let client = c.client_of(0..3);
    let (ranges, _) = wait_for(
        &client,
        Duration::from_secs(60),
        "every range back on the first 3 nodes",
        |r, n| n.nodes.len() == 3 && three_voters_on(r, &first),
    )
    .await;
    assert_eq!(ranges.ranges.len(), RANGES);

    // The decommissioned nodes destroyed their replicas of the data ranges.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in [a, b] {
        loop {
            let st = c.status(i).await.unwrap();
            let held: Vec<u64> = st
                .ranges
                .iter()
                .map(|r| r.range_id)
                .filter(|id| *id != 1)
                .collect();
            if held.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} still holds {held:?}\n{}",
                c.nodes[i].log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let (errors, acked, reads) = traffic.stop().await;
    assert!(
        errors.is_empty(),
        "{} errors surfaced past the SDK's retries: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(
        reads > 100 && acked.len() > 100,
        "{reads} reads, {} writes",
        acked.len()
    );
    for i in 0..KEYS {
        let kv = client.get(key(i)).await.unwrap();
        assert_eq!(kv.map(|kv| kv.value), Some(format!("v{i}").into_bytes()));
    }
    for i in acked {
        let kv = client.get(written(i)).await.unwrap();
        assert_eq!(kv.map(|kv| kv.value), Some(format!("w{i}").into_bytes()));
    }
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dead_past_time_until_dead_has_its_replicas_made_again() {
    const RANGES: usize = 8;
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend(["--time-until-dead", "6s"]);
    let mut c = TestCluster::start_initialized(4, &flags).await.unwrap();
    let client = c.client();
    fill_and_split(&client, RANGES).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(node_id(&c, i).await);
    }
    let all: BTreeSet<u64> = ids.iter().copied().collect();
    wait_for(
        &client,
        Duration::from_secs(60),
        "three voters per range",
        |r, _| r.ranges.len() == RANGES && three_voters_on(r, &all),
    )
    .await;

    // The node holding the most data-range replicas dies for good.
    let per = replicas_per_node(&client.ranges().await.unwrap(), true);
    let victim = (0..4).max_by_key(|i| per.get(&ids[*i])).unwrap();
    let dead = ids[victim];
    c.kill9(victim);
    let killed = Instant::now();
    let live: BTreeSet<u64> = all.iter().copied().filter(|id| *id != dead).collect();
    let client = c.client_of((0..4).filter(|i| *i != victim));
    let (_, nodes) = wait_for(
        &client,
        Duration::from_secs(90),
        "every range back to 3 replicas on live nodes",
        |r, n| {
            three_voters_on(r, &live)
                && n.nodes
                    .iter()
                    .any(|x| x.node_id == dead && x.liveness == "dead")
        },
    )
    .await;
    let took = killed.elapsed();
    println!("replaced the dead node's replicas {took:?} after the kill");
    // Not before --time-until-dead: a node merely slow keeps its replicas.
    assert!(took >= Duration::from_secs(6), "{took:?}");
    assert!(nodes.nodes.iter().any(|n| n.node_id == dead && !n.live));
    for i in 0..KEYS {
        let kv = client.get(key(i)).await.unwrap();
        assert_eq!(kv.map(|kv| kv.value), Some(format!("v{i}").into_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meta_range_keeps_five_voters_and_replaces_a_dead_one_with_a_learner() {
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend(["--time-until-dead", "6s"]);
    let mut c = TestCluster::start_initialized(3, &flags).await.unwrap();
    for _ in 0..4 {
        c.add_node(&flags).unwrap();
    }
    let client = c.client();
    let roles = |n: &shoal_proto::v1::NodesResponse, role: &str| -> BTreeSet<u64> {
        n.nodes
            .iter()
            .filter(|x| x.role == role)
            .map(|x| x.node_id)
            .collect()
    };
    // Seven nodes: every one holds the meta range, five of them as voters.
    let (_, nodes) = wait_for(
        &client,
        Duration::from_secs(60),
        "seven live nodes, five of them voters",
        |_, n| {
            n.nodes.len() == 7
                && n.nodes.iter().all(|x| x.live)
                && roles(n, "voter").len() == 5
                && roles(n, "learner").len() == 2
        },
    )
    .await;
    let voters = roles(&nodes, "voter");

    // A voter other than the leader dies for good.
    let leader = c.wait_leader(Duration::from_secs(5)).await.unwrap();
    let mut victim = None;
    for i in 0..c.nodes.len() {
        if i != leader && voters.contains(&node_id(&c, i).await) {
            victim = Some(i);
            break;
        }
    }
    let victim = victim.expect("a voter that does not lead");
    let dead = node_id(&c, victim).await;
    c.kill9(victim);
    let client = c.client_of((0..c.nodes.len()).filter(|i| *i != victim));
    let (_, nodes) = wait_for(
        &client,
        Duration::from_secs(60),
        "the dead voter replaced by a learner",
        |_, n| {
            let v = roles(n, "voter");
            v.len() == 5
                && !v.contains(&dead)
                && n.nodes.iter().all(|x| !v.contains(&x.node_id) || x.live)
        },
    )
    .await;
    // The dead node stays a member (as a learner) until it is removed.
    assert!(roles(&nodes, "learner").contains(&dead));
    client.put("after", "the swap").await.unwrap();
    let kv = client.get("after").await.unwrap();
    assert_eq!(kv.map(|kv| kv.value), Some(b"the swap".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_grpc_client_is_served_through_a_node_holding_none_of_the_range() {
    use shoal_proto::v1 as pb;
    const RANGES: usize = 6;
    let c = TestCluster::start_initialized(4, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    fill_and_split(&client, RANGES).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(node_id(&c, i).await);
    }
    let all: BTreeSet<u64> = ids.iter().copied().collect();
    let (ranges, _) = wait_for(
        &client,
        Duration::from_secs(60),
        "three voters per range",
        |r, _| r.ranges.len() == RANGES && three_voters_on(r, &all),
    )
    .await;
    // A data range (with keys after it) and the node holding no replica of it.
    let (d, outsider) = ranges
        .ranges
        .iter()
        .filter_map(|r| r.descriptor.clone())
        .filter(|d| d.range_id != 1 && !d.end.is_empty())
        .find_map(|d| {
            let holders: BTreeSet<u64> = d.replicas.iter().map(|x| x.node_id).collect();
            (0..4).find(|i| !holders.contains(&ids[*i])).map(|i| (d, i))
        })
        .expect("with four nodes and three replicas, a node misses each range");
    // A replica moved off the outsider earlier is destroyed there in the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .raft_gauges(outsider, "term")
        .unwrap()
        .contains_key(&d.range_id)
    {
        assert!(
            Instant::now() < deadline,
            "a removed replica was never destroyed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // No range cache and no routing: every request goes to the outsider.
    let mut kv = pb::kv_client::KvClient::connect(format!("http://{}", c.nodes[outsider].grpc))
        .await
        .unwrap();
    let key = [d.start.clone(), b"/plain".to_vec()].concat();
    kv.put(pb::PutRequest {
        key: key.clone(),
        value: b"one".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let got = kv
        .get(pb::GetRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.kv.map(|kv| kv.value), Some(b"one".to_vec()));
    let served_by = got.header.unwrap();
    assert_eq!(served_by.range_id, d.range_id);
    assert_ne!(served_by.node_id, ids[outsider]);

    // Scans both ways, a batch and a delete, the same way.
    let scan = |limit, reverse| pb::ScanRequest {
        start: d.start.clone(),
        end: d.end.clone(),
        limit,
        reverse,
        ..Default::default()
    };
    let page = kv.scan(scan(2, false)).await.unwrap().into_inner();
    let keys: Vec<Vec<u8>> = page.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![d.start.clone(), key.clone()]);
    let back = kv.scan(scan(1, true)).await.unwrap().into_inner();
    assert_eq!(back.kvs.len(), 1);
    assert!(back.kvs[0].key < d.end && back.kvs[0].key > key);
    let put = |k: &[u8], v: &[u8]| pb::WriteOp {
        op: Some(pb::write_op::Op::Put(pb::PutOp {
            key: k.to_vec(),
            value: v.to_vec(),
        })),
    };
    let second = [key.clone(), b"2".to_vec()].concat();
    kv.batch(pb::BatchRequest {
        ops: vec![put(&key, b"two"), put(&second, b"three")],
        ..Default::default()
    })
    .await
    .unwrap();
    let deleted = kv
        .delete(pb::DeleteRequest {
            key: second.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);

    // The SDK, routing by itself, sees the same.
    let kv = client.get(key).await.unwrap();
    assert_eq!(kv.map(|kv| kv.value), Some(b"two".to_vec()));
    assert_eq!(client.get(second).await.unwrap(), None);
}
