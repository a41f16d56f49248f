//! Placement: where each range's replicas live, decided by the meta range's leader.
//!
//! - Every node sends a heartbeat ([`messages::NodeReport`]) to the meta range's
//!   leader once a second: it is alive, its disk's capacity, the replicas it holds and
//!   leads ([`driver::PlacementDriver::send_heartbeat`]).
//! - The meta range's leader, the placement driver ([`driver`]), reads the routing
//!   table and the heartbeats once a second and plans with the pure planner
//!   ([`plan`]): replicas made again for ranges below the replication factor, or with
//!   replicas on dead, decommissioning or removed nodes; surplus replicas removed;
//!   then replicas and leaders spread evenly. Each change goes to the range's leader
//!   ([`messages::ChangeReplicas`]), a few at a time. It also keeps the meta range's
//!   voters ([`plan::meta_voters`]).
//! - A range's leader carries a change out ([`change`]) so that the range never goes
//!   below quorum: a new replica is created empty, filled as a learner, and becomes a
//!   voter only once caught up, in the same joint change that removes the one it
//!   replaces. A leader never removes itself: it hands its leadership over first.
//! - Every node destroys its replicas of ranges that no longer count it as a member
//!   (the range keeper's garbage collection), once the change that removed it is
//!   committed.

pub mod change;
pub mod driver;
pub mod messages;
pub mod plan;
