//! Where a key-value request is served: a replica of this node, the range's leader
//! (writes arriving at a follower), or a node holding the range (a request naming no
//! range whose keys this node holds no replica of).
//!
//! A request naming its range (`RangeTarget`) is checked against that replica's
//! descriptor; one naming none is served by this node's replica holding its keys.
//! A refusal carries the descriptors this node knows, for the client's range cache.

use std::sync::Arc;

use shoal_raft::{RangeDescriptor, Replica, Touch};

use crate::error::{Error, Result};
use crate::located::LocatedRange;
use crate::node::Node;
use crate::request::{Op, Request};

/// How a request reached this node, as its metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// From a client.
    Client,
    /// Passed on by a node holding none of its keys: it may still go on to the leader.
    Routed,
    /// Forwarded to this node as the range's leader: served here or refused.
    ToLeader,
}

/// Where to serve a request.
pub enum Route {
    /// By this node's replica.
    Serve(Arc<Replica>),
    /// By the leader of the range `replica` belongs to: a write arriving at a follower.
    ToLeader { replica: Arc<Replica>, addr: String },
    /// By a node holding the range (voters' addresses, in order of preference).
    ToHolder { addrs: Vec<String> },
}

/// Why a request's keys do not fit the range it reached.
enum Misfit {
    /// The request named another epoch version.
    Epoch { named: u64 },
    /// A key outside the named range (or outside it since it split).
    Outside(String),
    /// A request naming no range, whose keys span several.
    Cross,
}

/// Routes `req`, which reached this node through `hop`.
pub async fn route(node: &Node, req: &Request, hop: Hop) -> Result<Route> {
    // NOT_INITIALIZED before anything else: clients retry it.
    node.routing_ready()?;
    if req.target.is_none() && hop == Hop::Client {
        if let Some(addrs) = holders(node, req).await {
            return Ok(Route::ToHolder { addrs });
        }
    }
    let r = replica_for(node, req)?;
    if let Some(f) = r.frozen() {
        // Its keys move to the left neighbour: the client looks the range up again
        // (and again, with backoff, until the merge is done or abandoned).
        return Err(Error::RangeNotFound(format!(
            "range {} is frozen for a merge into range {}",
            r.range_id, f.left_id
        )));
    }
    // On the leader (the common case), no copy of its address is taken.
    if req.op.is_write() && hop != Hop::ToLeader && !r.is_leader() {
        if let (Some(l), Some(addr)) = r.leader() {
            if l != r.node_id {
                return Ok(Route::ToLeader { replica: r, addr });
            }
        }
    }
    Ok(Route::Serve(r))
}

/// This node's replica to serve `req`: the range it names (checked: same epoch
/// version, every key inside), or the replica holding its anchor key (every key must
/// then fall in that one range).
fn replica_for(node: &Node, req: &Request) -> Result<Arc<Replica>> {
    let touches = req.op.touches();
    let Some(t) = req.target else {
        let anchor = req.op.anchor();
        let r = node
            .router
            .locate(anchor.key, anchor.before)
            .ok_or_else(|| {
                Error::RangeNotFound(if anchor.before {
                    "no replica of this node holds the keys before the scan's end".into()
                } else {
                    "no replica of this node holds the request's keys; route it through RangeLookup"
                        .into()
                })
            })?;
        check_inside(node, &r, &touches, || Misfit::Cross)?;
        return Ok(r);
    };
    let r = node.router.get(t.range_id).ok_or_else(|| {
        Error::RangeNotFound(format!("range {} has no replica on this node", t.range_id))
    })?;
    let d = r.ready_descriptor()?;
    if t.version != d.epoch.version {
        return Err(refusal(
            node,
            &r,
            d,
            Misfit::Epoch { named: t.version },
            &touches,
        ));
    }
    // A transaction step whose anchor is inside but another key outside spans ranges
    // (its reads reach a range split off since the coordinator looked): the sender
    // regroups it. Otherwise a key outside is stale routing: the sender reroutes.
    let anchor = req.op.anchor();
    let step_spans = matches!(req.op, Op::Step(_))
        && r.with_descriptor(|d| d.map(|d| Touch::Key(anchor.key).inside(d)))
            .unwrap_or(false);
    check_inside(node, &r, &touches, || {
        if step_spans {
            Misfit::Cross
        } else {
            Misfit::Outside(format!(
                "the request touches keys outside range {}",
                t.range_id
            ))
        }
    })?;
    Ok(r)
}

/// Refuses unless every touched key lies in `r`'s current span.
fn check_inside(
    node: &Node,
    r: &Replica,
    touches: &[Touch<'_>],
    misfit: impl FnOnce() -> Misfit,
) -> Result<()> {
    // Checked in place: the descriptor is copied only for a refusal.
    match r.with_descriptor(|d| d.map(|d| touches.iter().all(|t| t.inside(d)))) {
        None => Err(Error::NotReady {
            range_id: r.range_id,
        }),
        Some(true) => Ok(()),
        Some(false) => Err(refusal(node, r, r.ready_descriptor()?, misfit(), touches)),
    }
}

/// A refusal of a request touching `touches` that reached `r` (whose descriptor is
/// `d`): it carries `d` and the descriptors of this node's other replicas that hold
/// the touched keys.
fn refusal(
    node: &Node,
    r: &Replica,
    d: RangeDescriptor,
    why: Misfit,
    touches: &[Touch<'_>],
) -> Error {
    let (range_id, version) = (d.range_id, d.epoch.version);
    let current = around(node, r, d, touches);
    match why {
        Misfit::Epoch { named } => Error::EpochMismatch {
            range_id,
            version,
            named,
            current,
        },
        Misfit::Outside(message) => Error::KeyNotInRange {
            range_id,
            message,
            current,
        },
        Misfit::Cross => Error::CrossRange { current },
    }
}

/// `d` and the descriptors of this node's other replicas holding `touches`, located.
fn around(
    node: &Node,
    r: &Replica,
    d: RangeDescriptor,
    touches: &[Touch<'_>],
) -> Vec<LocatedRange> {
    let mut seen = vec![d.range_id];
    let mut current = vec![node.locate(d, Some(r))];
    for t in touches {
        let (s, e) = match *t {
            Touch::Key(k) => (k, k),
            Touch::Span(s, e) => (s, e),
        };
        let ids = if s == e {
            node.router.index.lookup(s).into_iter().collect()
        } else {
            node.router.index.overlapping(s, e)
        };
        for id in ids {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            if let Some(od) = node.router.get(id).and_then(|o| o.descriptor()) {
                current.push(node.locate(od, Some(r)));
            }
        }
    }
    current
}

/// A refusal of a request that reached `r` and found `touches` outside its range once
/// there (it split after the request was routed: a read after its barrier, a write
/// as it applied): with the range's descriptor and those of this node's replicas that
/// hold the keys now.
pub fn outside(node: &Node, r: &Replica, touches: &[Touch<'_>], message: String) -> Error {
    match r.ready_descriptor() {
        Ok(d) => refusal(node, r, d, Misfit::Outside(message), touches),
        Err(e) => e.into(),
    }
}

/// For a request naming no range whose anchor key no replica of this node holds: the
/// nodes holding that key's range (its voters but this node), from this node's copy of
/// the routing table. Clients with no range cache (any gRPC client) may send any
/// request to any node; it is passed on to one of them, which serves it or forwards a
/// write to its leader.
async fn holders(node: &Node, req: &Request) -> Option<Vec<String>> {
    let anchor = req.op.anchor();
    // A replica removed from its range (not destroyed yet) does not count.
    let me = node.node_id();
    let local = node.router.locate(anchor.key, anchor.before);
    if local.is_some_and(|r| r.with_descriptor(|d| d.is_some_and(|d| d.has_replica_on(me)))) {
        return None;
    }
    let d = crate::routing::range_for(node, anchor.key, anchor.before)
        .await
        .ok()??;
    let addrs: Vec<String> = d
        .replicas
        .iter()
        .filter(|r| r.voter && r.node_id != me)
        .filter_map(|r| node.member(r.node_id))
        .map(|n| n.addr)
        .collect();
    (!addrs.is_empty()).then_some(addrs)
}
