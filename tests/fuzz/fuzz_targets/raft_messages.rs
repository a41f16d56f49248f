//! Every message a node decodes from a peer (Raft and Peer services): the gRPC
//! envelopes, then their payloads.
//! Decoding must never panic; what decodes must encode back to what decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shoal_proto::v1 as pb;
use shoal_raft::codec::{decode, encode};
use shoal_raft::{
    AppendEntriesRequest, AppendEntriesResponse, LogId, SnapshotMeta, SnapshotResponse,
    TransferLeaderRequest, Vote, VoteRequest, VoteResponse,
};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = decode::<T>(data) {
        let again = encode(&v).expect("a decoded message encodes");
        let back: T = decode(&again).expect("an encoded message decodes");
        assert_eq!(format!("{v:?}"), format!("{back:?}"));
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = pb::RaftMessage::decode(data);
    let _ = pb::PeerMessage::decode(data);
    let _ = pb::SnapshotChunk::decode(data);
    let _ = pb::JoinRequest::decode(data);
    let _ = pb::BootstrapRequest::decode(data);
    let _ = pb::HelloResponse::decode(data);
    round_trip::<AppendEntriesRequest>(data);
    round_trip::<AppendEntriesResponse>(data);
    round_trip::<VoteRequest>(data);
    round_trip::<VoteResponse>(data);
    round_trip::<TransferLeaderRequest>(data);
    round_trip::<SnapshotResponse>(data);
    round_trip::<(Vote, SnapshotMeta)>(data);
    round_trip::<Option<LogId>>(data);
    round_trip::<shoal_raft::RangeDescriptor>(data);
    round_trip::<shoal_server::placement::messages::ChangeReplicas>(data);
    let _ = shoal_server::placement::messages::NodeReport::decode(data);
});
