//! The Raft messages of every range to one peer, multiplexed on one long-lived gRPC
//! stream (`Raft.Mux`) in batches.
//!
//! A unary call per message costs an HTTP/2 stream, headers and trailers, and a task
//! on each side; with many ranges each leader sends its own appends and heartbeats,
//! so that cost grows with the number of ranges rather than with the work done.
//! Here a message is a frame of a batch: whatever was queued while the stream was
//! busy leaves in the next batch, and answers come back the same way, each frame
//! naming the request it answers. There is no added delay: an idle stream sends a
//! lone frame at once.
//!
//! A peer that does not know the stream (an older node, mid rolling upgrade) answers
//! UNIMPLEMENTED; it is then sent unary calls.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Future, Stream, StreamExt};
use shoal_proto::v1::raft_client::RaftClient;
use shoal_proto::v1::{MuxBatch, MuxError, MuxFrame, MuxKind, RaftMessage};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// Frames per batch at most: a batch is one gRPC message, and appends carry entries.
const MAX_FRAMES: usize = 256;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Batches of whatever a channel holds: waits for one item, then takes those already
/// queued behind it (up to [`MAX_FRAMES`]). Ends when every sender is gone.
fn batches(rx: mpsc::UnboundedReceiver<MuxFrame>) -> impl Stream<Item = MuxBatch> {
    futures::stream::unfold(rx, |mut rx| async move {
        let first = rx.recv().await?;
        let mut frames = vec![first];
        while frames.len() < MAX_FRAMES {
            match rx.try_recv() {
                Ok(f) => frames.push(f),
                Err(_) => break,
            }
        }
        Some((MuxBatch { frames }, rx))
    })
}

/// The client side: one per peer address, held by the peer pool.
#[derive(Debug)]
pub struct Mux {
    addr: String,
    /// The peer's channel (an error for an address that is not one).
    channel: Result<Channel, String>,
    current: Mutex<Option<Arc<Session>>>,
    /// The peer answered UNIMPLEMENTED: unary calls only.
    unsupported: AtomicBool,
}

/// One stream to the peer, and the requests sent on it awaiting their answers.
#[derive(Debug)]
struct Session {
    tx: mpsc::UnboundedSender<MuxFrame>,
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    /// Set once the stream ended: nothing more is registered.
    closed: bool,
    next_id: u64,
    by_id: HashMap<u64, oneshot::Sender<Result<RaftMessage, Status>>>,
}

impl Session {
    /// Fails every request still waiting with `why`, and refuses new ones.
    fn close(&self, why: &Status) {
        let waiting = {
            let mut w = lock(&self.waiting);
            w.closed = true;
            std::mem::take(&mut w.by_id)
        };
        for (_, tx) in waiting {
            let _ = tx.send(Err(why.clone()));
        }
    }

    fn answer(&self, f: MuxFrame) {
        let Some(tx) = lock(&self.waiting).by_id.remove(&f.id) else {
            return; // Its caller gave up (timed out).
        };
        let answer = match (f.message, f.error) {
            (_, Some(e)) => Err(Status::with_details(
                Code::from(e.code),
                e.message,
                e.details.into(),
            )),
            (Some(m), None) => Ok(m),
            (None, None) => Err(Status::internal("a mux answer carried nothing")),
        };
        let _ = tx.send(answer);
    }
}

/// Forgets a request whose caller stopped waiting (a timeout), so that an answer
/// that never comes leaves nothing behind.
struct Registered<'a> {
    session: &'a Session,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.session.waiting).by_id.remove(&self.id);
    }
}

impl Mux {
    pub(crate) fn new(addr: &str, channel: Result<Channel, String>) -> Self {
        Self {
            addr: addr.to_string(),
            channel,
            current: Mutex::new(None),
            unsupported: AtomicBool::new(false),
        }
    }

    /// Sends `msg` as the call `kind` and returns the peer's answer, as the unary
    /// call would. The caller bounds the wait.
    pub(crate) async fn call(
        self: &Arc<Self>,
        kind: MuxKind,
        msg: RaftMessage,
    ) -> Result<RaftMessage, Status> {
        if self.unsupported.load(Ordering::Relaxed) {
            return unary(self.client()?, kind, msg).await;
        }
        let session = self.session()?;
        let (id, rx) = {
            let mut w = lock(&session.waiting);
            if w.closed {
                return Err(self.closed());
            }
            w.next_id += 1;
            let id = w.next_id;
            let (tx, rx) = oneshot::channel();
            w.by_id.insert(id, tx);
            (id, rx)
        };
        let _registered = Registered {
            session: &session,
            id,
        };
        let frame = MuxFrame {
            id,
            kind: kind as i32,
            message: Some(msg),
            error: None,
        };
        if session.tx.send(frame).is_err() {
            return Err(self.closed());
        }
        match rx.await {
            Ok(answer) => answer,
            Err(_) => Err(self.closed()),
        }
    }

    /// Whether the peer answered that it has no stream: it is sent unary calls.
    #[cfg(test)]
    pub(crate) fn is_unary(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    fn closed(&self) -> Status {
        Status::unavailable(format!("the stream to {} closed", self.addr))
    }

    fn client(&self) -> Result<RaftClient<Channel>, Status> {
        let ch = self
            .channel
            .as_ref()
            .map_err(|e| Status::unavailable(format!("{}: {e}", self.addr)))?;
        Ok(RaftClient::new(ch.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// The open stream to the peer, opened if there is none.
    fn session(self: &Arc<Self>) -> Result<Arc<Session>, Status> {
        let mut cur = lock(&self.current);
        if let Some(s) = cur.as_ref() {
            if !lock(&s.waiting).closed {
                return Ok(s.clone());
            }
        }
        let mut client = self.client()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let session = Arc::new(Session {
            tx,
            waiting: Mutex::new(Waiting::default()),
        });
        *cur = Some(session.clone());
        let (mux, s) = (self.clone(), session.clone());
        tokio::spawn(async move {
            let why = match client.mux(batches(rx)).await {
                Ok(resp) => {
                    let mut inbound = resp.into_inner();
                    loop {
                        match inbound.message().await {
                            Ok(Some(batch)) => batch.frames.into_iter().for_each(|f| s.answer(f)),
                            Ok(None) => break Status::unavailable("the peer ended the stream"),
                            Err(e) => break e,
                        }
                    }
                }
                Err(e) => e,
            };
            let why = if why.code() == Code::Unimplemented {
                tracing::info!(addr = %mux.addr, "peer has no mux stream; sending it unary calls");
                mux.unsupported.store(true, Ordering::Relaxed);
                Status::unavailable(format!("{} has no mux stream", mux.addr))
            } else {
                tracing::debug!(addr = %mux.addr, error = %why.message(), "mux stream ended");
                // Whatever ended it, the callers see the peer as unreachable: openraft
                // backs off and retries.
                Status::unavailable(format!(
                    "the stream to {} ended: {}",
                    mux.addr,
                    why.message()
                ))
            };
            s.close(&why);
            let mut cur = lock(&mux.current);
            if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, &s)) {
                *cur = None;
            }
        });
        Ok(session)
    }
}

/// The unary call `kind` names.
async fn unary(
    mut c: RaftClient<Channel>,
    kind: MuxKind,
    msg: RaftMessage,
) -> Result<RaftMessage, Status> {
    let resp = match kind {
        MuxKind::AppendEntries => c.append_entries(msg).await,
        MuxKind::Vote => c.vote(msg).await,
        MuxKind::PreVote => c.pre_vote(msg).await,
        MuxKind::TransferLeader => c.transfer_leader(msg).await,
        MuxKind::Unspecified => return Err(Status::internal("no call kind")),
    }?;
    Ok(resp.into_inner())
}

/// The server side's answer stream.
pub type Answers = Pin<Box<dyn Stream<Item = Result<MuxBatch, Status>> + Send>>;

/// Answers a peer's stream with `handle` (the call's kind and its message): each
/// request frame is handled on its own task (as a unary call would be), and answers
/// leave in batches as they complete.
pub(crate) fn serve<H, F>(mut inbound: Streaming<MuxBatch>, handle: H) -> Answers
where
    H: Fn(MuxKind, RaftMessage) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<RaftMessage, Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<MuxFrame>();
    tokio::spawn(async move {
        while let Ok(Some(batch)) = inbound.message().await {
            for f in batch.frames {
                let (handle, tx) = (handle.clone(), tx.clone());
                tokio::spawn(async move {
                    // An unknown kind is the handler's to refuse, as a bad message.
                    let kind = MuxKind::try_from(f.kind).unwrap_or(MuxKind::Unspecified);
                    let answer = handle(kind, f.message.unwrap_or_default()).await;
                    let (message, error) = match answer {
                        Ok(m) => (Some(m), None),
                        Err(s) => (
                            None,
                            Some(MuxError {
                                code: s.code() as i32,
                                message: s.message().to_string(),
                                details: s.details().to_vec(),
                            }),
                        ),
                    };
                    let _ = tx.send(MuxFrame {
                        id: f.id,
                        kind: 0,
                        message,
                        error,
                    });
                });
            }
        }
    });
    Box::pin(batches(rx).map(Ok))
}
