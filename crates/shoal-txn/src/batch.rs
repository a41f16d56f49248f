//! [`Batcher`]: coalesces concurrent asks for timestamps into one fetch at a time.
//! Asks that arrive while a fetch is in flight wait for it to finish, then go
//! together in the next one: under load a fetch serves many asks, and an idle
//! caller pays one fetch. The oracle batches its callers this way (one leadership
//! check per batch), and so does every node's client of it (one call to the meta
//! range's leader per batch).

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::timestamp::Timestamp;

/// The most timestamps one ask may take.
pub const MAX_ASK: u64 = 1 << 16;
/// The most timestamps one fetch takes: asks beyond it wait for the next fetch.
const MAX_BATCH: u64 = 1 << 20;

struct Ask<E> {
    count: u64,
    reply: oneshot::Sender<Result<Timestamp, E>>,
}

/// Hands out timestamps from `fetch(total)`, which returns the first of `total`
/// consecutive ones (or an error `E`, given to every ask of the batch). Its task
/// ends once every clone of the batcher is dropped.
pub struct Batcher<E = Error> {
    asks: mpsc::UnboundedSender<Ask<E>>,
}

impl<E> Clone for Batcher<E> {
    fn clone(&self) -> Self {
        Self {
            asks: self.asks.clone(),
        }
    }
}

impl<E> Batcher<E>
where
    E: Clone + From<Error> + Send + 'static,
{
    pub fn spawn<F, Fut>(mut fetch: F) -> Self
    where
        F: FnMut(u64) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Timestamp, E>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Ask<E>>();
        tokio::spawn(async move {
            let mut carried: Option<Ask<E>> = None;
            loop {
                let first = match carried.take() {
                    Some(a) => a,
                    None => match rx.recv().await {
                        Some(a) => a,
                        None => return,
                    },
                };
                let mut total = first.count;
                let mut batch = vec![first];
                while let Ok(a) = rx.try_recv() {
                    if total + a.count > MAX_BATCH {
                        carried = Some(a);
                        break;
                    }
                    total += a.count;
                    batch.push(a);
                }
                // An ask whose caller gave up still takes its timestamps: they are
                // never handed out twice, and gaps cost nothing.
                match fetch(total).await {
                    Ok(mut next) => {
                        for a in batch {
                            let _ = a.reply.send(Ok(next));
                            next = next.plus(a.count);
                        }
                    }
                    Err(e) => {
                        for a in batch {
                            let _ = a.reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Self { asks: tx }
    }

    /// The first of `count` consecutive timestamps, each above every timestamp
    /// handed out before this call began.
    pub async fn get(&self, count: u64) -> Result<Timestamp, E> {
        if count == 0 || count > MAX_ASK {
            return Err(Error::BadCount {
                count,
                max: MAX_ASK,
            }
            .into());
        }
        let (reply, answer) = oneshot::channel();
        self.asks
            .send(Ask { count, reply })
            .map_err(|_| E::from(Error::ShuttingDown))?;
        answer.await.map_err(|_| E::from(Error::ShuttingDown))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn concurrent_asks_share_fetches_and_never_overlap() {
        let fetches = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(100));
        let b = {
            let (fetches, next) = (fetches.clone(), next.clone());
            Batcher::<Error>::spawn(move |total| {
                let (fetches, next) = (fetches.clone(), next.clone());
                async move {
                    fetches.fetch_add(1, Ordering::Relaxed);
                    // A slow fetch: asks pile up behind it.
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(Timestamp(next.fetch_add(total, Ordering::Relaxed)))
                }
            })
        };
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let n = 1 + i % 3;
                (b.get(n).await.unwrap().0, n)
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            let (first, n) = t.await.unwrap();
            got.extend(first..first + n);
        }
        got.sort();
        let before = got.len();
        got.dedup();
        assert_eq!(got.len(), before, "a timestamp was handed out twice");
        assert_eq!(
            got.len() as u64,
            (0..200u64).map(|i| 1 + i % 3).sum::<u64>()
        );
        assert!(
            fetches.load(Ordering::Relaxed) < 50,
            "asks were not batched"
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_fails_its_asks_and_bad_counts_are_refused() {
        let b = Batcher::<Error>::spawn(|_| async { Err(Error::NoMetaReplica) });
        assert_eq!(b.get(1).await, Err(Error::NoMetaReplica));
        assert!(matches!(
            b.get(0).await,
            Err(Error::BadCount { count: 0, .. })
        ));
        assert!(matches!(
            b.get(MAX_ASK + 1).await,
            Err(Error::BadCount { count, .. }) if count == MAX_ASK + 1
        ));
    }
}
