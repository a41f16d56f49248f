//! Client histories under failures, checked for linearizability: concurrent clients
//! read, write and compare-and-set a few keys while leaders are killed with SIGKILL
//! and restarted; every key's history must have a linearization.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use shoal_client::{ops, Client, ClientOptions, Error};
use shoal_tests::linearizability::{check, OpKind, Operation};
use shoal_tests::{TestCluster, FAST_ELECTIONS};

const KEYS: usize = 3;

type History = Arc<Mutex<BTreeMap<usize, Vec<Operation>>>>;

async fn client_loop(id: usize, client: Client, start: Instant, until: Instant, history: History) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(id as u64);
    let now = || start.elapsed().as_nanos() as u64;
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let k = rng.random_range(0..KEYS);
        let key = format!("lin-{k}");
        let call = now();
        let roll = rng.random_range(0..10);
        let recorded = if roll < 4 {
            match client.get(&key).await {
                Ok(v) => Some(Operation {
                    call,
                    ret: Some(now()),
                    kind: OpKind::Read(v.map(|kv| String::from_utf8_lossy(&kv.value).into_owned())),
                }),
                // A failed read changed nothing: it is left out of the history.
                Err(_) => None,
            }
        } else if roll < 8 {
            let v = format!("c{id}-{n}");
            // Retried by the SDK through failures: its request id makes it apply once.
            let res = client.put(&key, &v).await;
            Some(Operation {
                call,
                ret: res.is_ok().then(now),
                kind: OpKind::Write(v),
            })
        } else {
            // Compare-and-set from the value this client last saw (or absent).
            let from = history.lock().unwrap().get(&k).and_then(|h| {
                h.iter().rev().find_map(|o| match &o.kind {
                    OpKind::Read(v) if o.ret.is_some() => Some(v.clone()),
                    _ => None,
                })
            });
            let from = from.flatten();
            let to = format!("c{id}-{n}");
            let cmp = match &from {
                Some(v) => ops::value_cmp(&key, shoal_client::compare::Op::Equal, v),
                None => ops::exists(&key, false),
            };
            let res = client
                .txn(vec![cmp], vec![ops::put(&key, &to)], vec![])
                .await;
            match res {
                Ok(r) => Some(Operation {
                    call,
                    ret: Some(now()),
                    kind: OpKind::Cas {
                        from,
                        to,
                        ok: r.succeeded,
                    },
                }),
                Err(Error::OutcomeUnknown(_)) | Err(_) => Some(Operation {
                    call,
                    ret: None,
                    kind: OpKind::Cas {
                        from,
                        to,
                        ok: false,
                    },
                }),
            }
        };
        if let Some(op) = recorded {
            history.lock().unwrap().entry(k).or_default().push(op);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_under_leader_kills_are_linearizable() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let history: History = Arc::default();
    let start = Instant::now();
    let until = start + Duration::from_secs(16);
    let opts = ClientOptions {
        request_timeout: Duration::from_secs(2),
        retry_deadline: Duration::from_secs(4),
        ..Default::default()
    };
    let mut clients = Vec::new();
    for id in 0..6 {
        let client = Client::with_options(c.addrs(), opts.clone()).unwrap();
        clients.push(tokio::spawn(client_loop(
            id,
            client,
            start,
            until,
            history.clone(),
        )));
    }
    // The nemesis: kill -9 the leader, restart it, twice.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = c.wait_leader(Duration::from_secs(10)).await.unwrap();
        c.kill9(leader);
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.restart(leader).unwrap();
    }
    for t in clients {
        t.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    let total: usize = history.values().map(Vec::len).sum();
    assert!(total > 200, "only {total} operations recorded");
    for (k, ops) in &history {
        assert!(
            check(ops),
            "the history of key {k} ({} operations) is not linearizable",
            ops.len()
        );
    }
}
