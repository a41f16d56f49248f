//! [`RaftOptions`]: Raft timing and log compaction of a node's replicas, and when a
//! replica builds a snapshot.

use std::time::Duration;

use openraft::{Config, LinearizerOption, SnapshotPolicy};

/// Raft timing and log compaction of a node's replicas.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot once this many entries were applied since the last one (and
    /// enough bytes: see [`snapshot_due`]).
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot, for slow followers.
    pub keep_logs: u64,
    /// How the leader confirms a linearizable read: by its lease (no round trip while
    /// a quorum acknowledged it within [`RaftOptions::read_lease`]), else by a
    /// read-index round to a quorum, which is all `false` ever does.
    pub lease_reads: bool,
}

impl Default for RaftOptions {
    fn default() -> Self {
        Self {
            heartbeat_ms: 150,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs: 10_000,
            keep_logs: 1_000,
            lease_reads: true,
        }
    }
}

impl RaftOptions {
    /// How long a leader trusts a quorum's acknowledgement to serve reads without a
    /// round trip: half the time a follower refuses to vote after hearing from it.
    ///
    /// openraft's followers refuse every vote (but a handover's) for
    /// `election_timeout_max` after they received a message of the leader, measured on
    /// their monotonic clock; the leader counts its lease from the moment it sent the
    /// message a quorum acknowledged, on its own clock. The bound: no other leader can
    /// have been elected within the read lease as long as no node's clock runs more
    /// than twice as fast as the leader's, and every node's clock keeps counting while
    /// its process is stopped (SIGSTOP, a frozen cgroup: Linux's monotonic clock does;
    /// a virtual machine suspended without its guest's clock advancing does not, and
    /// `--read-policy read-index` is the choice there). A new leader also needs an
    /// election round and a commit before it can serve a newer value, which the bound
    /// does not count.
    pub fn read_lease(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms / 2)
    }

    /// How a leader confirms that no other leader can have been elected: with
    /// `lease_reads`, at once while a quorum acknowledged it within
    /// [`RaftOptions::read_lease`], else (and always without `lease_reads`) by a
    /// heartbeat round sent now, waiting for a quorum's answer at most one
    /// `election_timeout_max`.
    pub(crate) fn leadership_check(&self) -> LinearizerOption {
        let age = if self.lease_reads {
            self.read_lease()
        } else {
            Duration::ZERO
        };
        LinearizerOption::new(Some(age), true)
    }

    pub(crate) fn config(&self) -> Result<Config, openraft::ConfigError> {
        Config {
            cluster_name: "shoal".to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            // Snapshots are taken by `Replica::snapshot_if_due`, which weighs bytes
            // as well as entries.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.keep_logs,
            purge_batch_size: 256,
            install_snapshot_timeout: 60_000,
            enable_pre_vote: Some(true),
            // Replicate entries as soon as they are written, while the local fsync runs:
            // the leader's and the followers' fsyncs overlap instead of adding up.
            broadcast_submitted_on_append: Some(true),
            // openraft times each entry's stages in rings of this many batches per
            // range (statistics shoal never reads): 1,024, the default, is 147 KiB
            // resident per replica once a range has seen as many batches.
            log_stage_capacity: Some(LOG_STAGE_CAPACITY),
            ..Default::default()
        }
        .validate()
    }
}

/// Batches per ring of openraft's per-stage latency statistics (see [`RaftOptions::config`]).
const LOG_STAGE_CAPACITY: u64 = 8;

/// Past this many bytes applied since the last snapshot, a snapshot is due whatever the
/// entry count: a log of large values stays bounded.
pub const SNAPSHOT_LOG_BYTES: u64 = 16 << 20;

/// Whether a replica should build a snapshot, `entries` and `bytes` having been applied
/// since its last one, whose file holds `snapshot_bytes`.
///
/// A snapshot writes the whole range, so building one after a fixed number of entries
/// costs a range near its split size many times what the entries wrote (64 MiB per 10,000
/// small writes). One is due only once the log since the last holds at least half the
/// last snapshot's bytes, which bounds that cost to about twice the bytes written, and
/// once it holds `snapshot_logs` entries or [`SNAPSHOT_LOG_BYTES`] (the log's own bound).
pub fn snapshot_due(entries: u64, bytes: u64, snapshot_bytes: u64, snapshot_logs: u64) -> bool {
    bytes >= snapshot_bytes / 2 && (entries >= snapshot_logs || bytes >= SNAPSHOT_LOG_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_after_enough_entries_and_half_the_last_snapshot_in_bytes() {
        // No snapshot yet: the entry count alone decides.
        assert!(!snapshot_due(9_999, 1 << 20, 0, 10_000));
        assert!(snapshot_due(10_000, 10, 0, 10_000));
        // A 64 MiB range: 10,000 small writes are not worth rewriting it ...
        let range = 64 << 20;
        assert!(!snapshot_due(10_000, 1 << 20, range, 10_000));
        // ... half of it written again is.
        assert!(snapshot_due(300_000, 32 << 20, range, 10_000));
        // Few large entries: the log's byte bound decides, past half the snapshot.
        assert!(!snapshot_due(100, (16 << 20) - 1, 1 << 20, 10_000));
        assert!(snapshot_due(100, 16 << 20, 1 << 20, 10_000));
        assert!(!snapshot_due(100, 16 << 20, range, 10_000));
    }
}
