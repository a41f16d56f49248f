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
