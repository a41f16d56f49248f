//! A 3-node cluster of real processes on loopback: replication, linearizable reads
//! through every node, failover after kill -9, catch-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_client::Consistency;
use shoal_tests::{TestCluster, FAST_ELECTIONS};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_puts_read_back_linearizably_through_each_node() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = Arc::new(c.client());
    let mut tasks = Vec::new();
    for w in 0..10 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = BTreeMap::new();
            for i in 0..100 {
                let (k, v) = (format!("key-{w:02}-{i:03}"), format!("value-{w}-{i}"));
                let version = client.put(&k, &v).await.expect("put");
                versions.insert(k, (v, version));
            }
            versions
        }));
    }
    let mut acked = BTreeMap::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len(), 1000);

    for i in 0..3 {
        let via = c.client_via(i);
        for (k, (v, version)) in &acked {
            let kv = via
                .get(k)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("{k} missing via node {i}"));
            assert_eq!(&kv.value, v.as_bytes(), "value of {k} via node {i}");
            assert_eq!(kv.version, *version, "version of {k} via node {i}");
        }
    }
    // A full scan returns exactly the written keys, in order.
    let all = client.scan("", "", 0).await.unwrap();
    let keys: Vec<String> = all
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect();
    assert_eq!(keys, acked.keys().cloned().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_elects_another_and_the_restarted_node_catches_up() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    for i in 0..200 {
        client
            .put(format!("before-{i:03}"), format!("v{i}"))
            .await
            .unwrap();
    }
    let old = c.wait_leader(Duration::from_secs(5)).await.unwrap();
    let killed_at = Instant::now();
    c.kill9(old);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = c
        .wait_leader_among(&survivors, Duration::from_secs(10))
        .await
        .unwrap();
    let took = killed_at.elapsed();
    assert_ne!(new, old);
    assert!(took < Duration::from_secs(5), "new leader after {took:?}");

    // Every acknowledged write is still there, and the cluster takes new ones.
    for i in 0..200 {
        let kv = client
            .get(format!("before-{i:03}"))
            .await
            .unwrap()
            .expect("acknowledged write lost");
        assert_eq!(kv.value, format!("v{i}").into_bytes());
    }
    for i in 0..200 {
        client
            .put(format!("during-{i:03}"), format!("d{i}"))
            .await
            .unwrap();
    }

    c.restart(old).unwrap();
    let leader_applied = c.applied(new).await.unwrap();
    c.wait_applied(old, leader_applied, Duration::from_secs(20))
        .await
        .unwrap();
    // The restarted node serves what was written while it was down, from its own state.
    let back = c.client_via(old);
    for i in 0..200 {
        let kv = back
            .get_from(
                &c.nodes[old].grpc,
                format!("during-{i:03}"),
                Consistency::Stale,
            )
            .await
            .unwrap()
            .expect("restarted node missing a write");
        assert_eq!(kv.value, format!("d{i}").into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_down_while_the_log_is_purged_catches_up_by_streamed_snapshot() {
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend(["--snapshot-logs", "50", "--keep-logs", "5"]);
    let mut c = TestCluster::start_initialized(3, &flags).await.unwrap();
    let leader = c.wait_leader(Duration::from_secs(5)).await.unwrap();
    let down = (leader + 1) % 3;
    c.kill9(down);

    // ~3 MiB of data: the snapshot spans several 1 MiB chunks.
    let client = c.client();
    let value = vec![b'x'; 8 << 10];
    for i in 0..400 {
        let mut v = value.clone();
        v.extend_from_slice(format!("-{i}").as_bytes());
        client.put(format!("snap-{i:04}"), v).await.unwrap();
    }
    let leader = c
        .wait_leader_among(&[(down + 1) % 3, (down + 2) % 3], Duration::from_secs(5))
        .await
        .unwrap();
    // Snapshots and purges run in the background: wait for the purge.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let purged = loop {
        let purged = c.raft_gauge(leader, "purged_index").unwrap();
        if purged > 100 {
            break purged;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leader purged only up to {purged}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    c.restart(down).unwrap();
    let target = c.applied(leader).await.unwrap();
    c.wait_applied(down, target, Duration::from_secs(30))
        .await
        .unwrap();
    let installed = std::fs::read_to_string(&c.nodes[down].log).unwrap();
    assert!(
        installed.contains("snapshot received"),
        "no snapshot transfer in the log of node {down}"
    );
    assert!(c.raft_gauge(down, "snapshot_index").unwrap() >= purged);
    for i in (0..400).step_by(37) {
        let kv = client
            .get_from(
                &c.nodes[down].grpc,
                format!("snap-{i:04}"),
                Consistency::Stale,
            )
            .await
            .unwrap()
            .expect("missing after snapshot install");
        assert!(kv.value.ends_with(format!("-{i}").as_bytes()));
        assert_eq!(kv.value.len(), (8 << 10) + format!("-{i}").len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_range_is_not_snapshotted_again_until_enough_of_it_was_written() {
    let mut flags = FAST_ELECTIONS.to_vec();
    // Old versions kept for a second only: a snapshot then holds each key's newest
    // version, so the range's size is its keys' (2 MiB), not their history's.
    flags.extend([
        "--snapshot-logs",
        "50",
        "--keep-logs",
        "5",
        "--gc-ttl",
        "1s",
    ]);
    let c = TestCluster::start_initialized(1, &flags).await.unwrap();
    let client = c.client();
    // 2 MiB of data, overwritten until a snapshot after it holds all of it: little
    // is then applied since the snapshot.
    let value = vec![b'x'; 8 << 10];
    let mut after_load = None;
    let mut i = 0;
    let first = loop {
        client
            .put(format!("big-{:04}", i % 256), value.clone())
            .await
            .unwrap();
        i += 1;
        let snap = c.raft_gauge(0, "snapshot_index").unwrap();
        match after_load {
            None if i == 256 => after_load = Some(snap),
            Some(before) if snap > before => break snap,
            _ => {}
        }
        assert!(
            i < 2_000,
            "no snapshot after {i} entries of 8 KiB with --snapshot-logs 50"
        );
    };

    // 200 small writes: four times --snapshot-logs, but a few KiB against a 2 MiB
    // snapshot. Rewriting the range for them is not worth it.
    for i in 0..200 {
        client.put("small", format!("{i}")).await.unwrap();
    }
    let applied = c.applied(0).await.unwrap();
    assert!(applied >= first + 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        c.raft_gauge(0, "snapshot_index").unwrap(),
        first,
        "a 2 MiB range snapshotted again for 200 small writes"
    );

    // Over half the range written again: the next snapshot comes, and the log behind
    // it is purged. How much is enough depends on the first snapshot's size: it holds
    // the versions written within the retention window before it (a second and a
    // margin), so a fast load makes it larger than the range's 2 MiB of newest
    // versions. Twice the range's bytes is more than enough at any load speed the
    // retention window allows here; the snapshot comes within them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut written = 0;
    let deadline = loop {
        if c.raft_gauge(0, "snapshot_index").unwrap() > applied {
            break None;
        }
        if written == 512 {
            break Some(Instant::now() + Duration::from_secs(15));
        }
        client
            .put(format!("big-{:04}", written % 256), value.clone())
            .await
            .unwrap();
        written += 1;
    };
    if let Some(deadline) = deadline {
        while c.raft_gauge(0, "snapshot_index").unwrap() <= applied {
            assert!(Instant::now() < deadline, "no snapshot after 4 MiB more");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Not before nearly half the range's newest versions were written again (each
    // entry counts a little more than its value, and the small writes count too).
    assert!(written >= 100, "snapshot after {written} writes of 8 KiB");
    assert!(c.raft_gauge(0, "purged_index").unwrap() > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_forwards_writes_to_the_leader() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let leader = c.wait_leader(Duration::from_secs(5)).await.unwrap();
    let follower = (leader + 1) % 3;
    // The follower has applied what the leader had (its first configuration among
    // it): before, it answers NOT_INITIALIZED, which a client retries.
    let applied = c.applied(leader).await.unwrap();
    c.wait_applied(follower, applied, Duration::from_secs(10))
        .await
        .unwrap();
    // A gRPC client that reaches the follower alone (the SDK would route to the
    // range's leader): every write is forwarded, none refused.
    let mut via =
        shoal_proto::v1::kv_client::KvClient::connect(format!("http://{}", c.nodes[follower].grpc))
            .await
            .unwrap();
    for i in 0..20 {
        via.put(shoal_proto::v1::PutRequest {
            key: format!("f{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let (_, metrics) = c.http_get(follower, "/metrics").unwrap();
    let line = |code: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "shoal_requests_total{{code=\"{code}\",rpc=\"Put\"}}"
                ))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
            .unwrap_or(0)
    };
    assert_eq!(
        line("OK"),
        20,
        "the follower answered every put itself:\n{metrics}"
    );
    assert_eq!(
        line("NOT_LEADER"),
        0,
        "the follower redirected instead of forwarding"
    );
    assert_eq!(
        c.client_via(leader)
            .get("f19")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"v"
    );
}
