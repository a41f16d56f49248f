//! Key layout of the store: the only file that builds or parses a key.
//!
//! Column families:
//! - `default`: node-local values (the store identity).
//! - `raft_log`: `LOCAL | range_id (u64 BE) | index (u64 BE)` -> encoded entry.
//! - `raft_state`: `LOCAL | range_id (u64 BE) | kind (u8)` -> small Raft state values
//!   (vote, committed, last purged, applied state, snapshot bookkeeping).
//! - `data`: replicated keys: each user key's lock and versions under
//!   `USER | memcomparable key | !timestamp (u64 BE)` -> a version record
//!   `kind | start_ts | value` (the lock at timestamp `LOCK_TS`, so first); the
//!   cluster's system keys under `SYSTEM` (kept by the meta range: range descriptors as
//!   a routing table, id counters); and each range's own replicated keys under
//!   `RANGE_LOCAL | range_id (u64 BE) | suffix` (its descriptor, the answers kept for
//!   retried requests), which travel in the range's snapshots and are copied to the
//!   right half when it splits.
//!
//! System keys (meta range): `range/<range_id>` -> a range descriptor (the routing
//! table), `decommissioning/<node_id>` -> a mark, `next_node_id` and `next_range_id`
//! -> id counters, `timestamp_high` -> the timestamp oracle's high-water mark. A
//! range's own keys: `desc` -> its descriptor,
//! `req/<client_id><seq>` -> a kept request answer, `req-low/<client_id>` -> the
//! lowest sequence whose answer may still be kept.
//!
//! Big-endian integers keep a range's log entries in index order and ranges apart.

pub const CF_DEFAULT: &str = "default";
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";
pub const CF_DATA: &str = "data";
pub const COLUMN_FAMILIES: [&str; 4] = [CF_DEFAULT, CF_RAFT_LOG, CF_RAFT_STATE, CF_DATA];

/// Node-local keys: never replicated.
pub const LOCAL_PREFIX: u8 = 0x01;
/// Replicated system keys (range descriptors, node records, counters).
pub const SYSTEM_PREFIX: u8 = 0x02;
/// Replicated user keys.
pub const USER_PREFIX: u8 = 0x03;
/// Replicated keys of one range: `RANGE_LOCAL | range_id (u64 BE) | suffix`.
pub const RANGE_LOCAL_PREFIX: u8 = 0x04;

/// Key of the store's data format in `default`: [`STORE_FORMAT`] once its user keys
/// are in the multi-version layout.
pub fn store_format_key() -> Vec<u8> {
    let mut k = vec![LOCAL_PREFIX];
    k.extend_from_slice(b"store_format");
    k
}

/// The data format of this version's stores: user keys as versions (1, no marker: one
/// value per key, `USER | key` -> `version (u64 BE) | value`).
pub const STORE_FORMAT: u8 = 2;

/// A data record of the single-version format (format 1) in this version's layout:
/// a user key's `USER | key` -> `version | value` becomes its version `version`, a
/// put. `None` for a record that needs no change (not a user key) or a user key's
/// record too short to hold a version.
pub fn upgrade_v1_record(data_key: &[u8], stored: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let key = data_key.strip_prefix(&[USER_PREFIX])?;
    if stored.len() < 8 {
        return None;
    }
    let (version, value) = stored.split_at(8);
    let version = decode_u64(version)?;
    Some((
        mvcc_key(key, version),
        encode_version(VersionKind::Put, version, value),
    ))
}

/// Key of the store identity (cluster id and node id) in `default`.
pub fn store_ident_key() -> Vec<u8> {
    let mut k = vec![LOCAL_PREFIX];
    k.extend_from_slice(b"store_ident");
    k
}

/// Key of a log entry in `raft_log`.
pub fn log_key(range_id: u64, index: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = LOCAL_PREFIX;
    k[1..9].copy_from_slice(&range_id.to_be_bytes());
    k[9..17].copy_from_slice(&index.to_be_bytes());
    k
}

/// The log index of a `raft_log` key of `range_id`, or `None` for a key of another range.
pub fn parse_log_key(range_id: u64, key: &[u8]) -> Option<u64> {
    if key.len() != 17 || key[0] != LOCAL_PREFIX || key[1..9] != range_id.to_be_bytes() {
        return None;
    }
    let mut idx = [0u8; 8];
    idx.copy_from_slice(&key[9..17]);
    Some(u64::from_be_bytes(idx))
}

/// Key of a Raft state value of a range in `raft_state`.
pub fn state_key(range_id: u64, kind: u8) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = LOCAL_PREFIX;
    k[1..9].copy_from_slice(&range_id.to_be_bytes());
    k[9] = kind;
    k
}

/// The range id and kind of a `raft_state` key.
pub fn parse_state_key(key: &[u8]) -> Option<(u64, u8)> {
    if key.len() != 10 || key[0] != LOCAL_PREFIX {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&key[1..9]);
    Some((u64::from_be_bytes(id), key[9]))
}

/// A user key in memcomparable form: every `0x00` byte escaped as `0x00 0xFF`, then the
/// terminator `0x00 0x01`. Encoded keys sort as the keys do, and no encoded key is a
/// prefix of another's: a key's versions never interleave with a longer key's.
fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

const KEY_TERMINATOR: [u8; 2] = [0x00, 0x01];

/// The timestamp of a key's lock slot: above every commit timestamp, so the lock
/// sorts before the key's versions.
pub const LOCK_TS: u64 = u64::MAX;

/// The timestamp that reads the newest version of every key.
pub const LATEST: u64 = LOCK_TS - 1;

/// Prefix of every data key of a user key (its lock and its versions):
/// `USER | escaped key | terminator`.
pub fn mvcc_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 12);
    k.push(USER_PREFIX);
    escape_into(&mut k, key);
    k.extend_from_slice(&KEY_TERMINATOR);
    k
}

/// The data key of version `ts` of a user key: its [`mvcc_prefix`], then `!ts`
/// (big-endian), so a key's versions sort newest first.
pub fn mvcc_key(key: &[u8], ts: u64) -> Vec<u8> {
    let mut k = mvcc_prefix(key);
    k.extend_from_slice(&(!ts).to_be_bytes());
    k
}

/// The data key of a user key's lock ([`LOCK_TS`]).
pub fn lock_key(key: &[u8]) -> Vec<u8> {
    mvcc_key(key, LOCK_TS)
}

/// The user key and timestamp of a data key of the user key space, or `None` for any
/// other key.
pub fn parse_mvcc_key(data_key: &[u8]) -> Option<(Vec<u8>, u64)> {
    let rest = data_key.strip_prefix(&[USER_PREFIX])?;
    if rest.len() < 10 {
        return None;
    }
    let (escaped, ts) = rest.split_at(rest.len() - 8);
    let escaped = escaped.strip_suffix(&KEY_TERMINATOR)?;
    let mut key = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&b) = bytes.next() {
        key.push(b);
        if b == 0 && bytes.next() != Some(&0xFF) {
            return None;
        }
    }
    Some((key, !decode_u64(ts)?))
}

/// Data-key bounds `[lo, hi)` of every lock and version of the user keys in
/// `[start, end)`; an empty `end` is the end of the user key space.
pub fn user_span(start: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let bound = |key: &[u8]| {
        let mut k = vec![USER_PREFIX];
        escape_into(&mut k, key);
        k
    };
    let hi = if end.is_empty() {
        vec![USER_PREFIX + 1]
    } else {
        bound(end)
    };
    (bound(start), hi)
}

/// The data key of a system key.
pub fn system_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(SYSTEM_PREFIX);
    k.extend_from_slice(key);
    k
}

/// Prefix of the system keys of range descriptors (kept in the meta range).
pub const RANGE_DESCRIPTOR_PREFIX: &[u8] = b"range/";

/// System key (without the system prefix) of range `range_id`'s descriptor.
pub fn range_descriptor_key(range_id: u64) -> Vec<u8> {
    let mut k = RANGE_DESCRIPTOR_PREFIX.to_vec();
    k.extend_from_slice(&range_id.to_be_bytes());
    k
}

/// Prefix of the system keys marking decommissioning nodes (kept in the meta range).
pub const DECOMMISSIONING_PREFIX: &[u8] = b"decommissioning/";

/// System key (without the system prefix) marking node `node_id` as decommissioning.
pub fn decommissioning_key(node_id: u64) -> Vec<u8> {
    let mut k = DECOMMISSIONING_PREFIX.to_vec();
    k.extend_from_slice(&node_id.to_be_bytes());
    k
}

/// The node id of a [`decommissioning_key`], or `None` for another key.
pub fn parse_decommissioning_key(key: &[u8]) -> Option<u64> {
    let id = key.strip_prefix(DECOMMISSIONING_PREFIX)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// System key (without the system prefix) of the next node id to allocate.
pub const NEXT_NODE_ID_KEY: &[u8] = b"next_node_id";
/// System key (without the system prefix) of the next range id to allocate.
pub const NEXT_RANGE_ID_KEY: &[u8] = b"next_range_id";
/// System key (without the system prefix) of the timestamp oracle's high-water mark:
/// no timestamp at or above it was ever handed out.
pub const TIMESTAMP_HIGH_KEY: &[u8] = b"timestamp_high";

/// Encodes a counter or id stored as a value: `u64 BE`.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Decodes a value written by [`encode_u64`]; `None` if it is not 8 bytes.
pub fn decode_u64(stored: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(stored.try_into().ok()?))
}

/// Data key of a range's replicated key `suffix`.
pub fn range_local_key(range_id: u64, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + suffix.len());
    k.push(RANGE_LOCAL_PREFIX);
    k.extend_from_slice(&range_id.to_be_bytes());
    k.extend_from_slice(suffix);
    k
}

/// Data-key bounds `[lo, hi)` of every replicated key of a range.
pub fn range_local_bounds(range_id: u64) -> (Vec<u8>, Vec<u8>) {
    let lo = range_local_key(range_id, b"");
    let hi = match range_id.checked_add(1) {
        Some(next) => range_local_key(next, b""),
        None => vec![RANGE_LOCAL_PREFIX + 1],
    };
    (lo, hi)
}

/// Suffix of a range's descriptor among its replicated keys.
pub const DESCRIPTOR_SUFFIX: &[u8] = b"desc";

/// Suffix (among a range's replicated keys) of the record of a range frozen for a
/// merge into its left neighbour: while it is there, the range takes no request.
pub const FROZEN_SUFFIX: &[u8] = b"frozen";

/// Suffix (among a range's replicated keys) of what became of a merge of the range
/// `right_id` into this one: absorbed, or fenced off.
pub fn merge_suffix(right_id: u64) -> Vec<u8> {
    let mut k = b"merge/".to_vec();
    k.extend_from_slice(&right_id.to_be_bytes());
    k
}

/// Suffix (among a range's replicated keys) of the kept answer of a client's request.
pub fn request_suffix(client_id: u64, seq: u64) -> Vec<u8> {
    let mut k = client_requests_prefix(client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The request sequence of a [`request_suffix`], or `None` for another suffix.
pub fn parse_request_seq(suffix: &[u8]) -> Option<u64> {
    let rest = suffix.strip_prefix(REQUEST_PREFIX)?;
    if rest.len() != 16 {
        return None;
    }
    decode_u64(&rest[8..])
}

/// Prefix of the suffixes of one client's kept answers, in sequence order.
pub fn client_requests_prefix(client_id: u64) -> Vec<u8> {
    let mut k = REQUEST_PREFIX.to_vec();
    k.extend_from_slice(&client_id.to_be_bytes());
    k
}

/// Prefix of the suffixes of kept answers; a split copies them to the right half.
pub const REQUEST_PREFIX: &[u8] = b"req/";
/// Prefix of the suffixes of the clients' low marks; a split copies them too.
pub const REQUEST_LOW_PREFIX: &[u8] = b"req-low/";

/// Suffix (among a range's replicated keys) of the lowest request sequence of a client
/// whose answer may still be kept.
pub fn requests_low_suffix(client_id: u64) -> Vec<u8> {
    let mut k = REQUEST_LOW_PREFIX.to_vec();
    k.extend_from_slice(&client_id.to_be_bytes());
    k
}

/// Data-key bounds `[lo, hi)` of what a range replicates, as disjoint intervals in key
/// order: its user span, with `with_system` (the meta range) the system keys before
/// it, and its own replicated keys.
pub fn range_bounds(
    range_id: u64,
    start: &[u8],
    end: &[u8],
    with_system: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (lo, hi) = user_span(start, end);
    let data = if with_system {
        (vec![SYSTEM_PREFIX], hi)
    } else {
        (lo, hi)
    };
    vec![data, range_local_bounds(range_id)]
}

/// What a version record of a user key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionKind {
    /// The key was given a value.
    Put = 1,
    /// The key was deleted (a tombstone).
    Delete = 2,
    /// A transaction that started at this timestamp was rolled back: it never commits
    /// this key (a mark, not data; reads pass over it).
    Rollback = 3,
}

/// Encodes a version record: `kind (u8) | start_ts (u64 BE) | value`, where
/// `start_ts` is the start timestamp of the transaction that wrote it (its commit
/// timestamp for a single write), and `value` is empty but for a put.
pub fn encode_version(kind: VersionKind, start_ts: u64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + value.len());
    v.push(kind as u8);
    v.extend_from_slice(&start_ts.to_be_bytes());
    v.extend_from_slice(value);
    v
}

/// Decodes a version record into `(kind, start_ts, value)`.
pub fn decode_version(stored: &[u8]) -> Option<(VersionKind, u64, &[u8])> {
    let (&kind, rest) = stored.split_first()?;
    let kind = match kind {
        1 => VersionKind::Put,
        2 => VersionKind::Delete,
        3 => VersionKind::Rollback,
        _ => return None,
    };
    if rest.len() < 8 {
        return None;
    }
    let (start, value) = rest.split_at(8);
    Some((kind, decode_u64(start)?, value))
}

// ---- SQL: tables and the catalog, inside the user key space ----
//
// Every key of the SQL layer begins with [`SQL_SPACE`], a byte no key of the KV API
// may begin with (the KV API refuses such keys and clips its open-ended spans below
// it), so SQL rows travel through the same transactions, splits and snapshots as any
// user key, yet no KV call can read or break them.
//
// - `SQL_SPACE | 'c' | table name` -> a table's descriptor (the catalog);
// - `SQL_SPACE | 'n'` -> the next table id to hand out;
// - `SQL_SPACE | 'u' | user name` -> a user's record (its role): `shoal user`;
// - `SQL_SPACE | 't' | table_id (u32 BE) | index_id (u32 BE) | key parts` -> a row
//   (index 1, the primary key: its key parts are the primary key's columns) or an
//   index entry (its columns, then the primary key's when the index is not unique).
//
// Key parts are memcomparable: each starts with a tag, so NULL sorts first and values
// of one type sort as the values do.

/// First byte of every key of the SQL layer; the KV API refuses keys that start with it.
pub const SQL_SPACE: u8 = 0xFF;

/// The first key of the SQL layer: the KV API's open-ended spans end here.
pub const SQL_SPACE_START: &[u8] = &[SQL_SPACE];

/// The index id of a table's rows (its primary key).
pub const PRIMARY_INDEX: u32 = 1;

/// The catalog key of table `name`.
pub fn sql_catalog_key(name: &str) -> Vec<u8> {
    let mut k = vec![SQL_SPACE, b'c'];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Bounds `[start, end)` of every catalog key.
pub fn sql_catalog_span() -> (Vec<u8>, Vec<u8>) {
    (vec![SQL_SPACE, b'c'], vec![SQL_SPACE, b'c' + 1])
}

/// The key holding the next table id.
pub fn sql_next_table_id_key() -> Vec<u8> {
    vec![SQL_SPACE, b'n']
}

/// The record of user `name`.
pub fn user_key(name: &str) -> Vec<u8> {
    let mut k = vec![SQL_SPACE, b'u'];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Bounds `[start, end)` of every user's record.
pub fn users_span() -> (Vec<u8>, Vec<u8>) {
    (vec![SQL_SPACE, b'u'], vec![SQL_SPACE, b'u' + 1])
}

/// The user name of a user's record key.
pub fn user_of(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(&[SQL_SPACE, b'u'][..])?).ok()
}

/// The mark of dropped table `table_id` whose rows are still to be deleted.
pub fn sql_dropped_key(table_id: u32) -> Vec<u8> {
    let mut k = vec![SQL_SPACE, b'd'];
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// Bounds `[start, end)` of every mark of a dropped table.
pub fn sql_dropped_span() -> (Vec<u8>, Vec<u8>) {
    (vec![SQL_SPACE, b'd'], vec![SQL_SPACE, b'd' + 1])
}

/// The table id of a dropped table's mark.
pub fn sql_dropped_table(key: &[u8]) -> Option<u32> {
    let id = key.strip_prefix(&[SQL_SPACE, b'd'][..])?;
    Some(u32::from_be_bytes(id.try_into().ok()?))
}

/// Prefix of every key of one index of a table (the rows: [`PRIMARY_INDEX`]).
pub fn sql_index_prefix(table_id: u32, index_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + 32);
    k.extend_from_slice(&[SQL_SPACE, b't']);
    k.extend_from_slice(&table_id.to_be_bytes());
    k.extend_from_slice(&index_id.to_be_bytes());
    k
}

/// Bounds `[start, end)` of every key of a table, all its indexes included.
pub fn sql_table_span(table_id: u32) -> (Vec<u8>, Vec<u8>) {
    let start = sql_index_prefix(table_id, 0);
    let end = match table_id.checked_add(1) {
        Some(next) => sql_index_prefix(next, 0),
        None => vec![SQL_SPACE, b't' + 1],
    };
    (start, end)
}

/// The first key after every key that starts with `prefix`: empty (the end of the key
/// space) when there is none, for an empty prefix or one of `0xFF` bytes alone.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

const PART_NULL: u8 = 0x00;
const PART_FALSE: u8 = 0x02;
const PART_TRUE: u8 = 0x03;
const PART_INT: u8 = 0x10;
const PART_FLOAT: u8 = 0x20;
const PART_BYTES: u8 = 0x30;

/// Appends a NULL key part (it sorts before every value).
pub fn push_null_part(out: &mut Vec<u8>) {
    out.push(PART_NULL);
}

/// Appends a boolean key part.
pub fn push_bool_part(out: &mut Vec<u8>, v: bool) {
    out.push(if v { PART_TRUE } else { PART_FALSE });
}

/// Appends an integer key part: the sign bit flipped, big-endian, so negatives sort
/// first.
pub fn push_int_part(out: &mut Vec<u8>, v: i64) {
    out.push(PART_INT);
    out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
}

/// Appends a float key part: positive numbers with the sign bit set, negative ones with
/// every bit inverted, so the bytes sort as the numbers (NaN above +inf, as Postgres
/// sorts it).
pub fn push_float_part(out: &mut Vec<u8>, v: f64) {
    let v = if v == 0.0 { 0.0 } else { v }; // -0 and +0 are one key
    let bits = v.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    out.push(PART_FLOAT);
    out.extend_from_slice(&ordered.to_be_bytes());
}

/// Appends a string or byte-string key part: escaped and terminated, so no part is a
/// prefix of a longer one and the parts after it still compare.
pub fn push_bytes_part(out: &mut Vec<u8>, v: &[u8]) {
    out.push(PART_BYTES);
    escape_into(out, v);
    out.extend_from_slice(&KEY_TERMINATOR);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_key_parts_sort_as_their_values() {
        let part = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut k = Vec::new();
            f(&mut k);
            k
        };
        let ints = [i64::MIN, -300, -1, 0, 1, 255, 256, i64::MAX];
        let keys: Vec<_> = ints
            .iter()
            .map(|&v| part(&|k| push_int_part(k, v)))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        let floats = [
            f64::NEG_INFINITY,
            -2.5,
            -1e-300,
            0.0,
            1e-300,
            2.5,
            f64::INFINITY,
            f64::NAN,
        ];
        let keys: Vec<_> = floats
            .iter()
            .map(|&v| part(&|k| push_float_part(k, v)))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(
            part(&|k| push_float_part(k, -0.0)),
            part(&|k| push_float_part(k, 0.0))
        );
        // A string that is a prefix of another sorts first, whatever follows it.
        let mut a = part(&|k| push_bytes_part(k, b"ab"));
        push_int_part(&mut a, i64::MAX);
        let mut b = part(&|k| push_bytes_part(k, b"ab\0"));
        push_int_part(&mut b, i64::MIN);
        assert!(a < b);
        assert!(part(&|k| push_null_part(k)) < part(&|k| push_bool_part(k, false)));
        assert!(part(&|k| push_bool_part(k, false)) < part(&|k| push_bool_part(k, true)));
    }

    #[test]
    fn sql_keys_lie_above_every_key_the_kv_api_takes_and_tables_apart() {
        let (start, end) = sql_table_span(7);
        let row = sql_index_prefix(7, PRIMARY_INDEX);
        assert!(start <= row && row < end);
        assert!(end <= sql_index_prefix(8, 0));
        assert!(sql_catalog_key("t")[0] == SQL_SPACE && row[0] == SQL_SPACE);
        assert_eq!(prefix_end(&[1, 0xFF, 0xFF]), vec![2]);
        assert_eq!(prefix_end(b"user/"), b"user0");
        assert_eq!(prefix_end(b"\xff\xff"), b"");
        assert_eq!(prefix_end(b""), b"");
    }

    #[test]
    fn log_keys_sort_by_range_then_index() {
        let mut keys = [
            log_key(2, 1),
            log_key(1, 300),
            log_key(1, 2),
            log_key(1, 256),
        ];
        keys.sort();
        let parsed: Vec<_> = keys
            .iter()
            .map(|k| (parse_log_key(1, k), parse_log_key(2, k)))
            .collect();
        assert_eq!(
            parsed,
            vec![
                (Some(2), None),
                (Some(256), None),
                (Some(300), None),
                (None, Some(1))
            ]
        );
    }

    #[test]
    fn mvcc_keys_round_trip_and_stay_in_their_space() {
        let k = mvcc_key(b"\x00abc\xff", 7);
        assert_eq!(parse_mvcc_key(&k), Some((b"\x00abc\xff".to_vec(), 7)));
        assert_eq!(parse_mvcc_key(&[SYSTEM_PREFIX, 1]), None);
        let (lo, hi) = user_span(b"", b"");
        assert!(lo.as_slice() <= k.as_slice() && k.as_slice() < hi.as_slice());
        assert!(lock_key(b"\xff\xff\xff").as_slice() < hi.as_slice());
        // A key's lock, then its versions newest first, then the next key.
        let mut ks = [
            mvcc_key(b"a\x00", 1),
            mvcc_key(b"a", 1),
            lock_key(b"a"),
            mvcc_key(b"a", 9),
            mvcc_key(b"ab", 5),
        ];
        ks.sort();
        let parsed: Vec<_> = ks.iter().map(|k| parse_mvcc_key(k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![
                (b"a".to_vec(), LOCK_TS),
                (b"a".to_vec(), 9),
                (b"a".to_vec(), 1),
                (b"a\x00".to_vec(), 1),
                (b"ab".to_vec(), 5),
            ]
        );
    }

    proptest::proptest! {
        // The properties the `keys` fuzz target checks (tests/fuzz), on every run.
        #[test]
        fn encodings_round_trip_and_keep_order(
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            range in proptest::prelude::any::<u64>(),
            index in proptest::prelude::any::<u64>(),
            ts in proptest::prelude::any::<u64>(),
        ) {
            let (ka, kb) = (mvcc_key(&a, ts), mvcc_key(&b, index));
            proptest::prop_assert_eq!(parse_mvcc_key(&ka), Some((a.clone(), ts)));
            // Keys sort as the user keys do, whatever their timestamps; one key's
            // versions newest first.
            if a != b {
                proptest::prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
            } else {
                proptest::prop_assert_eq!(index.cmp(&ts), ka.cmp(&kb));
            }
            let (all_lo, all_hi) = user_span(b"", b"");
            proptest::prop_assert!(all_lo <= ka && ka < all_hi);
            let sys = system_key(&a);
            proptest::prop_assert_eq!(parse_mvcc_key(&sys), None);
            let local = range_local_key(range, &a);
            proptest::prop_assert_eq!(parse_mvcc_key(&local), None);
            let (llo, lhi) = range_local_bounds(range);
            proptest::prop_assert!(llo <= local && local < lhi);
            proptest::prop_assert!(all_hi <= llo);
            proptest::prop_assert_eq!(parse_log_key(range, &log_key(range, index)), Some(index));
            let v = encode_version(VersionKind::Put, index, &b);
            proptest::prop_assert_eq!(decode_version(&v), Some((VersionKind::Put, index, b.as_slice())));
            // Arbitrary bytes never panic the parsers.
            let _ = parse_mvcc_key(&a);
            let _ = parse_log_key(range, &a);
            let _ = decode_version(&a);
        }

        #[test]
        fn a_span_holds_exactly_the_versions_of_its_keys(
            key in proptest::collection::vec(0u8..3, 0..6),
            start in proptest::collection::vec(0u8..3, 0..6),
            end in proptest::collection::vec(0u8..3, 0..6),
            ts in proptest::prelude::any::<u64>(),
        ) {
            let (lo, hi) = user_span(&start, &end);
            let k = mvcc_key(&key, ts);
            let in_span = key >= start && (end.is_empty() || key < end);
            proptest::prop_assert_eq!(lo <= k && k < hi, in_span);
        }
    }

    #[test]
    fn system_and_request_keys_parse_back() {
        assert_eq!(parse_decommissioning_key(&decommissioning_key(7)), Some(7));
        assert_eq!(parse_decommissioning_key(b"decommissioning/x"), None);
        assert_eq!(parse_request_seq(&request_suffix(9, 42)), Some(42));
        assert!(request_suffix(9, 42).starts_with(&client_requests_prefix(9)));
        assert_eq!(parse_request_seq(&requests_low_suffix(9)), None);
        assert_eq!(decode_u64(&encode_u64(5)), Some(5));
        assert_eq!(decode_u64(b"short"), None);
    }

    #[test]
    fn single_version_records_upgrade_to_versions() {
        let mut old_value = 42u64.to_be_bytes().to_vec();
        old_value.extend_from_slice(b"hello");
        let (k, v) = upgrade_v1_record(&[USER_PREFIX, b'a', 0], &old_value).unwrap();
        assert_eq!(parse_mvcc_key(&k), Some((b"a\0".to_vec(), 42)));
        assert_eq!(
            decode_version(&v),
            Some((VersionKind::Put, 42, &b"hello"[..]))
        );
        assert_eq!(upgrade_v1_record(&system_key(b"x"), &old_value), None);
        assert_eq!(upgrade_v1_record(&[USER_PREFIX, b'a'], b"short"), None);
    }

    #[test]
    fn version_records_carry_their_kind_and_start() {
        let v = encode_version(VersionKind::Put, 42, b"hello");
        assert_eq!(
            decode_version(&v),
            Some((VersionKind::Put, 42, &b"hello"[..]))
        );
        let d = encode_version(VersionKind::Delete, 7, b"");
        assert_eq!(decode_version(&d), Some((VersionKind::Delete, 7, &b""[..])));
        assert_eq!(decode_version(b"short"), None);
        assert_eq!(decode_version(&[9; 12]), None);
    }
}
