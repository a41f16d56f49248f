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
        // Asked through any node (redirected to the meta range's leader), the read is
        // linearizable: never an older descriptor (a later one when the joint change
        // that promoted the node was still being made uniform), with the four voters.
        assert!(
            seen.epoch.unwrap().conf_ver >= d.epoch.unwrap().conf_ver,
            "node {i}: {seen:?} after {d:?}"
        );
        assert_eq!(
            seen.replicas.iter().filter(|r| r.role == "voter").count(),
            4,
            "node {i}: {seen:?}"
        );
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
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "SPAN", "EPOCH", "REPLICAS", "LEADER", "SIZE"],
        "an aligned table: {text}"
    );
    assert!(text.contains("[-inf, +inf)"), "{text}");
    let out = shoal(&["range", "lookup", "k", "--host", &c.nodes[1].grpc]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("range 1 [-inf, +inf) leader"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Writes `n` keys `key-000000..` with `value_len`-byte values, in batches of
/// consecutive keys (a batch that spans two ranges commits as a transaction across
/// them), from several tasks at once.
async fn write_keys(client: &shoal_client::Client, n: usize, value_len: usize) {
    let tasks = 8;
    let per = n.div_ceil(tasks);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let lo = t * per;
            let hi = ((t + 1) * per).min(n);
            let mut i = lo;
            while i < hi {
                let j = (i + 100).min(hi);
                let ops: Vec<_> = (i..j)
                    .map(|k| shoal_client::ops::write_put(key(k), value(k, value_len)))
                    .collect();
                if let Err(e) = client.batch(ops).await {
                    panic!("batch {i}..{j}: {e}");
                }
                i = j;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

fn key(i: usize) -> String {
    format!("key-{i:06}")
}

fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{i}:").into_bytes();
    v.resize(len, b'v');
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_keys_split_into_many_ranges_and_all_read_back() {
    const N: usize = 100_000;
    const VALUE: usize = 100;
    let c = TestCluster::start_initialized(3, &["--range-max-bytes", "262144"])
        .await
        .unwrap();
    let client = c.client();
    write_keys(&client, N, VALUE).await;

    // The ranges keep splitting until none is over the limit: at least 50 of them.
    let deadline = Instant::now() + Duration::from_secs(120);
    let ranges = loop {
        let r = client.ranges().await.unwrap().ranges;
        if r.len() >= 50 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "only {} ranges after writing {N} keys",
            r.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // They tile the key space: sorted, contiguous, from -inf to +inf.
    let spans: Vec<(Vec<u8>, Vec<u8>)> = ranges
        .iter()
        .map(|r| {
            let d = r.descriptor.clone().unwrap();
            (d.start, d.end)
        })
        .collect();
    assert!(spans.first().unwrap().0.is_empty());
    assert!(spans.last().unwrap().1.is_empty());
    for w in spans.windows(2) {
        assert_eq!(w[0].1, w[1].0, "ranges do not tile the key space");
    }

    // Every key reads back, through a fresh client (an empty range cache).
    let fresh = c.client_via(1);
    for i in (0..N).step_by(97).chain([N - 1]) {
        let kv = fresh
            .get(key(i))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} missing", key(i)));
        assert_eq!(kv.value, value(i, VALUE));
    }

    // A full scan returns exactly the sorted set, stitched across every range.
    let all = fresh.scan("", "", 0).await.unwrap();
    assert_eq!(all.len(), N);
    for (i, kv) in all.iter().enumerate() {
        assert_eq!(kv.key, key(i).into_bytes());
        assert_eq!(kv.value, value(i, VALUE));
    }
    // Limited, bounded and reverse scans too, crossing range boundaries.
    let some = fresh.scan(key(1_234), key(60_000), 20_000).await.unwrap();
    assert_eq!(some.len(), 20_000);
    assert_eq!(some[0].key, key(1_234).into_bytes());
    assert_eq!(some[19_999].key, key(21_233).into_bytes());
    let rev = fresh
        .scan_with(
            key(10),
            key(50_010),
            0,
            shoal_client::Consistency::Linearizable,
            true,
        )
        .await
        .unwrap();
    assert_eq!(rev.len(), 50_000);
    assert_eq!(rev[0].key, key(50_009).into_bytes());
    assert_eq!(rev[49_999].key, key(10).into_bytes());
    let tail = fresh
        .scan_with("", "", 5, shoal_client::Consistency::Stale, true)
        .await
        .unwrap();
    let tail: Vec<Vec<u8>> = tail.into_iter().map(|kv| kv.key).collect();
    assert_eq!(
        tail,
        (N - 5..N)
            .rev()
            .map(|i| key(i).into_bytes())
            .collect::<Vec<_>>()
    );

    // A delete-range across many ranges deletes exactly its keys.
    let deleted = fresh.delete_range(key(30_000), key(70_000)).await.unwrap();
    assert_eq!(deleted, 40_000);
    assert_eq!(fresh.scan("", "", 0).await.unwrap().len(), N - 40_000);
    assert!(fresh.get(key(29_999)).await.unwrap().is_some());
    assert!(fresh.get(key(30_000)).await.unwrap().is_none());
    assert!(fresh.get(key(70_000)).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_on_demand_keeps_every_key_and_clients_follow_it() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    for i in 0..200 {
        client.put(key(i), value(i, 10)).await.unwrap();
    }
    // A second client whose cache knows range 1 as the whole key space.
    let stale = c.client_via(2);
    assert_eq!(
        stale.get(key(150)).await.unwrap().unwrap().value,
        value(150, 10)
    );

    let out = shoal(&["range", "split", &key(100), "--host", &c.nodes[0].grpc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("split range 1"), "{text}");
    // Splitting at a range's start is refused, with a clear error and exit code 1.
    let out = shoal(&["range", "split", &key(100), "--host", &c.nodes[0].grpc]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot split"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The stale client is refused by range 1 (the key moved out), re-routes, and
    // reads and writes on both sides.
    assert_eq!(
        stale.get(key(150)).await.unwrap().unwrap().value,
        value(150, 10)
    );
    let v = stale.put(key(199), "new").await.unwrap();
    assert!(v > 0);
    assert_eq!(
        stale.get(key(5)).await.unwrap().unwrap().value,
        value(5, 10)
    );
    // A batch across the boundary commits on both sides, at one timestamp, as a
    // transaction across the ranges; within one range it applies there.
    let across = stale
        .batch(vec![
            shoal_client::ops::write_put(key(99), "x"),
            shoal_client::ops::write_put(key(100), "x"),
        ])
        .await
        .unwrap();
    for k in [99, 100] {
        let kv = stale.get(key(k)).await.unwrap().unwrap();
        assert_eq!((kv.value.as_slice(), kv.version), (&b"x"[..], across));
    }
    stale
        .batch(vec![
            shoal_client::ops::write_put(key(100), "y"),
            shoal_client::ops::write_put(key(101), "y"),
        ])
        .await
        .unwrap();

    let ranges = client.ranges().await.unwrap().ranges;
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    let right = ranges[1].descriptor.clone().unwrap();
    assert_eq!(right.start, key(100).into_bytes());
    assert_eq!(right.replicas.len(), 3);
    let l = client.range_lookup(key(150)).await.unwrap();
    assert_eq!(l.descriptor.unwrap().range_id, right.range_id);
    let all = client.scan("", "", 0).await.unwrap();
    assert_eq!(all.len(), 200);

    // Every node serves the new range after a restart of all of them.
    let mut c = c;
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.restart(i).unwrap();
    }
    let after = c.client();
    assert_eq!(
        after.get(key(199)).await.unwrap().unwrap().value,
        b"new".to_vec()
    );
    assert_eq!(
        after.get(key(100)).await.unwrap().unwrap().value,
        b"y".to_vec()
    );
    assert_eq!(after.scan("", "", 0).await.unwrap().len(), 200);
    assert_eq!(after.ranges().await.unwrap().ranges.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_sent_to_a_follower_is_passed_on_to_the_leader() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let leader = c.wait_leader(Duration::from_secs(10)).await.unwrap();
    let follower = (leader + 1) % 3;
    let mut admin = shoal_proto::v1::admin_client::AdminClient::connect(format!(
        "http://{}",
        c.nodes[follower].grpc
    ))
    .await
    .unwrap();
    // A client that reaches this node only (one call, no redirect followed).
    let resp = admin
        .split_range(shoal_proto::v1::SplitRangeRequest { key: b"m".to_vec() })
        .await
        .unwrap()
        .into_inner();
    let (left, right) = (resp.left.unwrap(), resp.right.unwrap());
    assert_eq!(
        (left.end.as_slice(), right.start.as_slice()),
        (&b"m"[..], &b"m"[..])
    );
    let client = c.client();
    let l = client.range_lookup("n").await.unwrap();
    assert_eq!(l.descriptor.unwrap().range_id, right.range_id);
}

/// The starts of the cluster's ranges, in key order.
async fn range_starts(client: &shoal_client::Client) -> Vec<Vec<u8>> {
    let ranges = client.ranges().await.unwrap().ranges;
    let mut starts: Vec<Vec<u8>> = ranges
        .into_iter()
        .filter_map(|r| r.descriptor.map(|d| d.start))
        .collect();
    starts.sort();
    starts
}

/// Splits by load: a range kept busy over many keys splits at a key inside it, while
/// clients go on reading and writing through it; a range as busy on one key (no split
/// divides that), and a quiet one, do not split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_range_splits_by_load_and_a_cold_one_or_one_hot_key_does_not() {
    let mut args = FAST_ELECTIONS.to_vec();
    args.extend(["--split-qps", "20", "--split-load-window", "3s"]);
    let c = TestCluster::start_initialized(3, &args).await.unwrap();
    let client = c.client();
    // [.., "b") quiet (2 requests/s); ["b", "c") busy over 200 keys (4 clients);
    // ["c", ..) as busy on one key (4 clients).
    client.split_range("b").await.unwrap();
    client.split_range("c").await.unwrap();
    let spread = |i: usize| format!("b/{i:03}");
    for i in 0..200 {
        client.put(spread(i), "0").await.unwrap();
    }
    client.put("a/quiet", "0").await.unwrap();
    client.put("c/hot", "0").await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..9usize {
        let (client, stop) = (c.client(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = match t {
                    0..=3 => spread((t * 67 + n * 13) % 200),
                    4..=7 => "c/hot".to_string(),
                    _ => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        "a/quiet".to_string()
                    }
                };
                if n.is_multiple_of(2) {
                    client.put(&key, n.to_string()).await?;
                } else if client.get(&key).await?.is_none() {
                    anyhow::bail!("{key} not found");
                }
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }

    let inside = |s: &[u8], lo: &[u8], hi: &[u8]| s > lo && s < hi;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let starts = range_starts(&client).await;
        if starts.iter().any(|s| inside(s, b"b", b"c")) {
            break;
        }
        assert!(Instant::now() < deadline, "no split by load: {starts:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Two windows more of the same load on the one hot key and the quiet range.
    tokio::time::sleep(Duration::from_secs(7)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = Vec::new();
    for t in tasks {
        served.push(
            t.await
                .unwrap()
                .expect("every request served through the splits"),
        );
    }
    // The one key's range was as hot as the threshold: its not splitting is the rule's.
    let rate = served[4..8].iter().sum::<usize>() as f64 / began.elapsed().as_secs_f64();
    assert!(rate > 20.0, "the one hot key served {rate:.0} requests/s");

    let starts = range_starts(&client).await;
    for s in &starts {
        assert!(
            s.is_empty() || s == b"b" || s == b"c" || inside(s, b"b", b"c"),
            "a split outside the busy range: {:?}",
            String::from_utf8_lossy(s)
        );
    }
    let by_load: u64 = (0..3)
        .map(|i| {
            let (_, body) = c.http_get(i, "/metrics").unwrap();
            body.lines()
                .filter(|l| l.starts_with("shoal_range_splits_total{reason=\"load\"}"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum();
    assert!(
        by_load >= 1 && by_load as usize == starts.len() - 3,
        "{by_load} splits by load, ranges starting at {starts:?}"
    );
    // Every key reads back across the new boundaries.
    let all = client.scan("b", "c", 0).await.unwrap();
    assert_eq!(all.len(), 200);
    assert!(client.get("c/hot").await.unwrap().is_some());
}
