//! Range snapshots as checksummed files.
//!
//! A snapshot is written from a RocksDB snapshot, so its data and the range's applied
//! state are one consistent point in the log, and streamed record by record: a range
//! larger than memory still snapshots and transfers.
//!
//! File format (`SHOALSN1` files, of the single-version format, are read too: their
//! user keys' records are upgraded as they are read):
//! ```text
//! MAGIC (8 bytes)
//! { 0x01 | key len (u32 BE) | value len (u32 BE) | data key | stored value }*
//! 0x00 | record count (u64 BE) | crc32 of every byte before it (u32 BE)
//! ```

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use rocksdb::{Direction, IteratorMode, ReadOptions};

use crate::engine::{DataBatch, Engine, KeySpan, StateKey};
use crate::gc::Pruner;
use crate::keys;
use crate::{Result, StorageError};

const MAGIC: &[u8; 8] = b"SHOALSN2";
/// Snapshots of the single-version format (one value per user key).
const MAGIC_V1: &[u8; 8] = b"SHOALSN1";
const TAG_RECORD: u8 = 1;
const TAG_END: u8 = 0;
/// Flush an installing batch at this size, so install memory stays bounded.
const INSTALL_BATCH_BYTES: usize = 4 << 20;
/// Largest record a snapshot may hold: larger lengths mean a corrupt file.
const MAX_RECORD_PART: u32 = 64 << 20;

/// What a written snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStats {
    /// The range's applied state at the snapshot point ([`StateKey::Applied`]).
    pub applied: Option<Vec<u8>>,
    pub records: u64,
    pub bytes: u64,
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.crc.update(buf);
        self.bytes += buf.len() as u64;
        self.inner.write_all(buf)
    }
}

struct CrcReader<R: Read> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> CrcReader<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner
            .read_exact(buf)
            .map_err(|e| corrupt(format!("truncated: {e}")))?;
        self.crc.update(buf);
        Ok(())
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }
}

fn corrupt(detail: String) -> StorageError {
    StorageError::Corrupt {
        what: "snapshot file",
        detail,
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl Engine {
    /// Writes the range's data (its replicated keys, the user keys of the span that
    /// `span_of` reads from its stored descriptor, with `with_system` the system keys
    /// too) and its applied state, all read from one RocksDB snapshot, to `path`
    /// (durably, via a temporary file and a rename).
    pub fn write_range_snapshot(
        &self,
        range_id: u64,
        with_system: bool,
        path: &Path,
        span_of: impl FnOnce(Option<&[u8]>) -> Result<KeySpan>,
    ) -> Result<SnapshotStats> {
        let tmp = path.with_extension("tmp");
        let snap = self.db().snapshot();
        let applied = snap.get_cf(
            self.cf(keys::CF_RAFT_STATE),
            keys::state_key(range_id, StateKey::Applied as u8),
        )?;
        let desc = snap.get_cf(
            self.cf(keys::CF_DATA),
            keys::range_local_key(range_id, keys::DESCRIPTOR_SUFFIX),
        )?;
        let span = &span_of(desc.as_deref())?;
        let mut w = CrcWriter {
            inner: BufWriter::with_capacity(1 << 20, File::create(&tmp)?),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        };
        w.put(MAGIC)?;
        let mut records = 0u64;
        let mut pruner = Pruner::new(self.gc().safe_point());
        for (lo, hi) in keys::range_bounds(range_id, &span.start, &span.end, with_system) {
            let mut ro = ReadOptions::default();
            ro.set_iterate_upper_bound(hi);
            for item in snap.iterator_cf_opt(
                self.cf(keys::CF_DATA),
                ro,
                IteratorMode::From(&lo, Direction::Forward),
            ) {
                let (k, v) = item?;
                // Versions garbage collection may drop are not sent.
                if pruner.prunes(&k, &v) {
                    continue;
                }
                w.put(&[TAG_RECORD])?;
                w.put(&(k.len() as u32).to_be_bytes())?;
                w.put(&(v.len() as u32).to_be_bytes())?;
                w.put(&k)?;
                w.put(&v)?;
                records += 1;
            }
        }
        w.put(&[TAG_END])?;
        w.put(&records.to_be_bytes())?;
        let crc = w.crc.clone().finalize();
        w.inner.write_all(&crc.to_be_bytes())?;
        let bytes = w.bytes + 4;
        let file = w.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_parent(path)?;
        Ok(SnapshotStats {
            applied,
            records,
            bytes,
        })
    }

    /// The value a snapshot file holds for the data key `key` (the file is read whole
    /// and verified).
    pub fn snapshot_value(path: &Path, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut found = None;
        read_records(path, |k, v| {
            if k == key {
                found = Some(v.to_vec());
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Checks a snapshot file's framing and checksum without applying it.
    pub fn verify_snapshot_file(path: &Path) -> Result<u64> {
        read_records(path, |_, _| Ok(()))
    }

    /// Replaces the data of `span` (and the range's replicated keys) with the snapshot
    /// at `path` and sets the range's applied state to `applied`. `span` is the one the
    /// snapshot describes; the caller passes the replica's older span too when it was
    /// wider (`also_clear`), so keys the range no longer holds are dropped. The file is verified first, so a corrupt file
    /// changes nothing. The data is written in bounded batches; the applied state goes
    /// with the last one. A caller that must survive a crash mid-install records its
    /// intent first ([`StateKey::Installing`]) and installs again on restart.
    pub fn install_range_snapshot(
        &self,
        range_id: u64,
        span: &KeySpan,
        with_system: bool,
        path: &Path,
        applied: &[u8],
        also_clear: Option<&KeySpan>,
    ) -> Result<u64> {
        Self::verify_snapshot_file(path)?;
        let bounds = keys::range_bounds(range_id, &span.start, &span.end, with_system);
        let mut batch: DataBatch = self.batch(range_id);
        let data = self.cf(keys::CF_DATA);
        for (lo, hi) in &bounds {
            batch.batch.delete_range_cf(data, lo, hi);
        }
        if let Some(old) = also_clear {
            let (lo, hi) = keys::user_span(&old.start, &old.end);
            batch.batch.delete_range_cf(data, lo, hi);
        }
        let count = read_records(path, |k, v| {
            if !bounds
                .iter()
                .any(|(lo, hi)| k >= lo.as_slice() && k < hi.as_slice())
            {
                return Err(corrupt(format!("key {k:?} outside the range's span")));
            }
            batch.batch.put_cf(data, k, v);
            if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
                let full = std::mem::replace(&mut batch, self.batch(range_id));
                self.commit(full)?;
            }
            Ok(())
        })?;
        batch.put_state(self, StateKey::Applied, applied);
        self.commit(batch)?;
        Ok(count)
    }
}

/// Reads every record of a snapshot file, checking framing and checksum; returns the
/// record count.
fn read_records(path: &Path, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<u64> {
    let mut r = CrcReader {
        inner: BufReader::with_capacity(1 << 20, File::open(path)?),
        crc: crc32fast::Hasher::new(),
    };
    let mut magic = [0u8; 8];
    r.take(&mut magic)?;
    let v1 = &magic == MAGIC_V1;
    if &magic != MAGIC && !v1 {
        return Err(corrupt("bad magic".into()));
    }
    let mut count = 0u64;
    let (mut k, mut v) = (Vec::new(), Vec::new());
    loop {
        let mut tag = [0u8; 1];
        r.take(&mut tag)?;
        match tag[0] {
            TAG_RECORD => {
                let (kl, vl) = (r.u32()?, r.u32()?);
                if kl > MAX_RECORD_PART || vl > MAX_RECORD_PART {
                    return Err(corrupt(format!("record lengths {kl}/{vl}")));
                }
                k.resize(kl as usize, 0);
                v.resize(vl as usize, 0);
                r.take(&mut k)?;
                r.take(&mut v)?;
                let upgraded = if v1 {
                    match keys::upgrade_v1_record(&k, &v) {
                        Some(kv) => Some(kv),
                        None if k.first() == Some(&keys::USER_PREFIX) => {
                            return Err(corrupt(format!("single-version record of {k:?}")));
                        }
                        None => None,
                    }
                } else {
                    None
                };
                match &upgraded {
                    Some((uk, uv)) => f(uk, uv)?,
                    None => f(&k, &v)?,
                }
                count += 1;
            }
            TAG_END => {
                let n = r.u64()?;
                let want = r.crc.clone().finalize();
                let mut crc = [0u8; 4];
                r.inner
                    .read_exact(&mut crc)
                    .map_err(|e| corrupt(format!("truncated: {e}")))?;
                if u32::from_be_bytes(crc) != want {
                    return Err(corrupt("checksum mismatch".into()));
                }
                if n != count {
                    return Err(corrupt(format!("{count} records, footer says {n}")));
                }
                let mut rest = [0u8; 1];
                if r.inner.read(&mut rest)? != 0 {
                    return Err(corrupt("bytes after the footer".into()));
                }
                return Ok(count);
            }
            t => return Err(corrupt(format!("unknown tag {t}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineOptions;

    #[test]
    fn snapshot_moves_a_range_between_stores() {
        let src_dir = tempfile::tempdir().unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        let src = Engine::open(src_dir.path(), &EngineOptions::default()).unwrap();
        let dst = Engine::open(dst_dir.path(), &EngineOptions::default()).unwrap();
        let mut b = src.batch(1);
        for i in 0..1000u32 {
            b.put(&src, format!("k{i:05}").as_bytes(), 7, 7, &i.to_be_bytes());
        }
        b.put_state(&src, StateKey::Applied, b"applied-7");
        src.commit(b).unwrap();
        // Stale data on the destination must be replaced, not merged.
        let mut b = dst.batch(1);
        b.put(&dst, b"stale", 1, 1, b"x");
        dst.commit(b).unwrap();

        let path = src_dir.path().join("1.snap");
        let mut b = src.batch(1);
        b.put_system(&src, b"counter", b"9");
        src.commit(b).unwrap();
        let stats = src
            .write_range_snapshot(1, true, &path, |_| Ok(KeySpan::all()))
            .unwrap();
        assert_eq!(stats.records, 1001);
        assert_eq!(stats.applied.as_deref(), Some(&b"applied-7"[..]));

        let n = dst
            .install_range_snapshot(1, &KeySpan::all(), true, &path, b"applied-7", None)
            .unwrap();
        assert_eq!(n, 1001);
        assert_eq!(
            dst.get_system(b"counter").unwrap().as_deref(),
            Some(&b"9"[..])
        );
        assert_eq!(dst.get(b"stale").unwrap(), None);
        assert_eq!(
            dst.get(b"k00999").unwrap().map(|v| v.value),
            Some(999u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            dst.state_get(1, StateKey::Applied).unwrap().as_deref(),
            Some(&b"applied-7"[..])
        );
    }

    #[test]
    fn a_corrupt_snapshot_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        let mut b = e.batch(1);
        b.put(&e, b"a", 1, 1, b"1");
        e.commit(b).unwrap();
        let path = dir.path().join("1.snap");
        e.write_range_snapshot(1, false, &path, |_| Ok(KeySpan::all()))
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(e
            .install_range_snapshot(1, &KeySpan::all(), false, &path, b"x", None)
            .is_err());
        assert!(e.get(b"a").unwrap().is_some());
        assert_eq!(e.state_get(1, StateKey::Applied).unwrap(), None);
    }

    /// A snapshot file of the single-version format, as the version before wrote it.
    fn v1_file(path: &Path, records: &[(Vec<u8>, Vec<u8>)]) {
        let mut w = CrcWriter {
            inner: Vec::new(),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        };
        w.put(MAGIC_V1).unwrap();
        for (k, v) in records {
            w.put(&[TAG_RECORD]).unwrap();
            w.put(&(k.len() as u32).to_be_bytes()).unwrap();
            w.put(&(v.len() as u32).to_be_bytes()).unwrap();
            w.put(k).unwrap();
            w.put(v).unwrap();
        }
        w.put(&[TAG_END]).unwrap();
        w.put(&(records.len() as u64).to_be_bytes()).unwrap();
        let crc = w.crc.clone().finalize();
        let mut bytes = w.inner;
        bytes.extend_from_slice(&crc.to_be_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_snapshot_of_the_single_version_format_installs_as_versions() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        let mut old = 12u64.to_be_bytes().to_vec();
        old.extend_from_slice(b"twelve");
        let path = dir.path().join("old.snap");
        v1_file(
            &path,
            &[
                (keys::system_key(b"counter"), b"9".to_vec()),
                ([&[keys::USER_PREFIX][..], b"k"].concat(), old),
            ],
        );
        e.install_range_snapshot(1, &KeySpan::all(), true, &path, b"applied", None)
            .unwrap();
        let v = e.get(b"k").unwrap().unwrap();
        assert_eq!((v.version, v.value), (12, b"twelve".to_vec()));
        assert_eq!(e.get_system(b"counter").unwrap(), Some(b"9".to_vec()));
        // A user key's record too short for a version: corrupt, nothing installed.
        v1_file(
            &path,
            &[([&[keys::USER_PREFIX][..], b"j"].concat(), b"x".to_vec())],
        );
        assert!(e
            .install_range_snapshot(1, &KeySpan::all(), true, &path, b"again", None)
            .is_err());
        assert!(e.get(b"k").unwrap().is_some());
    }

    #[test]
    fn a_store_of_the_single_version_format_upgrades_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
            // What the version before left: user keys with one value, no marker.
            let data = e.cf(keys::CF_DATA);
            for (k, ver, v) in [(&b"a"[..], 3u64, &b"x"[..]), (b"b\0c", 9, b"y")] {
                let mut stored = ver.to_be_bytes().to_vec();
                stored.extend_from_slice(v);
                e.db.put_cf(data, [&[keys::USER_PREFIX][..], k].concat(), stored)
                    .unwrap();
            }
            e.db.put_cf(data, keys::system_key(b"s"), b"kept").unwrap();
            e.db.delete_cf(e.cf(keys::CF_DEFAULT), keys::store_format_key())
                .unwrap();
        }
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        let v = e.get(b"a").unwrap().unwrap();
        assert_eq!((v.version, v.value), (3, b"x".to_vec()));
        let v = e.get(b"b\0c").unwrap().unwrap();
        assert_eq!((v.version, v.value), (9, b"y".to_vec()));
        assert_eq!(e.get_system(b"s").unwrap(), Some(b"kept".to_vec()));
        assert_eq!(e.keys_in(&KeySpan::all()).unwrap().len(), 2);
        drop(e);
        // Opened again: already upgraded, nothing changes.
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        assert_eq!(e.get(b"a").unwrap().map(|v| v.version), Some(3));
    }

    #[test]
    fn a_snapshot_leaves_out_versions_hidden_below_the_safe_point() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        let mut b = e.batch(1);
        for ts in [10, 20, 40] {
            b.put(&e, b"k", ts, ts, format!("v{ts}").as_bytes());
        }
        b.put(&e, b"j", 5, 5, b"only");
        e.commit(b).unwrap();
        e.gc().set_safe_point(30);
        let path = dir.path().join("1.snap");
        let stats = e
            .write_range_snapshot(1, false, &path, |_| Ok(KeySpan::all()))
            .unwrap();
        // k@10 is hidden by k@20 (at or below 30); k@40 is above the safe point.
        assert_eq!(stats.records, 3);
        let other = tempfile::tempdir().unwrap();
        let dst = Engine::open(other.path(), &EngineOptions::default()).unwrap();
        dst.install_range_snapshot(1, &KeySpan::all(), false, &path, b"a", None)
            .unwrap();
        let ts: Vec<u64> = dst
            .versions_of(b"k")
            .unwrap()
            .iter()
            .map(|r| r.ts)
            .collect();
        assert_eq!(ts, [40, 20]);
        assert_eq!(dst.get(b"j").unwrap().map(|v| v.version), Some(5));
    }
}
