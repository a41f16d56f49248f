//! The bank workload through SQL: a table `accounts (id, balance, pad)` whose rows
//! the writers move money between in transaction blocks (`BEGIN`, read the payer,
//! two `UPDATE`s, `COMMIT`) over Postgres connections to any node, while readers
//! sum the table in one statement, each sum a snapshot that must equal the total.
//!
//! Faults make statements fail or connections drop: a writer reconnects to the next
//! node and goes on (a transfer whose `COMMIT` went unanswered may or may not have
//! happened; either way the total holds). A statement that hangs past
//! [`STATEMENT_TIMEOUT`] drops its connection. A reader records a wrong sum as a
//! violation rather than panicking, so the run ends and reports it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// How long one transfer or sum may take before its connection is dropped.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one of `addrs`: the first that answers, from `start` on.
pub async fn connect_any(addrs: &[String], start: usize) -> Option<Client> {
    for k in 0..addrs.len() {
        let dsn = format!(
            "postgresql://root@{}/defaultdb?connect_timeout=3",
            addrs[(start + k) % addrs.len()]
        );
        if let Ok(Ok((client, conn))) =
            tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(&dsn, NoTls)).await
        {
            tokio::spawn(conn);
            return Some(client);
        }
    }
    None
}

/// One transfer between two accounts in a transaction block; `Ok(false)` when the
/// payer could not pay (rolled back, nothing written).
pub async fn transfer(
    db: &Client,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<bool, tokio_postgres::Error> {
    db.batch_execute("BEGIN").await?;
    let run = async {
        let a: i64 = db
            .query_one("SELECT balance FROM accounts WHERE id = $1", &[&from])
            .await?
            .get(0);
        if a < amount {
            return Ok(false);
        }
        db.execute(
            "UPDATE accounts SET balance = balance - $2 WHERE id = $1",
            &[&from, &amount],
        )
        .await?;
        db.execute(
            "UPDATE accounts SET balance = balance + $2 WHERE id = $1",
            &[&to, &amount],
        )
        .await?;
        Ok(true)
    };
    match run.await {
        Ok(true) => db.batch_execute("COMMIT").await.map(|_| true),
        Ok(false) => db.batch_execute("ROLLBACK").await.map(|_| false),
        Err(e) => {
            let _ = db.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Creates the table with `accounts` rows of `balance` each (ids from 0), each
/// padded with `pad` bytes so that the table fills ranges.
pub async fn create(
    addrs: &[String],
    accounts: i64,
    balance: i64,
    pad: usize,
) -> anyhow::Result<()> {
    let db = connect_any(addrs, 0)
        .await
        .ok_or_else(|| anyhow::anyhow!("no node of {addrs:?} takes SQL connections"))?;
    db.batch_execute(
        "CREATE TABLE accounts (id INT8 PRIMARY KEY, balance INT8 NOT NULL, pad TEXT)",
    )
    .await?;
    let pad = "p".repeat(pad);
    for id in 0..accounts {
        db.execute(
            "INSERT INTO accounts VALUES ($1, $2, $3)",
            &[&id, &balance, &pad],
        )
        .await?;
    }
    Ok(())
}

/// The writers and readers, running.
pub struct SqlBank {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<u64>>,
    readers: Vec<JoinHandle<(u64, Vec<String>)>>,
}

/// What they did and saw.
#[derive(Debug)]
pub struct SqlBankReport {
    pub transfers: u64,
    pub reads: u64,
    /// Sums or counts that were not the total: a snapshot saw a transfer half done.
    pub violations: Vec<String>,
}

impl SqlBank {
    /// Starts `writers` and `readers` over `addrs` on a table made by [`create`].
    pub fn start(
        addrs: &[String],
        accounts: i64,
        total: i64,
        writers: usize,
        readers: usize,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..writers)
            .map(|w| {
                let (addrs, stop) = (addrs.to_vec(), stop.clone());
                tokio::spawn(async move {
                    let mut done = 0u64;
                    let mut db = connect_any(&addrs, w).await;
                    let mut i = w as i64;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(conn) = &db else {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            db = connect_any(&addrs, w + 1).await;
                            continue;
                        };
                        i += 7;
                        let (from, to) = (i % accounts, (i * 13 + 5) % accounts);
                        if from == to {
                            continue;
                        }
                        let t = transfer(conn, from, to, 1 + i % 9);
                        match tokio::time::timeout(STATEMENT_TIMEOUT, t).await {
                            Ok(Ok(true)) => done += 1,
                            Ok(Ok(false)) => {}
                            Ok(Err(e)) if conn.is_closed() || e.code().is_none() => db = None,
                            Ok(Err(_)) => {}
                            Err(_) => db = None,
                        }
                    }
                    done
                })
            })
            .collect();
        let readers = (0..readers)
            .map(|r| {
                let (addrs, stop) = (addrs.to_vec(), stop.clone());
                tokio::spawn(async move {
                    let (mut checked, mut bad) = (0u64, Vec::new());
                    let mut db = connect_any(&addrs, r + 2).await;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(conn) = &db else {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            db = connect_any(&addrs, r).await;
                            continue;
                        };
                        let q = conn.query_one("SELECT sum(balance), count(*) FROM accounts", &[]);
                        match tokio::time::timeout(STATEMENT_TIMEOUT, q).await {
                            Ok(Ok(row)) => {
                                let (sum, n): (i64, i64) = (row.get(0), row.get(1));
                                if (sum, n) != (total, accounts) {
                                    bad.push(format!("sum {sum} of {n} accounts"));
                                }
                                checked += 1;
                            }
                            Ok(Err(_)) if conn.is_closed() => db = None,
                            Ok(Err(_)) => {}
                            Err(_) => db = None,
                        }
                    }
                    (checked, bad)
                })
            })
            .collect();
        SqlBank {
            stop,
            writers,
            readers,
        }
    }

    /// Stops the workers: what they did.
    pub async fn finish(self) -> SqlBankReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = SqlBankReport {
            transfers: 0,
            reads: 0,
            violations: Vec::new(),
        };
        for w in self.writers {
            report.transfers += w.await.unwrap_or(0);
        }
        for r in self.readers {
            if let Ok((n, bad)) = r.await {
                report.reads += n;
                report.violations.extend(bad);
            }
        }
        report
    }
}

/// Reads the table once it is whole again (trying until `within` passes): its sum and
/// count must be the total, and no balance negative.
pub async fn check(
    addrs: &[String],
    accounts: i64,
    total: i64,
    within: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    loop {
        let read = async {
            let db = connect_any(addrs, 0)
                .await
                .ok_or_else(|| anyhow::anyhow!("no node takes SQL connections"))?;
            let row = db
                .query_one(
                    "SELECT sum(balance), count(*), min(balance) FROM accounts",
                    &[],
                )
                .await?;
            anyhow::Ok((
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, i64>(2),
            ))
        };
        match tokio::time::timeout(STATEMENT_TIMEOUT, read).await {
            Ok(Ok((sum, n, min))) => {
                anyhow::ensure!(
                    (sum, n) == (total, accounts) && min >= 0,
                    "the table sums to {sum} over {n} accounts (min {min}); want {total} over {accounts}"
                );
                return Ok(());
            }
            Ok(Err(e)) if Instant::now() > until => return Err(e.context("the final read")),
            Err(_) if Instant::now() > until => anyhow::bail!("the final read hung"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
