//! What the node's container gives it: the CPU quota and memory limit of its cgroup
//! (v2, or v1 on older hosts), read once at start, so that a node in a pod sizes
//! its runtime and RocksDB's memory from the pod's limits rather than the host's
//! cores and memory (which a container sees whole).
//!
//! A limit is the tightest of the node's cgroup and its ancestors (as the kernel
//! enforces it); with a private cgroup namespace, a container's own cgroup is the
//! root of what it sees, and that is read.

use std::path::{Path, PathBuf};

/// The limits the node runs under; `None`: none set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// CPUs' worth of time per period (`--cpus`, a pod's `limits.cpu`).
    pub cpu_quota: Option<f64>,
    /// Bytes of memory (`--memory`, a pod's `limits.memory`).
    pub memory_limit: Option<u64>,
}

/// A limit this large means none (cgroup v1 writes "no limit" as a huge number).
const UNLIMITED: u64 = 1 << 60;

/// `cpu.max` of cgroup v2: `"$QUOTA $PERIOD"` or `"max $PERIOD"`.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?.parse::<f64>().ok()?;
    let period = parts
        .next()
        .map_or(Some(100_000.0), |p| p.parse::<f64>().ok())?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `memory.max` of cgroup v2 (`"max"` or bytes), or v1's `memory.limit_in_bytes`.
pub fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|b| *b > 0 && *b < UNLIMITED)
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn tighter<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, b) => a.or(b),
    }
}

impl Resources {
    /// The limits of this process's cgroup.
    pub fn detect() -> Resources {
        let own = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
        Self::read_from(Path::new("/sys/fs/cgroup"), &own)
    }

    /// The limits under cgroup root `root` of a process whose `/proc/self/cgroup`
    /// reads `own`.
    pub fn read_from(root: &Path, own: &str) -> Resources {
        // cgroup v2: one hierarchy, the line `0::/path`.
        if root.join("cgroup.controllers").exists() {
            let rel = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/")
                .trim_start_matches('/');
            let mut found = Resources::default();
            let mut dir: PathBuf = root.join(rel);
            loop {
                let cpu = read(&dir.join("cpu.max")).and_then(|t| parse_cpu_max(&t));
                let mem = read(&dir.join("memory.max")).and_then(|t| parse_memory_max(&t));
                found.cpu_quota = tighter(found.cpu_quota, cpu);
                found.memory_limit = tighter(found.memory_limit, mem);
                if dir == root || !dir.pop() || !dir.starts_with(root) {
                    break;
                }
            }
            return found;
        }
        // cgroup v1: a hierarchy per controller, read at its root as the container
        // sees it.
        let quota = ["cpu,cpuacct", "cpu"].iter().find_map(|c| {
            let q: i64 = read(&root.join(c).join("cpu.cfs_quota_us"))?
                .trim()
                .parse()
                .ok()?;
            let p: i64 = read(&root.join(c).join("cpu.cfs_period_us"))?
                .trim()
                .parse()
                .ok()?;
            (q > 0 && p > 0).then(|| q as f64 / p as f64)
        });
        let memory =
            read(&root.join("memory/memory.limit_in_bytes")).and_then(|t| parse_memory_max(&t));
        Resources {
            cpu_quota: quota,
            memory_limit: memory,
        }
    }

    /// Worker threads for the runtime: the CPUs the quota pays for (rounded up),
    /// at most the `host` CPUs the process may run on, at least one.
    pub fn workers(&self, host: usize) -> usize {
        match self.cpu_quota {
            Some(q) => (q.ceil() as usize).clamp(1, host.max(1)),
            None => host.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_read_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("50000"), Some(0.5));
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("268435456\n"), Some(256 << 20));
        assert_eq!(parse_memory_max("9223372036854771712"), None);
    }

    #[test]
    fn the_tightest_limit_of_the_cgroup_and_its_parents_counts() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("cgroup.controllers"), "cpu memory").unwrap();
        let pod = r.join("kubepods/pod1");
        let ctr = pod.join("ctr");
        std::fs::create_dir_all(&ctr).unwrap();
        std::fs::write(pod.join("cpu.max"), "200000 100000").unwrap();
        std::fs::write(pod.join("memory.max"), "max").unwrap();
        std::fs::write(ctr.join("cpu.max"), "max 100000").unwrap();
        std::fs::write(ctr.join("memory.max"), "536870912").unwrap();
        let found = Resources::read_from(r, "0::/kubepods/pod1/ctr\n");
        assert_eq!(found.cpu_quota, Some(2.0));
        assert_eq!(found.memory_limit, Some(512 << 20));
        assert_eq!(found.workers(8), 2);
        assert_eq!(found.workers(1), 1);
        // A container's own namespace: its cgroup is the root.
        std::fs::write(r.join("cpu.max"), "50000 100000").unwrap();
        let own = Resources::read_from(r, "0::/\n");
        assert_eq!(own.cpu_quota, Some(0.5));
        assert_eq!(own.workers(8), 1);
        assert_eq!(Resources::default().workers(4), 4);
    }

    #[test]
    fn cgroup_v1_limits_are_read_too() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("cpu,cpuacct")).unwrap();
        std::fs::create_dir_all(r.join("memory")).unwrap();
        std::fs::write(r.join("cpu,cpuacct/cpu.cfs_quota_us"), "-1").unwrap();
        std::fs::write(r.join("cpu,cpuacct/cpu.cfs_period_us"), "100000").unwrap();
        std::fs::write(
            r.join("memory/memory.limit_in_bytes"),
            "9223372036854771712",
        )
        .unwrap();
        assert_eq!(Resources::read_from(r, ""), Resources::default());
        std::fs::write(r.join("cpu,cpuacct/cpu.cfs_quota_us"), "300000").unwrap();
        std::fs::write(r.join("memory/memory.limit_in_bytes"), "1073741824").unwrap();
        let found = Resources::read_from(r, "");
        assert_eq!(found.cpu_quota, Some(3.0));
        assert_eq!(found.memory_limit, Some(1 << 30));
    }
}
