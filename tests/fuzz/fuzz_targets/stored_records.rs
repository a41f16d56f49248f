//! Every record a node reads back from its disk: log entries (commands inside), the
//! vote, applied state, snapshot records, the store identity, versioned values, and
//! whole snapshot files. Decoding must never panic; a corrupt snapshot file is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_raft::codec::decode;
use shoal_raft::state_machine::StoredSnapshot;
use shoal_raft::{Command, CommandResponse, Entry, LogId, StoredMembership, Vote};

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Entry>(data);
    let _ = decode::<Command>(data);
    let _ = decode::<CommandResponse>(data);
    let _ = decode::<Vote>(data);
    let _ = decode::<Option<LogId>>(data);
    let _ = decode::<(Option<LogId>, StoredMembership)>(data);
    let _ = decode::<StoredSnapshot>(data);
    let _ = serde_json::from_slice::<shoal_server::node::StoreIdent>(data);
    let _ = shoal_storage::keys::decode_version(data);
    // A snapshot file of these bytes: refused unless its framing and checksum hold.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.snap");
    std::fs::write(&path, data).expect("write");
    let _ = shoal_storage::Engine::verify_snapshot_file(&path);
});
