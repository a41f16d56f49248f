//! Range merges (`shoal range merge`, `Admin.MergeRange`): a range absorbed by its
//! left neighbour while clients read and write through both and transactions span
//! them; routing, scans and every acknowledged write right afterwards and after a
//! restart; a merge refused where there is nothing to merge. (A merge that fails
//! after the freeze: `failpoints.rs`.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_tests::txn_workload::Bank;
use shoal_tests::workload::{Endpoints, Workload};
use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

const ACCOUNTS: usize = 8;

/// The ids of the ranges in the routing table.
async fn range_ids(client: &shoal_client::Client) -> BTreeSet<u64> {
    let ranges = client.ranges().await.unwrap().ranges;
    ranges
        .iter()
        .filter_map(|r| r.descriptor.as_ref().map(|d| d.range_id))
        .collect()
}

/// Waits until the routing table lists exactly `want`, and every node holds a
/// replica of those ranges and no other.
async fn wait_ranges(c: &TestCluster, want: &BTreeSet<u64>) {
    let client = c.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let table = range_ids(&client).await;
        let mut held = Vec::new();
        for i in 0..c.nodes.len() {
            let s = c.status(i).await.unwrap();
            held.push(s.ranges.iter().map(|r| r.range_id).collect::<BTreeSet<_>>());
        }
        if table == *want && held.iter().all(|h| h == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ranges never became {want:?}: table {table:?}, held by the nodes {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_merge_under_load_and_keep_every_write_and_transfer() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    // Four ranges: the registers' keys cut in two at `lin-5`, then the bank's
    // accounts, cut in two at account 4 (transfers span both).
    let mut cuts = Vec::new();
    for k in ["lin-5", "t/bank/", "t/bank/004"] {
        let (_, right) = client.split_range(k).await.unwrap();
        cuts.push(right.range_id);
    }
    let (registers_right, bank_left, bank_right) = (cuts[0], cuts[1], cuts[2]);
    let before: BTreeSet<u64> = [1, registers_right, bank_left, bank_right].into();
    wait_ranges(&c, &before).await;
    for i in 0..100 {
        client.put(format!("k{i:03}"), "v").await.unwrap();
    }

    let w = Workload::start(Endpoints::new(c.addrs()), 4);
    let bank = Bank::start(&c.addrs(), ACCOUNTS, 100, 2, 1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The bank's two ranges, through the CLI, asked of any node.
    let out = shoal(&["range", "merge", "t/bank/000", "--host", &c.nodes[1].grpc]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "merged into range {bank_left} [\"t/bank/\", +inf)"
        )),
        "{stdout}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The registers' two ranges into the meta range, through the SDK.
    let merged = client.merge_range("a").await.unwrap();
    assert_eq!(merged.range_id, 1);
    assert!(merged.start.is_empty(), "{merged:?}");
    assert_eq!(merged.end, b"t/bank/".to_vec());
    assert_eq!(merged.replicas.len(), 3);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let report = w.finish().await;
    let transfers = bank.finish().await;
    eprintln!(
        "{} register operations, {} acknowledged writes, {} failed; transfers {:?}",
        report.operations(),
        report.acked.len(),
        report.failed,
        transfers.transfers
    );
    report
        .check_all(&c.addrs(), 100, Duration::from_secs(60))
        .await
        .unwrap();
    transfers.check(&client, ACCOUNTS, 100).await.unwrap();

    // Two ranges left, held by every node; the absorbed ones gone everywhere.
    let after: BTreeSet<u64> = [1, bank_left].into();
    wait_ranges(&c, &after).await;
    let l = client.range_lookup("lin-9").await.unwrap();
    assert_eq!(l.descriptor.unwrap().range_id, 1);
    let l = client.range_lookup("t/bank/007").await.unwrap();
    assert_eq!(l.descriptor.unwrap().range_id, bank_left);
    let keys = client.scan("k", "l", 0).await.unwrap();
    assert_eq!(keys.len(), 100);

    // Nothing follows the last range: refused, with a clear error and exit code 1.
    let out = shoal(&["range", "merge", "zzz", "--host", &c.nodes[0].grpc]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no range follows"), "{stderr}");

    // After a kill -9 of every node: the same two ranges, every key.
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.restart(i).unwrap();
    }
    wait_ranges(&c, &after).await;
    let client = c.client();
    assert_eq!(client.scan("k", "l", 0).await.unwrap().len(), 100);
    report.check_acknowledged(&client).await.unwrap();
    // The merged range splits again, and takes writes on both sides.
    let (_, right) = client.split_range("lin-5").await.unwrap();
    assert!(!after.contains(&right.range_id));
    client.put("lin-9", "again").await.unwrap();
    client.put("a", "again").await.unwrap();
    assert_eq!(
        client.get("lin-9").await.unwrap().unwrap().value,
        b"again".to_vec()
    );
}

/// Ranges left idle merge back (`--merge-after`) while they are small and on the
/// same replicas; a range kept busy does not, until it is idle too. (The meta range
/// never goes idle: it stays apart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ranges_merge_back_and_a_busy_one_waits() {
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend(["--merge-after", "2s"]);
    let c = TestCluster::start_initialized(3, &flags).await.unwrap();
    let client = c.client();
    let mut ids = vec![1];
    for k in ["g", "m", "t"] {
        ids.push(client.split_range(k).await.unwrap().1.range_id);
    }
    // [g, m) kept busy.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, stop) = (c.client(), stop.clone());
        tokio::spawn(async move {
            let mut acked = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if client.put(format!("h{acked:05}"), "v").await.is_ok() {
                    acked += 1;
                }
            }
            acked
        })
    };
    // [m, t) and [t, ...) merge; the busy range stays apart.
    wait_ranges(&c, &[1, ids[1], ids[2]].into()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(range_ids(&client).await, [1, ids[1], ids[2]].into());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(acked > 0);
    // Idle now, it merges too.
    wait_ranges(&c, &[1, ids[1]].into()).await;
    let l = client.range_lookup("z").await.unwrap();
    assert_eq!(l.descriptor.unwrap().range_id, ids[1]);
    assert_eq!(client.scan("h", "i", 0).await.unwrap().len() as u64, acked);
    let merges: u64 = (0..3)
        .map(|i| {
            let (_, text) = c.http_get(i, "/metrics").unwrap();
            text.lines()
                .find(|l| l.starts_with("shoal_range_merges_total{reason=\"idle\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(merges, 2);
}
