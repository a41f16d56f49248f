//! The peer transport, both sides: [`pool`] (one channel per peer node, shared by
//! every range), [`mux`] (every range's Raft messages to a peer batched on one
//! stream), [`network`] (openraft's network of one range, snapshots streamed in
//! chunks) and [`service`] (the `Raft` gRPC service answering peers).

pub mod mux;
pub mod network;
pub mod pool;
pub mod service;
