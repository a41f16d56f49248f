//! Failpoints in the replication paths, for the `failpoints` test target.
//!
//! Compiled in only with the `failpoints` feature (the `fail` crate); without it
//! [`hit`] is an empty inline function. A failpoint's action comes from the
//! `FAILPOINTS` environment variable, read once at start ([`setup`]), in the `fail`
//! crate's syntax (`name=action;name2=action2`, actions chained with `->` and counted
//! with `N*`). Besides the crate's own actions (`off`, `sleep(ms)`, `pause`,
//! `panic`, ...), two are given meaning here:
//!
//! - `return(crash)`: the process aborts on the spot, as a crash would end it;
//! - `return` or `return(message)`: the operation fails with an I/O error.
//!
//! Points (in the order a write meets them):
//! `log-append` (before a range's log batch is written), `log-before-fsync` and
//! `log-after-fsync` (around the group commit's fsync, before appends are reported
//! durable), `apply-before-commit` and `apply-after-commit` (around the write batch
//! of one applied entry, before its client hears back), `snapshot-build` (a snapshot
//! file written, not yet recorded), `snapshot-send` (before each streamed chunk),
//! `snapshot-install-before-data` (install intent recorded, data not yet replaced) and
//! `snapshot-install-after-data` (data replaced, snapshot not yet recorded). A
//! transaction's coordinator (`shoal-txn`) has `txn-after-prewrite` (every range's
//! prewrite answered: in two phases, no commit timestamp yet; committed
//! asynchronously, the client not yet answered), `txn-before-secondaries` (two
//! phases: the primary committed, the other ranges' locks not yet),
//! `txn-prewrite-secondary` (an asynchronous commit's prewrites but the primary key's
//! are lost in flight) and `txn-before-rollback` (an asynchronous commit refused or
//! unanswered, before it is rolled back). A merge's coordinator (`shoal-server`'s
//! `merge.rs`) has `merge-before-absorb` (the right-hand range frozen and every
//! replica of it caught up, the left range not yet asked to absorb it).

use std::io;

/// Evaluates failpoint `name`: `Ok(())` unless it is configured to fail (or crash).
#[inline]
pub fn hit(name: &str) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |arg: Option<String>| {
        match arg.as_deref() {
            Some("crash") => {
                tracing::error!(failpoint = name, "failpoint: crashing");
                std::process::abort()
            }
            other => Err(io::Error::other(format!(
                "failpoint {name}: {}",
                other.unwrap_or("injected error")
            ))),
        }
    });
    let _ = name;
    Ok(())
}

/// Reads `FAILPOINTS` (with the `failpoints` feature; otherwise does nothing).
pub fn setup() {
    #[cfg(feature = "failpoints")]
    {
        let scenario = fail::FailScenario::setup();
        if std::env::var_os("FAILPOINTS").is_some() {
            tracing::warn!(failpoints = ?fail::list(), "failpoints configured");
        }
        // The scenario lives as long as the process.
        std::mem::forget(scenario);
    }
}
