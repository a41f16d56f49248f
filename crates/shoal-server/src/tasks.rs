//! [`Tasks`]: the node's background loops, owned by one guard. Each loop runs until
//! the guard's token is cancelled (the node's shutdown, or the guard dropped); then
//! [`Tasks::stop`] waits a moment for them to finish and aborts what is left.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long [`Tasks::stop`] waits for the loops to end before aborting them.
const STOP_PATIENCE: Duration = Duration::from_secs(2);

pub struct Tasks {
    token: CancellationToken,
    handles: Vec<(&'static str, JoinHandle<()>)>,
}

impl Tasks {
    /// A guard whose loops stop when `token` is cancelled (a child of it: dropping the
    /// guard stops them without cancelling `token`).
    pub fn new(token: &CancellationToken) -> Self {
        Self {
            token: token.child_token(),
            handles: Vec::new(),
        }
    }

    /// Runs `f` until the guard stops.
    pub fn spawn<F>(&mut self, name: &'static str, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        let handle = tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = f => {}
            }
        });
        self.handles.push((name, handle));
    }

    /// Runs `round` every `every` until the guard stops (the first round after one
    /// interval).
    pub fn every<F, Fut>(&mut self, name: &'static str, every: Duration, mut round: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.spawn(name, async move {
            loop {
                tokio::time::sleep(every).await;
                round().await;
            }
        });
    }

    /// Stops every loop: cancels them, waits a moment, aborts what is left.
    pub async fn stop(mut self) {
        self.token.cancel();
        let handles = std::mem::take(&mut self.handles);
        for (name, mut h) in handles {
            if tokio::time::timeout(STOP_PATIENCE, &mut h).await.is_err() {
                tracing::warn!(
                    task = name,
                    "a background task did not stop in time; aborting it"
                );
                h.abort();
            }
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.token.cancel();
        for (_, h) in &self.handles {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A loop counting its rounds, once a second, under `tasks`.
    fn count(tasks: &mut Tasks, rounds: &Arc<AtomicU32>) {
        let r = rounds.clone();
        tasks.every("count", Duration::from_secs(1), move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn loops_run_until_the_guard_stops_or_is_dropped() {
        let root = CancellationToken::new();
        let rounds = Arc::new(AtomicU32::new(0));
        let mut tasks = Tasks::new(&root);
        count(&mut tasks, &rounds);
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3);
        tasks.stop().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3, "a loop ran after stop");
        assert!(
            !root.is_cancelled(),
            "stopping the guard stops only its loops"
        );

        // Its root cancelled, or the guard dropped: its loops stop too.
        let mut tasks = Tasks::new(&root);
        count(&mut tasks, &rounds);
        root.cancel();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3);
        drop(tasks);
        let mut tasks = Tasks::new(&CancellationToken::new());
        count(&mut tasks, &rounds);
        drop(tasks);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            3,
            "a loop ran after its guard was dropped"
        );
    }
}
