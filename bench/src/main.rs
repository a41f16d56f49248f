//! `shoal-bench`: one load generator for shoal and etcd.
//!
//! The same workload code drives both targets ([`target::Target`]): same keys (8
//! bytes), values, mixes, distributions and concurrency. Latencies go into HDR
//! histograms; the result is printed as a Markdown table row and, with `--json`,
//! appended as one JSON record to a file.
//!
//! - [`target`]: the two targets (shoal through its SDK, etcd through its client).
//! - [`workload`]: the workloads (etcd's put and get, YCSB A/B/C/E/F, transactions of
//!   two writes and of four read-modify-writes) and key choice.
//! - [`tso`]: the timestamp oracle's workload (`--workload tso`, shoal only): its
//!   callers' loop, the checks of the timestamps' order, and its result.
//! - The `fsync-floor` binary (`fsync_floor.rs`) measures the disk's fdatasync floor.

mod target;
mod tso;
mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::SeedableRng;

use target::Target;
use workload::{key, Distribution, KeyChooser, Op, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    Shoal,
    Etcd,
    /// shoal through its SQL endpoint (endpoints: `--sql-addr`s): one table
    /// `bench_kv (k BYTEA PRIMARY KEY, v BYTEA)`, prepared statements, a Postgres
    /// connection per `--connections`.
    Sql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    Linearizable,
    Stale,
}

/// Load generator for shoal (its SDK or its SQL endpoint) and etcd (YCSB-style
/// workloads).
#[derive(Debug, Parser)]
#[command(name = "shoal-bench", version)]
struct Args {
    #[arg(long, value_enum)]
    target: TargetKind,
    /// Endpoints (`host:port`), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    #[arg(long, value_enum, default_value = "put")]
    workload: Workload,
    #[arg(long, value_enum, default_value = "uniform")]
    distribution: Distribution,
    /// Reads: linearizable, or stale (etcd: serializable).
    #[arg(long, value_enum, default_value = "linearizable")]
    consistency: Consistency,
    /// Number of records the workload's keys are drawn from.
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// Write the records before the measured run.
    #[arg(long)]
    load: bool,
    /// Stop after this many operations (otherwise after --duration).
    #[arg(long)]
    operations: Option<u64>,
    /// Seconds of the measured run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Concurrent client tasks.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Connections (client handles) shared by the tasks.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Target total operations per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Timestamps asked per call (workload tso), 1 to 65536.
    #[arg(long, default_value_t = 1)]
    tso_count: u64,
    /// Keys per scan (workload E).
    #[arg(long, default_value_t = 10)]
    scan_length: u32,
    /// shoal only: before loading, split the records' key space into this many ranges
    /// of equal key counts (ranges already starting at a split key are kept).
    #[arg(long, default_value_t = 1)]
    split_into: u64,
    /// shoal only: the certificates directory of a secure cluster (TLS, presenting
    /// `client.root.crt` when it holds one).
    #[arg(long)]
    certs_dir: Option<PathBuf>,
    /// Label of the run in the outputs.
    #[arg(long, default_value = "")]
    label: String,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Outcome {
    hist: Histogram<u64>,
    errors: u64,
}

/// The load phase writes each record once; the run phase measures the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Load,
    Run,
}

async fn run_tasks(
    args: &Args,
    targets: &[Target],
    phase: Phase,
) -> anyhow::Result<(Outcome, Duration, u64)> {
    let measured = phase == Phase::Run;
    let value = Arc::new(vec![b'v'; args.value_size]);
    // Run: the record count (inserts grow it). Load: the next record to write.
    let records = Arc::new(AtomicU64::new(if measured { args.records } else { 0 }));
    let chooser = KeyChooser::new(args.distribution, args.records);
    let start = Instant::now();
    let deadline = (measured && args.operations.is_none())
        .then(|| start + Duration::from_secs_f64(args.duration));
    let period = (measured && args.rate > 0.0)
        .then(|| Duration::from_secs_f64(args.clients as f64 / args.rate));
    let budget = match phase {
        Phase::Load => args.records,
        Phase::Run => args.operations.unwrap_or(u64::MAX),
    };
    let pace = Pace::new(deadline, budget, period);
    let mut tasks = Vec::new();
    for t in 0..args.clients {
        let target = targets[t % targets.len()].clone();
        let (value, records, mut pace, chooser) = (
            value.clone(),
            records.clone(),
            pace.clone(),
            chooser.clone(),
        );
        let (workload, stale, scan_len) = (
            if measured {
                args.workload
            } else {
                Workload::Put
            },
            args.consistency == Consistency::Stale,
            args.scan_length,
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64 * 7919 + 1);
            let mut hist = histogram();
            let mut errors = 0u64;
            while pace.next().await {
                let t0 = Instant::now();
                let res = if measured {
                    let op = workload.next_op(&mut rng);
                    let n = records.load(Ordering::Relaxed);
                    match op {
                        Op::Read => target.read(&key(chooser.next(&mut rng, n)), stale).await,
                        Op::Update => target.write(&key(chooser.next(&mut rng, n)), &value).await,
                        Op::Insert => {
                            let i = records.fetch_add(1, Ordering::Relaxed);
                            target.write(&key(i), &value).await
                        }
                        Op::Scan => target.scan(&key(chooser.next(&mut rng, n)), scan_len).await,
                        Op::ReadModifyWrite => {
                            target
                                .read_modify_write(&key(chooser.next(&mut rng, n)), &value)
                                .await
                        }
                        Op::Write2 | Op::Rmw4 => {
                            let count = if op == Op::Write2 { 2 } else { 4 };
                            let keys: Vec<Vec<u8>> =
                                workload::spread(chooser.next(&mut rng, n), n, count)
                                    .into_iter()
                                    .map(key)
                                    .collect();
                            if op == Op::Write2 {
                                target.write_all(&keys, &value).await
                            } else {
                                target.read_modify_write_all(&keys, &value).await
                            }
                        }
                    }
                } else {
                    let i = records.fetch_add(1, Ordering::Relaxed);
                    target.write(&key(i), &value).await
                };
                match res {
                    Ok(()) => {
                        let us = t0.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                        let _ = hist.record(us);
                    }
                    Err(e) => {
                        if errors < 3 {
                            eprintln!("error: {e:#}");
                        }
                        errors += 1;
                    }
                }
            }
            Outcome { hist, errors }
        }));
    }
    let mut total = Outcome {
        hist: histogram(),
        errors: 0,
    };
    for t in tasks {
        let o = t.await.context("client task")?;
        total.hist.add(&o.hist)?;
        total.errors += o.errors;
    }
    let elapsed = start.elapsed();
    let ops = total.hist.len();
    Ok((total, elapsed, ops))
}

/// A histogram of latencies in microseconds, from 1 us to 60 s.
/// When a client of a run sends its next call: until the run's deadline, or until
/// the budget of calls all clients share is spent, each at its share of `--rate`.
#[derive(Clone)]
struct Pace {
    deadline: Option<Instant>,
    budget: Arc<AtomicU64>,
    period: Option<Duration>,
    next: Instant,
}

impl Pace {
    fn new(deadline: Option<Instant>, budget: u64, period: Option<Duration>) -> Self {
        Self {
            deadline,
            budget: Arc::new(AtomicU64::new(budget)),
            period,
            next: Instant::now(),
        }
    }

    /// Waits for this client's next call; `false` once the run is over.
    async fn next(&mut self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        if self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_err()
        {
            return false;
        }
        if let Some(p) = self.period {
            tokio::time::sleep_until(self.next.into()).await;
            self.next += p;
        }
        true
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Appends `record`, with the host and the command line, as one JSON line to the
/// `--json` file (if any).
fn write_record(args: &Args, mut record: serde_json::Value) -> anyhow::Result<()> {
    record["host"] = hostname().into();
    record["command"] = std::env::args().collect::<Vec<_>>().join(" ").into();
    if let Some(path) = &args.json {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{record}")?;
    }
    Ok(())
}

/// Splits the key space of `records` records into `ranges` ranges of equal key
/// counts; returns the number of splits made (a range already starting at a split
/// key needs none).
async fn split_evenly(
    client: &shoal_client::Client,
    records: u64,
    ranges: u64,
) -> anyhow::Result<u64> {
    // A new cluster's routing table knows its first range within a second or so.
    let deadline = Instant::now() + Duration::from_secs(30);
    let starts: std::collections::HashSet<Vec<u8>> = loop {
        let ranges = client.ranges().await?.ranges;
        if !ranges.is_empty() {
            break ranges
                .into_iter()
                .filter_map(|r| r.descriptor.map(|d| d.start))
                .collect();
        }
        anyhow::ensure!(Instant::now() < deadline, "the routing table stayed empty");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut made = 0;
    for i in 1..ranges {
        let at = key(records * i / ranges);
        if starts.contains(&at) {
            continue;
        }
        client
            .split_range(&at)
            .await
            .with_context(|| format!("splitting at {}", String::from_utf8_lossy(&at)))?;
        made += 1;
    }
    Ok(made)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.clients > 0 && args.connections > 0,
        "--clients and --connections must be at least 1"
    );
    anyhow::ensure!(args.records > 0, "--records must be at least 1");
    let tso = args.workload == Workload::Tso;
    if tso {
        anyhow::ensure!(
            args.target == TargetKind::Shoal,
            "etcd has no timestamp oracle: --workload tso applies to --target shoal only"
        );
        anyhow::ensure!(
            (1..=tso::MAX_COUNT).contains(&args.tso_count),
            "--tso-count must be 1 to {}",
            tso::MAX_COUNT
        );
        anyhow::ensure!(
            !args.load && args.split_into == 1,
            "--load and --split-into do not apply to --workload tso"
        );
    }
    let tls = match &args.certs_dir {
        Some(dir) => {
            anyhow::ensure!(
                args.target == TargetKind::Shoal,
                "--certs-dir applies to --target shoal only"
            );
            Some(shoal_client::ClientTls::from_dir(dir, "root")?)
        }
        None => None,
    };
    if args.split_into > 1 {
        anyhow::ensure!(
            args.target == TargetKind::Shoal,
            "--split-into applies to --target shoal only"
        );
        let opts = shoal_client::ClientOptions {
            tls: tls.clone(),
            ..Default::default()
        };
        let client = shoal_client::Client::with_options(args.endpoints.iter().cloned(), opts)?;
        let start = Instant::now();
        let made = split_evenly(&client, args.records, args.split_into).await?;
        eprintln!(
            "split into {} ranges ({made} new) in {:.1}s",
            args.split_into,
            start.elapsed().as_secs_f64()
        );
    }
    let mut targets = Vec::new();
    for n in 0..args.connections {
        targets.push(Target::connect(args.target, &args.endpoints, n, tls.as_ref()).await?);
    }
    if tso {
        return tso::run(&args, &targets).await;
    }
    if args.load {
        let (o, el, ops) = run_tasks(&args, &targets, Phase::Load).await?;
        eprintln!(
            "loaded {ops} records in {:.1}s ({} errors)",
            el.as_secs_f64(),
            o.errors
        );
    }
    let (o, elapsed, ops) = run_tasks(&args, &targets, Phase::Run).await?;
    let secs = elapsed.as_secs_f64();
    let h = &o.hist;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let throughput = ops as f64 / secs;
    let record = serde_json::json!({
        "label": args.label,
        "target": format!("{:?}", args.target).to_lowercase(),
        "workload": format!("{:?}", args.workload).to_lowercase(),
        "distribution": format!("{:?}", args.distribution).to_lowercase(),
        "consistency": format!("{:?}", args.consistency).to_lowercase(),
        "records": args.records,
        "clients": args.clients,
        "connections": args.connections,
        "value_size": args.value_size,
        "rate": args.rate,
        "seconds": secs,
        "ops": ops,
        "errors": o.errors,
        "ops_per_sec": throughput,
        "latency_ms": {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999), "max": h.max() as f64 / 1000.0, "mean": h.mean() / 1000.0},
    });
    write_record(&args, record)?;
    println!(
        "| {} | {:?} | {:?} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
        args.label,
        args.target,
        args.workload,
        args.clients,
        throughput,
        q(0.50),
        q(0.99),
        q(0.999),
        o.errors
    );
    Ok(())
}
