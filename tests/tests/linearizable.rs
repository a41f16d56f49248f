//! Client histories under failures, checked for linearizability: concurrent clients
//! read, write and compare-and-set a few keys while leaders are killed with SIGKILL
//! and restarted; every key's history must have a linearization, and no
//! acknowledged write may be lost. A leader frozen past its lease wakes to no stale
//! read.

use std::time::Duration;

use shoal_tests::workload::{Endpoints, Workload};
use shoal_tests::{TestCluster, FAST_ELECTIONS};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_under_leader_kills_are_linearizable() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let w = Workload::start(Endpoints::new(c.addrs()), 6);
    // The nemesis: kill -9 the leader, restart it, twice.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = c.wait_leader(Duration::from_secs(10)).await.unwrap();
        c.kill9(leader);
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.restart(leader).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = w.finish().await;
    report
        .check_all(&c.addrs(), 201, Duration::from_secs(30))
        .await
        .unwrap();
}

/// Leader leases (the default read policy) under a paused leader: the leader is frozen
/// (SIGSTOP, as a hung host or a long pause) until the others elect a new leader and
/// take a newer write, and is woken with reads already waiting in its sockets. Each of
/// them, and every read sent to it while it finds out, must see the newer write or
/// fail: a lease that outlived the pause would answer the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_wakes_to_no_stale_read() {
    use shoal_client::Consistency::Linearizable;
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    c.client().put("k", "v0").await.unwrap();
    for round in 1..=3 {
        let old = c.wait_leader(Duration::from_secs(10)).await.unwrap();
        let at = c.nodes[old].grpc.clone();
        // While it leads and a quorum answers it, the leader serves reads.
        let before = format!("v{}", round - 1);
        let got = c.client().get_from(&at, "k", Linearizable).await.unwrap();
        assert_eq!(got.unwrap().value, before.as_bytes());

        c.pause(old, true);
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        c.wait_leader_among(&others, Duration::from_secs(15))
            .await
            .unwrap();
        let newer = format!("v{round}");
        c.client_of(others.clone()).put("k", &newer).await.unwrap();

        // Reads sent while the old leader is frozen, answered as it wakes.
        let read = |c: &TestCluster| {
            let (client, at) = (c.client_via(old), at.clone());
            tokio::spawn(async move { client.get_from(&at, "k", Linearizable).await })
        };
        let mut reads: Vec<_> = (0..4).map(|_| read(&c)).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.pause(old, false);
        // And reads sent just after it woke.
        for _ in 0..20 {
            reads.push(read(&c));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut served = 0;
        for r in reads {
            match r.await.unwrap() {
                Ok(kv) => {
                    let value = kv.map(|kv| kv.value);
                    assert_eq!(
                        value.as_deref(),
                        Some(newer.as_bytes()),
                        "round {round}: the woken leader served a stale read"
                    );
                    served += 1;
                }
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        ["NO_QUORUM", "NOT_LEADER", "UNAVAILABLE", "DEADLINE"]
                            .iter()
                            .any(|code| e.contains(code)),
                        "round {round}: {e}"
                    );
                }
            }
        }
        eprintln!("round {round}: {served} of 24 reads served by the woken node");
        // It catches up and serves the newer value again.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(kv)) = c.client().get_from(&at, "k", Linearizable).await {
                if kv.value == newer.as_bytes() {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the woken node never served the newer value"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
