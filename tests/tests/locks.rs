//! Transactions' locks met by the plain API, on a real cluster whose two ranges hold a
//! transaction's primary key (`a`) and a secondary (`x`). The transactions are driven
//! step by step through the nodes' own wire (`Kv.TxnStep`), as a coordinator would,
//! and left where a coordinator that died would leave them: a reader or a writer
//! that meets a lock finds its transaction's fate at the primary and rolls the lock
//! forward or back.

use std::time::{Duration, Instant};

use shoal_client::Client;
use shoal_raft::codec::{decode, encode};
use shoal_raft::txn_record::{Mutation, Prewrite, TxnConflict};
use shoal_raft::{Command, CommandResponse, OpResult};
use shoal_tests::{TestCluster, FAST_ELECTIONS};

async fn step(client: &Client, key: &str, cmd: Command) -> OpResult {
    let answer = client
        .txn_step(
            key.as_bytes(),
            &shoal_client::key_after(key.as_bytes()),
            encode(&cmd).unwrap(),
        )
        .await
        .expect("step");
    let resp: CommandResponse = decode(&answer).unwrap();
    assert_eq!(resp.results.len(), 1, "{resp:?}");
    resp.results[0].clone()
}

/// Prewrites `key = value` for the transaction `start` whose primary is `a`.
async fn prewrite(client: &Client, start: u64, key: &str, value: &str, ttl_ms: u64) {
    let cmd = Command::Prewrite(Prewrite {
        start_ts: start,
        primary: b"a".to_vec(),
        mutations: vec![Mutation::Put {
            key: key.into(),
            value: value.into(),
        }],
        ttl_ms,
        async_commit: None,
    });
    assert_eq!(step(client, key, cmd).await, OpResult::TxnDone);
}

async fn cluster() -> (TestCluster, Client) {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    client.split_range("m").await.unwrap();
    client.put("a", "old").await.unwrap();
    client.put("x", "old").await.unwrap();
    (c, client)
}

fn value(kv: Option<shoal_client::KeyValue>) -> Option<String> {
    kv.map(|kv| String::from_utf8(kv.value).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_rolls_forward_a_transaction_committed_at_its_primary() {
    let (c, client) = cluster().await;
    let start = client.timestamp().await.unwrap();
    prewrite(&client, start, "a", "new", 60_000).await;
    prewrite(&client, start, "x", "new", 60_000).await;
    let commit_ts = client.timestamp().await.unwrap();
    let commit = Command::CommitKeys {
        start_ts: start,
        commit_ts,
        keys: vec![b"a".to_vec()],
    };
    assert_eq!(step(&client, "a", commit).await, OpResult::TxnDone);
    // The coordinator died here: x is still locked. Readers through every node see the
    // transaction whole, at its commit timestamp.
    for i in 0..3 {
        let via = c.client_via(i);
        let kv = via.get("x").await.unwrap().expect("x");
        assert_eq!((kv.value.as_slice(), kv.version), (&b"new"[..], commit_ts));
        assert_eq!(
            value(via.get_at("x", commit_ts - 1).await.unwrap()),
            Some("old".into())
        );
        let all = via.scan("", "", 0).await.unwrap();
        let vals: Vec<_> = all.iter().map(|kv| kv.value.as_slice()).collect();
        assert_eq!(vals, [&b"new"[..], b"new"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_transaction_is_rolled_back_by_a_reader_and_cannot_commit_after() {
    let (_c, client) = cluster().await;
    let start = client.timestamp().await.unwrap();
    prewrite(&client, start, "a", "new", 300).await;
    prewrite(&client, start, "x", "new", 300).await;
    let after = client.timestamp().await.unwrap();
    // A read at a timestamp above the start waits for the transaction's fate: its
    // time to live runs out, the reader rolls it back.
    let t = Instant::now();
    assert_eq!(
        value(client.get_at("x", after).await.unwrap()),
        Some("old".into())
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(value(client.get("a").await.unwrap()), Some("old".into()));
    // The coordinator, late, tries to commit its primary: refused.
    let commit_ts = client.timestamp().await.unwrap();
    let commit = Command::CommitKeys {
        start_ts: start,
        commit_ts,
        keys: vec![b"a".to_vec()],
    };
    assert_eq!(
        step(&client, "a", commit).await,
        OpResult::TxnConflict(TxnConflict::RolledBack { key: b"a".to_vec() })
    );
    assert_eq!(value(client.get("a").await.unwrap()), Some("old".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_write_waits_for_a_lock_and_never_passes_it() {
    let (_c, client) = cluster().await;
    let start = client.timestamp().await.unwrap();
    prewrite(&client, start, "a", "txn", 60_000).await;
    prewrite(&client, start, "x", "txn", 60_000).await;
    // A read of the newest versions passes an alive transaction (it commits later).
    assert_eq!(value(client.get("x").await.unwrap()), Some("old".into()));
    // A plain put of x waits: the transaction commits meanwhile, then the put goes
    // on top of it.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move { client.put("x", "plain").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the put passed a lock");
    let commit_ts = client.timestamp().await.unwrap();
    for key in ["a", "x"] {
        let commit = Command::CommitKeys {
            start_ts: start,
            commit_ts,
            keys: vec![key.as_bytes().to_vec()],
        };
        assert_eq!(step(&client, key, commit).await, OpResult::TxnDone);
    }
    let put_version = writer.await.unwrap();
    assert!(put_version > commit_ts, "{put_version} <= {commit_ts}");
    assert_eq!(value(client.get("x").await.unwrap()), Some("plain".into()));
    assert_eq!(
        value(client.get_at("x", commit_ts).await.unwrap()),
        Some("txn".into())
    );
}
