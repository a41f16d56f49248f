//! Passing a request on to the node that can serve it (the range's leader, or a node
//! holding the range), and relaying its answer, errors included, so the client sees
//! the structured details of where it was served.
//!
//! When that node cannot be reached, or answers that it does not lead the range, the
//! request is sent again, to the new leader once this node's replica knows it, within
//! the request's deadline, and only where that is safe: a read, a write with a request
//! id (applied at most once), or a write that was certainly never sent (the connection
//! could not be made) or refused before it was proposed (`NOT_LEADER`). Otherwise the
//! answer is a coded status: `OUTCOME_UNKNOWN` when the write may have been applied
//! (by this request's attempts), `NOT_LEADER` or `UNAVAILABLE` (retryable) when it
//! was not; a node's own answer is relayed.

use std::sync::Arc;
use std::time::Duration;

use shoal_proto::error::{never_sent, ErrorCode};
use shoal_proto::v1::kv_client::KvClient;
use shoal_raft::Replica;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::Status;

use crate::convert::KvRpc;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::route::Hop;

/// Metadata key marking a request passed on by a node ([`Hop`]).
pub const FORWARDED: &str = "x-shoal-forwarded";
/// Its value on a request passed on to a node holding the range.
const ROUTED: &str = "routed";
/// Its value on a write forwarded to the range's leader.
const TO_LEADER: &str = "1";

/// How long a request without a deadline of its own may take to be passed on.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// How often a node waiting for a range's new leader looks again.
pub const LEADER_POLL: Duration = Duration::from_millis(50);

/// The hop a request arrived by, from its metadata.
pub fn hop(meta: &tonic::metadata::MetadataMap) -> Hop {
    match meta.get(FORWARDED).map(|v| v.as_bytes()) {
        None => Hop::Client,
        Some(v) if v == ROUTED.as_bytes() => Hop::Routed,
        Some(_) => Hop::ToLeader,
    }
}

/// When a request must be answered by: a little before its `grpc-timeout` (so the
/// client gets the node's answer rather than its own timeout), capped at
/// [`DEFAULT_DEADLINE`], which requests without one get.
pub fn deadline(meta: &tonic::metadata::MetadataMap) -> Instant {
    let asked = meta
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|t| t.saturating_sub((t / 10).min(Duration::from_millis(250))));
    Instant::now() + asked.map_or(DEFAULT_DEADLINE, |t| t.min(DEFAULT_DEADLINE))
}

/// A `grpc-timeout` header value: digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How one attempt to pass a request on ended, when it did not answer.
enum Failed {
    /// The request certainly did not reach the node: no connection could be made.
    Unreachable,
    /// The node refused it before proposing it: it does not lead the range (the
    /// leader it names, if any). Its answer is kept, to relay.
    NotLeader {
        leader_addr: Option<String>,
        answer: Status,
    },
    /// It may have been applied: the connection broke mid-call or no answer came.
    Unknown(String),
    /// The node's own answer, to relay.
    Answer(Status),
}

/// Sends `req` to `addr` once, marked as `mark`, bounded by `deadline`.
async fn attempt<R: KvRpc + Clone>(
    node: &Node,
    addr: &str,
    req: &R,
    mark: &'static str,
    deadline: Instant,
) -> std::result::Result<R::Reply, Failed> {
    let ch = node
        .pool
        .client_port(addr)
        .map_err(|_| Failed::Unreachable)?;
    let client = KvClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let mut fwd = tonic::Request::new(req.clone());
    fwd.metadata_mut()
        .insert(FORWARDED, MetadataValue::from_static(mark));
    let left = deadline.saturating_duration_since(Instant::now());
    fwd.set_timeout(left);
    match tokio::time::timeout_at(deadline, R::send(client, fwd)).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(s)) => Err(classify(s)),
        Err(_) => Err(Failed::Unknown(format!(
            "no answer from {addr} within the request's deadline"
        ))),
    }
}

/// What a failed attempt's status says.
fn classify(s: Status) -> Failed {
    match ErrorCode::of(&s) {
        Some(ErrorCode::NotLeader) => Failed::NotLeader {
            leader_addr: match shoal_proto::error::detail(&s).and_then(|d| d.detail) {
                Some(shoal_proto::v1::error_detail::Detail::NotLeader(nl))
                    if !nl.leader_addr.is_empty() =>
                {
                    Some(nl.leader_addr)
                }
                _ => None,
            },
            answer: s,
        },
        Some(_) => Failed::Answer(s),
        None if never_sent(&s) => Failed::Unreachable,
        None => Failed::Unknown(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// A write that may have been applied, as the client must be told when it cannot be
/// sent again.
fn outcome_unknown(addr: &str, why: &str) -> Error {
    Error::OutcomeUnknown(format!(
        "{addr} did not answer a request passed on to it ({why}); it may or may not have been applied"
    ))
}

/// Forwards a write to the leader of `r`'s range at `addr`, and again to its next
/// leader while that is safe (see the module's doc). `serve_here` serves it on this
/// node, should this node become the leader meanwhile.
pub async fn to_leader<R, F, Fut>(
    node: &Node,
    r: &Arc<Replica>,
    mut addr: String,
    req: R,
    idempotent: bool,
    deadline: Instant,
    serve_here: F,
) -> Result<R::Reply>
where
    R: KvRpc + Clone,
    F: FnOnce(R) -> Fut,
    Fut: std::future::Future<Output = Result<R::Reply>>,
{
    // Whether an attempt may have applied the write (only a write with a request id,
    // which applies at most once, is sent again then): the answer, when no leader
    // takes it in time, must say so.
    let mut maybe_applied: Option<String> = None;
    let mut hints_followed = 0;
    loop {
        let failed = match attempt(node, &addr, &req, TO_LEADER, deadline).await {
            Ok(reply) => return Ok(reply),
            Err(f) => f,
        };
        let hint = match failed {
            Failed::Answer(s) => match ErrorCode::of(&s) {
                // Applied at most once: a retry is safe, with the same request id.
                Some(ErrorCode::OutcomeUnknown | ErrorCode::ShuttingDown | ErrorCode::NoQuorum)
                    if idempotent =>
                {
                    maybe_applied = Some(format!("{addr} answered {}", s.message()));
                    None
                }
                _ => return Err(Error::Remote(s)),
            },
            Failed::Unknown(why) if !idempotent => return Err(outcome_unknown(&addr, &why)),
            Failed::Unknown(why) => {
                maybe_applied = Some(why);
                None
            }
            Failed::Unreachable => None,
            Failed::NotLeader { leader_addr, .. } => leader_addr,
        };
        // The next leader: the one named (a few times at once; then, as hints may be
        // stale during an election, after a pause), else the one this node's replica
        // learns of.
        let next = match hint.filter(|h| *h != addr) {
            Some(h) => {
                hints_followed += 1;
                if hints_followed > MAX_QUICK_HINTS {
                    if Instant::now() + LEADER_POLL >= deadline {
                        None
                    } else {
                        tokio::time::sleep(LEADER_POLL).await;
                        Some(Next::At(h))
                    }
                } else {
                    Some(Next::At(h))
                }
            }
            None => next_leader(r, &addr, deadline).await,
        };
        match next {
            Some(Next::Here) => return serve_here(req).await,
            Some(Next::At(a)) => addr = a,
            None => {
                if let Some(why) = maybe_applied {
                    return Err(outcome_unknown(&addr, &why));
                }
                let (leader_id, leader_addr) = r.leader();
                return Err(Error::NotLeader {
                    range_id: r.range_id,
                    leader_id,
                    leader_addr,
                });
            }
        }
    }
}

/// Hints of the next leader followed at once, before the forwarding node pauses
/// between attempts.
const MAX_QUICK_HINTS: u32 = 3;

enum Next {
    Here,
    At(String),
}

/// Waits (until `deadline`) for `r`'s range to have a leader other than the one at
/// `failed`: this node, or another's address.
async fn next_leader(r: &Replica, failed: &str, deadline: Instant) -> Option<Next> {
    loop {
        match r.leader() {
            (Some(l), _) if l == r.node_id => return Some(Next::Here),
            (Some(_), Some(a)) if a != failed => return Some(Next::At(a)),
            _ => {}
        }
        if Instant::now() + LEADER_POLL >= deadline {
            return None;
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
}

/// Passes a request naming no range on to a node holding its range: each of `addrs`
/// in turn while the last could not be reached (or, for a request that may be sent
/// again, did not answer). The node's own answers, `NOT_LEADER` included, are
/// relayed.
pub async fn to_holder<R: KvRpc + Clone>(
    node: &Node,
    addrs: &[String],
    req: R,
    idempotent: bool,
    deadline: Instant,
) -> Result<R::Reply> {
    let mut last = String::new();
    let mut maybe_applied = None;
    for addr in addrs {
        match attempt(node, addr, &req, ROUTED, deadline).await {
            Ok(reply) => return Ok(reply),
            Err(Failed::Answer(s) | Failed::NotLeader { answer: s, .. }) => {
                return Err(Error::Remote(s))
            }
            Err(Failed::Unknown(why)) if !idempotent => return Err(outcome_unknown(addr, &why)),
            Err(Failed::Unknown(why)) => {
                last = format!("{addr}: {why}");
                maybe_applied = Some((addr.clone(), why));
            }
            Err(Failed::Unreachable) => last = format!("{addr}: unreachable"),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    if let Some((addr, why)) = maybe_applied {
        return Err(outcome_unknown(&addr, &why));
    }
    Err(Error::Unavailable(format!(
        "no node holding the request's range could be reached ({last}); retry, or route it through RangeLookup"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("5s"), None);
    }

    #[test]
    fn a_status_from_a_node_is_an_answer_and_one_without_details_is_not() {
        assert!(matches!(
            classify(Status::unknown("transport error")),
            Failed::Unknown(_)
        ));
    }
}
