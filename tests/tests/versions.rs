//! Keys keep their versions by commit timestamp: a write's version is a timestamp of
//! the cluster's oracle (between one taken before it and one taken after), reads at a
//! past timestamp see the keys as they were, a scan reads one snapshot across every
//! range it crosses while writers go on, and reads below the retention window are
//! refused with SNAPSHOT_TOO_OLD.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_tests::{TestCluster, FAST_ELECTIONS};

fn code(e: &shoal_client::Error) -> &str {
    e.code().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_are_commit_timestamps_and_past_reads_see_old_values() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    client.split_range("m").await.unwrap();
    let t0 = client.timestamp().await.unwrap();
    let v1 = client.put("a", "one").await.unwrap();
    let w1 = client.put("x", "one").await.unwrap();
    let t1 = client.timestamp().await.unwrap();
    let v2 = client.put("a", "two").await.unwrap();
    client.put("x", "two").await.unwrap();
    assert!(
        t0 < v1 && v1 < w1 && w1 < t1 && t1 < v2,
        "{t0} {v1} {w1} {t1} {v2}"
    );
    assert!(client.delete("a").await.unwrap());
    let t2 = client.timestamp().await.unwrap();

    // Each node reads the past alike, followers included.
    for i in 0..3 {
        let via = c.client_via(i);
        let at = |ts| {
            let via = via.clone();
            async move {
                via.get_at("a", ts)
                    .await
                    .unwrap()
                    .map(|kv| (kv.value, kv.version))
            }
        };
        assert_eq!(at(t0).await, None, "via node {i}");
        assert_eq!(at(t1).await, Some((b"one".to_vec(), v1)), "via node {i}");
        assert_eq!(at(v2).await, Some((b"two".to_vec(), v2)), "via node {i}");
        assert_eq!(at(t2).await, None, "via node {i}");
        assert_eq!(via.get("a").await.unwrap(), None);
        // A scan at t1, across both ranges, sees both keys as they were then.
        let then: Vec<(Vec<u8>, Vec<u8>)> = via
            .scan_at("", "", 0, t1)
            .await
            .unwrap()
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        assert_eq!(
            then,
            vec![
                (b"a".to_vec(), b"one".to_vec()),
                (b"x".to_vec(), b"one".to_vec())
            ]
        );
    }
    // Far in the past: refused, not answered from what is left.
    let e = client.get_at("a", 1).await.unwrap_err();
    assert_eq!(code(&e), "SNAPSHOT_TOO_OLD", "{e}");
    let e = client.scan_at("", "", 0, 1).await.unwrap_err();
    assert_eq!(code(&e), "SNAPSHOT_TOO_OLD", "{e}");
}

/// A writer sets key `a` (in one range) and then key `z` (in another) to the same
/// number, round after round; scans of both ranges, page by page, must never see `z`
/// ahead of `a`: each scan reads one snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scan_reads_one_snapshot_across_ranges_while_a_writer_goes_on() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    client.split_range("m").await.unwrap();
    client.put("a", "0").await.unwrap();
    client.put("z", "0").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (c.client(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                client.put("a", i.to_string()).await.unwrap();
                client.put("z", i.to_string()).await.unwrap();
            }
            i
        })
    };
    let mut scans = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        for i in 0..3 {
            // One key per page: the two keys are read by two requests, to two ranges.
            let page1 = c
                .client_via(i)
                .scan_page_at("", "", 1, shoal_client::Consistency::Linearizable, false, 0)
                .await
                .unwrap();
            let page2 = c
                .client_via((i + 1) % 3)
                .scan_page_at(
                    &page1.resume_key,
                    "",
                    10,
                    shoal_client::Consistency::Linearizable,
                    false,
                    page1.read_ts,
                )
                .await
                .unwrap();
            assert_ne!(page1.read_ts, 0);
            assert_eq!(
                page2.read_ts, page1.read_ts,
                "the second page kept the snapshot"
            );
            let num = |kvs: &[shoal_client::KeyValue], key: &[u8]| -> u64 {
                let kv = kvs.iter().find(|kv| kv.key == key).expect("key scanned");
                String::from_utf8_lossy(&kv.value).parse().unwrap()
            };
            let (a, z) = (num(&page1.kvs, b"a"), num(&page2.kvs, b"z"));
            assert!(
                a == z || a == z + 1,
                "a snapshot with a = {a} and z = {z}: z was written after a"
            );
            scans += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.await.unwrap();
    assert!(rounds > 20, "the writer made only {rounds} rounds");
    assert!(scans > 20, "only {scans} scans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_below_the_retention_window_are_refused_and_the_safe_point_moves() {
    let c = TestCluster::start_initialized(1, &["--gc-ttl", "1s"])
        .await
        .unwrap();
    let client = c.client();
    let v1 = client.put("k", "one").await.unwrap();
    assert_eq!(
        client.get_at("k", v1).await.unwrap().map(|kv| kv.value),
        Some(b"one".to_vec())
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.put("k", "two").await.unwrap();
    let e = client.get_at("k", v1).await.unwrap_err();
    assert_eq!(code(&e), "SNAPSHOT_TOO_OLD", "{e}");
    // The newest version is always readable.
    assert_eq!(
        client.get("k").await.unwrap().map(|kv| kv.value),
        Some(b"two".to_vec())
    );
    let (status, metrics) = c.http_get(0, "/metrics").unwrap();
    assert_eq!(status, 200);
    let safe_point: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shoal_mvcc_gc_safe_point "))
        .expect("the safe point is exported")
        .trim()
        .parse()
        .unwrap();
    assert!(safe_point > v1, "safe point {safe_point}, version {v1}");
    assert!(metrics.contains("shoal_mvcc_gc_versions_dropped_total"));
}
