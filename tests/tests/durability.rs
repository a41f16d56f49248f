//! Durability: no acknowledged write is lost when every node is killed with SIGKILL
//! mid-load and restarted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_client::{Client, ClientOptions};
use shoal_tests::{TestCluster, FAST_ELECTIONS};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_every_node_mid_load_loses_no_acknowledged_write() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = ClientOptions {
        retry_deadline: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let mut writers = Vec::new();
    for w in 0..8 {
        let client = Client::with_options(c.addrs(), opts.clone()).unwrap();
        let acked = acked.clone();
        let stop = stop_rx.clone();
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !*stop.borrow() {
                let (k, v) = (format!("w{w}-{i:06}"), format!("value-{w}-{i}"));
                // Only what the cluster acknowledged is recorded; failures during the
                // crash are allowed to be lost (or not).
                if client.put(&k, &v).await.is_ok() {
                    acked.lock().unwrap().push((k, v));
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..3 {
        c.kill9(i);
    }
    stop_tx.send(true).unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "only {} writes acknowledged before the crash",
        acked.len()
    );

    for i in 0..3 {
        c.restart(i).unwrap();
    }
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    let client = c.client();
    for (k, v) in &acked {
        let kv = client
            .get(k)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write {k} lost"));
        assert_eq!(&kv.value, v.as_bytes(), "value of {k}");
    }
}
