//! The pairs workload: batches of puts across ranges, which the SDK commits itself
//! (`Kv.Prewrite`, then `Txn.Finish`). Each batch sets both keys of one pair (in two
//! ranges) to the same value; readers read both keys of a pair at one timestamp. No
//! read may see a pair's keys apart (half a batch), and after the faults every pair's
//! keys hold one batch's value, at a version no lower than the last acknowledged
//! batch of that pair (none lost).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use rand::{Rng, SeedableRng};
use shoal_client::{ops, Client};
use tokio::task::JoinHandle;

use crate::txn_workload::{join_readers, spawn_readers, Reader, Tally};

/// The pair's two keys: the first sorts before the bank's and the lists' keys (and
/// after `n`), the second after them, so splits at those keys put them in two
/// ranges.
pub fn pair_keys(i: usize) -> (String, String) {
    (format!("p/pair/{i:03}"), format!("t/pair/{i:03}"))
}

type Writer = JoinHandle<(Tally, BTreeMap<usize, u64>)>;

pub struct Pairs {
    stop: Arc<AtomicBool>,
    writers: Vec<Writer>,
    readers: Vec<Reader>,
}

/// What a pairs run came to.
#[derive(Debug)]
pub struct PairsReport {
    pub batches: Tally,
    /// The highest version acknowledged per pair.
    pub acked: BTreeMap<usize, u64>,
    pub reads: u64,
    /// Reads that saw a pair's keys apart.
    pub bad_reads: Vec<String>,
}

impl Pairs {
    /// Starts `writers` and `readers` over `pairs` pairs, each with its own client.
    pub fn start(
        addrs: &[String],
        pairs: usize,
        writers: usize,
        readers: usize,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = Vec::new();
        for n in 0..writers {
            let client = Client::with_options(addrs.to_vec(), crate::workload::client_options())?;
            let stop = stop.clone();
            w.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + n as u64);
                let (mut tally, mut acked) = (Tally::default(), BTreeMap::new());
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let i = rng.random_range(0..pairs);
                    let (a, b) = pair_keys(i);
                    let v = format!("{n}-{seq}");
                    seq += 1;
                    match client
                        .batch(vec![ops::write_put(&a, &v), ops::write_put(&b, &v)])
                        .await
                    {
                        Ok(version) => {
                            tally.committed += 1;
                            let top = acked.entry(i).or_insert(0);
                            *top = version.max(*top);
                        }
                        Err(e) => {
                            tally.count_failure(&e);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                client.flush().await;
                (tally, acked)
            }));
        }
        let r = spawn_readers(addrs, readers, &stop, |n| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(2000 + n as u64);
            move |client: Client| {
                let i = rng.random_range(0..pairs);
                async move { read_pair(&client, i).await }
            }
        })?;
        Ok(Self {
            stop,
            writers: w,
            readers: r,
        })
    }

    /// Stops the clients; what they came to.
    pub async fn finish(self) -> PairsReport {
        self.stop.store(true, Ordering::Relaxed);
        let (mut batches, mut acked) = (Tally::default(), BTreeMap::new());
        for w in self.writers {
            if let Ok((t, a)) = w.await {
                batches.add(&t);
                for (i, v) in a {
                    let top: &mut u64 = acked.entry(i).or_insert(0);
                    *top = v.max(*top);
                }
            }
        }
        let (reads, bad_reads) = join_readers(self.readers).await;
        PairsReport {
            batches,
            acked,
            reads,
            bad_reads,
        }
    }
}

/// Pair `i` read at one timestamp: `Some` (what was seen) when its keys differ.
async fn read_pair(client: &Client, i: usize) -> shoal_client::Result<Option<String>> {
    let (a, b) = pair_keys(i);
    let ts = client.timestamp().await?;
    let (ka, kb) = (client.get_at(&a, ts).await?, client.get_at(&b, ts).await?);
    let seen = |kv: &Option<shoal_client::KeyValue>| {
        kv.as_ref()
            .map(|kv| (String::from_utf8_lossy(&kv.value).into_owned(), kv.version))
    };
    Ok((seen(&ka) != seen(&kb)).then(|| {
        format!(
            "pair {i} at {ts}: {a} = {:?}, {b} = {:?}",
            seen(&ka),
            seen(&kb)
        )
    }))
}

impl PairsReport {
    /// Fails unless batches committed, no read saw a pair apart, and every pair
    /// written holds one batch's value at or above its last acknowledged version.
    pub async fn check(&self, client: &Client) -> anyhow::Result<()> {
        if self.batches.committed == 0 {
            bail!("no batch committed: {:?}", self.batches);
        }
        if !self.bad_reads.is_empty() {
            bail!("reads saw half a batch: {:?}", self.bad_reads);
        }
        for (&i, &version) in &self.acked {
            if let Some(apart) = read_pair(client, i).await? {
                bail!("after the faults, {apart}");
            }
            let (a, _) = pair_keys(i);
            let now = client.get(&a).await?.map_or(0, |kv| kv.version);
            if now < version {
                bail!("pair {i} is at version {now}, below the acknowledged {version}");
            }
        }
        Ok(())
    }
}
