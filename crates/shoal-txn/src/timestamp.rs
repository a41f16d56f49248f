//! [`Timestamp`]: a point of the cluster's one time line, handed out by the timestamp
//! oracle. Its high bits are wall-clock milliseconds and its low
//! [`LOGICAL_BITS`] bits count within a millisecond, so a timestamp tells roughly when
//! it was taken (useful for a past read's `--at` and for garbage collection's
//! safe point) while staying a plain `u64` that orders every commit in the cluster.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bits of a timestamp counting within one millisecond: 262,144 per millisecond.
pub const LOGICAL_BITS: u32 = 18;

/// A cluster-wide timestamp. `0` is before everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// The first timestamp of wall-clock millisecond `ms` (since the Unix epoch).
    pub fn from_millis(ms: u64) -> Self {
        Timestamp(ms.saturating_mul(1 << LOGICAL_BITS))
    }

    /// The first timestamp of the current wall-clock millisecond.
    pub fn wall_now() -> Self {
        Self::wall_now_skewed(0)
    }

    /// The first timestamp of the current wall-clock millisecond, on a clock
    /// `skew_ms` ahead (behind, if negative).
    pub fn wall_now_skewed(skew_ms: i64) -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        let ms = i64::try_from(ms)
            .unwrap_or(i64::MAX)
            .saturating_add(skew_ms);
        Self::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// The wall-clock millisecond this timestamp was taken in.
    pub fn millis(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The timestamp `d` earlier on the wall clock (saturating at zero).
    pub fn minus(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(ms.saturating_mul(1 << LOGICAL_BITS)))
    }

    /// The timestamp `n` after this one (saturating).
    pub fn plus(self, n: u64) -> Self {
        Timestamp(self.0.saturating_add(n))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_order_by_wall_clock_then_logical_count() {
        let a = Timestamp::from_millis(1_000);
        let b = a.plus(5);
        let c = Timestamp::from_millis(1_001);
        assert!(a < b && b < c);
        assert_eq!(b.millis(), 1_000);
        assert_eq!(c.minus(Duration::from_millis(1)), a);
        assert_eq!(a.minus(Duration::from_secs(1_000_000)), Timestamp::ZERO);
        assert!(Timestamp::wall_now().millis() > 1_700_000_000_000);
        let ahead = Timestamp::wall_now_skewed(60_000).millis();
        assert!(ahead >= Timestamp::wall_now().millis() + 59_000);
    }
}
