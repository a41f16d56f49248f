//! The meta range's system keys, written by its commands and read here alone: the
//! routing table (every range's descriptor, each replaced only by a newer one), the
//! nodes marked decommissioning, the node and range id counters, and the timestamp
//! oracle's high-water mark. Key layouts are
//! in [`shoal_storage::keys`].

use std::collections::HashSet;
use std::io;

use shoal_storage::{keys, Engine};

use crate::apply::Apply;
use crate::codec::{decode, encode, io_err};
use crate::range::{RangeDescriptor, FIRST_RANGE_ID};

/// `AllocNodeId`: a node id never given before, above every member's.
pub fn apply_alloc_node_id(a: &mut Apply<'_>) -> io::Result<u64> {
    let stored = counter(a.engine, keys::NEXT_NODE_ID_KEY)?.unwrap_or(1);
    let id = stored.max(a.max_member_id() + 1);
    a.batch
        .put_system(a.engine, keys::NEXT_NODE_ID_KEY, &keys::encode_u64(id + 1));
    Ok(id)
}

/// `AllocRangeId`: a range id never given before.
pub fn apply_alloc_range_id(a: &mut Apply<'_>) -> io::Result<u64> {
    let id = counter(a.engine, keys::NEXT_RANGE_ID_KEY)?.unwrap_or(FIRST_RANGE_ID + 1);
    a.batch
        .put_system(a.engine, keys::NEXT_RANGE_ID_KEY, &keys::encode_u64(id + 1));
    Ok(id)
}

/// `ReserveTimestamps`: raises the oracle's high-water mark to at least `up_to`;
/// returns the mark (never lowered).
pub fn apply_reserve_timestamps(a: &mut Apply<'_>, up_to: u64) -> io::Result<u64> {
    let high = counter(a.engine, keys::TIMESTAMP_HIGH_KEY)?
        .unwrap_or(0)
        .max(up_to);
    a.batch
        .put_system(a.engine, keys::TIMESTAMP_HIGH_KEY, &keys::encode_u64(high));
    Ok(high)
}

/// The timestamp oracle's persisted high-water mark, as this node's replica of the
/// meta range holds it (0 before the first reservation).
pub fn timestamp_high(engine: &Engine) -> io::Result<u64> {
    Ok(counter(engine, keys::TIMESTAMP_HIGH_KEY)?.unwrap_or(0))
}

/// `PutDescriptors`: records each descriptor in the routing table, if it is newer
/// than the one recorded (an undecodable record counts as older).
pub fn apply_put_descriptors(a: &mut Apply<'_>, ds: &[RangeDescriptor]) -> io::Result<()> {
    for d in ds {
        let key = keys::range_descriptor_key(d.range_id);
        let newer = match a.engine.get_system(&key).map_err(io_err)? {
            None => true,
            Some(b) => decode::<RangeDescriptor>(&b).map_or(true, |cur| d.supersedes(&cur)),
        };
        if newer {
            a.batch.put_system(a.engine, &key, &encode(d)?);
        }
    }
    Ok(())
}

/// `DropDescriptor`: forgets the record of `range_id` (merged into its left
/// neighbour) if it is older than `below_version`.
pub fn apply_drop_descriptor(
    a: &mut Apply<'_>,
    range_id: u64,
    below_version: u64,
) -> io::Result<()> {
    let key = keys::range_descriptor_key(range_id);
    if let Some(b) = a.engine.get_system(&key).map_err(io_err)? {
        let older = decode::<RangeDescriptor>(&b).map_or(true, |d| d.epoch.version < below_version);
        if older && range_id != FIRST_RANGE_ID {
            a.batch.delete_system(a.engine, &key);
        }
    }
    Ok(())
}

/// `SetDecommissioning`: marks a node decommissioning, or no longer.
pub fn apply_set_decommissioning(a: &mut Apply<'_>, node_id: u64, on: bool) {
    let key = keys::decommissioning_key(node_id);
    if on {
        a.batch.put_system(a.engine, &key, &[1]);
    } else {
        a.batch.delete_system(a.engine, &key);
    }
}

/// The routing table as this node's replica of the meta range holds it: every
/// recorded descriptor, in range id order.
pub fn descriptors(engine: &Engine) -> io::Result<Vec<RangeDescriptor>> {
    engine
        .scan_system(keys::RANGE_DESCRIPTOR_PREFIX)
        .map_err(io_err)?
        .into_iter()
        .map(|(key, value)| {
            decode(&value).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("range descriptor {key:?} does not decode: {e}"),
                )
            })
        })
        .collect()
}

/// The nodes marked decommissioning, as this node's replica of the meta range holds
/// them.
pub fn decommissioning(engine: &Engine) -> io::Result<HashSet<u64>> {
    Ok(engine
        .scan_system(keys::DECOMMISSIONING_PREFIX)
        .map_err(io_err)?
        .iter()
        .filter_map(|(k, _)| keys::parse_decommissioning_key(k))
        .collect())
}

fn counter(engine: &Engine, key: &[u8]) -> io::Result<Option<u64>> {
    Ok(engine
        .get_system(key)
        .map_err(io_err)?
        .and_then(|b| keys::decode_u64(&b)))
}
