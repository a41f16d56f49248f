//! [`Load`]: the requests a replica served since it was last asked, and a uniform
//! sample of their keys, from which the node's range keeper splits a range that
//! stays hot (`--split-qps`) at a key with as much of the load on each side.
//!
//! Recording is one atomic add per request; the sample's lock is taken by a request
//! with probability `SAMPLE_SIZE / n` once `n` requests were counted (reservoir
//! sampling, Algorithm R), so a busy range pays almost nothing for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Keys kept per period between two reads of the load.
pub const SAMPLE_SIZE: usize = 32;

/// Requests served and a sample of their keys, since the last [`Load::take`].
#[derive(Debug, Default)]
pub struct Load {
    served: AtomicU64,
    sample: Mutex<Vec<Vec<u8>>>,
}

impl Load {
    /// Counts one request on `key` (a scan: its first key).
    pub fn record(&self, key: &[u8]) {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        // The n-th key replaces a slot chosen uniformly among n: kept with probability
        // SAMPLE_SIZE / n, as each earlier key is then.
        let slot = if n <= SAMPLE_SIZE as u64 {
            n - 1
        } else {
            mix(n) % n
        };
        if slot >= SAMPLE_SIZE as u64 {
            return;
        }
        // Below SAMPLE_SIZE: fits a usize.
        let slot = slot as usize;
        let mut sample = self.sample.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = sample.get_mut(slot) {
            k.clear();
            k.extend_from_slice(key);
        } else if sample.len() < SAMPLE_SIZE {
            // A take since this count was read left fewer slots: appended.
            sample.push(key.to_vec());
        }
    }

    /// The requests counted and the sampled keys since the last call, and starts over.
    pub fn take(&self) -> (u64, Vec<Vec<u8>>) {
        let served = self.served.swap(0, Ordering::Relaxed);
        if served == 0 {
            return (0, Vec::new());
        }
        let sample = std::mem::take(&mut *self.sample.lock().unwrap_or_else(|p| p.into_inner()));
        (served, sample)
    }
}

/// splitmix64's finalizer: a well-spread function of the request count, the sampler's
/// only randomness (the order keys arrive in is the workload's, not this function's).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key to split a hot range at, from the keys sampled while it was hot: the one
/// with the most balanced count of sampled requests before it and at or after it,
/// among those `splits_at` accepts; `None` unless each side gets at least a quarter
/// (a load on one key, or on keys the range cannot split between, is not divided by a
/// split).
pub fn split_key(mut sample: Vec<Vec<u8>>, splits_at: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let n = sample.len();
    if n < SAMPLE_SIZE {
        return None;
    }
    sample.sort_unstable();
    let mut best: Option<(usize, usize)> = None;
    for i in 1..n {
        if sample[i] == sample[i - 1] || !splits_at(&sample[i]) {
            continue;
        }
        let balance = i.min(n - i);
        if best.is_none_or(|(b, _)| balance > b) {
            best = Some((balance, i));
        }
    }
    let (balance, i) = best?;
    if balance * 4 >= n {
        Some(sample.swap_remove(i))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&str]) -> Vec<Vec<u8>> {
        ks.iter().map(|k| k.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_sample_is_bounded_and_spread_over_every_key_seen() {
        let load = Load::default();
        for i in 0..10_000u32 {
            load.record(format!("k{i:05}").as_bytes());
        }
        let (served, sample) = load.take();
        assert_eq!(served, 10_000);
        assert_eq!(sample.len(), SAMPLE_SIZE);
        // Uniform over the 10,000: some from each half, not only the first or last keys.
        let low = sample
            .iter()
            .filter(|k| k.as_slice() < &b"k05000"[..])
            .count();
        assert!(
            (4..=28).contains(&low),
            "{low} of {SAMPLE_SIZE} below the middle"
        );
        assert_eq!(load.take(), (0, Vec::new()));
    }

    #[test]
    fn a_split_key_divides_the_load_and_none_is_found_for_one_hot_key() {
        let spread: Vec<Vec<u8>> = (0..64).map(|i| format!("k{i:02}").into_bytes()).collect();
        assert_eq!(split_key(spread.clone(), |_| true), Some(b"k32".to_vec()));
        // The range starts at the balanced key: the next best is taken.
        let k = split_key(spread, |k| k != b"k32").unwrap();
        assert!(k == b"k31" || k == b"k33", "{k:?}");

        let one = keys(&["hot"; 64]);
        assert_eq!(split_key(one, |_| true), None);
        // Nine in ten requests on one key: a split leaves one side with almost all.
        let mut skewed = keys(&["hot"; 58]);
        skewed.extend(keys(&["a", "b", "c", "x", "y", "z"]));
        assert_eq!(split_key(skewed, |_| true), None);
        // Two hot keys: split between them.
        let mut two = keys(&["p"; 32]);
        two.extend(keys(&["q"; 32]));
        assert_eq!(split_key(two, |_| true), Some(b"q".to_vec()));
        // Too few requests sampled to tell.
        assert_eq!(split_key(keys(&["a", "b"]), |_| true), None);
    }
}
