//! Nemeses: faults injected into a cluster of pods (containers from the rendered
//! StatefulSet manifest) while checked clients run (see `shoal_tests::workload`).
//! Every run ends by healing, waiting for every pod to be ready, and checking that
//! the register histories are linearizable, no acknowledged write was lost, and every
//! replica holds the same data; and, from the transactions across ten ranges that ran
//! beside them (`shoal_tests::txn_workload`), that every bank snapshot summed to the
//! total and the list-append history is strictly serializable; and, from the bank
//! through SQL beside them (`shoal_tests::sql_bank`, a table over four ranges, over
//! Postgres connections to the pods' SQL ports), that every `sum()` was the total and
//! the table ends with it.
//!
//! Each nemesis runs for `$SHOAL_NEMESIS_SECS` seconds (default 20, as CI runs them);
//! `scripts/soak.sh` runs them for longer. Partitions use blackhole routes in the pods'
//! network namespaces and the full disk a tmpfs mounted on the host: both need root,
//! as Docker itself does here.

use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use shoal_storage::keys;
use shoal_tests::pods::Pods;
use shoal_tests::sql_bank::{self, SqlBank};
use shoal_tests::txn_workload::{Bank, ListAppend};
use shoal_tests::workload::{Endpoints, Workload};

const READY: Duration = Duration::from_secs(120);
const CLIENTS: usize = 6;
/// The bank's accounts, and where the ranges split among them and the lists.
const ACCOUNTS: usize = 20;
/// (All after the registers' `lin-` keys, which stay in the first range.)
const TXN_SPLITS: &[&str] = &[
    "t/",
    "t/bank/005",
    "t/bank/010",
    "t/bank/015",
    "t/la/",
    "t/la/004",
    "t/la/008",
    "t/la/012",
    "t/m",
];

/// The SQL bank's accounts (the first table: id 100), split into four ranges.
const SQL_ACCOUNTS: i64 = 16;

fn sql_row_key(id: i64) -> Vec<u8> {
    let mut k = keys::sql_index_prefix(100, keys::PRIMARY_INDEX);
    keys::push_int_part(&mut k, id);
    k
}

fn duration() -> Duration {
    let secs = std::env::var("SHOAL_NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

fn seed() -> u64 {
    std::env::var("SHOAL_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nemesis {
    /// One follower cut off from its peers (clients still reach it).
    PartitionOne,
    /// The leader cut off from its peers (clients still reach it).
    PartitionLeader,
    /// Five nodes, each reaching only its two ring neighbours: every node sees a
    /// majority, no two majorities agree on who they see.
    MajorityRing,
    /// kill -9 of a node (often the leader), restarted after a while.
    Kill,
    /// SIGSTOP of a node (often the leader), SIGCONT after a while.
    Pause,
    /// Every pod restarted in turn (SIGTERM, drain, start, wait ready).
    RollingRestart,
    /// A node added, then one (perhaps the leader) decommissioned and removed.
    Membership,
    /// One node's disk filled up, then freed.
    FullDisk,
}

use Nemesis::*;

/// A cluster of pods under the workload, and the nemesis's own randomness.
struct Run {
    p: Pods,
    endpoints: Endpoints,
    rng: rand::rngs::StdRng,
    next_ordinal: usize,
    log: Vec<String>,
}

impl Run {
    async fn start(name: &str, nodes: usize, small_disk: bool) -> Self {
        // Plaintext: the bank and list-append workloads and the SQL bank's Postgres
        // connections speak no TLS (tests/tests/pods.rs runs the pods secure).
        let mut p = Pods::new(name, "statefulset").unwrap().insecure();
        p.set_env("SHOAL_BOOTSTRAP_EXPECT", &nodes.to_string());
        // Snapshots and log purges every few hundred entries: nodes cut off for a few
        // seconds catch up from snapshots.
        p.set_env("SHOAL_SNAPSHOT_LOGS", "300");
        p.set_env("SHOAL_KEEP_LOGS", "100");
        if small_disk {
            p.small_disk("data-shoal-2", 64).unwrap();
        }
        for i in 0..nodes {
            p.start(i, &format!("data-shoal-{i}")).unwrap();
        }
        p.wait_all_ready(READY).await.unwrap();
        let seed = seed();
        eprintln!("{name}: seed {seed} (SHOAL_NEMESIS_SEED)");
        Self {
            endpoints: Endpoints::new(p.addrs()),
            p,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            next_ordinal: nodes,
            log: Vec::new(),
        }
    }

    fn names(&self) -> Vec<String> {
        self.p.pods.keys().cloned().collect()
    }

    /// The leader half the time (when there is one), else any pod.
    async fn victim(&mut self) -> String {
        if self.rng.random_bool(0.5) {
            if let Some(l) = self.p.leader().await {
                return l;
            }
        }
        self.names().choose(&mut self.rng).unwrap().clone()
    }

    async fn hold(&mut self, lo: u64, hi: u64) {
        let ms = self.rng.random_range(lo..hi);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Cuts `victim` off from every other pod, or heals it.
    fn isolate(&mut self, victim: &str, cut: bool) {
        for other in self.names() {
            if other != victim {
                self.p.cut_between(victim, &other, cut).unwrap();
            }
        }
    }

    /// What the kubelet does whenever a container exits: start it again. A node exits
    /// on a storage error, which a filled disk may bring after the fault's own check
    /// passed; a partition of an exited pod has no network namespace to cut.
    fn restart_exited(&mut self) {
        for name in self.names() {
            if !self.p.running(&name) {
                self.log.push(format!("{name} had exited: start it again"));
                self.p.start_again(&name).unwrap();
            }
        }
    }

    /// One fault: inject, hold, heal.
    async fn inject(&mut self, n: Nemesis) {
        self.restart_exited();
        match n {
            PartitionOne | PartitionLeader => {
                let leader = self.p.leader().await;
                let victim = if n == PartitionLeader {
                    match leader {
                        Some(l) => l,
                        None => return,
                    }
                } else {
                    let followers: Vec<String> = self
                        .names()
                        .into_iter()
                        .filter(|x| Some(x) != leader.as_ref())
                        .collect();
                    followers.choose(&mut self.rng).unwrap().clone()
                };
                self.log.push(format!("isolate {victim}"));
                self.isolate(&victim, true);
                self.hold(2000, 6000).await;
                self.isolate(&victim, false);
            }
            MajorityRing => {
                let names = self.names();
                let len = names.len();
                self.log.push("majority ring".into());
                for i in 0..len {
                    for j in i + 1..len {
                        let adjacent = j - i == 1 || (i == 0 && j == len - 1);
                        if !adjacent {
                            self.p.cut_between(&names[i], &names[j], true).unwrap();
                        }
                    }
                }
                self.hold(3000, 7000).await;
                self.p.heal().unwrap();
            }
            Kill => {
                let victim = self.victim().await;
                self.log.push(format!("kill -9 {victim}"));
                self.p.kill9(&victim).unwrap();
                self.hold(1000, 5000).await;
                self.p.start_again(&victim).unwrap();
            }
            Pause => {
                let victim = self.victim().await;
                self.log.push(format!("pause {victim}"));
                self.p.signal(&victim, "STOP").unwrap();
                self.hold(1000, 5000).await;
                self.p.signal(&victim, "CONT").unwrap();
            }
            RollingRestart => {
                self.log.push("rolling restart".into());
                let mut names = self.names();
                names.reverse();
                for name in names {
                    self.p.restart(&name).unwrap();
                    self.p.wait_ready(&name, READY).await.unwrap();
                }
            }
            Membership => {
                let i = self.next_ordinal;
                self.next_ordinal += 1;
                let name = format!("shoal-{i}");
                self.log.push(format!("add {name}"));
                self.p.start(i, &format!("data-shoal-{i}")).unwrap();
                self.p.wait_ready(&name, READY).await.unwrap();
                self.endpoints.set(self.p.addrs());
                let gone = self.victim().await;
                self.log.push(format!("decommission {gone}"));
                let id = self.p.status(&gone).await.unwrap().node_id;
                let via = self.names().into_iter().find(|x| *x != gone).unwrap();
                let out = self
                    .p
                    .exec(&via, &["node", "decommission", &id.to_string()])
                    .unwrap();
                assert!(
                    out.status.success(),
                    "decommission {gone}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                self.p.stop(&gone).unwrap();
                self.endpoints.set(self.p.addrs());
            }
            FullDisk => {
                // The node with the small disk.
                let victim = "shoal-2".to_string();
                self.log.push(format!("fill the disk of {victim}"));
                self.p.fill_disk("data-shoal-2", true).unwrap();
                self.hold(2000, 5000).await;
                self.p.fill_disk("data-shoal-2", false).unwrap();
                self.log.push(format!("free the disk of {victim}"));
                self.recover_like_the_kubelet(&victim).await;
            }
        }
    }

    /// What the kubelet does: a pod whose liveness probe fails (or whose process
    /// exited) is restarted.
    async fn recover_like_the_kubelet(&mut self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.p.running(name) {
                self.log.push(format!("{name} exited: start it again"));
                self.p.start_again(name).unwrap();
                return;
            }
            let http = self.p.pods[name].http.clone();
            if let Ok((code, _)) = self.p.http_get(&http, "/healthz") {
                if code != 200 {
                    self.log.push(format!("{name} not live: restart it"));
                    self.p.restart(name).unwrap();
                    return;
                }
            }
            if self
                .p
                .wait_ready(name, Duration::from_secs(1))
                .await
                .is_ok()
            {
                return;
            }
        }
    }

    /// Runs `nemeses` (one picked at random each round) under the workload, heals,
    /// and checks.
    async fn run(mut self, nemeses: &[Nemesis]) {
        // Transactions across ranges beside the registers: the bank's accounts and
        // the lists split over ten ranges.
        let client = self.p.client();
        for k in TXN_SPLITS {
            client.split_range(k).await.unwrap();
        }
        let bank = Bank::start(&self.p.addrs(), ACCOUNTS, 100, 2, 1)
            .await
            .unwrap();
        let lists = ListAppend::start(&self.p.addrs(), 16, 2).unwrap();
        let sql = self.p.sql_addrs();
        sql_bank::create(&sql, SQL_ACCOUNTS, 100, 0).await.unwrap();
        for id in [4, 8, 12] {
            client.split_range(sql_row_key(id)).await.unwrap();
        }
        let sql_bank = SqlBank::start(&sql, SQL_ACCOUNTS, SQL_ACCOUNTS * 100, 1, 1);
        let w = Workload::start(self.endpoints.clone(), CLIENTS);
        let until = Instant::now() + duration();
        while Instant::now() < until {
            self.hold(500, 2000).await;
            let n = *nemeses.choose(&mut self.rng).unwrap();
            self.inject(n).await;
        }
        // Heal everything, let the clients see the cluster whole again, then check.
        self.p.heal().unwrap();
        for name in self.names() {
            if !self.p.running(&name) {
                self.p.start_again(&name).unwrap();
            } else {
                self.p.signal(&name, "CONT").unwrap();
            }
        }
        self.p.wait_all_ready(READY).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        lists
            .wait_for_enough_commits(Duration::from_secs(60))
            .await
            .unwrap();
        let report = w.finish().await;
        let (bank, lists) = (bank.finish().await, lists.finish().await);
        let sql_report = sql_bank.finish().await;
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        for l in &self.log {
            *kinds.entry(l.split(' ').next().unwrap_or("")).or_default() += 1;
        }
        eprintln!(
            "faults: {:?}\nby kind: {kinds:?}\n{} register operations on {} registers, {} acknowledged writes, {} failed operations",
            self.log,
            report.operations(),
            report.history.len(),
            report.acked.len(),
            report.failed
        );
        // At least this many register operations, so the checks are not vacuous: the
        // transactional workloads share the two cores, and a 5-node ring with them
        // recorded 74 to 169 in a run.
        report
            .check_all(&self.p.addrs(), 40, Duration::from_secs(60))
            .await
            .unwrap();
        eprintln!(
            "bank: {:?}, {} snapshot sums\nlist-append: {:?}",
            bank.transfers, bank.reads, lists.tally
        );
        if let Err(e) = bank.check(&self.p.client(), ACCOUNTS, 100).await {
            for name in self.names() {
                eprintln!("--- the end of {name}'s log:\n{}", self.p.logs(&name));
            }
            panic!("{e:?}");
        }
        lists.check().unwrap();
        eprintln!("bank through SQL: {sql_report:?}");
        assert!(
            sql_report.violations.is_empty(),
            "SQL snapshots saw transfers half done: {:?}",
            sql_report.violations
        );
        assert!(
            sql_report.transfers >= 1 && sql_report.reads >= 1,
            "no progress through SQL: {sql_report:?}"
        );
        sql_bank::check(
            &sql,
            SQL_ACCOUNTS,
            SQL_ACCOUNTS * 100,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_partition_one_follower() {
    Run::start("nem-part1", 3, false)
        .await
        .run(&[PartitionOne])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_partition_the_leader() {
    Run::start("nem-partl", 3, false)
        .await
        .run(&[PartitionLeader])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_majority_ring() {
    Run::start("nem-ring", 5, false)
        .await
        .run(&[MajorityRing])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_kill9_and_restart() {
    Run::start("nem-kill", 3, false).await.run(&[Kill]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_pause_and_resume() {
    Run::start("nem-pause", 3, false).await.run(&[Pause]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_rolling_restart() {
    Run::start("nem-roll", 3, false)
        .await
        .run(&[RollingRestart])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_membership_change() {
    Run::start("nem-member", 3, false)
        .await
        .run(&[Membership])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_full_disk() {
    Run::start("nem-disk", 3, true).await.run(&[FullDisk]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_combined() {
    Run::start("nem-mix", 3, true)
        .await
        .run(&[
            PartitionOne,
            PartitionLeader,
            Kill,
            Pause,
            RollingRestart,
            FullDisk,
        ])
        .await;
}
