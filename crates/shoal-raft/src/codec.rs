//! Encoding of what the Raft layer stores and sends: postcard (compact, serde-based,
//! with a stable wire format), wrapped in `io::Error` for openraft's storage traits.

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Maps a storage error into the `io::Error` openraft's storage traits return.
pub fn io_err(e: shoal_storage::StorageError) -> io::Error {
    match e {
        shoal_storage::StorageError::Io(e) => e,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::StoredSnapshot;
    use crate::{AppendEntriesRequest, Command, Entry, SnapshotMeta, Vote, VoteRequest};
    use proptest::prelude::*;

    proptest! {
        // What the `raft_messages` and `stored_records` fuzz targets do (tests/fuzz),
        // on every run: arbitrary bytes from a peer or a disk never panic a decoder,
        // and what decodes encodes back to itself.
        #[test]
        fn arbitrary_bytes_never_panic_a_decoder(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(r) = decode::<AppendEntriesRequest>(&data) {
                let back: AppendEntriesRequest = decode(&encode(&r).unwrap()).unwrap();
                prop_assert_eq!(format!("{r:?}"), format!("{back:?}"));
            }
            let _ = decode::<VoteRequest>(&data);
            let _ = decode::<(Vote, SnapshotMeta)>(&data);
            if let Ok(e) = decode::<Entry>(&data) {
                let back: Entry = decode(&encode(&e).unwrap()).unwrap();
                prop_assert_eq!(format!("{e:?}"), format!("{back:?}"));
            }
            let _ = decode::<Command>(&data);
            let _ = decode::<StoredSnapshot>(&data);
        }
    }
}
