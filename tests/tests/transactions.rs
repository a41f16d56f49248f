//! Transactions across ranges on a real cluster, through the SDK and the `Txn`
//! service: atomic commits at one timestamp, conflicts refused with a retriable code,
//! serializable reads (no write skew) and snapshot isolation on request, the stable
//! codes of bad handles and limits; and the bank and list-append workloads over many
//! ranges while ranges split, leaders move off nodes restarted in turn, and nodes
//! (the timestamp oracle's leader among them) are killed and paused.

use std::time::{Duration, Instant};

use shoal_client::{Client, Isolation, TxnOptions};
use shoal_proto::v1 as pb;
use shoal_tests::pairs::Pairs;
use shoal_tests::txn_workload::{Bank, ListAppend};
use shoal_tests::{TestCluster, FAST_ELECTIONS};

async fn cluster(extra: &[&str]) -> (TestCluster, Client) {
    let c = TestCluster::start_initialized(3, extra).await.unwrap();
    let client = c.client();
    client.split_range("m").await.unwrap();
    (c, client)
}

fn text(kv: &Option<shoal_client::KeyValue>) -> Option<String> {
    kv.as_ref()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_across_ranges_commits_whole_at_one_timestamp() {
    let (c, client) = cluster(&[]).await;
    client.put("b", "old").await.unwrap();
    let t = client.begin().await.unwrap();
    t.put("a", "1").await.unwrap();
    t.put("x", "2").await.unwrap();
    t.delete("b").await.unwrap();
    // Its own writes over its snapshot; nothing visible outside before commit.
    assert_eq!(text(&t.get("a").await.unwrap()), Some("1".into()));
    assert_eq!(t.get("b").await.unwrap(), None);
    let keys: Vec<Vec<u8>> = t
        .scan("", "", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"x".to_vec()]);
    assert_eq!(client.get("a").await.unwrap(), None);
    assert_eq!(text(&client.get("b").await.unwrap()), Some("old".into()));
    let commit_ts = t.commit().await.unwrap();
    assert!(commit_ts > t.start_ts());
    let (a, x) = (
        client.get("a").await.unwrap().unwrap(),
        client.get("x").await.unwrap().unwrap(),
    );
    assert_eq!(
        (a.value.as_slice(), x.value.as_slice()),
        (&b"1"[..], &b"2"[..])
    );
    assert_eq!(
        (a.version, x.version),
        (commit_ts, commit_ts),
        "one commit timestamp"
    );
    assert_eq!(client.get("b").await.unwrap(), None);
    // A read just below the commit sees none of it.
    assert_eq!(client.get_at("a", commit_ts - 1).await.unwrap(), None);
    assert_eq!(
        text(&client.get_at("b", commit_ts - 1).await.unwrap()),
        Some("old".into())
    );
    // Committed: closed.
    let e = t.put("a", "3").await.unwrap_err();
    assert_eq!(e.code(), Some("TXN_CLOSED"), "{e}");
    // One range: one phase; the keys take the commit's version too.
    let ts = client
        .transaction(|t| async move {
            t.put("c", "1").await?;
            t.put("d", "1").await?;
            Ok(())
        })
        .await;
    assert!(ts.is_ok(), "{ts:?}");
    let (kc, kd) = (
        client.get("c").await.unwrap().unwrap(),
        client.get("d").await.unwrap().unwrap(),
    );
    assert_eq!(kc.version, kd.version);
    // The `Txn` service's calls, and the steps a coordinator served itself, are
    // counted with the other RPCs.
    let metrics: String = (0..c.nodes.len())
        .map(|i| c.http_get(i, "/metrics").unwrap().1)
        .collect();
    for rpc in ["Txn.Begin", "Txn.Put", "Txn.Commit", "Txn.Scan"] {
        assert!(
            metrics.contains(&format!("code=\"OK\",rpc=\"{rpc}\"")),
            "{rpc} not counted"
        );
    }
}

/// The decided commits of every node's ranges: (carried by another proposal, sent
/// alone).
fn held_commits(c: &TestCluster) -> (u64, u64) {
    let sum = |name| -> u64 {
        (0..c.nodes.len())
            .map(|i| c.raft_gauges(i, name).unwrap().values().sum::<u64>())
            .sum()
    };
    (sum("commits_carried"), sum("commits_alone"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decided_commits_ride_with_the_next_writes_of_their_range_or_go_alone_soon() {
    let (c, client) = cluster(&[]).await;
    // Batches of puts across the two ranges commit asynchronously: each answered
    // once its keys are locked, its locks committed after. Back to back, a batch's
    // commits are carried by the next batch's prewrites (one entry, one round).
    let mut versions = Vec::new();
    for i in 0..40 {
        let ops = vec![
            shoal_client::ops::write_put(format!("a{}", i % 4), format!("{i}")),
            shoal_client::ops::write_put(format!("x{}", i % 4), format!("{i}")),
        ];
        versions.push(client.batch(ops).await.unwrap());
    }
    let (carried, _) = held_commits(&c);
    assert!(carried > 0, "no commit rode with a later proposal");
    // A batch with a delete is coordinated by a node (the leader of its first key's
    // range), which serves that range's steps itself.
    client
        .batch(vec![
            shoal_client::ops::write_put("a9", "9"),
            shoal_client::ops::write_delete("x9"),
        ])
        .await
        .unwrap();
    assert!(
        (0..c.nodes.len()).any(|i| c
            .http_get(i, "/metrics")
            .unwrap()
            .1
            .contains("rpc=\"TxnStep.Local\"")),
        "no step was served by its coordinator"
    );
    // Every key holds its last batch's value, at that batch's version.
    for k in 0..4 {
        let i = 36 + k;
        for key in [format!("a{k}"), format!("x{k}")] {
            let kv = client.get(&key).await.unwrap().unwrap();
            assert_eq!(kv.value, format!("{i}").into_bytes(), "{key}");
            assert_eq!(kv.version, versions[i], "{key}");
        }
    }
    // One batch, then nothing: its commits wait briefly for a carrier, then go.
    let before = held_commits(&c);
    let ops = vec![
        shoal_client::ops::write_put("b", "last"),
        shoal_client::ops::write_put("y", "last"),
    ];
    let v = client.batch(ops).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = held_commits(&c);
        if now.0 + now.1 >= before.0 + before.1 + 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the last commits never went");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for key in ["b", "y"] {
        assert_eq!(client.get(key).await.unwrap().unwrap().version, v);
    }
}

/// Every node's `/metrics`, together.
fn all_metrics(c: &TestCluster) -> String {
    (0..c.nodes.len())
        .map(|i| c.http_get(i, "/metrics").unwrap().1)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_puts_across_ranges_is_prewritten_by_the_sdk_on_each_leader_and_lands_whole() {
    let (c, client) = cluster(&[]).await;
    // Four writers put the same value in a0 and x0 (two ranges), over and over, and
    // collide; a reader takes snapshots of both meanwhile.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut versions = Vec::new();
                for i in 0..25 {
                    let v = format!("{w}-{i}");
                    let ops = vec![
                        shoal_client::ops::write_put("a0", &v),
                        shoal_client::ops::write_put("x0", &v),
                    ];
                    versions.push(client.batch(ops).await.unwrap());
                }
                client.flush().await;
                versions
            })
        })
        .collect();
    let reader = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            for _ in 0..60 {
                let ts = client.timestamp().await.unwrap();
                let (a, x) = (
                    client.get_at("a0", ts).await.unwrap(),
                    client.get_at("x0", ts).await.unwrap(),
                );
                let pair = |kv: &Option<shoal_client::KeyValue>| {
                    kv.as_ref().map(|kv| (kv.value.clone(), kv.version))
                };
                assert_eq!(pair(&a), pair(&x), "a snapshot at {ts} saw half a batch");
                seen += usize::from(a.is_some());
            }
            seen
        })
    };
    let mut versions = Vec::new();
    for w in writers {
        versions.extend(w.await.unwrap());
    }
    assert!(reader.await.unwrap() > 0, "the reader never saw a batch");
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        100,
        "two batches answered one commit timestamp"
    );
    let (a, x) = (
        client.get("a0").await.unwrap().unwrap(),
        client.get("x0").await.unwrap().unwrap(),
    );
    assert_eq!((&a.value, a.version), (&x.value, x.version));
    assert_eq!(a.version, *versions.last().unwrap(), "the last commit won");
    // Sent by the SDK to the ranges' leaders, then finished by a node; no node
    // coordinated a `Batch`.
    let metrics = all_metrics(&c);
    for rpc in ["Prewrite", "Txn.Finish"] {
        assert!(
            metrics.contains(&format!("code=\"OK\",rpc=\"{rpc}\"")),
            "{rpc} not counted"
        );
    }
    assert!(!metrics.contains("rpc=\"Batch\""), "a batch went to a node");

    // A split the client does not know of: the prewrite is refused there and goes
    // again as one per range.
    let other = Client::new(c.addrs()).unwrap();
    other.split_range("x5").await.unwrap();
    let ops = vec![
        shoal_client::ops::write_put("x1", "s"),
        shoal_client::ops::write_put("x9", "s"),
        shoal_client::ops::write_put("a1", "s"),
    ];
    let v = client.batch(ops).await.unwrap();
    for key in ["x1", "x9", "a1"] {
        let kv = client.get(key).await.unwrap().unwrap();
        assert_eq!((kv.value.as_slice(), kv.version), (&b"s"[..], v), "{key}");
    }

    // The wire refuses what would break the protocol, and writes nothing.
    let mut kv = pb::kv_client::KvClient::connect(format!("http://{}", c.nodes[0].grpc))
        .await
        .unwrap();
    let start_ts = client.timestamp().await.unwrap();
    let prewrite = |start_ts, primary: &str, keys: &[&str], secondaries: &[&str], ttl_ms| {
        pb::PrewriteRequest {
            start_ts,
            primary: primary.into(),
            puts: keys
                .iter()
                .map(|k| pb::PutOp {
                    key: k.as_bytes().to_vec(),
                    value: b"bad".to_vec(),
                })
                .collect(),
            secondaries: secondaries.iter().map(|k| k.as_bytes().to_vec()).collect(),
            ttl_ms,
            target: None,
        }
    };
    let too_many: Vec<String> = (0..65).map(|i| format!("b{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    for (why, req) in [
        ("no start", prewrite(0, "b", &["b"], &[], 1000)),
        ("no keys", prewrite(start_ts, "b", &[], &[], 1000)),
        ("no ttl", prewrite(start_ts, "b", &["b"], &[], 0)),
        (
            "a ttl too long",
            prewrite(start_ts, "b", &["b"], &[], 600_000),
        ),
        (
            "a key twice",
            prewrite(start_ts, "b", &["b", "b"], &[], 1000),
        ),
        (
            "secondaries without the primary",
            prewrite(start_ts, "b", &["c"], &["c"], 1000),
        ),
        (
            "65 secondaries",
            prewrite(start_ts, "b", &["b"], &too_many, 1000),
        ),
    ] {
        let s = kv.prewrite(req).await.unwrap_err();
        assert_eq!(
            shoal_proto::error::code_of(&s),
            "INVALID_ARGUMENT",
            "{why}: {s:?}"
        );
    }
    let s = kv
        .prewrite(prewrite(start_ts, "", &[""], &[], 1000))
        .await
        .unwrap_err();
    assert_eq!(shoal_proto::error::code_of(&s), "EMPTY_KEY", "{s:?}");
    let mut txns = pb::txn_client::TxnClient::connect(format!("http://{}", c.nodes[0].grpc))
        .await
        .unwrap();
    let txn = |commit_ts, keys: &[&str]| pb::FinishTxn {
        start_ts,
        primary: b"b".to_vec(),
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        commit_ts,
    };
    let finish = |txns| pb::TxnFinishRequest { txns };
    for (why, req) in [
        (
            "a commit below the start",
            finish(vec![txn(start_ts - 1, &["b"])]),
        ),
        ("keys without the primary", finish(vec![txn(0, &["c"])])),
        // One bad among good ones: none is finished.
        (
            "one of two bad",
            finish(vec![txn(0, &["b"]), txn(0, &["c"])]),
        ),
        ("1,025 at once", finish(vec![txn(0, &["b"]); 1025])),
    ] {
        let s = txns.finish(req).await.unwrap_err();
        assert_eq!(
            shoal_proto::error::code_of(&s),
            "INVALID_ARGUMENT",
            "{why}: {s:?}"
        );
    }
    assert!(client.scan("b", "d", 0).await.unwrap().is_empty());
}

/// A client's own prewrite of `puts` (key, value) at `start_ts`, primary `primary`,
/// sent to `node` (which forwards it to the range's leader).
async fn prewrite(
    c: &TestCluster,
    node: usize,
    start_ts: u64,
    primary: &str,
    puts: &[(&str, &str)],
    secondaries: &[&str],
) -> pb::prewrite_response::Outcome {
    let mut kv = pb::kv_client::KvClient::connect(format!("http://{}", c.nodes[node].grpc))
        .await
        .unwrap();
    let req = pb::PrewriteRequest {
        start_ts,
        primary: primary.into(),
        puts: puts
            .iter()
            .map(|(k, v)| pb::PutOp {
                key: k.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
            })
            .collect(),
        secondaries: secondaries.iter().map(|k| k.as_bytes().to_vec()).collect(),
        // Half a second past the start: readers settle the locks soon after.
        ttl_ms: 500,
        target: None,
    };
    kv.prewrite(req)
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_of_a_client_that_died_after_its_prewrites_are_settled_by_readers() {
    use pb::prewrite_response::Outcome;
    let (c, client) = cluster(&[]).await;
    // Every key locked, then the client is gone (no `Txn.Finish`): the transaction
    // is committed, at the larger of the two `min_commit_ts`.
    let start_ts = client.timestamp().await.unwrap();
    let Outcome::MinCommitTs(m1) = prewrite(&c, 0, start_ts, "a7", &[("a7", "1")], &["x7"]).await
    else {
        panic!("the primary's prewrite was refused")
    };
    let Outcome::MinCommitTs(m2) = prewrite(&c, 1, start_ts, "a7", &[("x7", "1")], &[]).await
    else {
        panic!("the secondary's prewrite was refused")
    };
    assert!(m1 > start_ts && m2 > start_ts);
    // Sent again (an answer lost): the same answer, nothing more written.
    assert_eq!(
        prewrite(&c, 2, start_ts, "a7", &[("x7", "1")], &[]).await,
        Outcome::MinCommitTs(m2)
    );
    for key in ["x7", "a7"] {
        let kv = client.get(key).await.unwrap().unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.version),
            (&b"1"[..], m1.max(m2)),
            "{key}"
        );
    }
    // Sent again after it was settled: committed, and at what timestamp.
    assert_eq!(
        prewrite(&c, 0, start_ts, "a7", &[("x7", "1")], &[]).await,
        Outcome::CommittedAt(m1.max(m2))
    );

    // Only the primary locked, its secondary's prewrite never sent: a reader rolls
    // the transaction back, and the late prewrite is refused.
    let start_ts = client.timestamp().await.unwrap();
    assert!(matches!(
        prewrite(&c, 0, start_ts, "a8", &[("a8", "1")], &["x8"]).await,
        Outcome::MinCommitTs(_)
    ));
    assert_eq!(client.get("a8").await.unwrap(), None);
    assert!(matches!(
        prewrite(&c, 1, start_ts, "a8", &[("x8", "1")], &[]).await,
        Outcome::Conflict(_)
    ));
    assert_eq!(client.get("x8").await.unwrap(), None);
    client.put("a8", "2").await.unwrap();
    client.put("x8", "2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_transactions_writing_what_both_read_one_commits_the_other_is_refused() {
    let (_c, client) = cluster(&[]).await;
    client.put("a", "0").await.unwrap();
    let t1 = client.begin().await.unwrap();
    let t2 = client.begin().await.unwrap();
    for (t, v) in [(&t1, "1"), (&t2, "2")] {
        assert_eq!(text(&t.get("a").await.unwrap()), Some("0".into()));
        t.put("a", v).await.unwrap();
        t.put("x", v).await.unwrap();
    }
    t1.commit().await.unwrap();
    let e = t2.commit().await.unwrap_err();
    assert_eq!(e.code(), Some("TXN_CONFLICT"), "{e}");
    assert!(e.is_txn_retriable());
    assert_eq!(text(&client.get("a").await.unwrap()), Some("1".into()));
    assert_eq!(text(&client.get("x").await.unwrap()), Some("1".into()));
    // Refused: nothing of it stays, no lock either (a plain write passes at once).
    client.put("x", "3").await.unwrap();
    // The SDK's transaction runs a conflicting closure again: 8 increments from 4
    // clients all land.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                client
                    .transaction(|t| async move {
                        let n: u64 = text(&t.get("n").await?).map_or(0, |s| s.parse().unwrap());
                        t.put("n", (n + 1).to_string()).await?;
                        t.put("z", (n + 1).to_string()).await?;
                        Ok(())
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(text(&client.get("n").await.unwrap()), Some("8".into()));
    assert_eq!(text(&client.get("z").await.unwrap()), Some("8".into()));
}

/// Two transactions each read both `a` and `x` and write one of them (the on-call
/// doctors' write skew): serializable refuses the second; snapshot isolation lets
/// both commit.
async fn write_skew(client: &Client, isolation: Isolation) -> (bool, bool) {
    client.put("a", "on").await.unwrap();
    client.put("x", "on").await.unwrap();
    let opts = TxnOptions {
        isolation,
        read_only: false,
    };
    let t1 = client.begin_with(opts).await.unwrap();
    let t2 = client.begin_with(opts).await.unwrap();
    for t in [&t1, &t2] {
        t.get("a").await.unwrap();
        t.get("x").await.unwrap();
    }
    t1.put("a", "off").await.unwrap();
    t2.put("x", "off").await.unwrap();
    let r1 = t1.commit().await;
    let r2 = t2.commit().await;
    if let Err(e) = &r2 {
        assert_eq!(e.code(), Some("TXN_CONFLICT"), "{e}");
    }
    (r1.is_ok(), r2.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serializable_transactions_refuse_write_skew_and_snapshot_ones_allow_it() {
    let (_c, client) = cluster(&[]).await;
    assert_eq!(
        write_skew(&client, Isolation::Serializable).await,
        (true, false)
    );
    assert_eq!(text(&client.get("x").await.unwrap()), Some("on".into()));
    assert_eq!(write_skew(&client, Isolation::Snapshot).await, (true, true));
    assert_eq!(text(&client.get("x").await.unwrap()), Some("off".into()));
    // A read-only transaction sees one snapshot, whatever commits meanwhile.
    let opts = TxnOptions {
        read_only: true,
        ..TxnOptions::default()
    };
    let r = client.begin_with(opts).await.unwrap();
    client.put("a", "later").await.unwrap();
    assert_eq!(text(&r.get("a").await.unwrap()), Some("off".into()));
    let e = r.put("a", "no").await.unwrap_err();
    assert_eq!(e.code(), Some("TXN_READ_ONLY"), "{e}");
    assert_eq!(r.commit().await.unwrap(), r.start_ts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_handles_and_limits_get_stable_codes_and_leave_nothing() {
    // A transaction may live half the retention window: 1 s here.
    let (c, client) = cluster(&["--gc-ttl", "2s"]).await;
    let mut raw = pb::txn_client::TxnClient::connect(format!("http://{}", c.nodes[0].grpc))
        .await
        .unwrap();
    let code = |s: tonic::Status| shoal_proto::error::code_of(&s);
    let s = raw
        .get(pb::TxnGetRequest {
            handle: 12345,
            key: b"a".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), code(s.clone()).as_str()),
        (tonic::Code::NotFound, "TXN_NOT_FOUND")
    );
    let s = raw
        .begin(pb::TxnBeginRequest {
            isolation: 7,
            read_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(code(s), "INVALID_ARGUMENT");

    // Commit after rollback.
    let t = client.begin().await.unwrap();
    t.put("a", "1").await.unwrap();
    t.rollback().await.unwrap();
    t.rollback().await.unwrap();
    assert_eq!(t.commit().await.unwrap_err().code(), Some("TXN_CLOSED"));
    assert_eq!(client.get("a").await.unwrap(), None);

    // Too many bytes: rolled back whole.
    let t = client.begin().await.unwrap();
    let big = vec![7u8; 4 << 20];
    t.put("a", &big).await.unwrap();
    let e = t.put("x", &big).await.unwrap_err();
    assert_eq!(e.code(), Some("TXN_TOO_LARGE"), "{e}");
    assert_eq!(t.commit().await.unwrap_err().code(), Some("TXN_CLOSED"));
    assert_eq!(client.get("a").await.unwrap(), None);
    // An oversized key, an empty one: refused, the transaction goes on.
    let t = client.begin().await.unwrap();
    let e = t.put(vec![1u8; 9 << 10], "v").await.unwrap_err();
    assert_eq!(e.code(), Some("KEY_TOO_LARGE"), "{e}");
    let e = t.get("").await.unwrap_err();
    assert_eq!(e.code(), Some("EMPTY_KEY"), "{e}");
    t.put("ok", "1").await.unwrap();
    t.commit().await.unwrap();
    assert_eq!(text(&client.get("ok").await.unwrap()), Some("1".into()));

    // Open past its lifetime: expired, rolled back.
    let t = client.begin().await.unwrap();
    t.put("a", "1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let e = t.commit().await.unwrap_err();
    assert_eq!(e.code(), Some("TXN_EXPIRED"), "{e}");
    assert_eq!(client.get("a").await.unwrap(), None);
}

/// Split points among the bank's accounts and the lists' keys: with `m` and the
/// meta range's, ten ranges.
const SPLITS: &[&str] = &[
    "t/bank/004",
    "t/bank/008",
    "t/bank/012",
    "t/bank/016",
    "t/la/004",
    "t/la/008",
    "t/la/012",
    "n",
];
/// Split later, while the workloads run.
const LATE_SPLITS: &[&str] = &[
    "p/pair/004",
    "t/bank/002",
    "t/bank/010",
    "t/bank/018",
    "t/la/002",
    "t/la/010",
    "t/la/014",
];

async fn split_all(client: &Client, keys: &[&str]) {
    for k in keys {
        client.split_range(k).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_and_list_append_hold_over_ten_ranges_while_they_split_and_leaders_move() {
    let (mut c, client) = cluster(FAST_ELECTIONS).await;
    split_all(&client, SPLITS).await;
    let addrs = c.addrs();
    let bank = Bank::start(&addrs, 20, 100, 4, 2).await.unwrap();
    let lists = ListAppend::start(&addrs, 16, 4).unwrap();
    let pairs = Pairs::start(&addrs, 8, 2, 1).unwrap();
    let mut log = Vec::new();
    for (i, k) in LATE_SPLITS.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        client.split_range(k).await.unwrap();
        log.push(format!("split at {k}"));
        // Every node restarted in turn, gracefully: its leaderships move away first
        // (SIGTERM drains), and come back as elections and balancing go.
        let i = i % 3;
        let st = c.terminate(i, Duration::from_secs(20));
        log.push(format!("rolling restart of node {i} ({st:?})"));
        c.restart(i).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bank_report = bank.finish().await;
    let lists_report = lists.finish().await;
    let pairs_report = pairs.finish().await;
    let ranges = client.ranges().await.unwrap().ranges.len();
    eprintln!(
        "{log:?}\n{ranges} ranges\nbank: {:?}, {} snapshot sums\nlist-append: {:?}\npairs: {:?}, {} reads",
        bank_report.transfers, bank_report.reads, lists_report.tally, pairs_report.batches,
        pairs_report.reads
    );
    assert!(ranges >= 16, "{ranges} ranges");
    bank_report.check(&client, 20, 100).await.unwrap();
    lists_report.check().unwrap();
    pairs_report.check(&client).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_and_list_append_hold_while_nodes_and_the_oracles_leader_are_killed_and_paused() {
    let (mut c, client) = cluster(FAST_ELECTIONS).await;
    split_all(&client, SPLITS).await;
    let addrs = c.addrs();
    let bank = Bank::start(&addrs, 20, 100, 4, 2).await.unwrap();
    let lists = ListAppend::start(&addrs, 16, 4).unwrap();
    let pairs = Pairs::start(&addrs, 8, 2, 1).unwrap();
    let mut log = Vec::new();
    let until = Instant::now() + Duration::from_secs(16);
    let mut round = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // The meta range's leader (the timestamp oracle) every other round.
        let victim = match c.leader_among(&[0, 1, 2]).await {
            Some(l) if round % 2 == 0 => l,
            _ => round % 3,
        };
        if round % 4 == 3 {
            log.push(format!("pause {victim}"));
            c.pause(victim, true);
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.pause(victim, false);
        } else {
            log.push(format!("kill -9 {victim}"));
            c.kill9(victim);
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.restart(victim).unwrap();
        }
        round += 1;
    }
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bank_report = bank.finish().await;
    let lists_report = lists.finish().await;
    let pairs_report = pairs.finish().await;
    eprintln!(
        "{log:?}\nbank: {:?}, {} snapshot sums\nlist-append: {:?}\npairs: {:?}, {} reads",
        bank_report.transfers,
        bank_report.reads,
        lists_report.tally,
        pairs_report.batches,
        pairs_report.reads
    );
    bank_report.check(&client, 20, 100).await.unwrap();
    lists_report.check().unwrap();
    pairs_report.check(&client).await.unwrap();
}
