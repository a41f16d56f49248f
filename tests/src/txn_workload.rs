//! Transactional workloads for fault tests, each run by clients until told to stop,
//! and the checks they end with:
//!
//! - [`Bank`]: transfers between random accounts (read two balances, write both),
//!   while readers sum every balance in read-only transactions: every sum must be
//!   the total, whatever the faults (a transfer takes effect whole or not at all,
//!   and a snapshot sees whole transfers). Half the writers transfer under snapshot
//!   isolation, whose transactions commit asynchronously; the others are serializable
//!   and commit in two phases.
//! - [`ListAppend`]: transactions of a few appends to and reads of lists (one key
//!   each), recorded as a history that `shoal_history` checks for strict
//!   serializability (G0, G1a/b/c, G-single, G2, with real-time order).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use shoal_client::{Client, Error, Isolation, TxnOptions};
use shoal_history::{check, Consistency, MicroOp, Outcome, Recorder};
use tokio::task::JoinHandle;

/// Counts of what the clients' transactions came to.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub committed: u64,
    /// Refused with `TXN_CONFLICT` (or lost before commit): nothing written.
    pub aborted: u64,
    /// Commit sent, not answered.
    pub unknown: u64,
    /// Failed otherwise (the cluster unreachable for a while).
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub(crate) fn add(&mut self, o: &Tally) {
        self.committed += o.committed;
        self.aborted += o.aborted;
        self.unknown += o.unknown;
        self.failed += o.failed;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// Counts a request that failed with `e`: unknown outcome, aborted (nothing
    /// written, may run again) or failed.
    pub(crate) fn count_failure(&mut self, e: &Error) {
        self.note(e);
        match e {
            Error::OutcomeUnknown(_) => self.unknown += 1,
            e if e.is_txn_retriable() => self.aborted += 1,
            _ => self.failed += 1,
        }
    }

    pub(crate) fn note(&mut self, e: &Error) {
        let key = e.code().map(str::to_string).unwrap_or_else(|| {
            let s = e.to_string();
            s.chars().take(60).collect()
        });
        *self.errors.entry(key).or_default() += 1;
    }
}

fn account(i: usize) -> String {
    format!("t/bank/{i:03}")
}

/// The bank: `accounts` accounts under `t/bank/`, `initial` each. (The workloads'
/// keys sort after the register workload's `lin-` keys, so splits among them leave
/// those in the first range.)
pub struct Bank {
    pub accounts: usize,
    pub initial: i64,
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<(Tally, Vec<Transfer>)>>,
    readers: Vec<Reader>,
}

/// A transfer a writer tried, and what it heard.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub from: usize,
    pub to: usize,
    pub amount: i64,
    pub outcome: String,
}

/// What a bank run came to.
#[derive(Debug)]
pub struct BankReport {
    pub transfers: Tally,
    /// Every transfer tried, for the diagnosis of a wrong sum.
    pub log: Vec<Transfer>,
    /// Snapshot sums taken.
    pub reads: u64,
    /// Sums that were not the total (with what was read).
    pub bad_reads: Vec<String>,
}

fn balance(kv: Option<shoal_client::KeyValue>) -> shoal_client::Result<i64> {
    let kv = kv.ok_or_else(|| Error::Unavailable("an account is missing".into()))?;
    String::from_utf8_lossy(&kv.value)
        .parse()
        .map_err(|e| Error::Unavailable(format!("a balance is not a number: {e}")))
}

impl Bank {
    /// Opens the accounts (one transaction) and starts `writers` transferring and
    /// `readers` summing, each with its own client of `addrs`.
    pub async fn start(
        addrs: &[String],
        accounts: usize,
        initial: i64,
        writers: usize,
        readers: usize,
    ) -> anyhow::Result<Self> {
        let client = Client::with_options(addrs.to_vec(), crate::workload::client_options())?;
        client
            .transaction(|t| async move {
                for i in 0..accounts {
                    t.put(account(i), initial.to_string()).await?;
                }
                Ok(())
            })
            .await
            .context("opening the accounts")?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = Vec::new();
        for n in 0..writers {
            let client = Client::with_options(addrs.to_vec(), crate::workload::client_options())?;
            let stop = stop.clone();
            w.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
                let mut tally = Tally::default();
                let mut log = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let a = rng.random_range(0..accounts);
                    let b = (a + rng.random_range(1..accounts)) % accounts;
                    let amount: i64 = rng.random_range(1..=5);
                    // Every other writer under snapshot isolation: its transfer's reads
                    // are not checked (the writes to both accounts still conflict, so
                    // no update is lost), and it commits asynchronously.
                    let opts = TxnOptions {
                        isolation: if n % 2 == 1 {
                            Isolation::Snapshot
                        } else {
                            Isolation::Serializable
                        },
                        ..TxnOptions::default()
                    };
                    let r = client
                        .transaction_with(opts, |t| async move {
                            let va = balance(t.get(account(a)).await?)?;
                            let vb = balance(t.get(account(b)).await?)?;
                            t.put(account(a), (va - amount).to_string()).await?;
                            t.put(account(b), (vb + amount).to_string()).await?;
                            Ok(t.start_ts())
                        })
                        .await;
                    log.push(Transfer {
                        from: a,
                        to: b,
                        amount,
                        outcome: match &r {
                            Ok(ts) => format!("committed at {ts}"),
                            Err(e) => e.to_string(),
                        },
                    });
                    match r {
                        Ok(_) => tally.committed += 1,
                        Err(e) => {
                            tally.count_failure(&e);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (tally, log)
            }));
        }
        let r = spawn_readers(addrs, readers, &stop, |_| {
            move |client: Client| async move {
                let (s, n) = sum(&client, accounts).await?;
                Ok((s != initial * accounts as i64 || n != accounts)
                    .then(|| format!("{n} accounts summing to {s}")))
            }
        })?;
        Ok(Self {
            accounts,
            initial,
            stop,
            writers: w,
            readers: r,
        })
    }

    /// Stops the clients; what they came to.
    pub async fn finish(self) -> BankReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut transfers = Tally::default();
        let mut log = Vec::new();
        for w in self.writers {
            if let Ok((t, l)) = w.await {
                transfers.add(&t);
                log.extend(l);
            }
        }
        let (reads, bad_reads) = join_readers(self.readers).await;
        BankReport {
            transfers,
            log,
            reads,
            bad_reads,
        }
    }
}

/// A checking reader: how many reads it made, and what the wrong ones saw.
pub(crate) type Reader = JoinHandle<(u64, Vec<String>)>;

/// Starts `count` checking readers, each with its own client of `addrs`, until
/// `stop`: reader `n` reads with `make(n)`, which answers what a wrong read saw
/// (`None`: right); a failed read pauses the reader a moment.
pub(crate) fn spawn_readers<M, C, Fut>(
    addrs: &[String],
    count: usize,
    stop: &Arc<AtomicBool>,
    make: M,
) -> anyhow::Result<Vec<Reader>>
where
    M: Fn(usize) -> C,
    C: FnMut(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = shoal_client::Result<Option<String>>> + Send,
{
    let mut readers = Vec::new();
    for n in 0..count {
        let client = Client::with_options(addrs.to_vec(), crate::workload::client_options())?;
        let stop = stop.clone();
        let mut check = make(n);
        readers.push(tokio::spawn(async move {
            let (mut reads, mut bad) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match check(client.clone()).await {
                    Ok(wrong) => {
                        reads += 1;
                        bad.extend(wrong);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            (reads, bad)
        }));
    }
    Ok(readers)
}

/// The readers' reads and wrong reads, together, once they stopped.
pub(crate) async fn join_readers(readers: Vec<Reader>) -> (u64, Vec<String>) {
    let (mut reads, mut bad_reads) = (0, Vec::new());
    for r in readers {
        if let Ok((n, bad)) = r.await {
            reads += n;
            bad_reads.extend(bad);
        }
    }
    (reads, bad_reads)
}

/// The sum of the balances and the number of accounts, read in one read-only
/// transaction.
pub async fn sum(client: &Client, accounts: usize) -> shoal_client::Result<(i64, usize)> {
    let opts = TxnOptions {
        read_only: true,
        ..TxnOptions::default()
    };
    client
        .transaction_with(opts, |t| async move {
            let kvs = t.scan("t/bank/", "t/bank0", accounts as u32 + 1).await?;
            let mut s = 0;
            for kv in &kvs {
                s += balance(Some(kv.clone()))?;
            }
            Ok((s, kvs.len()))
        })
        .await
}

impl BankReport {
    /// Fails unless every snapshot summed to the total and some transfers committed;
    /// then sums again, after the faults, in a transaction and with plain reads.
    pub async fn check(
        &self,
        client: &Client,
        accounts: usize,
        initial: i64,
    ) -> anyhow::Result<()> {
        if !self.bad_reads.is_empty() {
            bail!(
                "{} of {} snapshot sums were wrong: {:?}\n{}",
                self.bad_reads.len(),
                self.reads,
                &self.bad_reads[..self.bad_reads.len().min(5)],
                self.diagnosis(client, accounts, initial).await
            );
        }
        if self.transfers.committed == 0 || self.reads == 0 {
            bail!("nothing was checked: {self:?}");
        }
        let total = initial * accounts as i64;
        // The cluster is whole again, but a node may still be catching up: the
        // checks wait for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let (s, n) = loop {
            match sum(client, accounts).await {
                Ok(found) => break found,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("summing after the run: {e}; again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if (s, n) != (total, accounts) {
            bail!(
                "after the run: {n} accounts summing to {s}, not {total}\n{}",
                self.diagnosis(client, accounts, initial).await
            );
        }
        let kvs = loop {
            match client.scan("t/bank/", "t/bank0", 0).await {
                Ok(kvs) => break kvs,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("scanning after the run: {e}; again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let plain: i64 = kvs
            .iter()
            .map(|kv| {
                String::from_utf8_lossy(&kv.value)
                    .parse::<i64>()
                    .unwrap_or(i64::MIN / 4)
            })
            .sum();
        if plain != total || kvs.len() != accounts {
            bail!(
                "plain reads after the run: {} accounts summing to {plain}",
                kvs.len()
            );
        }
        Ok(())
    }
}

impl BankReport {
    /// Each account's balance now against what the committed transfers make it, and
    /// the transfers not known to have committed that touch an account found off.
    async fn diagnosis(&self, client: &Client, accounts: usize, initial: i64) -> String {
        let mut expected = vec![initial; accounts];
        for t in self
            .log
            .iter()
            .filter(|t| t.outcome.starts_with("committed"))
        {
            expected[t.from] -= t.amount;
            expected[t.to] += t.amount;
        }
        let mut out = String::new();
        for (i, want) in expected.iter().enumerate() {
            let kv = client.get(account(i)).await;
            let now = match &kv {
                Ok(Some(kv)) => format!(
                    "{} (version {})",
                    String::from_utf8_lossy(&kv.value),
                    kv.version
                ),
                other => format!("{other:?}"),
            };
            out.push_str(&format!(
                "{}: now {now}, by committed transfers {want}\n",
                account(i)
            ));
        }
        for t in self
            .log
            .iter()
            .filter(|t| !t.outcome.starts_with("committed"))
        {
            out.push_str(&format!("not known committed: {t:?}\n"));
        }
        out
    }
}

fn list_key(k: u64) -> String {
    format!("t/la/{k:03}")
}

fn parse_list(kv: Option<shoal_client::KeyValue>) -> Vec<u64> {
    kv.map(|kv| {
        String::from_utf8_lossy(&kv.value)
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

fn format_list(l: &[u64]) -> String {
    l.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// List-append over `keys` lists under `t/la/`.
pub struct ListAppend {
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
    tasks: Vec<JoinHandle<Tally>>,
    /// Transactions committed so far.
    committed: Arc<AtomicU64>,
}

/// The fewest committed list-append transactions a history is checked with.
pub const MIN_LIST_COMMITS: u64 = 10;

/// What a list-append run came to.
#[derive(Debug)]
pub struct ListAppendReport {
    pub tally: Tally,
    pub history: shoal_history::History,
}

impl ListAppend {
    /// Starts `processes` clients, each running transactions of 1 to 4 micro-ops
    /// (append or read, on random keys of `0..keys`), one at a time.
    pub fn start(addrs: &[String], keys: u64, processes: usize) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let recorder = Arc::new(Recorder::new());
        let next = Arc::new(AtomicU64::new(1));
        let committed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for p in 0..processes {
            let client = Client::with_options(addrs.to_vec(), crate::workload::client_options())?;
            let (stop, recorder, next) = (stop.clone(), recorder.clone(), next.clone());
            let done = committed.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + p as u64);
                let mut tally = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    let n = rng.random_range(1..=4);
                    let ops: Vec<MicroOp> = (0..n)
                        .map(|_| {
                            let key = rng.random_range(0..keys);
                            if rng.random_bool(0.5) {
                                MicroOp::append(key, next.fetch_add(1, Ordering::Relaxed))
                            } else {
                                MicroOp::read_unobserved(key)
                            }
                        })
                        .collect();
                    let id = recorder.invoke(p as u64, ops.clone());
                    let (outcome, lists) = run_list_txn(&client, &ops, &mut tally).await;
                    recorder
                        .complete(id, outcome, lists)
                        .expect("a transaction completes once");
                    if outcome == Outcome::Committed {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                tally
            }));
        }
        Ok(Self {
            stop,
            recorder,
            tasks,
            committed,
        })
    }

    /// Waits until at least [`MIN_LIST_COMMITS`] transactions committed (a run whose
    /// faults left little room to commit goes on, on the healed cluster, until its
    /// history is worth checking); fails after `within`.
    pub async fn wait_for_enough_commits(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let n = self.committed.load(Ordering::Relaxed);
            if n >= MIN_LIST_COMMITS {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{n} list-append transactions committed in {within:?} on the healed cluster");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn finish(self) -> ListAppendReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for t in self.tasks {
            if let Ok(t) = t.await {
                tally.add(&t);
            }
        }
        ListAppendReport {
            tally,
            history: self.recorder.history(),
        }
    }
}

/// One list-append transaction: its outcome and, committed, the lists it read.
async fn run_list_txn(
    client: &Client,
    ops: &[MicroOp],
    tally: &mut Tally,
) -> (Outcome, Vec<Vec<u64>>) {
    let txn = match client.begin().await {
        Ok(t) => t,
        Err(e) => {
            tally.note(&e);
            tally.failed += 1;
            return (Outcome::Aborted, Vec::new());
        }
    };
    let body = async {
        let mut lists = Vec::new();
        for op in ops {
            match op {
                MicroOp::Append { key, value } => {
                    let mut l = parse_list(txn.get(list_key(*key)).await?);
                    l.push(*value);
                    txn.put(list_key(*key), format_list(&l)).await?;
                }
                MicroOp::Read { key, .. } => lists.push(parse_list(txn.get(list_key(*key)).await?)),
            }
        }
        Ok::<_, Error>(lists)
    };
    let lists = match body.await {
        Ok(l) => l,
        Err(e) => {
            // Nothing is written before commit.
            tally.note(&e);
            tally.aborted += 1;
            let _ = txn.rollback().await;
            return (Outcome::Aborted, Vec::new());
        }
    };
    match txn.commit().await {
        Ok(_) => {
            tally.committed += 1;
            (Outcome::Committed, lists)
        }
        Err(e) => {
            tally.note(&e);
            if e.code() == Some("TXN_CONFLICT") {
                tally.aborted += 1;
                (Outcome::Aborted, Vec::new())
            } else {
                tally.unknown += 1;
                (Outcome::Unknown, Vec::new())
            }
        }
    }
}

impl ListAppendReport {
    /// Fails on any anomaly of strict serializability, or when too little committed
    /// to check anything.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.tally.committed < MIN_LIST_COMMITS {
            bail!("too few transactions committed to check: {:?}", self.tally);
        }
        let report = check(&self.history, Consistency::StrictSerializable);
        if !report.is_valid() {
            bail!(
                "list-append anomalies:\n{report}\nhistory:\n{}",
                self.history
            );
        }
        Ok(())
    }
}
