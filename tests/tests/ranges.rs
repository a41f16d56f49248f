//! Range descriptors: kept in the meta range, changed only through the range's own
//! log (a membership entry rewrites the replicas and bumps `conf_ver`), read by
//! `RangeLookup`, `Ranges` and `shoal range ls`.

use std::time::{Duration, Instant};

use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_range_covers_every_key_and_its_epoch_follows_its_membership() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    let r = client.ranges().await.unwrap();
    assert_eq!(r.ranges.len(), 1, "{r:?}");
    let d = r.ranges[0].descriptor.clone().unwrap();
    assert_eq!(d.range_id, 1);
    assert!(d.start.is_empty() && d.end.is_empty(), "{d:?}");
    assert_eq!(d.replicas.len(), 3, "{d:?}");
    assert!(d
        .replicas
        .iter()
        .all(|r| r.role == "voter" && !r.addr.is_empty()));
    let first = d.epoch.unwrap();
    assert_eq!(first.version, 1);
    assert!(first.conf_ver >= 1, "{first:?}");
    let leader = c.wait_leader(Duration::from_secs(10)).await.unwrap();
    let leader_id = c.status(leader).await.unwrap().node_id;
    assert_eq!(r.ranges[0].leader_id, leader_id);

    // Any key is in range 1, led by the leader.
    for key in ["", "a", "\u{10ffff}zzz"] {
        let l = client.range_lookup(key).await.unwrap();
        assert_eq!(l.descriptor.unwrap().range_id, 1);
        assert_eq!(l.leader_id, leader_id);
        assert_eq!(l.leader_addr, c.nodes[leader].grpc);
    }

    // A node joins (a learner, then a voter): every node reads the new replicas and a
    // later conf_ver.
    let new = c.add_node(FAST_ELECTIONS).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let d = client.ranges().await.unwrap().ranges[0]
            .descriptor
            .clone()
            .unwrap();
        if d.replicas.iter().filter(|r| r.role == "voter").count() == 4 {
            break d;
        }
        assert!(Instant::now() < deadline, "never 4 voters: {d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(d.epoch.unwrap().conf_ver > first.conf_ver, "{d:?}");
    for i in 0..=new {
        let seen = c.client_via(i).ranges().await.unwrap().ranges[0]
            .descriptor
            .clone()
            .unwrap();
        // Through a follower the read is linearizable too: the same descriptor.
        assert_eq!(seen.epoch, d.epoch, "node {i}");
        assert_eq!(seen.replicas, d.replicas, "node {i}");
    }

    // The CLI shows it.
    let out = shoal(&[
        "range",
        "ls",
        "--host",
        &c.nodes[0].grpc,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ranges"][0]["range_id"], 1);
    assert_eq!(v["ranges"][0]["replicas"].as_array().unwrap().len(), 4);
    assert_eq!(v["ranges"][0]["leader_id"], leader_id);
    let out = shoal(&["range", "ls", "--host", &c.nodes[0].grpc]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("ID\tSPAN\tEPOCH\tREPLICAS\tLEADER\tSIZE"),
        "{text}"
    );
    assert!(text.contains("[-inf, +inf)"), "{text}");
    let out = shoal(&["range", "lookup", "k", "--host", &c.nodes[1].grpc]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("range 1 [-inf, +inf) leader"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
