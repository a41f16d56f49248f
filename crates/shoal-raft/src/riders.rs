//! Commits that ride: a commit sent after its transaction was decided
//! (`Command::Deferrable`; the coordinator's background commits) waits up to
//! [`RIDE_WAIT`] on the range's leader for its next data write or transaction step,
//! and goes with it as one entry (`Command::Riding`: one Raft round for both); none
//! coming, the commits waiting go alone. Without this, a client's next transaction on
//! a busy range queued its prewrites behind the previous one's commit entries. How a
//! `Riding` entry applies is in `dispatch.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::command::{Command, CommandResponse, OpResult};
use crate::error::{Error, Result};
use crate::state_machine::StateMachine;
use crate::types::TypeConfig;

/// openraft's instance of the range (as `replica.rs` holds it).
type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// How long a deferrable commit waits for a proposal to ride with before it goes
/// alone. A decided transaction's locks linger that much longer (a reader of the newest
/// versions waits for them); the next prewrite of a busy range, which would otherwise
/// queue behind the commit's own round, carries it instead.
const RIDE_WAIT: Duration = Duration::from_millis(2);
/// The most commits one proposal carries, and the most bytes of their keys (a commit
/// alone past it goes alone).
const MAX_RIDERS: usize = 256;
const MAX_RIDER_BYTES: usize = 256 << 10;

type RiderAnswer = tokio::sync::oneshot::Sender<Result<CommandResponse>>;

/// Commits waiting for a proposal to ride with (see `Command::Riding`).
#[derive(Default)]
struct Waiting {
    waiting: Vec<(Command, RiderAnswer)>,
    /// Whether a task will send the waiting ones alone, if nothing carries them first.
    timer: bool,
    /// Commits another proposal carried, and commits sent alone, since the replica
    /// opened.
    carried: u64,
    alone: u64,
}

impl Waiting {
    /// Up to [`MAX_RIDERS`] of the waiting commits, to ride with a proposal
    /// (`carried`) or to go alone.
    fn take(&mut self, carried: bool) -> Vec<(Command, RiderAnswer)> {
        let mut bytes = 0;
        let n = self
            .waiting
            .iter()
            .take(MAX_RIDERS)
            .take_while(|(c, _)| {
                bytes += c
                    .touches()
                    .iter()
                    .map(|t| t.first_key().len())
                    .sum::<usize>();
                bytes <= MAX_RIDER_BYTES
            })
            .count()
            .max(usize::from(!carried && !self.waiting.is_empty()));
        *(if carried {
            &mut self.carried
        } else {
            &mut self.alone
        }) += n as u64;
        self.waiting.drain(..n).collect()
    }
}

/// Proposes `cmd` with `riders` (none: `cmd` alone), on a task of its own, so that a
/// cancelled caller never cancels the riders; answers each rider, and returns `cmd`'s
/// answer.
async fn propose_with(
    raft: &Raft,
    range_id: u64,
    cmd: Command,
    riders: Vec<(Command, RiderAnswer)>,
) -> Result<CommandResponse> {
    if riders.is_empty() {
        return match raft.client_write(cmd).await {
            Ok(r) => Ok(r.data),
            Err(e) => Err(Error::from_write(range_id, e)),
        };
    }
    let (carried, answers): (Vec<Command>, Vec<RiderAnswer>) = riders.into_iter().unzip();
    let n = carried.len();
    let raft = raft.clone();
    let written = tokio::spawn(async move {
        let riding = Command::Riding {
            riders: carried,
            cmd: Box::new(cmd),
        };
        let written = match raft.client_write(riding).await {
            Ok(r) => {
                let mut resp = r.data;
                let riders = resp.results.split_off(resp.results.len().saturating_sub(n));
                Ok((resp, riders))
            }
            Err(e) => Err(Error::from_write(range_id, e)),
        };
        match &written {
            Ok((_, riders)) => {
                for (answer, r) in answers.into_iter().zip(riders) {
                    let _ = answer.send(match r {
                        OpResult::Rider(r) => Ok((**r).clone()),
                        other => Err(Error::Stopped {
                            range_id,
                            why: format!("a rider was answered {other:?}"),
                        }),
                    });
                }
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
        written.map(|(resp, _)| resp)
    });
    written.await.unwrap_or_else(|e| {
        Err(Error::Stopped {
            range_id,
            why: format!("a proposal's task failed: {e}"),
        })
    })
}

/// A range's commits waiting to ride, and the Raft instance they go through.
pub(crate) struct Riders {
    raft: Raft,
    range_id: u64,
    waiting: Arc<Mutex<Waiting>>,
}

fn lock(m: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Riders {
    pub(crate) fn new(raft: Raft, range_id: u64) -> Self {
        Self {
            raft,
            range_id,
            waiting: Arc::default(),
        }
    }

    /// Commits held back so far: (carried by another proposal, sent alone).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let w = lock(&self.waiting);
        (w.carried, w.alone)
    }

    /// Proposes `cmd`: a deferrable commit is held back (see [`Riders::defer`]); any
    /// other data write or transaction step carries the commits waiting.
    pub(crate) async fn propose(&self, cmd: Command) -> Result<CommandResponse> {
        if let Some(commit) = cmd.deferred_commit() {
            return self.defer(commit.clone()).await;
        }
        let cmd = match cmd {
            Command::Deferrable(cmd) => *cmd,
            cmd => cmd,
        };
        let riders = if cmd.may_carry_riders() {
            lock(&self.waiting).take(true)
        } else {
            Vec::new()
        };
        propose_with(&self.raft, self.range_id, cmd, riders).await
    }

    /// Holds `commit` back to ride with the next proposal, or goes with the others
    /// waiting after [`RIDE_WAIT`].
    async fn defer(&self, commit: Command) -> Result<CommandResponse> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let arm = {
            let mut w = lock(&self.waiting);
            w.waiting.push((commit, tx));
            !std::mem::replace(&mut w.timer, true)
        };
        if arm {
            let (raft, waiting, range_id) =
                (self.raft.clone(), self.waiting.clone(), self.range_id);
            tokio::spawn(async move {
                tokio::time::sleep(RIDE_WAIT).await;
                loop {
                    let mut alone = {
                        let mut w = lock(&waiting);
                        let alone = w.take(false);
                        w.timer = !w.waiting.is_empty();
                        alone
                    };
                    if alone.is_empty() {
                        return;
                    }
                    let (first, answer) = alone.remove(0);
                    let answered = propose_with(&raft, range_id, first, alone).await;
                    let _ = answer.send(answered);
                    if !lock(&waiting).timer {
                        return;
                    }
                }
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(Error::Stopped {
                range_id: self.range_id,
                why: "a held-back commit was dropped".into(),
            })
        })
    }
}
