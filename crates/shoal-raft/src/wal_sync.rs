//! Group commit of log appends: appends are written at once (readable) and reported
//! flushed after the next fsync of the store's write-ahead log, which one thread
//! issues for every append queued meanwhile, of every range.

use std::io;
use std::sync::mpsc;

use openraft::storage::IOFlushed;
use shoal_storage::Engine;

use crate::failpoints;
use crate::types::TypeConfig;

/// Hands appends' callbacks to the syncing thread. Dropping every handle stops it.
#[derive(Debug, Clone)]
pub struct WalSyncer {
    tx: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl WalSyncer {
    /// Starts the syncing thread of `engine`.
    pub fn start(engine: Engine) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        std::thread::Builder::new()
            .name("shoal-wal-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
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
                }
            })?;
        Ok(Self { tx })
    }

    /// Reports `callback` flushed once everything written before this call is durable.
    pub fn after_sync(&self, callback: IOFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(cb)) = self.tx.send(callback) {
            cb.io_completed(Err(io::Error::other(
                "the write-ahead log syncer has stopped",
            )));
        }
    }
}
