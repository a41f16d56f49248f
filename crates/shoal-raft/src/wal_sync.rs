//! Group commit of log appends: appends are written at once (readable) and reported
//! flushed after the next fsync of the store's write-ahead log, which one thread
//! issues for every append queued meanwhile, of every range.

use std::io;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use openraft::storage::IOFlushed;
use shoal_storage::Engine;

use crate::failpoints;
use crate::types::TypeConfig;

/// Hands appends' callbacks to the syncing thread. [`WalSyncer::stop`], or dropping
/// the last handle, stops the thread and waits for it.
#[derive(Debug, Clone)]
pub struct WalSyncer {
    tx: mpsc::Sender<Msg>,
    thread: Arc<Joined>,
}

/// The syncing thread, joined when the last handle goes: the thread holds the store,
/// and a store closed on a detached thread while the process exits makes RocksDB
/// abort ("pthread lock: Invalid argument", seen at the end of a test binary whose
/// syncers were dropped, not stopped).
#[derive(Debug)]
struct Joined {
    tx: Mutex<mpsc::Sender<Msg>>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Joined {
    fn stop(&self) {
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Msg::Stop);
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = handle {
            // Never the syncing thread itself: it holds no handle.
            if t.thread().id() != std::thread::current().id() && t.join().is_err() {
                tracing::error!("the write-ahead log syncer panicked");
            }
        }
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Msg {
    Flushed(IOFlushed<TypeConfig>),
    Stop,
}

impl WalSyncer {
    /// Starts the syncing thread of `engine`.
    pub fn start(engine: Engine) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("shoal-wal-sync".into())
            .spawn(move || {
                let mut stopping = false;
                while let Ok(first) = rx.recv() {
                    let mut waiting = Vec::new();
                    for m in std::iter::once(first).chain(rx.try_iter()) {
                        match m {
                            Msg::Flushed(cb) => waiting.push(cb),
                            Msg::Stop => stopping = true,
                        }
                    }
                    if waiting.is_empty() {
                        break;
                    }
                    let res = failpoints::hit("log-before-fsync")
                        .and_then(|()| engine.sync_wal().map_err(io::Error::other))
                        .and_then(|()| failpoints::hit("log-after-fsync"));
                    for cb in waiting {
                        cb.io_completed(match &res {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::other(format!(
                                "syncing the write-ahead log: {e}"
                            ))),
                        });
                    }
                    if let Err(e) = &res {
                        tracing::error!(error = %e, "syncing the write-ahead log");
                    }
                    if stopping {
                        break;
                    }
                }
            })?;
        Ok(Self {
            thread: Arc::new(Joined {
                tx: Mutex::new(tx.clone()),
                handle: Mutex::new(Some(thread)),
            }),
            tx,
        })
    }

    /// Syncs what is queued, stops the thread and waits for it: its handle on the
    /// store is then released, so the store closes where the node lets go of it
    /// (never on this thread while the process exits). Later appends are reported
    /// failed.
    pub fn stop(&self) {
        self.thread.stop();
    }

    /// Reports `callback` flushed once everything written before this call is durable.
    pub fn after_sync(&self, callback: IOFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(Msg::Flushed(cb))) = self.tx.send(Msg::Flushed(callback)) {
            cb.io_completed(Err(io::Error::other(
                "the write-ahead log syncer has stopped",
            )));
        }
    }
}
