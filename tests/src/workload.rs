//! A checked client workload for fault-injection tests.
//!
//! Concurrent clients read, write and compare-and-set a few registers (keys
//! `lin-<n>`, fresh ones every [`REGISTER_SECS`]), recording every operation's invocation and completion for the
//! [`linearizability`](crate::linearizability) checker, and write keys of their own
//! (`u-<client>-<n>`) once each, remembering which writes were acknowledged. When the
//! faults are over, [`Report`] checks what a user of the database relies on:
//!
//! - every register's history is linearizable;
//! - every acknowledged write reads back with its value;
//! - every replica converged to the same data (read from each node alone, stale, once
//!   all of them applied the same log).
//!
//! Clients take their addresses from [`Endpoints`], which a nemesis updates when it adds
//! or removes nodes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use shoal_client::{ops, Client, ClientOptions, Consistency};

use crate::linearizability::{check, OpKind, Operation};

/// Registers under test at any time: few, so operations on each overlap a lot.
pub const REGISTERS: usize = 3;

/// Clients move to fresh registers this often, so that each register's history
/// stays short enough to check however long the run (the search is exponential in
/// the worst case, and its memo grows with the history).
pub const REGISTER_SECS: u64 = 20;

type History = Arc<Mutex<BTreeMap<usize, Vec<Operation>>>>;

/// The addresses clients use, with a generation that changes with them.
#[derive(Clone, Default)]
pub struct Endpoints(Arc<Mutex<(u64, Vec<String>)>>);

impl Endpoints {
    pub fn new(addrs: Vec<String>) -> Self {
        Self(Arc::new(Mutex::new((0, addrs))))
    }

    pub fn set(&self, addrs: Vec<String>) {
        let mut g = self.0.lock().unwrap();
        g.0 += 1;
        g.1 = addrs;
    }

    pub fn get(&self) -> (u64, Vec<String>) {
        self.0.lock().unwrap().clone()
    }
}

/// Options of the workload's clients: short timeouts, so an operation cut by a fault
/// ends (as unknown) instead of outliving it.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(2),
        retry_deadline: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Running clients; [`Workload::finish`] stops them and hands over what they saw.
pub struct Workload {
    stop: Arc<AtomicBool>,
    history: History,
    acked: Arc<Mutex<Vec<String>>>,
    attempted: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts `clients` clients against `endpoints`.
    pub fn start(endpoints: Endpoints, clients: usize) -> Self {
        let w = Self {
            stop: Arc::default(),
            history: Arc::default(),
            acked: Arc::default(),
            attempted: Arc::default(),
            failed: Arc::default(),
            tasks: Vec::new(),
        };
        let start = Instant::now();
        let tasks = (0..clients)
            .map(|id| {
                let c = ClientLoop {
                    id,
                    start,
                    endpoints: endpoints.clone(),
                    stop: w.stop.clone(),
                    history: w.history.clone(),
                    acked: w.acked.clone(),
                    attempted: w.attempted.clone(),
                    failed: w.failed.clone(),
                };
                tokio::spawn(c.run())
            })
            .collect();
        Self { tasks, ..w }
    }

    /// Stops the clients and waits for their last operations.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("client task");
        }
        let history = self.history.lock().unwrap().clone();
        let acked = self.acked.lock().unwrap().clone();
        let attempted = self.attempted.lock().unwrap().clone();
        Report {
            history,
            acked,
            attempted,
            failed: self.failed.load(Ordering::SeqCst),
        }
    }
}

struct ClientLoop {
    id: usize,
    start: Instant,
    endpoints: Endpoints,
    stop: Arc<AtomicBool>,
    history: History,
    acked: Arc<Mutex<Vec<String>>>,
    attempted: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicU64>,
}

impl ClientLoop {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    async fn run(self) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.id as u64);
        let (mut generation, addrs) = self.endpoints.get();
        let mut client = Client::with_options(addrs, client_options()).expect("client");
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let (g, addrs) = self.endpoints.get();
            if g != generation {
                generation = g;
                client = Client::with_options(addrs, client_options()).expect("client");
            }
            n += 1;
            let round = self.start.elapsed().as_secs() / REGISTER_SECS;
            let k = round as usize * REGISTERS + rng.random_range(0..REGISTERS);
            let key = format!("lin-{k}");
            let call = self.now();
            let roll = rng.random_range(0..10);
            let recorded = match roll {
                0..=3 => match client.get(&key).await {
                    Ok(v) => Some(Operation {
                        call,
                        ret: Some(self.now()),
                        kind: OpKind::Read(
                            v.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                        ),
                    }),
                    // A failed read changed nothing: it is left out of the history.
                    Err(_) => {
                        self.failed.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                },
                4..=5 => {
                    let v = format!("c{}-{n}", self.id);
                    // Retried by the SDK through failures: its request id makes it
                    // apply once. A failure leaves its outcome unknown.
                    let res = client.put(&key, &v).await;
                    if res.is_err() {
                        self.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Operation {
                        call,
                        ret: res.is_ok().then(|| self.now()),
                        kind: OpKind::Write(v),
                    })
                }
                6..=7 => Some(self.cas(&client, k, &key, call, n).await),
                _ => {
                    let key = format!("u-{}-{n}", self.id);
                    self.attempted.lock().unwrap().push(key.clone());
                    match client.put(&key, &key).await {
                        Ok(_) => self.acked.lock().unwrap().push(key),
                        Err(_) => {
                            self.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None
                }
            };
            if let Some(op) = recorded {
                self.history.lock().unwrap().entry(k).or_default().push(op);
            }
        }
    }

    /// Compare-and-set from the value this client last read (or absent).
    async fn cas(&self, client: &Client, k: usize, key: &str, call: u64, n: u64) -> Operation {
        let from = self.history.lock().unwrap().get(&k).and_then(|h| {
            h.iter().rev().find_map(|o| match &o.kind {
                OpKind::Read(v) if o.ret.is_some() => Some(v.clone()),
                _ => None,
            })
        });
        let from = from.flatten();
        let to = format!("c{}-{n}", self.id);
        let cmp = match &from {
            Some(v) => ops::value_cmp(key, shoal_client::compare::Op::Equal, v),
            None => ops::exists(key, false),
        };
        let res = client
            .txn(vec![cmp], vec![ops::put(key, &to)], vec![])
            .await;
        let (ret, ok) = match res {
            Ok(r) => (Some(self.now()), r.succeeded),
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                (None, false)
            }
        };
        Operation {
            call,
            ret,
            kind: OpKind::Cas { from, to, ok },
        }
    }
}

/// What the clients saw.
pub struct Report {
    pub history: BTreeMap<usize, Vec<Operation>>,
    /// Keys whose write was acknowledged (each written once, with itself as value).
    pub acked: Vec<String>,
    /// Keys whose write was attempted, acknowledged or not.
    pub attempted: Vec<String>,
    /// Operations that ended in an error (reads left out, writes unknown).
    pub failed: u64,
}

impl Report {
    /// Operations recorded in the register histories.
    pub fn operations(&self) -> usize {
        self.history.values().map(Vec::len).sum()
    }

    /// Every check a fault test ends with, once the cluster is whole again: at least
    /// `min_operations` recorded, histories linearizable, acknowledged writes present
    /// (read through `addrs`), replicas converged (within `timeout`).
    pub async fn check_all(
        &self,
        addrs: &[String],
        min_operations: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        if self.operations() < min_operations {
            bail!("only {} operations recorded", self.operations());
        }
        self.check_linearizable()?;
        // The faults are healed, but routes may still settle (a redirect to a name
        // this host cannot reach, a leader elected late): the checks' reads wait for
        // an answer as long as the convergence check does. A value missing or wrong
        // fails at once.
        let opts = ClientOptions {
            retry_deadline: timeout,
            ..client_options()
        };
        let client = Client::with_options(addrs.to_vec(), opts)?;
        self.check_acknowledged(&client).await?;
        self.check_converged(addrs, timeout).await
    }

    /// Checks that every register's history is linearizable.
    pub fn check_linearizable(&self) -> anyhow::Result<()> {
        for (k, ops) in &self.history {
            if !check(ops) {
                bail!(
                    "the history of register lin-{k} ({} operations) is not linearizable:\n{ops:#?}",
                    ops.len()
                );
            }
        }
        Ok(())
    }

    /// Checks that every acknowledged write reads back (linearizably) with its value.
    pub async fn check_acknowledged(&self, client: &Client) -> anyhow::Result<()> {
        for k in &self.acked {
            match client
                .get(k)
                .await
                .with_context(|| format!("reading {k}"))?
            {
                Some(kv) if kv.value == k.as_bytes() => {}
                Some(kv) => bail!(
                    "acknowledged write {k} reads back {:?}",
                    String::from_utf8_lossy(&kv.value)
                ),
                None => bail!("acknowledged write {k} was lost"),
            }
        }
        Ok(())
    }

    /// Waits until every node in `addrs` has applied the same log, then checks that
    /// each holds the same value and version of every key the clients touched (within
    /// `timeout` in all).
    pub async fn check_converged(&self, addrs: &[String], timeout: Duration) -> anyhow::Result<()> {
        let client = Client::with_options(addrs.to_vec(), client_options())?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut applied = Vec::new();
            for a in addrs {
                let s = client.status_of(a).await;
                applied.push(
                    s.ok()
                        .and_then(|s| s.ranges.first().map(|r| r.applied_index)),
                );
            }
            if applied.iter().all(|a| a.is_some() && *a == applied[0]) {
                break;
            }
            if Instant::now() > deadline {
                bail!("replicas never applied the same log: {applied:?} ({addrs:?})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let keys = self
            .history
            .keys()
            .map(|k| format!("lin-{k}"))
            .chain(self.attempted.iter().cloned());
        // The wait above is on the first range's log; a key of another range may still
        // be on its way to a replica that was cut off. So each key is read again until
        // its replicas agree: only a disagreement that lasts to the deadline fails.
        for key in keys {
            loop {
                let mut seen = Vec::new();
                for a in addrs {
                    let kv = client
                        .get_from(a, &key, Consistency::Stale)
                        .await
                        .with_context(|| format!("stale read of {key} from {a}"))?;
                    seen.push(kv.map(|kv| (kv.value, kv.version)));
                }
                if seen.iter().all(|s| *s == seen[0]) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("replicas disagree on {key}: {seen:?} ({addrs:?})");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}
