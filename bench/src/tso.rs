//! `--workload tso`: the cluster's timestamp oracle (`Txn.Timestamps`), shoal only.
//!
//! Each client task loops asking for `--tso-count` timestamps per call and checks what
//! it gets, as it goes and at the end:
//! - its own timestamps strictly increase, call after call;
//! - in real time: a call's timestamps are above every timestamp any caller had
//!   received before the call began (the oracle's promise);
//! - no timestamp is handed to two calls.
//!
//! A violation is a bug of the oracle: the run is recorded, then fails. The result:
//! timestamps per second (the sum of the counts over the run's seconds), calls per
//! second, and the latency of a call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::target::Target;
use crate::{histogram, write_record, Args, Pace};

/// The most timestamps one call may ask for (`Txn.Timestamps`).
pub const MAX_COUNT: u64 = 1 << 16;
/// Violations printed (all are counted).
const SHOWN: u64 = 5;

/// What one caller, then the whole run, got.
struct Outcome {
    /// Latency of each successful call, in microseconds.
    hist: Histogram<u64>,
    errors: u64,
    /// The first timestamp of each successful call.
    firsts: Vec<u64>,
    /// A caller's call returned timestamps not above its previous call's.
    backwards: u64,
    /// A call's timestamps were not above every timestamp returned before it began.
    stale: u64,
}

impl Outcome {
    fn new() -> Self {
        Self {
            hist: histogram(),
            errors: 0,
            firsts: Vec::new(),
            backwards: 0,
            stale: 0,
        }
    }
}

/// The timestamps one call took: `[first, first + count)`, checked against what this
/// caller got before (`last`, its previous call's last timestamp) and `seen` (the
/// highest timestamp any call had returned when this one began).
fn check(first: u64, count: u64, last: Option<u64>, seen: u64, o: &mut Outcome) -> u64 {
    let end = first.saturating_add(count - 1);
    if last.is_some_and(|l| first <= l) {
        if o.backwards < SHOWN {
            eprintln!(
                "violation: a caller got {first} after {}",
                last.unwrap_or(0)
            );
        }
        o.backwards += 1;
    }
    if first <= seen {
        if o.stale < SHOWN {
            eprintln!("violation: a call got {first}, not above {seen} returned before it began");
        }
        o.stale += 1;
    }
    end
}

/// Calls whose timestamps overlapped another call's: `firsts` (sorted here) are the
/// first timestamps of calls of `count` each.
fn overlaps(firsts: &mut [u64], count: u64) -> u64 {
    firsts.sort_unstable();
    let mut n = 0;
    for w in firsts.windows(2) {
        if w[1] < w[0].saturating_add(count) {
            if n < SHOWN {
                eprintln!(
                    "violation: timestamps from {} and from {} (count {count}) overlap",
                    w[0], w[1]
                );
            }
            n += 1;
        }
    }
    n
}

async fn run_tasks(args: &Args, targets: &[Target]) -> anyhow::Result<(Outcome, Duration)> {
    let count = args.tso_count;
    // The highest timestamp returned so far, by any call.
    let returned = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = args
        .operations
        .is_none()
        .then(|| start + Duration::from_secs_f64(args.duration));
    let period =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.clients as f64 / args.rate));
    let pace = Pace::new(deadline, args.operations.unwrap_or(u64::MAX), period);
    let mut tasks = Vec::new();
    for t in 0..args.clients {
        let target = targets[t % targets.len()].clone();
        let (mut pace, returned) = (pace.clone(), returned.clone());
        tasks.push(tokio::spawn(async move {
            let mut o = Outcome::new();
            let mut last = None;
            while pace.next().await {
                // Read before the call is sent: every timestamp returned by then must
                // be below this call's.
                let seen = returned.load(Ordering::Acquire);
                let t0 = Instant::now();
                match target.timestamps(count).await {
                    Ok(first) => {
                        let us = t0.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                        let _ = o.hist.record(us);
                        let end = check(first, count, last, seen, &mut o);
                        returned.fetch_max(end, Ordering::AcqRel);
                        last = Some(end);
                        o.firsts.push(first);
                    }
                    Err(e) => {
                        if o.errors < 3 {
                            eprintln!("error: {e:#}");
                        }
                        o.errors += 1;
                    }
                }
            }
            o
        }));
    }
    let mut total = Outcome::new();
    for t in tasks {
        let o = t.await.context("client task")?;
        total.hist.add(&o.hist)?;
        total.errors += o.errors;
        total.backwards += o.backwards;
        total.stale += o.stale;
        total.firsts.extend(o.firsts);
    }
    Ok((total, start.elapsed()))
}

/// Runs the workload, prints its Markdown row, records it (`--json`); fails on any
/// violation of the oracle's order.
pub async fn run(args: &Args, targets: &[Target]) -> anyhow::Result<()> {
    let (mut o, elapsed) = run_tasks(args, targets).await?;
    let secs = elapsed.as_secs_f64();
    let calls = o.hist.len();
    let timestamps = calls * args.tso_count;
    let duplicates = overlaps(&mut o.firsts, args.tso_count);
    let h = &o.hist;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let (ts_rate, call_rate) = (timestamps as f64 / secs, calls as f64 / secs);
    write_record(
        args,
        serde_json::json!({
            "label": args.label,
            "target": "shoal",
            "workload": "tso",
            "tso_count": args.tso_count,
            "clients": args.clients,
            "connections": args.connections,
            "rate": args.rate,
            "seconds": secs,
            "ops": calls,
            "errors": o.errors,
            "ops_per_sec": call_rate,
            "timestamps": timestamps,
            "timestamps_per_sec": ts_rate,
            "violations": {"backwards": o.backwards, "stale": o.stale, "duplicates": duplicates},
            "latency_ms": {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999), "max": h.max() as f64 / 1000.0, "mean": h.mean() / 1000.0},
        }),
    )?;
    println!(
        "| {} | Shoal | Tso | {} | count {} | {:.0} timestamps/s | {:.0} calls/s | {:.2} | {:.2} | {:.2} | {} |",
        args.label,
        args.clients,
        args.tso_count,
        ts_rate,
        call_rate,
        q(0.50),
        q(0.99),
        q(0.999),
        o.errors
    );
    let violations = o.backwards + o.stale + duplicates;
    anyhow::ensure!(
        violations == 0,
        "the oracle's order was violated: {} backwards within a caller, {} not above an \
         earlier call's, {duplicates} overlapping",
        o.backwards,
        o.stale
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_must_move_forward_and_above_what_was_returned() {
        let mut o = Outcome::new();
        assert_eq!(check(100, 16, None, 0, &mut o), 115);
        assert_eq!(check(116, 16, Some(115), 115, &mut o), 131);
        assert_eq!((o.backwards, o.stale), (0, 0));
        // Its own last timestamp again: backwards (and not above what was returned).
        check(131, 1, Some(131), 131, &mut o);
        assert_eq!((o.backwards, o.stale), (1, 1));
        // Above its own, but not above another caller's returned before the call.
        check(140, 1, Some(131), 150, &mut o);
        assert_eq!((o.backwards, o.stale), (1, 2));
    }

    #[test]
    fn overlapping_calls_are_counted() {
        assert_eq!(overlaps(&mut [32, 0, 16], 16), 0);
        assert_eq!(overlaps(&mut [0, 15, 40], 16), 1);
        assert_eq!(overlaps(&mut [7, 7, 7], 1), 2);
    }
}
