//! [`Logins`]: failed logins, counted (`shoal_login_failures_total{port}`) and slowed
//! down per source address. A source's first few failures within a minute are
//! answered at once; each one after waits twice as long as the one before (from
//! half a second, at most [`MAX_DELAY`]) before its refusal, as Postgres'
//! `auth_delay` does: someone guessing names or credentials gets few guesses a
//! minute, and clients that log in as they should are never slowed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// The window failures are counted in, per source.
const WINDOW: Duration = Duration::from_secs(60);
/// Failures of a source within the window answered without delay.
const FREE: u32 = 3;
/// The longest a refusal waits.
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// Sources remembered at most; beyond, those whose window ended are forgotten.
const MAX_SOURCES: usize = 10_000;

/// Failed logins by source.
pub struct Logins {
    metrics: Metrics,
    recent: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Logins {
    pub fn new(metrics: Metrics) -> Self {
        Logins {
            metrics,
            recent: Mutex::default(),
        }
    }

    /// Records a failed login from `from` on `port` (`grpc`, `sql`, `http`): how long
    /// its refusal waits.
    pub fn failed(&self, from: Option<IpAddr>, port: &str) -> Duration {
        self.metrics.count_login_failure(port);
        let Some(ip) = from else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= MAX_SOURCES {
            recent.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
        }
        let entry = recent.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        delay_after(entry.1)
    }
}

/// The wait of a source's `n`th failure within the window.
fn delay_after(n: u32) -> Duration {
    if n <= FREE {
        return Duration::ZERO;
    }
    let doublings = (n - FREE - 1).min(8);
    (Duration::from_millis(500) * 2u32.pow(doublings)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_a_few_failures_free_then_waits_longer_each_time() {
        let waits: Vec<u64> = (1..=10)
            .map(|n| delay_after(n).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [0, 0, 0, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]
        );
        let logins = Logins::new(Metrics::new());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..FREE {
            assert_eq!(logins.failed(Some(a), "grpc"), Duration::ZERO);
        }
        assert!(logins.failed(Some(a), "sql") > Duration::ZERO);
        // Another source is not slowed by the first one's failures.
        assert_eq!(logins.failed(Some(b), "grpc"), Duration::ZERO);
    }
}
