//! Membership: nodes with an empty disk join a running cluster under a new id (never
//! founding a second cluster), `--bootstrap-expect` founds a cluster without `init`,
//! and `shoal node remove` takes a node out.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

async fn wait_voters(
    c: &TestCluster,
    want: usize,
    timeout: Duration,
) -> Vec<shoal_proto::v1::NodeInfo> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = c.client().nodes().await {
            if r.nodes.iter().filter(|n| n.role == "voter").count() == want {
                return r.nodes;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {want} voters within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_an_empty_disk_joins_as_a_new_voter() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    for i in 0..100 {
        client.put(format!("k{i:03}"), "v").await.unwrap();
    }
    let cluster_id = c.status(0).await.unwrap().cluster_id;
    let new = c.add_node(FAST_ELECTIONS).unwrap();
    let nodes = wait_voters(&c, 4, Duration::from_secs(30)).await;
    let st = c.status(new).await.unwrap();
    assert_eq!(st.cluster_id, cluster_id, "joined another cluster");
    assert_eq!(st.node_id, 4, "a new id, never given before");
    assert!(nodes
        .iter()
        .any(|n| n.node_id == 4 && n.addr == c.nodes[new].grpc));
    // It serves reads of what was written before it joined.
    let kv = c
        .client_via(new)
        .get("k042")
        .await
        .unwrap()
        .expect("missing on the new node");
    assert_eq!(kv.value, b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_back_with_a_lost_disk_joins_as_a_new_node_and_the_old_id_is_removed() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    for i in 0..50 {
        client.put(format!("k{i:03}"), "v").await.unwrap();
    }
    let leader = c.wait_leader(Duration::from_secs(5)).await.unwrap();
    let lost = (leader + 1) % 3;
    let old_id = c.status(lost).await.unwrap().node_id;
    c.kill9(lost);
    c.wipe(lost);
    c.restart(lost).unwrap();

    // Same address, empty disk: a new id in the same cluster.
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_id = loop {
        if let Ok(st) = c.status(lost).await {
            if st.node_id != 0 {
                break st.node_id;
            }
        }
        assert!(Instant::now() < deadline, "the node did not rejoin");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(new_id, old_id);
    let clusters: BTreeSet<String> = {
        let mut s = BTreeSet::new();
        for i in 0..3 {
            s.insert(c.status(i).await.unwrap().cluster_id);
        }
        s
    };
    assert_eq!(
        clusters.len(),
        1,
        "a second cluster was founded: {clusters:?}"
    );

    // The old id shows as dead until removed.
    wait_voters(&c, 4, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let nodes = c.client().nodes().await.unwrap().nodes;
        let old = nodes
            .iter()
            .find(|n| n.node_id == old_id)
            .expect("old id listed");
        if !old.live {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replaced node never shows as dead"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = shoal(&[
        "node",
        "remove",
        &old_id.to_string(),
        "--host",
        &c.addrs().join(","),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes = wait_voters(&c, 3, Duration::from_secs(10)).await;
    assert!(nodes.iter().all(|n| n.node_id != old_id));
    // Data intact and writable.
    assert!(client.get("k049").await.unwrap().is_some());
    client.put("after", "v").await.unwrap();
    let kv = c.client_via(lost).get("after").await.unwrap().unwrap();
    assert_eq!(kv.value, b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_expect_founds_one_cluster_without_init() {
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend(["--bootstrap-expect", "3"]);
    let c = TestCluster::start(3, &flags).unwrap();
    c.wait_leader(Duration::from_secs(30)).await.unwrap();
    let mut clusters = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = c.status(i).await.unwrap();
            if st.node_id != 0 {
                clusters.insert(st.cluster_id);
                ids.insert(st.node_id);
                break;
            }
            assert!(Instant::now() < deadline, "node {i} got no identity");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    c.client().put("k", "v").await.unwrap();
    // An explicit init afterwards is refused.
    let out = shoal(&["init", "--host", &c.nodes[2].grpc]);
    assert_eq!(out.status.code(), Some(1));
}
