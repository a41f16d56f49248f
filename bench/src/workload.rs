//! Workloads (the operation mix) and key choosers (the distributions), as YCSB
//! defines them.

use rand::Rng;

/// One operation of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
    /// Two keys half the key space apart written in one transaction.
    Write2,
    /// Four keys a quarter of the key space apart read, then written, in one
    /// transaction.
    Rmw4,
}

/// A workload: its operation mix, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// etcd's benchmark `put`: writes only.
    Put,
    /// Reads only (see --consistency).
    Get,
    /// YCSB A: 50% reads, 50% updates.
    A,
    /// YCSB B: 95% reads, 5% updates.
    B,
    /// YCSB C: reads only.
    C,
    /// YCSB E: 95% short scans, 5% inserts.
    E,
    /// YCSB F: 50% reads, 50% read-modify-writes (compare-and-swap).
    F,
    /// The cluster's timestamp oracle: `Txn.Timestamps` calls of --tso-count
    /// timestamps (shoal only; see the `tso` module).
    Tso,
    /// Transactions writing two keys half the key space apart (two ranges with
    /// --split-into 2): shoal's `Batch` across ranges, etcd's `Txn` of two puts.
    Txn2,
    /// Transactions reading four keys a quarter of the key space apart, then writing
    /// all four: shoal's interactive transaction (begin, 4 gets, 4 puts, commit;
    /// run again on a conflict), etcd's `Txn` of 4 gets, then a `Txn` of 4 puts
    /// guarded by the 4 keys' revisions (run again when a guard fails).
    Rmw4,
}

impl Workload {
    /// The mix; empty for `Tso`, whose calls are not key operations.
    pub fn mix(self) -> &'static [(Op, u32)] {
        match self {
            Workload::Put => &[(Op::Update, 100)],
            Workload::Get | Workload::C => &[(Op::Read, 100)],
            Workload::A => &[(Op::Read, 50), (Op::Update, 50)],
            Workload::B => &[(Op::Read, 95), (Op::Update, 5)],
            Workload::E => &[(Op::Scan, 95), (Op::Insert, 5)],
            Workload::F => &[(Op::Read, 50), (Op::ReadModifyWrite, 50)],
            Workload::Tso => &[],
            Workload::Txn2 => &[(Op::Write2, 100)],
            Workload::Rmw4 => &[(Op::Rmw4, 100)],
        }
    }

    /// An operation drawn from the mix (not of `Tso`, which has none).
    pub fn next_op(self, rng: &mut impl Rng) -> Op {
        let mut roll = rng.random_range(0..100u32);
        for &(op, pct) in self.mix() {
            if roll < pct {
                return op;
            }
            roll -= pct;
        }
        self.mix()[0].0
    }
}

/// How keys are chosen among the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    Uniform,
    /// YCSB's scrambled zipfian (theta 0.99): a few keys are hot, spread over the
    /// key space.
    Zipfian,
    /// Zipfian over recency: the most recently inserted keys are hot.
    Latest,
}

/// YCSB's zipfian generator over `[0, n)` (Gray et al., "Quickly generating
/// billion-record synthetic databases").
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    pub const THETA: f64 = 0.99;

    pub fn new(n: u64) -> Self {
        let n = n.max(2);
        let theta = Self::THETA;
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2, theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Self {
            n,
            theta,
            alpha,
            zetan,
            eta,
        }
    }

    /// A rank: 0 is the most popular.
    pub fn next(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

/// FNV-1a: scrambles zipfian ranks over the key space, as YCSB does.
fn fnv(x: u64) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in x.to_le_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Chooses keys among `records` (the count grows with inserts).
#[derive(Debug, Clone)]
pub struct KeyChooser {
    dist: Distribution,
    zipf: Zipfian,
}

impl KeyChooser {
    pub fn new(dist: Distribution, records: u64) -> Self {
        Self {
            dist,
            zipf: Zipfian::new(records),
        }
    }

    /// A record index in `[0, current)`.
    pub fn next(&self, rng: &mut impl Rng, current: u64) -> u64 {
        let current = current.max(1);
        match self.dist {
            Distribution::Uniform => rng.random_range(0..current),
            Distribution::Zipfian => fnv(self.zipf.next(rng)) % current,
            Distribution::Latest => current - 1 - self.zipf.next(rng).min(current - 1),
        }
    }
}

/// `n` records' indices spread evenly around the key space from `i`.
pub fn spread(i: u64, records: u64, n: u64) -> Vec<u64> {
    (0..n)
        .map(|k| (i + records * k / n) % records.max(1))
        .collect()
}

/// The key of record `i`: 8 bytes, as etcd's benchmark uses.
pub fn key(i: u64) -> Vec<u8> {
    format!("k{:07}", i % 10_000_000).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashMap;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn mixes_come_out_in_their_proportions() {
        let mut r = rng();
        for w in [
            Workload::A,
            Workload::B,
            Workload::E,
            Workload::F,
            Workload::Put,
            Workload::C,
            Workload::Txn2,
            Workload::Rmw4,
        ] {
            let mut counts: HashMap<Op, u32> = HashMap::new();
            let n = 100_000;
            for _ in 0..n {
                *counts.entry(w.next_op(&mut r)).or_default() += 1;
            }
            for &(op, pct) in w.mix() {
                let got = counts.get(&op).copied().unwrap_or(0) as f64 / n as f64 * 100.0;
                assert!(
                    (got - pct as f64).abs() < 1.0,
                    "{w:?} {op:?}: {got:.2}% for {pct}%"
                );
            }
            assert_eq!(
                counts.len(),
                w.mix().len(),
                "{w:?} produced ops outside its mix"
            );
        }
    }

    #[test]
    fn uniform_covers_the_key_space_evenly() {
        let mut r = rng();
        let k = KeyChooser::new(Distribution::Uniform, 100);
        let mut counts = vec![0u32; 100];
        for _ in 0..100_000 {
            counts[k.next(&mut r, 100) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn zipfian_is_skewed_and_scrambled() {
        let mut r = rng();
        let n = 10_000;
        let z = Zipfian::new(n);
        let mut counts = vec![0u32; n as usize];
        for _ in 0..200_000 {
            counts[z.next(&mut r) as usize] += 1;
        }
        // Rank 0 is the hottest; the top 1% of ranks take a large share (theta 0.99).
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[1000]);
        let top: u32 = counts[..100].iter().sum();
        assert!(top as f64 / 200_000.0 > 0.4, "top 1% took {top}");
        // Scrambled: the hottest key is not simply key 0, and hot keys are spread.
        let k = KeyChooser::new(Distribution::Zipfian, n);
        let mut hits: HashMap<u64, u32> = HashMap::new();
        for _ in 0..50_000 {
            *hits.entry(k.next(&mut r, n)).or_default() += 1;
        }
        let hottest = hits
            .iter()
            .max_by_key(|(_, c)| **c)
            .map(|(k, _)| *k)
            .unwrap();
        assert_eq!(hottest, fnv(0) % n);
    }

    #[test]
    fn latest_favours_the_newest_records() {
        let mut r = rng();
        let k = KeyChooser::new(Distribution::Latest, 1000);
        let newest = (0..10_000).filter(|_| k.next(&mut r, 1000) >= 990).count();
        assert!(newest > 4_000, "only {newest} of 10000 among the 10 newest");
        assert!((0..1000).all(|_| k.next(&mut r, 1000) < 1000));
    }

    #[test]
    fn keys_are_eight_bytes() {
        assert_eq!(key(0).len(), 8);
        assert_eq!(key(9_999_999).len(), 8);
        assert_ne!(key(1), key(2));
    }
}
