//! `fsync-floor DIR [COUNT]`: the disk's fdatasync latency floor: COUNT appends of
//! 4 KiB to a file in DIR, each followed by fdatasync, as a write-ahead log does.
//! Prints a JSON record with the median, p99 and mean in milliseconds.

use std::io::Write;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: fsync-floor DIR [COUNT]"))?;
    let count: usize = args.next().map(|c| c.parse()).transpose()?.unwrap_or(500);
    anyhow::ensure!(count > 0, "COUNT must be at least 1");
    let path = std::path::Path::new(&dir).join("fsync-floor.probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 4096];
    let mut lat = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    println!(
        "{}",
        serde_json::json!({"fdatasync_ms": {"p50": q(0.5), "p99": q(0.99), "mean": mean, "count": count}})
    );
    Ok(())
}
