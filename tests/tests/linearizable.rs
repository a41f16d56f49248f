//! Client histories under failures, checked for linearizability: concurrent clients
//! read, write and compare-and-set a few keys while leaders are killed with SIGKILL
//! and restarted; every key's history must have a linearization, and no
//! acknowledged write may be lost.

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
