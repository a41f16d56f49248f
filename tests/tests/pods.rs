//! Pod lifecycle in Docker, from the rendered StatefulSet manifest: start and
//! bootstrap, rescheduling, disk loss.
//!
//! Needs Docker and the image under test (`$SHOAL_TEST_IMAGE`, built by
//! scripts/test.sh with docker/build-image.sh).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_tests::pods::{rendered, Pods};

const READY: Duration = Duration::from_secs(90);

/// Starts shoal-0..2 in parallel on their volumes.
fn start_three(p: &mut Pods) {
    for i in 0..3 {
        p.start(i, &format!("data-shoal-{i}")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statefulset_starts_with_the_init_job_and_serves_through_the_public_service() {
    let mut p = Pods::new("init-job", "statefulset").unwrap();
    start_three(&mut p);
    // The init Job, as the manifest gives it, retried as its backoffLimit allows.
    let (_, job) = rendered("statefulset").unwrap();
    let args: Vec<String> = job.expect("init Job")["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut ok = false;
    for _ in 0..20 {
        let out = p.run_job(&args).unwrap();
        if out.status.success() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(ok, "the init Job never succeeded:\n{}", p.logs("shoal-0"));
    // A second run is refused.
    let again = p.run_job(&args).unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialised"));

    p.wait_all_ready(READY).await.unwrap();
    // The pods serve TLS alone, with the manifests' Secret: plaintext gets no answer.
    let http = p.pods["shoal-0"].http.clone();
    assert!(
        !matches!(shoal_tests::http_get(&http, "/healthz"), Ok((200, _))),
        "a pod answered plaintext HTTP"
    );
    let (_, metrics) = p.http_get(&http, "/metrics").unwrap();
    assert!(
        metrics.contains("shoal_node_certificate_expires_seconds 1")
            || metrics.contains("shoal_node_certificate_expires_seconds 2"),
        "{metrics}"
    );
    let c = p.client();
    for i in 0..100 {
        c.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(
            c.get(format!("k{i}")).await.unwrap().unwrap().value,
            format!("v{i}").into_bytes()
        );
    }
    // Pod identity: the FQDN advertised, one cluster.
    let st = p.status("shoal-1").await.unwrap();
    assert_eq!(
        st.advertise_addr,
        "shoal-1.shoal.default.svc.cluster.local:7070"
    );
    // kubectl exec -it shoal-0 -- shoal kv get k7: the local node by default.
    let out = p.exec("shoal-0", &["kv", "get", "k7"]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "v7\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // kubectl exec shoal-1 -- shoal sql -e ...: the local node's SQL port by default.
    let out = p
        .exec(
            "shoal-1",
            &[
                "sql",
                "-e",
                "CREATE TABLE pets (name TEXT PRIMARY KEY, legs INT4)",
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // kubectl exec -i shoal-2 -- shoal sql < script: statements on stdin.
    let out = p
        .exec_with_input(
            "shoal-2",
            &["sql"],
            "INSERT INTO pets VALUES ('cat', 4), ('bird', 2);\nSELECT name, legs FROM pets ORDER BY name;\n",
        )
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| bird | 2    |") && stdout.contains("| cat  | 4    |"),
        "{stdout}"
    );
    let out = p
        .exec_with_input("shoal-0", &["sql"], "SELECT nope FROM pets;\n")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("42703"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statefulset_bootstraps_itself_with_bootstrap_expect() {
    let mut p = Pods::new("expect", "statefulset").unwrap();
    p.set_env("SHOAL_BOOTSTRAP_EXPECT", "3");
    start_three(&mut p);
    p.wait_all_ready(READY).await.unwrap();
    let mut clusters = std::collections::BTreeSet::new();
    for i in 0..3 {
        clusters.insert(p.status(&format!("shoal-{i}")).await.unwrap().cluster_id);
    }
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    // shoal-0, the lowest ordinal, founded it and took id 1.
    assert_eq!(p.status("shoal-0").await.unwrap().node_id, 1);
    p.client().put("k", "v").await.unwrap();
}

/// Writes keys continuously through the public Service; records what was acknowledged.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    errors: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(p: &Pods) -> Self {
        let (stop, acked, errors) = (
            Arc::new(AtomicBool::new(false)),
            Arc::default(),
            Arc::new(AtomicU64::new(0)),
        );
        let c = p.client();
        let task = {
            let (stop, acked, errors): (Arc<AtomicBool>, Arc<Mutex<Vec<String>>>, Arc<AtomicU64>) =
                (stop.clone(), Arc::clone(&acked), errors.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let k = format!("w-{i:06}");
                    match c.put(&k, &k).await {
                        Ok(_) => acked.lock().unwrap().push(k),
                        Err(e) => {
                            eprintln!("write {k} failed: {e}");
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self {
            stop,
            acked,
            errors,
            task,
        }
    }

    async fn finish(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.errors.load(Ordering::SeqCst))
    }
}

async fn assert_all_present(p: &Pods, keys: &[String]) {
    let c = p.client();
    for k in keys {
        let kv = c
            .get(k)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write {k} lost"));
        assert_eq!(kv.value, k.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rescheduled_pod_keeps_its_identity_and_catches_up() {
    let mut p = Pods::new("resched", "statefulset").unwrap();
    p.set_env("SHOAL_BOOTSTRAP_EXPECT", "3");
    start_three(&mut p);
    p.wait_all_ready(READY).await.unwrap();
    let before = p.status("shoal-1").await.unwrap();
    let old_ip = p.pods["shoal-1"].ip.clone();
    let w = Writer::start(&p);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Rescheduled: the container goes, and comes back with the same volume and name
    // but a new IP.
    p.remove("shoal-1").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod = p.start(1, "data-shoal-1").unwrap();
    assert_ne!(pod.ip, old_ip);
    p.wait_ready("shoal-1", READY).await.unwrap();
    let after = p.status("shoal-1").await.unwrap();
    assert_eq!(
        (after.node_id, &after.cluster_id),
        (before.node_id, &before.cluster_id)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (acked, errors) = w.finish().await;
    assert_eq!(errors, 0, "writes failed past the SDK's retries");
    assert!(acked.len() > 20);
    assert_all_present(&p, &acked).await;
    // Caught up: it serves the latest write from its own state.
    let last = acked.last().unwrap();
    let c = p.client();
    let kv = c
        .get_from(
            &p.pods["shoal-1"].grpc,
            last,
            shoal_client::Consistency::Linearizable,
        )
        .await
        .unwrap();
    assert!(kv.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_on_an_empty_volume_joins_as_a_new_node_without_a_second_cluster() {
    let mut p = Pods::new("diskloss", "statefulset").unwrap();
    p.set_env("SHOAL_BOOTSTRAP_EXPECT", "3");
    start_three(&mut p);
    p.wait_all_ready(READY).await.unwrap();
    let old = p.status("shoal-2").await.unwrap();
    let w = Writer::start(&p);
    tokio::time::sleep(Duration::from_secs(2)).await;

    p.remove("shoal-2").unwrap();
    p.start(2, "data-shoal-2-new").unwrap();
    p.wait_ready("shoal-2", READY).await.unwrap();
    let new = p.status("shoal-2").await.unwrap();
    assert_eq!(
        new.cluster_id, old.cluster_id,
        "a second cluster was founded"
    );
    assert_ne!(new.node_id, old.node_id);
    // The replaced id is listed as dead; `shoal node remove` takes it out.
    let out = p
        .exec("shoal-0", &["node", "remove", &old.node_id.to_string()])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (acked, errors) = w.finish().await;
    assert_eq!(errors, 0, "the service stopped");
    assert_all_present(&p, &acked).await;
    let nodes = p.client().nodes().await.unwrap().nodes;
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n.node_id != old.node_id));
}

/// Reads the latest acknowledged key linearizably, continuously; counts errors.
struct Reader {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(p: &Pods, w: &Writer) -> Self {
        let (stop, errors, reads) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (c, acked) = (p.client(), w.acked.clone());
        let task = {
            let (stop, errors, reads) = (stop.clone(), errors.clone(), reads.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let last = acked.lock().unwrap().last().cloned();
                    if let Some(k) = last {
                        match c.get(&k).await {
                            Ok(Some(_)) => {
                                reads.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(None) => {
                                eprintln!("linearizable read missed acknowledged {k}");
                                errors.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => {
                                eprintln!("read {k} failed: {e}");
                                errors.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self {
            stop,
            errors,
            reads,
            task,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        (
            self.reads.load(Ordering::SeqCst),
            self.errors.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_upgrade_in_reverse_ordinal_order_surfaces_no_error() {
    let mut p = Pods::new("rolling", "statefulset").unwrap();
    p.set_env("SHOAL_BOOTSTRAP_EXPECT", "3");
    start_three(&mut p);
    p.wait_all_ready(READY).await.unwrap();
    let w = Writer::start(&p);
    let r = Reader::start(&p, &w);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in [2, 1, 0] {
        let name = format!("shoal-{i}");
        let id = p.status(&name).await.unwrap().node_id;
        // The kubelet: SIGTERM, wait for the exit, start the new version's pod.
        let took = p.stop(&name).unwrap();
        assert!(
            took < Duration::from_secs(25),
            "{name} took {took:?} to stop"
        );
        p.start(i, &format!("data-shoal-{i}")).unwrap();
        p.wait_ready(&name, READY).await.unwrap();
        assert_eq!(p.status(&name).await.unwrap().node_id, id);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (reads, read_errors) = r.finish().await;
    let (acked, write_errors) = w.finish().await;
    assert_eq!(
        (write_errors, read_errors),
        (0, 0),
        "errors surfaced past the SDK's retries"
    );
    assert!(reads > 20 && acked.len() > 20);
    assert_all_present(&p, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_three_to_five_to_three_keeps_serving() {
    let mut p = Pods::new("scale", "statefulset").unwrap();
    p.set_env("SHOAL_BOOTSTRAP_EXPECT", "3");
    start_three(&mut p);
    p.wait_all_ready(READY).await.unwrap();
    let w = Writer::start(&p);
    for i in [3, 4] {
        p.start(i, &format!("data-shoal-{i}")).unwrap();
    }
    for i in [3, 4] {
        p.wait_ready(&format!("shoal-{i}"), READY).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while p
        .client()
        .nodes()
        .await
        .unwrap()
        .nodes
        .iter()
        .filter(|n| n.role == "voter")
        .count()
        < 5
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new pods never became voters"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Scale down: decommission, then remove the pod, highest ordinal first.
    for i in [4, 3] {
        let name = format!("shoal-{i}");
        let id = p.status(&name).await.unwrap().node_id;
        let out = p
            .exec("shoal-0", &["node", "decommission", &id.to_string()])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        p.stop(&name).unwrap();
    }
    let (acked, errors) = w.finish().await;
    assert_eq!(errors, 0, "the service stopped");
    assert_all_present(&p, &acked).await;
    let nodes = p.client().nodes().await.unwrap().nodes;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_pod_turns_unready_and_catches_up_when_reconnected() {
    let mut p = Pods::new("partition", "statefulset").unwrap();
    p.set_env("SHOAL_BOOTSTRAP_EXPECT", "3");
    start_three(&mut p);
    p.wait_all_ready(READY).await.unwrap();
    // Cut off the leader: the hardest case.
    let mut leader = String::new();
    for i in 0..3 {
        let name = format!("shoal-{i}");
        if p.status(&name).await.unwrap().ranges[0].role == "leader" {
            leader = name;
        }
    }
    assert!(!leader.is_empty());
    let w = Writer::start(&p);
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.partition(&leader, true).unwrap();
    // The isolated pod (seen from inside it, as kubectl exec would): unready, and its
    // linearizable reads are refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = p
            .exec(&leader, &["node", "status", "--format", "json"])
            .unwrap();
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if st["ready"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the isolated pod stays ready: {st}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = p
        .exec(&leader, &["kv", "get", "w-000001", "--timeout", "3"])
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a linearizable read on the isolated pod succeeded"
    );
    let stale = p
        .exec(&leader, &["kv", "get", "w-000001", "--stale"])
        .unwrap();
    assert!(stale.status.success(), "stale reads are served locally");
    // The majority keeps serving.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = w.acked.lock().unwrap().len();
    p.partition(&leader, false).unwrap();
    p.wait_ready(&leader, READY).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acked, errors) = w.finish().await;
    assert!(acked.len() > during, "no writes after reconnecting");
    assert_eq!(errors, 0, "errors surfaced past the SDK's retries");
    assert_all_present(&p, &acked).await;
    // Caught up: the last write is served by the reconnected pod.
    let last = acked.last().unwrap();
    let kv = p
        .client()
        .get_from(
            &p.pods[&leader].grpc,
            last,
            shoal_client::Consistency::Linearizable,
        )
        .await
        .unwrap();
    assert!(kv.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_hosts_bootstrap_and_a_lost_host_comes_back() {
    let mut p = Pods::new("daemonset", "daemonset").unwrap();
    let mut ips = Vec::new();
    for h in ["host-a", "host-b", "host-c"] {
        let ip = p.new_ip();
        p.start_on_host(h, &ip, &format!("disk-{h}")).unwrap();
        ips.push(ip);
    }
    p.wait_all_ready(READY).await.unwrap();
    let st = p.status("host-b").await.unwrap();
    assert_eq!(
        st.advertise_addr,
        format!("{}:7070", ips[1]),
        "the host IP is the address"
    );
    assert_eq!(
        st.node_name, "host-b",
        "the Kubernetes node's name is the node's name"
    );
    let id = st.node_id;
    let w = Writer::start(&p);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The host is lost (no drain), then comes back with its disk and address.
    p.remove("host-b").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.start_on_host("host-b", &ips[1], "disk-host-b").unwrap();
    p.wait_ready("host-b", READY).await.unwrap();
    assert_eq!(
        p.status("host-b").await.unwrap().node_id,
        id,
        "the host kept its identity"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acked, errors) = w.finish().await;
    assert_eq!(errors, 0, "errors surfaced past the SDK's retries");
    assert_all_present(&p, &acked).await;
}

/// A pod with a CPU quota and a memory limit (issue 21): each node sizes its
/// runtime (one worker for one CPU) and its store's memory (memtables at most 3/16
/// of the limit, a block cache of 1/8) from its cgroup, and says so in
/// `shoal_resources`; under a write load of more than its limit in values (with
/// the sizes of an unlimited host, the memtables alone could take 192 MiB) every
/// pod stays within its 160 MiB: none is OOM-killed, and every acknowledged write
/// is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_sizes_itself_from_its_cgroup_limits_and_stays_within_them() {
    const LIMIT: u64 = 160 << 20;
    let mut p = Pods::new("limits", "statefulset").unwrap();
    p.set_env("SHOAL_BOOTSTRAP_EXPECT", "3");
    p.limit(1.0, LIMIT);
    start_three(&mut p);
    p.wait_all_ready(READY).await.unwrap();
    for i in 0..3 {
        let http = p.pods[&format!("shoal-{i}")].http.clone();
        let (_, m) = p.http_get(&http, "/metrics").unwrap();
        for (of, want) in [
            ("cpu_quota_millicores", 1000),
            ("memory_limit_bytes", LIMIT),
            ("runtime_workers", 1),
            ("memtables_max_bytes", 2 * (LIMIT / 16 + LIMIT / 32)),
            ("block_cache_bytes", LIMIT / 8),
        ] {
            let line = format!("shoal_resources{{of=\"{of}\"}} {want}\n");
            assert!(m.contains(&line), "shoal-{i}: no {line:?} in\n{m}");
        }
    }
    // 192 MiB of values, 64 KiB each, from 8 writers at once.
    let value = vec![b'v'; 64 << 10];
    let c = p.client();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (c, value) = (c.clone(), value.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..384 {
                let k = format!("big-{w}-{i:04}");
                if c.put(&k, &value).await.is_ok() {
                    acked.push(k);
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    for i in 0..3 {
        let name = format!("shoal-{i}");
        assert!(p.running(&name), "{name} died (OOM?):\n{}", p.logs(&name));
        let anon = p.anon_memory(&name);
        eprintln!("{name}: {anon:?} bytes of anonymous memory, of a {LIMIT}-byte limit");
    }
    assert!(
        acked.len() >= 8 * 384 * 9 / 10,
        "only {} of {} writes were acknowledged",
        acked.len(),
        8 * 384
    );
    for k in acked.iter().step_by(17) {
        let kv = c.get(k).await.unwrap().expect("an acknowledged write lost");
        assert_eq!(kv.value.len(), 64 << 10);
    }
}
