//! Crashes and storage errors injected at failpoints of the write, apply and snapshot
//! paths (shoal-raft's `failpoints` module), in real node processes built with the
//! `failpoints` feature. A node that dies is restarted without failpoints, as a
//! supervisor would restart it; every test ends with the workload's checks:
//! linearizable histories, no acknowledged write lost, replicas converged. A
//! transaction's coordinator crashes after its prewrites and after its primary's
//! commit, and pauses between them while ranges split and leaders move: every
//! transaction ends all or nothing, its locks resolved by their readers. A merge's
//! coordinator fails, then dies, after freezing the right-hand range: the range
//! thaws, at once or by its own leader, and nothing is lost.
//!
//! Run by scripts/test.sh as
//! `SHOAL_BIN=<shoal built with --features failpoints> cargo test -p shoal-tests --features failpoints --test failpoints`.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use shoal_tests::workload::{Endpoints, Workload};
use shoal_tests::{TestCluster, FAST_ELECTIONS};

/// Nodes snapshot every 200 entries and keep 50 behind: snapshots are built, sent
/// and installed within seconds under the workload.
fn flags() -> Vec<&'static str> {
    let mut f = FAST_ELECTIONS.to_vec();
    f.extend(["--snapshot-logs", "200", "--keep-logs", "50"]);
    f
}

/// How a node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// Aborted at a `return(crash)` failpoint.
    Crash,
    /// Exited with an error after a replica stopped on an injected storage error.
    Error,
}

fn death(st: ExitStatus) -> Death {
    match st.signal() {
        Some(6) => Death::Crash,
        _ if st.code() == Some(1) => Death::Error,
        _ => panic!("unexpected exit: {st:?}"),
    }
}

/// Restarts node `i` with `failpoints` (`name=action;...`).
fn restart_with(c: &mut TestCluster, i: usize, failpoints: &str) {
    c.kill9(i);
    c.nodes[i].env = vec![("FAILPOINTS".into(), failpoints.into())];
    c.restart(i).unwrap();
}

/// Runs the workload for `secs`, restarting (without failpoints) every node that
/// dies; with `until_fired`, also until every node armed with failpoints has died (at
/// most a minute: how soon a failpoint fires after N hits depends on how the writes
/// were batched). Then checks. Returns how the nodes died.
async fn supervise(c: &mut TestCluster, w: Workload, secs: u64, until_fired: bool) -> Vec<Death> {
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let patience = start + Duration::from_secs(60);
    let mut deaths = Vec::new();
    let armed = |c: &TestCluster| c.nodes.iter().any(|n| !n.env.is_empty());
    while Instant::now() < until || (until_fired && armed(c) && Instant::now() < patience) {
        for i in 0..c.nodes.len() {
            if let Some(st) = c.exited(i) {
                eprintln!("node {i} died: {st:?}\n{}", c.nodes[i].log_tail(5));
                deaths.push(death(st));
                c.nodes[i].env.clear();
                c.restart(i).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Disarm what has not fired yet (a node still carrying failpoints could fail
    // during the checks), and restart what died meanwhile.
    for i in 0..c.nodes.len() {
        if let Some(st) = c.exited(i) {
            deaths.push(death(st));
        } else if !c.nodes[i].env.is_empty() {
            c.kill9(i);
        } else {
            continue;
        }
        c.nodes[i].env.clear();
        c.restart(i).unwrap();
    }
    // Let the restarted nodes catch up under load, then check.
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = w.finish().await;
    eprintln!(
        "{} register operations, {} acknowledged writes, {} failed; deaths {deaths:?}",
        report.operations(),
        report.acked.len(),
        report.failed
    );
    report
        .check_all(&c.addrs(), 101, Duration::from_secs(60))
        .await
        .unwrap();
    deaths
}

/// Every node gets failpoint `point` armed to fire once, after a different number of
/// hits per node, so the nodes fail one after another under the workload.
async fn each_node_fails_once_at(point: &str, action: &str, after: [u32; 3]) -> Vec<Death> {
    let mut c = TestCluster::start_initialized(3, &flags()).await.unwrap();
    for (i, n) in after.iter().enumerate() {
        restart_with(&mut c, i, &format!("{point}={n}*off->1*{action}->off"));
    }
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    let w = Workload::start(Endpoints::new(c.addrs()), 6);
    supervise(&mut c, w, 12, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_before_the_log_fsync() {
    let deaths =
        each_node_fails_once_at("log-before-fsync", "return(crash)", [100, 300, 500]).await;
    assert!(
        deaths.len() >= 2 && deaths.iter().all(|d| *d == Death::Crash),
        "{deaths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_the_log_fsync() {
    let deaths = each_node_fails_once_at("log-after-fsync", "return(crash)", [100, 300, 500]).await;
    assert!(
        deaths.len() >= 2 && deaths.iter().all(|d| *d == Death::Crash),
        "{deaths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_fsync_stops_the_node_and_a_restart_recovers() {
    let deaths = each_node_fails_once_at("log-before-fsync", "return(EIO)", [100, 300, 500]).await;
    assert!(
        deaths.len() >= 2 && deaths.iter().all(|d| *d == Death::Error),
        "{deaths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_log_append_stops_the_node_and_a_restart_recovers() {
    let deaths = each_node_fails_once_at("log-append", "return(ENOSPC)", [100, 300, 500]).await;
    assert!(
        deaths.len() >= 2 && deaths.iter().all(|d| *d == Death::Error),
        "{deaths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_during_apply() {
    let before =
        each_node_fails_once_at("apply-before-commit", "return(crash)", [300, 600, 900]).await;
    assert!(before.len() >= 2, "{before:?}");
    let after =
        each_node_fails_once_at("apply-after-commit", "return(crash)", [300, 600, 900]).await;
    assert!(after.len() >= 2, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_while_building_a_snapshot() {
    let deaths = each_node_fails_once_at("snapshot-build", "return(crash)", [1, 2, 3]).await;
    assert!(deaths.len() >= 2, "{deaths:?}");
}

/// Node 2 is down while the others snapshot and purge their logs: it comes back
/// through a snapshot, and crashes at `point` while installing it; restarted, it
/// finishes the install and catches up.
async fn crash_installing_a_snapshot_at(point: &str) {
    let mut c = TestCluster::start_initialized(3, &flags()).await.unwrap();
    let written = stop_node_2_behind_a_purged_log(&mut c).await;
    let client = c.client();
    let w = Workload::start(Endpoints::new(c.addrs()), 6);
    c.nodes[2].env = vec![("FAILPOINTS".into(), format!("{point}=return(crash)"))];
    c.restart(2).unwrap();
    let deaths = supervise(&mut c, w, 10, false).await;
    assert_eq!(deaths, [Death::Crash], "node 2 never crashed at {point}");
    assert!(
        std::fs::read_to_string(&c.nodes[2].log)
            .unwrap()
            .contains("finishing a snapshot install interrupted by a restart")
            || point == "snapshot-install-before-data",
        "the restarted node did not finish the interrupted install"
    );
    for i in (0..written).step_by(37) {
        let kv = client.get(pre(i)).await.unwrap();
        assert!(kv.is_some(), "{} lost", pre(i));
    }
}

fn pre(i: usize) -> String {
    format!("pre-{i:05}")
}

/// Stops node 2 and writes until both other nodes purged their log past what node 2
/// holds: back, it can only catch up through a snapshot. Returns the keys written
/// (`pre(0..n)`).
async fn stop_node_2_behind_a_purged_log(c: &mut TestCluster) -> usize {
    let last = c.raft_gauge(2, "last_log_index").unwrap();
    c.kill9(2);
    let client = c.client();
    let mut i = 0;
    while [0, 1]
        .iter()
        .any(|&n| c.raft_gauge(n, "purged_index").unwrap_or(0) <= last)
    {
        assert!(i < 20_000, "the log was never purged past index {last}");
        for _ in 0..100 {
            client.put(pre(i), "x").await.unwrap();
            i += 1;
        }
    }
    eprintln!("node 2 stopped at index {last}; both others purged past it after {i} writes");
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_before_a_snapshot_install_replaces_data() {
    crash_installing_a_snapshot_at("snapshot-install-before-data").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_a_snapshot_install_replaced_data() {
    crash_installing_a_snapshot_at("snapshot-install-after-data").await;
}

/// Snapshot streams cut short (the sender stops mid-file) are refused by the receiver,
/// and the next transfer succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_stream_cut_short_is_refused_and_sent_again() {
    let mut c = TestCluster::start_initialized(3, &flags()).await.unwrap();
    for i in 0..2 {
        restart_with(&mut c, i, "snapshot-send=3*return->off");
    }
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    stop_node_2_behind_a_purged_log(&mut c).await;
    let w = Workload::start(Endpoints::new(c.addrs()), 6);
    c.restart(2).unwrap();
    let deaths = supervise(&mut c, w, 10, false).await;
    assert!(deaths.is_empty(), "{deaths:?}");
    let log = std::fs::read_to_string(&c.nodes[0].log).unwrap()
        + &std::fs::read_to_string(&c.nodes[1].log).unwrap();
    assert!(log.contains("failpoint snapshot-send"), "no stream was cut");
}

// ---- a transaction's coordinator ------------------------------------------------

/// A cluster of three whose range split at `m` puts a transaction's primary (`a`) and
/// its secondary (`x`) in two ranges, with node 0 armed with `failpoints`; a client
/// through node 0 alone (so node 0 coordinates its transactions).
async fn coordinator_armed_with(failpoints: &str) -> (TestCluster, shoal_client::Client) {
    coordinator_armed_with_flags(failpoints, &[]).await
}

/// [`coordinator_armed_with`], the nodes started with `extra` flags too.
async fn coordinator_armed_with_flags(
    failpoints: &str,
    extra: &[&str],
) -> (TestCluster, shoal_client::Client) {
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend(extra);
    let mut c = TestCluster::start_initialized(3, &flags).await.unwrap();
    c.client().split_range("m").await.unwrap();
    c.client().put("a", "old").await.unwrap();
    c.client().put("x", "old").await.unwrap();
    restart_with(&mut c, 0, failpoints);
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    let client = c.client_via(0);
    (c, client)
}

/// How the transaction of [`commit_and_lose_the_coordinator`] commits.
#[derive(Clone, Copy, PartialEq)]
enum Commit {
    /// It read a key first: its read is checked, in two phases.
    TwoPhase,
    /// Writes alone: committed once every key is locked.
    Async,
}

/// Commits `a = v, x = v` through `client`'s node, which dies at its failpoint:
/// the client hears no outcome.
async fn commit_and_lose_the_coordinator(
    c: &mut TestCluster,
    client: &shoal_client::Client,
    how: Commit,
) {
    let t = client.begin().await.unwrap();
    if how == Commit::TwoPhase {
        t.get("c").await.unwrap();
    }
    t.put("a", "new").await.unwrap();
    t.put("x", "new").await.unwrap();
    let e = t.commit().await.unwrap_err();
    assert!(matches!(e, shoal_client::Error::OutcomeUnknown(_)), "{e:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.exited(0).is_none() {
        assert!(Instant::now() < deadline, "node 0 did not crash");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.nodes[0].env.clear();
    c.restart(0).unwrap();
}

/// `key`'s value and version, read through `client` (present).
async fn read(client: &shoal_client::Client, key: &str) -> (String, u64) {
    let kv = client.get(key).await.unwrap().expect("present");
    (String::from_utf8_lossy(&kv.value).into_owned(), kv.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_that_dies_after_prewrite_leaves_locks_readers_roll_back() {
    let (mut c, client) = coordinator_armed_with("txn-after-prewrite=return(crash)").await;
    commit_and_lose_the_coordinator(&mut c, &client, Commit::TwoPhase).await;
    // Readers meet the locks, wait out their time to live, and roll the transaction
    // back: neither key changed.
    let other = c.client_of([1, 2]);
    assert_eq!(read(&other, "a").await.0, "old");
    assert_eq!(read(&other, "x").await.0, "old");
    // A scan resolves every lock it meets: none is left, and writes pass.
    let all = other.scan("", "", 0).await.unwrap();
    assert_eq!(all.len(), 2);
    other.put("x", "later").await.unwrap();
    assert_eq!(read(&other, "x").await.0, "later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_that_dies_after_the_primary_commits_leaves_locks_readers_roll_forward() {
    let (mut c, client) = coordinator_armed_with("txn-before-secondaries=return(crash)").await;
    commit_and_lose_the_coordinator(&mut c, &client, Commit::TwoPhase).await;
    // The primary is committed: the secondary's lock is rolled forward by its first
    // reader, at the transaction's commit timestamp.
    let other = c.client_of([1, 2]);
    let x = read(&other, "x").await;
    let a = read(&other, "a").await;
    assert_eq!((a.0.as_str(), x.0.as_str()), ("new", "new"));
    assert_eq!(a.1, x.1, "one commit timestamp");
}

/// Locks resolved by the ranges' leaders' sweeps, over every node.
fn swept_locks(c: &TestCluster) -> u64 {
    (0..c.nodes.len())
        .filter_map(|i| c.http_get(i, "/metrics").ok())
        .filter_map(|(_, body)| {
            body.lines()
                .find_map(|l| l.strip_prefix("shoal_txn_locks_swept_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_nobody_reads_is_rolled_forward_by_its_ranges_leader_within_the_gc_ttl() {
    // With --gc-ttl 8s, a range's leader resolves its locks older than 2 s every 2 s;
    // the primary's commit record could be collected 8 s after the start at the
    // earliest.
    let (mut c, client) =
        coordinator_armed_with_flags("txn-before-secondaries=return(crash)", &["--gc-ttl", "8s"])
            .await;
    commit_and_lose_the_coordinator(&mut c, &client, Commit::TwoPhase).await;
    // Nobody reads `x`; its primary `a` moves on.
    let other = c.client_of([1, 2]);
    for i in 0..20 {
        other.put("a", format!("later-{i}")).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    while swept_locks(&c) == 0 {
        assert!(
            Instant::now() < deadline,
            "the secondary's lock was not resolved by its range's leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Rolled forward: the transaction's value, at a version below every later `a`.
    let (x, x_version) = read(&other, "x").await;
    assert_eq!(x, "new");
    let a_then = other.get_at("a", x_version).await.unwrap().unwrap();
    assert_eq!(a_then.value, b"new", "one commit timestamp for a and x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_asynchronous_commit_whose_coordinator_dies_once_every_key_is_locked_is_rolled_forward()
{
    let (mut c, client) = coordinator_armed_with("txn-after-prewrite=return(crash)").await;
    commit_and_lose_the_coordinator(&mut c, &client, Commit::Async).await;
    // Every key was locked: the transaction is committed. A reader of either key
    // waits out the primary lock's time to live, finds the other key locked, and
    // rolls both forward at the larger of their timestamps.
    let other = c.client_of([1, 2]);
    let x = read(&other, "x").await;
    let a = read(&other, "a").await;
    assert_eq!((a.0.as_str(), x.0.as_str()), ("new", "new"));
    assert_eq!(a.1, x.1, "one commit timestamp");
    // No lock is left: a scan and a write pass.
    assert_eq!(other.scan("", "", 0).await.unwrap().len(), 2);
    other.put("a", "later").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_asynchronous_commit_whose_prewrite_was_lost_is_rolled_back_by_readers() {
    // The prewrite of x is lost; the coordinator dies before rolling back.
    let (mut c, client) =
        coordinator_armed_with("txn-prewrite-secondary=return;txn-before-rollback=return(crash)")
            .await;
    commit_and_lose_the_coordinator(&mut c, &client, Commit::Async).await;
    // A reader of a finds its lock abandoned and x never locked: x is marked rolled
    // back (its prewrite can no longer land), then a.
    let other = c.client_of([1, 2]);
    let a = read(&other, "a").await;
    let x = read(&other, "x").await;
    assert_eq!((a.0.as_str(), x.0.as_str()), ("old", "old"));
    assert_eq!(other.scan("", "", 0).await.unwrap().len(), 2);
    other.put("x", "later").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_and_leader_moves_between_prewrite_and_commit_do_not_break_a_transaction() {
    // The coordinator waits 5 s after its prewrites (its heartbeats keep the locks
    // alive meanwhile), while the secondaries' range splits and node 1 restarts, its
    // leaderships moving away.
    let (mut c, client) = coordinator_armed_with("txn-after-prewrite=1*sleep(5000)").await;
    let t = client.begin().await.unwrap();
    for k in ["a", "x", "y", "z"] {
        t.put(k, "new").await.unwrap();
    }
    let commit = tokio::spawn(async move { t.commit().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = c.client_of([1, 2]);
    other.split_range("y").await.unwrap();
    // Node 1 stopped gracefully (its leaderships move away first) and started again.
    c.terminate(1, Duration::from_secs(10));
    c.restart(1).unwrap();
    let commit_ts = commit.await.unwrap().unwrap();
    for k in ["a", "x", "y", "z"] {
        let (v, version) = read(&other, k).await;
        assert_eq!((v.as_str(), version), ("new", commit_ts), "{k}");
    }
}

/// Writes `value` to `key` through `client`, retrying until it is acknowledged
/// (within `within`).
async fn put_eventually(client: &shoal_client::Client, key: &str, value: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match client.put(key, value).await {
            Ok(_) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "{key} never written: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A merge whose coordinator fails after freezing the right-hand range: an error
/// abandons it at once (the range thaws); a crash leaves it to the frozen range's
/// leader, which abandons it once the range has been frozen too long. Nothing is lost
/// either way, and the merge goes through once the failpoints are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_that_fails_after_the_freeze_is_undone() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    client.split_range("m").await.unwrap();
    client.put("a", "old").await.unwrap();
    client.put("x", "old").await.unwrap();
    let ranges = |c: &TestCluster| {
        let client = c.client();
        async move { client.ranges().await.unwrap().ranges.len() }
    };

    // Every node fails there (the coordinator is whichever leads the left range).
    for i in 0..3 {
        restart_with(&mut c, i, "merge-before-absorb=return");
    }
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    let client = c.client();
    let e = client.merge_range("a").await.unwrap_err();
    eprintln!("merge failed as armed: {e}");
    // Thawed at once: the right range takes writes again.
    put_eventually(&client, "x", "thawed", Duration::from_secs(5)).await;
    assert_eq!(ranges(&c).await, 2);

    // Now the coordinator dies there.
    for i in 0..3 {
        restart_with(&mut c, i, "merge-before-absorb=return(crash)");
    }
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    let client = c.client();
    assert!(client.merge_range("a").await.is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        if let Some(i) = (0..3).find(|&i| c.exited(i).is_some()) {
            break i;
        }
        assert!(Instant::now() < deadline, "no coordinator crashed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.nodes[dead].env.clear();
    c.restart(dead).unwrap();
    // The frozen range's leader abandons the merge: the range takes writes again.
    let frozen = Instant::now();
    put_eventually(&client, "x", "after", Duration::from_secs(60)).await;
    eprintln!(
        "the right range took writes again after {:?}",
        frozen.elapsed()
    );
    assert_eq!(read(&client, "x").await.0, "after");
    assert_eq!(read(&client, "a").await.0, "old");
    assert_eq!(ranges(&c).await, 2);

    // Disarmed, the merge goes through and keeps both sides' keys.
    for i in 0..3 {
        if !c.nodes[i].env.is_empty() {
            c.kill9(i);
            c.nodes[i].env.clear();
            c.restart(i).unwrap();
        }
    }
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    let client = c.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let merged = loop {
        match client.merge_range("a").await {
            Ok(m) => break m,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the merge never went through: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert!(
        merged.start.is_empty() && merged.end.is_empty(),
        "{merged:?}"
    );
    assert_eq!(read(&client, "x").await.0, "after");
    assert_eq!(read(&client, "a").await.0, "old");
}
