//! Retries: what to do after a failed attempt ([`decide`], from the stable code in the
//! status details, never from message text), the jittered exponential [`Backoff`],
//! and the request ids that make retried writes apply at most once ([`RequestIds`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::error::{detail, never_sent, ErrorCode};
use shoal_proto::v1 as pb;
use tonic::{Code, Status};

/// What to do after an attempt failed with a status.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not the leader: go to the leader the details name (`None`: unknown yet). The
    /// request was not applied.
    Redirect { leader: Option<String> },
    /// The request was routed with stale knowledge of its range: refresh the cache
    /// from `current` (or look the range up again) and send it again. Not applied.
    Reroute { current: Vec<pb::RangeDescriptor> },
    /// Send it again after a pause: the attempt changed nothing. `unreachable`: no
    /// connection could be made to that node (route around it for a while).
    Retry { unreachable: bool },
    /// The attempt may have been applied: send it again only if that is safe (a read,
    /// or a write whose request id makes it apply at most once).
    RetryIfIdempotent,
    /// The node's answer: final.
    Fail,
}

/// What to do after an attempt failed with `status` (`timed_out`: no answer came
/// within the attempt's time limit; `keyed`: the request named a range).
pub fn decide(status: &Status, timed_out: bool, keyed: bool) -> Decision {
    if timed_out {
        return Decision::RetryIfIdempotent;
    }
    let Some(d) = detail(status) else {
        // No answer from a node: the transport failed.
        // A TLS handshake that failed sent nothing either; whether that is final is
        // the caller's to say (a seed it was given, or an address a node named).
        return if crate::error::tls_refusal(status).is_some() || never_sent(status) {
            Decision::Retry { unreachable: true }
        } else if is_transport_failure(status) {
            Decision::RetryIfIdempotent
        } else {
            Decision::Fail
        };
    };
    // A node's answer with a code this version does not know: final.
    let Some(code) = ErrorCode::parse(&d.code) else {
        return Decision::Fail;
    };
    let d = Some(d);
    use pb::error_detail::Detail;
    match code {
        ErrorCode::NotLeader => Decision::Redirect {
            leader: match d.and_then(|d| d.detail) {
                Some(Detail::NotLeader(nl)) if !nl.leader_addr.is_empty() => Some(nl.leader_addr),
                _ => None,
            },
        },
        ErrorCode::EpochMismatch | ErrorCode::KeyNotInRange | ErrorCode::RangeNotFound if keyed => {
            Decision::Reroute {
                current: match d.and_then(|d| d.detail) {
                    Some(Detail::EpochMismatch(em)) => em.current,
                    _ => Vec::new(),
                },
            }
        }
        ErrorCode::NotInitialized
        | ErrorCode::ShuttingDown
        | ErrorCode::NoQuorum
        | ErrorCode::RangeOverlap => Decision::Retry { unreachable: false },
        ErrorCode::OutcomeUnknown | ErrorCode::Unavailable => Decision::RetryIfIdempotent,
        ErrorCode::EpochMismatch
        | ErrorCode::KeyNotInRange
        | ErrorCode::RangeNotFound
        | ErrorCode::WrongNode
        | ErrorCode::CrossRange
        | ErrorCode::EmptyKey
        | ErrorCode::KeyTooLarge
        | ErrorCode::ValueTooLarge
        | ErrorCode::RequestTooLarge
        | ErrorCode::InvalidArgument
        | ErrorCode::AlreadyInitialized
        | ErrorCode::PeerUnreachable
        | ErrorCode::StaleRequestId
        | ErrorCode::SnapshotTooOld
        | ErrorCode::TxnConflict
        | ErrorCode::TxnNotFound
        | ErrorCode::TxnExpired
        | ErrorCode::TxnClosed
        | ErrorCode::TxnReadOnly
        | ErrorCode::TxnTooLarge
        | ErrorCode::Internal
        | ErrorCode::Unauthenticated
        | ErrorCode::PermissionDenied
        | ErrorCode::UserExists
        | ErrorCode::UserNotFound => Decision::Fail,
    }
}

/// Whether a status without shoal's details came from the transport (a reset or
/// refused stream, an HTTP/2 error, a lost connection) rather than from a node: such
/// statuses are made on this side, with the transport's error as their source.
fn is_transport_failure(s: &Status) -> bool {
    std::error::Error::source(s).is_some()
        || matches!(
            s.code(),
            Code::Unavailable | Code::Cancelled | Code::Unknown | Code::DeadlineExceeded
        )
}

/// Jittered exponential backoff between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The pause before the next attempt (never past `deadline`); doubles the next.
    pub fn pause(&mut self, deadline: Instant) -> Duration {
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        let left = deadline.saturating_duration_since(Instant::now());
        let pause = self.next.mul_f64(jitter).min(left);
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

/// This client's request ids: its id, the next sequence number, and the writes not
/// yet answered (every seq below the smallest was, and the cluster may drop their
/// kept answers).
#[derive(Debug)]
pub struct RequestIds {
    client_id: u64,
    next_seq: AtomicU64,
    outstanding: Mutex<BTreeSet<u64>>,
}

/// A write in flight; dropping it reports its seq answered.
#[derive(Debug)]
pub struct InFlight {
    ids: Arc<RequestIds>,
    seq: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.ids.outstanding().remove(&self.seq);
    }
}

impl RequestIds {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            client_id: rand::random::<u64>().max(1),
            next_seq: AtomicU64::new(1),
            outstanding: Mutex::new(BTreeSet::new()),
        })
    }

    fn outstanding(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.outstanding.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new request id, and the guard that marks it answered when dropped. Retries
    /// of one write carry the same id.
    pub fn next(self: &Arc<Self>) -> (pb::RequestId, InFlight) {
        // Taken and recorded under one lock: a seq taken outside it could be passed
        // by a later one whose `acked_below` then claimed it answered before it was
        // even sent (and the node would refuse it as stale).
        let (seq, acked_below) = {
            let mut out = self.outstanding();
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            out.insert(seq);
            (seq, out.iter().next().copied().unwrap_or(seq))
        };
        let id = pb::RequestId {
            client_id: self.client_id,
            seq,
            acked_below,
        };
        let guard = InFlight {
            ids: self.clone(),
            seq,
        };
        (id, guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn coded(code: ErrorCode, grpc: Code, detail: Option<pb::error_detail::Detail>) -> Status {
        let d = pb::ErrorDetail {
            code: code.as_str().into(),
            detail,
        };
        Status::with_details(grpc, "m", d.encode_to_vec().into())
    }

    #[test]
    fn every_code_has_its_decision() {
        use ErrorCode as E;
        for code in ErrorCode::ALL {
            let s = coded(code, Code::Unavailable, None);
            let keyed = decide(&s, false, true);
            let unkeyed = decide(&s, false, false);
            let want = match code {
                E::NotLeader => Decision::Redirect { leader: None },
                E::EpochMismatch | E::KeyNotInRange | E::RangeNotFound => {
                    assert_eq!(unkeyed, Decision::Fail, "{code} without a range");
                    Decision::Reroute {
                        current: Vec::new(),
                    }
                }
                E::NotInitialized | E::ShuttingDown | E::NoQuorum | E::RangeOverlap => {
                    Decision::Retry { unreachable: false }
                }
                E::OutcomeUnknown | E::Unavailable => Decision::RetryIfIdempotent,
                _ => Decision::Fail,
            };
            assert_eq!(keyed, want, "{code}");
        }
    }

    #[test]
    fn details_carry_the_leader_and_the_current_descriptors() {
        let nl = coded(
            ErrorCode::NotLeader,
            Code::Unavailable,
            Some(pb::error_detail::Detail::NotLeader(pb::NotLeader {
                range_id: 3,
                leader_id: 2,
                leader_addr: "n2:7070".into(),
            })),
        );
        assert_eq!(
            decide(&nl, false, true),
            Decision::Redirect {
                leader: Some("n2:7070".into())
            }
        );
        let d = pb::RangeDescriptor {
            range_id: 3,
            ..Default::default()
        };
        let em = coded(
            ErrorCode::EpochMismatch,
            Code::FailedPrecondition,
            Some(pb::error_detail::Detail::EpochMismatch(pb::EpochMismatch {
                current: vec![d.clone()],
            })),
        );
        assert_eq!(
            decide(&em, false, true),
            Decision::Reroute { current: vec![d] }
        );
    }

    #[test]
    fn a_failure_without_an_answer_is_retried_only_when_safe() {
        // A timeout, or a transport failure mid-call: the attempt may have applied.
        assert_eq!(
            decide(&Status::internal("x"), true, true),
            Decision::RetryIfIdempotent
        );
        assert_eq!(
            decide(&Status::unknown("transport error"), false, true),
            Decision::RetryIfIdempotent
        );
        // A node's answer with a code this version does not know: final.
        let unknown = pb::ErrorDetail {
            code: "SOMETHING_NEW".into(),
            detail: None,
        };
        let s = Status::with_details(Code::Unavailable, "m", unknown.encode_to_vec().into());
        assert_eq!(decide(&s, false, true), Decision::Fail);
        // A node's own answer without details (a message it could not decode): final,
        // whatever its text says.
        assert_eq!(
            decide(&Status::internal("h2 protocol error: x"), false, true),
            Decision::Fail
        );
    }

    #[test]
    fn request_ids_report_every_seq_below_the_oldest_unanswered() {
        let ids = RequestIds::new();
        let (a, ga) = ids.next();
        let (b, gb) = ids.next();
        assert_eq!((a.seq, a.acked_below), (1, 1));
        assert_eq!((b.seq, b.acked_below), (2, 1));
        assert_eq!(a.client_id, b.client_id);
        drop(gb);
        let (c, _gc) = ids.next();
        assert_eq!((c.seq, c.acked_below), (3, 1));
        drop(ga);
        let (d, _gd) = ids.next();
        assert_eq!((d.seq, d.acked_below), (4, 3));
        assert!(d.acked_below <= d.seq);
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_never_passes_the_deadline() {
        let mut b = Backoff::new(Duration::from_millis(20), Duration::from_millis(100));
        let far = Instant::now() + Duration::from_secs(60);
        let pauses: Vec<Duration> = (0..5).map(|_| b.pause(far)).collect();
        assert!(pauses[0] >= Duration::from_millis(15) && pauses[0] <= Duration::from_millis(25));
        assert!(pauses[4] <= Duration::from_millis(125));
        assert!(pauses[4] >= Duration::from_millis(75));
        assert_eq!(b.pause(Instant::now()), Duration::ZERO);
    }
}
