//! Node lifecycle: readiness, drain, and SIGTERM under load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_turns_the_leader_unready_and_moves_its_leadership() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let leader = c.wait_leader(Duration::from_secs(5)).await.unwrap();
    // A leader just elected is ready once a quorum has acknowledged it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = c.http_get(leader, "/readyz?verbose").unwrap();
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never turned ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = shoal(&["node", "drain", "--host", &c.nodes[leader].grpc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, body) = c.http_get(leader, "/readyz?verbose").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("[-] not_draining"), "{body}");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new = c
        .wait_leader_among(&others, Duration::from_secs(5))
        .await
        .unwrap();
    assert_ne!(new, leader);
    // Liveness does not depend on it; the cluster serves through the others.
    assert_eq!(c.http_get(leader, "/healthz").unwrap().0, 200);
    c.client().put("k", "v").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_of_the_leader_under_load_surfaces_no_error_and_exits_in_time() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let leader = c.wait_leader(Duration::from_secs(5)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, stop, written) = (c.client(), stop.clone(), written.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                client
                    .put(format!("w{w}-{i}"), "v")
                    .await
                    .expect("a write failed past the SDK's retries");
                written.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            i
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let status = c.terminate(leader, Duration::from_secs(25));
    let took = t.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?} to exit");
    let before = written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut counts = Vec::new();
    for w in writers {
        counts.push(w.await.unwrap());
    }
    assert!(
        written.load(Ordering::SeqCst) > before,
        "writes stopped after the leader left"
    );
    let log = std::fs::read_to_string(&c.nodes[leader].log).unwrap();
    assert!(
        log.contains("moving leadership away"),
        "no leadership transfer in the log"
    );
    // Every write is there.
    let client = c.client();
    for (w, n) in counts.iter().enumerate() {
        for i in (0..*n).step_by(7) {
            assert!(
                client.get(format!("w{w}-{i}")).await.unwrap().is_some(),
                "w{w}-{i} lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_from_the_others_turns_unready_and_refuses_linearizable_reads() {
    cut_off_leader(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_read_index_a_cut_off_leader_refuses_linearizable_reads_too() {
    cut_off_leader(&["--read-policy", "read-index"]).await;
}

/// Freezes the two followers: the leader alone must turn unready, refuse linearizable
/// reads (its read index, or its lease, can no longer be confirmed), still serve stale
/// reads, and recover once they are back.
async fn cut_off_leader(extra: &[&str]) {
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend_from_slice(extra);
    let mut c = TestCluster::start_initialized(3, &flags).await.unwrap();
    c.client().put("k", "v1").await.unwrap();
    let leader = c.wait_leader(Duration::from_secs(5)).await.unwrap();
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.http_get(i, "/readyz").unwrap().0 != 200 {
            assert!(Instant::now() < deadline, "node {i} never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Freeze the two others: the leader is alone.
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &others {
        c.pause(i, true);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = c.http_get(leader, "/readyz?verbose").unwrap();
        if code == 503 {
            assert!(body.contains("[-] caught_up"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the isolated node stays ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        c.http_get(leader, "/healthz").unwrap().0,
        200,
        "liveness must not depend on quorum"
    );
    let e = c
        .client()
        .get_from(
            &c.nodes[leader].grpc,
            "k",
            shoal_client::Consistency::Linearizable,
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("NO_QUORUM") || e.to_string().contains("NOT_LEADER"),
        "{e}"
    );
    // A stale read is still served.
    let kv = c
        .client()
        .get_from(&c.nodes[leader].grpc, "k", shoal_client::Consistency::Stale)
        .await
        .unwrap();
    assert_eq!(kv.unwrap().value, b"v1");

    for &i in &others {
        c.pause(i, false);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.http_get(leader, "/readyz").unwrap().0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the node did not become ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.client().put("k", "v2").await.unwrap();
    assert_eq!(
        c.client_via(leader).get("k").await.unwrap().unwrap().value,
        b"v2"
    );
}
