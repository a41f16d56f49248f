//! Quiescence: a range without traffic costs no Raft messages and no timer wakeups.
//!
//! openraft drives every range with its own ticker (election timers, heartbeats every
//! `--heartbeat-ms`): a node holding a thousand ranges would wake tens of thousands of
//! times a second and send a heartbeat per range per follower. Instead:
//!
//! - A range's leader stops the range's ticker once no entry was appended for
//!   [`QuiesceOptions::idle_after`] and every replica holds and has applied the whole
//!   log (so followers learned the last commit index from the heartbeats meanwhile).
//!   The meta range never quiesces (readiness watches it).
//! - Every node sends each peer one *beat* per [`QuiesceOptions::beat_interval`],
//!   whatever the number of ranges: the ranges it leads and has quiesced, with their
//!   terms, among those the peer holds.
//! - A follower stops its ticker (so it calls no election) while a beat heard within
//!   [`QuiesceOptions::beat_timeout`] lists its range at its current term: that is the
//!   leader of its term saying it is alive and idle. When the leader's beats stop (its
//!   node died or is cut off) or stop listing the range (the range woke up, the leader
//!   lost its leadership or restarted), the follower ticks again and elects as usual.
//! - A leader ticks again at the first new entry (a write, a membership change); the
//!   entry itself reaches the followers without waiting for a tick.
//! - A leader that began handing its leadership over never quiesces again in that term:
//!   openraft stops its heartbeats and refuses every request there until the term ends,
//!   so if the handover fails, its followers must tick to elect another leader.
//!
//! A round looks in full only at the replicas not settled quiesced: one that a full
//! look quiesced is carried while its term, leader, last and applied entries hold
//! ([`Mark`]), so an idle node's round costs a read of each replica's mark. Every
//! [`FULL_ROUND_EVERY`]th round looks at all of them.
//!
//! Linearizable reads on a quiesced range still confirm the leadership with a
//! heartbeat round of their own (openraft sends it on demand), so they need no ticker.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_proto::v1::RaftMessage;

use crate::codec::encode;
use crate::options::RaftOptions;
use crate::range::FIRST_RANGE_ID;
use crate::replica::Replica;
use crate::router::{Replicas, Router};
use crate::transport::pool::PeerPool;
use crate::types::{NodeId, RaftMetrics};

/// What a node's beat tells a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub from: NodeId,
    /// `(range_id, term)` of the ranges `from` leads and has quiesced, among those the
    /// peer holds a replica of.
    pub quiesced: Vec<(u64, u64)>,
}

/// Quiescence timing, derived from the Raft timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuiesceOptions {
    /// How often a node beats each peer.
    pub beat_interval: Duration,
    /// How long a beat keeps a follower quiet: past it, the follower ticks again (and
    /// elects after its usual election timeout if its leader stays silent).
    pub beat_timeout: Duration,
    /// How long a leader waits without a new entry before quiescing its range.
    pub idle_after: Duration,
}

impl QuiesceOptions {
    pub fn from_raft(o: &RaftOptions) -> Self {
        let election = Duration::from_millis(o.election_timeout_min_ms);
        Self {
            beat_interval: election / 4,
            beat_timeout: election * 2,
            idle_after: Duration::from_millis(o.heartbeat_ms * 10).max(Duration::from_secs(2)),
        }
    }
}

/// The latest beat heard from each peer node.
#[derive(Debug, Default)]
pub struct Beats {
    latest: Mutex<HashMap<NodeId, Heard>>,
}

/// A peer's latest beat: when it came, and the ranges it listed, by range id. A beat
/// listing what the one before it listed (an idle peer's every beat) only moves `at`.
#[derive(Debug)]
struct Heard {
    at: Instant,
    listed: Vec<(u64, u64)>,
    terms: Arc<HashMap<u64, u64>>,
}

impl Beats {
    pub fn record(&self, beat: Beat) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(h) = latest.get_mut(&beat.from) {
            if h.listed == beat.quiesced {
                h.at = now;
                return;
            }
        }
        let terms = Arc::new(beat.quiesced.iter().copied().collect());
        let heard = Heard {
            at: now,
            listed: beat.quiesced,
            terms,
        };
        latest.insert(beat.from, heard);
    }

    /// The quiesced ranges listed by the beats heard within `fresh`.
    fn quiet(&self, fresh: Duration) -> Quiet {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        Quiet {
            peers: latest
                .iter()
                .filter(|(_, h)| h.at.elapsed() <= fresh)
                .map(|(id, h)| (*id, h.terms.clone()))
                .collect(),
        }
    }
}

/// The ranges the fresh beats list as quiesced, by the peer that beat them.
#[derive(Debug, Default)]
struct Quiet {
    peers: Vec<(NodeId, Arc<HashMap<u64, u64>>)>,
}

impl Quiet {
    /// `(leader, term)` of `range_id` as a fresh beat lists it (the latest term, if two
    /// peers list it).
    fn get(&self, range_id: u64) -> Option<(NodeId, u64)> {
        self.peers
            .iter()
            .filter_map(|(from, terms)| terms.get(&range_id).map(|t| (*from, *t)))
            .max_by_key(|(_, t)| *t)
    }
}

/// Whether a leader's range is caught up enough to quiesce: its membership is uniform
/// and every member (learners too) holds the whole log, which this leader has applied.
fn caught_up(m: &RaftMetrics, me: NodeId) -> bool {
    let Some(last) = m.last_log_index else {
        return false;
    };
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() != 1
        || m.last_applied.as_ref().map(|l| l.index) != Some(last)
    {
        return false;
    }
    let Some(matched) = m.replication.as_ref() else {
        return false;
    };
    membership.nodes().all(|(id, _)| {
        *id == me || matched.get(id).cloned().flatten().map(|l| l.index) == Some(last)
    })
}

/// Whether a replica settled quiesced stays so: nothing woke it, its mark holds, and
/// (a leader) it began no handover, or (a follower) its leader's fresh beats still list
/// the range at its term.
fn still_settled(r: &Replica, s: &Settled, quiet: &Quiet) -> bool {
    if !r.is_quiesced() || r.with_metrics(Mark::of) != s.mark {
        return false;
    }
    if s.mark.leader == Some(r.node_id) {
        !r.handing_over_in(s.mark.term)
    } else {
        matches!(quiet.get(r.range_id),
            Some((from, term)) if from != r.node_id && term == s.mark.term)
    }
}

/// A leader's view of its range's activity.
#[derive(Debug, Clone, Copy)]
struct Activity {
    term: u64,
    last_log: u64,
    since: Instant,
}

/// What a quiesced replica's decision rests on, as its metrics give it: while none of
/// it moves (no new entry, no election, nothing applied), the decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    term: u64,
    leader: Option<NodeId>,
    last_log: Option<u64>,
    applied: Option<u64>,
}

impl Mark {
    fn of(m: &RaftMetrics) -> Self {
        Self {
            term: m.current_term,
            leader: m.current_leader,
            last_log: m.last_log_index,
            applied: m.last_applied.as_ref().map(|l| l.index),
        }
    }
}

/// A replica a full look found quiesced: later rounds carry that decision while its
/// [`Mark`] holds (and, on a follower, while its leader's beats keep listing it), and
/// look again only once something moved.
#[derive(Debug, Clone)]
struct Settled {
    mark: Mark,
    /// On a leader: the other members, which its beats list the range to.
    members: Vec<NodeId>,
}

/// Every this many rounds, every replica is looked at in full (and the peers to beat
/// gathered again): whatever a settled replica's mark missed is caught within it.
const FULL_ROUND_EVERY: u64 = 20;

/// Runs quiescence for a node: [`Quiescer::round`] once per beat interval.
pub struct Quiescer {
    router: Arc<Router>,
    pool: Arc<PeerPool>,
    /// The latest beat of each peer, recorded by the Raft service.
    beats: Arc<Beats>,
    opts: QuiesceOptions,
    activity: HashMap<u64, Activity>,
    /// Quiesced replicas whose decision later rounds carry (see [`Settled`]).
    settled: HashMap<u64, Settled>,
    /// The nodes beaten each round, with their addresses: every member of a replica
    /// here, gathered again by each full round.
    peers: HashMap<NodeId, String>,
    rounds: u64,
    /// The router's list of replicas the round before.
    listed: Option<Replicas>,
    /// Peers with a beat in flight: one at a time each, so beats arrive in order.
    sending: HashMap<NodeId, Arc<AtomicBool>>,
}

impl Quiescer {
    pub fn new(router: Arc<Router>, pool: Arc<PeerPool>, opts: QuiesceOptions) -> Self {
        Self {
            router,
            pool,
            beats: Arc::default(),
            opts,
            activity: HashMap::new(),
            settled: HashMap::new(),
            peers: HashMap::new(),
            rounds: 0,
            listed: None,
            sending: HashMap::new(),
        }
    }

    pub fn options(&self) -> QuiesceOptions {
        self.opts
    }

    /// Where the beats heard from peers go (the Raft service records them).
    pub fn beats(&self) -> Arc<Beats> {
        self.beats.clone()
    }

    /// Quiesces or wakes every replica of this node, then beats every peer. A replica
    /// settled quiesced costs a look at its mark; the others are looked at in full.
    pub fn round(&mut self) {
        self.rounds += 1;
        if self.rounds.is_multiple_of(FULL_ROUND_EVERY) {
            self.settled.clear();
            self.peers.clear();
        }
        let now = Instant::now();
        let quiet = self.beats.quiet(self.opts.beat_timeout);
        let mut beats: HashMap<NodeId, Vec<(u64, u64)>> = HashMap::new();
        let list = self.router.all();
        let me = list.first().map(|r| r.node_id);
        for r in list.iter() {
            if let Some(s) = self.settled.get(&r.range_id) {
                if still_settled(r, s, &quiet) {
                    for id in &s.members {
                        beats
                            .entry(*id)
                            .or_default()
                            .push((r.range_id, s.mark.term));
                    }
                    continue;
                }
                self.settled.remove(&r.range_id);
            }
            let quiesce = self.look(r, now, &quiet, &mut beats);
            r.set_quiesced(quiesce);
        }
        // Replicas gone since the list before: forgotten.
        if !self.listed.as_ref().is_some_and(|l| Arc::ptr_eq(l, &list)) {
            let held: HashSet<u64> = list.iter().map(|r| r.range_id).collect();
            self.activity.retain(|id, _| held.contains(id));
            self.settled.retain(|id, _| held.contains(id));
            self.listed = Some(list);
        }
        let Some(me) = me else { return };
        let peers: Vec<(NodeId, String)> =
            self.peers.iter().map(|(id, a)| (*id, a.clone())).collect();
        for (peer, addr) in peers {
            let quiesced = beats.remove(&peer).unwrap_or_default();
            self.send(peer, addr, Beat { from: me, quiesced });
        }
    }

    /// Looks at `r` in full: whether it should be quiesced now (and, if so, settles it).
    /// A leader quiescing its range lists it in `beats` to every other member.
    fn look(
        &mut self,
        r: &Replica,
        now: Instant,
        quiet: &Quiet,
        beats: &mut HashMap<NodeId, Vec<(u64, u64)>>,
    ) -> bool {
        let me = r.node_id;
        let (activity, settled, peers) = (&mut self.activity, &mut self.settled, &mut self.peers);
        let idle_after = self.opts.idle_after;
        r.with_metrics(|m| {
            let members = m.membership_config.membership();
            for (id, n) in members.nodes() {
                if *id != me && !peers.contains_key(id) {
                    peers.insert(*id, n.addr.clone());
                }
            }
            let mut others = Vec::new();
            let quiesce = if m.current_leader == Some(me) {
                let last_log = m.last_log_index.unwrap_or(0);
                let a = activity.entry(r.range_id).or_insert(Activity {
                    term: m.current_term,
                    last_log,
                    since: now,
                });
                if a.term != m.current_term || a.last_log != last_log {
                    *a = Activity {
                        term: m.current_term,
                        last_log,
                        since: now,
                    };
                }
                let q = r.range_id != FIRST_RANGE_ID
                    && !r.handing_over_in(m.current_term)
                    && now.duration_since(a.since) >= idle_after
                    && caught_up(m, me);
                if q {
                    for (id, _) in members.nodes().filter(|(id, _)| **id != me) {
                        beats
                            .entry(*id)
                            .or_default()
                            .push((r.range_id, m.current_term));
                        others.push(*id);
                    }
                }
                q
            } else {
                activity.remove(&r.range_id);
                matches!(quiet.get(r.range_id),
                    Some((from, term)) if from != me && term == m.current_term)
            };
            if quiesce {
                let s = Settled {
                    mark: Mark::of(m),
                    members: others,
                };
                settled.insert(r.range_id, s);
            }
            quiesce
        })
    }

    fn send(&mut self, peer: NodeId, addr: String, beat: Beat) {
        let busy = self.sending.entry(peer).or_default().clone();
        if busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, timeout) = (self.pool.clone(), self.opts.beat_timeout);
        tokio::spawn(async move {
            let sent = async {
                let payload = encode(&beat).map_err(|e| e.to_string())?;
                let mut client = pool.client(&addr).map_err(|e| e.to_string())?;
                let msg = RaftMessage {
                    range_id: 0,
                    payload,
                    target_node_id: peer,
                };
                match tokio::time::timeout(timeout, client.quiesce_beat(msg)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(s)) => Err(s.message().to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            };
            if let Err(e) = sent.await {
                tracing::debug!(peer, addr, error = %e, "beat not delivered");
            }
            busy.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_go_stale_and_later_beats_replace_earlier_ones() {
        let beats = Beats::default();
        beats.record(Beat {
            from: 2,
            quiesced: vec![(5, 3), (6, 3)],
        });
        beats.record(Beat {
            from: 3,
            quiesced: vec![(7, 9)],
        });
        let q = beats.quiet(Duration::from_secs(60));
        assert_eq!(q.get(5), Some((2, 3)));
        assert_eq!(q.get(7), Some((3, 9)));
        // A later beat no longer listing range 6 wakes it.
        beats.record(Beat {
            from: 2,
            quiesced: vec![(5, 3)],
        });
        let q = beats.quiet(Duration::from_secs(60));
        assert_eq!(q.get(6), None);
        assert_eq!((q.get(5), q.get(7)), (Some((2, 3)), Some((3, 9))));
        // The same list again keeps it; a peer listing a range at a later term wins.
        beats.record(Beat {
            from: 2,
            quiesced: vec![(5, 3)],
        });
        beats.record(Beat {
            from: 3,
            quiesced: vec![(5, 4), (7, 9)],
        });
        let q = beats.quiet(Duration::from_secs(60));
        assert_eq!((q.get(5), q.get(7)), (Some((3, 4)), Some((3, 9))));
        std::thread::sleep(Duration::from_millis(5));
        let q = beats.quiet(Duration::from_millis(1));
        assert_eq!((q.get(5), q.get(7)), (None, None));
    }

    #[test]
    fn timing_follows_the_raft_options() {
        let o = QuiesceOptions::from_raft(&RaftOptions::default());
        assert!(o.beat_interval * 3 < o.beat_timeout);
        assert!(o.beat_timeout >= Duration::from_millis(1000));
        assert!(o.idle_after >= Duration::from_secs(2));
    }
}
