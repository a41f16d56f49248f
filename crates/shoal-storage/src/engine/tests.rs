use super::*;
use crate::keys::VersionKind;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Engine::open(dir.path(), &EngineOptions::default()).expect("open");
    (dir, e)
}

#[test]
fn prefix_end_is_the_least_key_past_the_prefix() {
    assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
    assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
    assert_eq!(prefix_end(&[0xff]), None);
    assert_eq!(prefix_end(b""), None);
}

#[test]
fn a_prefix_scan_stops_at_the_prefix_past_deleted_keys() {
    let (_dir, e) = engine();
    let mut b = e.batch(1);
    b.put_range_local(&e, 1, b"ra", b"1");
    b.put_range_local(&e, 1, b"rb", b"2");
    b.put_range_local(&e, 1, b"s", b"3");
    for i in 0..1000u32 {
        b.put_range_local(&e, 1, &[b"t".as_slice(), &i.to_be_bytes()].concat(), b"x");
    }
    e.commit(b).unwrap();
    let mut b = e.batch(1);
    for i in 0..999u32 {
        b.delete_range_local(&e, 1, &[b"t".as_slice(), &i.to_be_bytes()].concat());
    }
    e.commit(b).unwrap();
    let got = e.scan_range_local(1, b"r", Some(b"rb"), 10).unwrap();
    assert_eq!(got, vec![(b"rb".to_vec(), b"2".to_vec())]);
    let t = e.scan_range_local(1, b"t", None, 10).unwrap();
    assert_eq!(t.len(), 1, "only the key not deleted");
    assert!(e.scan_range_local(2, b"r", None, 10).unwrap().is_empty());
}

#[test]
fn log_is_per_range_and_survives_reopen() {
    let (dir, e) = engine();
    e.log_append_unsynced(1, [(1, &b"a"[..]), (2, b"b"), (3, b"c")])
        .unwrap();
    e.log_append_unsynced(2, [(1, &b"x"[..])]).unwrap();
    e.sync_wal().unwrap();
    assert_eq!(e.log_last(1).unwrap(), Some((3, b"c".to_vec())));
    assert_eq!(e.log_entries(1, 2, 10).unwrap().len(), 2);
    e.log_truncate(1, 3).unwrap();
    e.log_purge(1, 1, b"p").unwrap();
    drop(e);
    let e = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
    assert_eq!(e.log_entries(1, 0, 100).unwrap(), vec![(2, b"b".to_vec())]);
    // Short spans are point reads: same answer, other ranges' entries excluded.
    assert_eq!(e.log_entries(1, 0, 4).unwrap(), vec![(2, b"b".to_vec())]);
    assert_eq!(e.log_entries(2, 1, 3).unwrap(), vec![(1, b"x".to_vec())]);
    assert_eq!(e.log_last(2).unwrap(), Some((1, b"x".to_vec())));
    assert_eq!(
        e.state_get(1, StateKey::LastPurged).unwrap(),
        Some(b"p".to_vec())
    );
    assert_eq!(e.log_last(3).unwrap(), None);
}

#[test]
fn span_stats_count_bytes_and_find_the_middle_only_past_the_limit() {
    let (_dir, e) = engine();
    let mut b = e.batch(1);
    for k in [b"a", b"b", b"c", b"d"] {
        b.put(&e, k, 1, 1, &[0u8; 91]);
    }
    e.commit(b).unwrap();
    // Each pair: data key (prefix, key, terminator, timestamp: 12 bytes) + version
    // record (kind, start timestamp, value: 100 bytes).
    let all = e.span_stats(&KeySpan::all(), 0).unwrap();
    assert_eq!((all.bytes, all.keys), (4 * 112, 4));
    assert_eq!(all.middle, Some(b"b".to_vec()));
    let under = e.span_stats(&KeySpan::all(), 4 * 112).unwrap();
    assert_eq!((under.bytes, under.middle), (4 * 112, None));
    // Versions of one key count as one key.
    let mut b = e.batch(1);
    b.put(&e, b"a", 2, 2, b"x");
    e.commit(b).unwrap();
    assert_eq!(e.span_stats(&KeySpan::all(), 0).unwrap().keys, 4);
    let part = KeySpan {
        start: b"c".to_vec(),
        end: Vec::new(),
    };
    assert_eq!(e.span_stats(&part, 0).unwrap().middle, Some(b"c".to_vec()));
}

#[test]
fn destroying_a_replica_removes_its_log_state_and_keys_and_nothing_else() {
    let (_dir, e) = engine();
    for range in [5, 6] {
        e.log_append_unsynced(range, [(1, &b"a"[..]), (2, b"b")])
            .unwrap();
        e.state_put(range, StateKey::Applied, b"2", false).unwrap();
        let mut b = e.batch(range);
        b.put_range_local(&e, range, b"desc", b"d");
        e.commit(b).unwrap();
    }
    let mut b = e.batch(5);
    for k in [b"a", b"m", b"z"] {
        b.put(&e, k, 1, 1, b"v");
    }
    e.commit(b).unwrap();
    let span = KeySpan {
        start: b"b".to_vec(),
        end: b"y".to_vec(),
    };
    e.destroy_range(5, Some(&span)).unwrap();
    assert_eq!(e.log_last(5).unwrap(), None);
    assert_eq!(e.state_get(5, StateKey::Applied).unwrap(), None);
    assert_eq!(e.get_range_local(5, b"desc").unwrap(), None);
    assert_eq!(
        e.keys_in(&KeySpan::all()).unwrap(),
        vec![b"a".to_vec(), b"z".to_vec()]
    );
    // Range 6 untouched; without a span, no user key goes.
    assert_eq!(e.log_last(6).unwrap(), Some((2, b"b".to_vec())));
    e.destroy_range(6, None).unwrap();
    assert_eq!(e.state_get(6, StateKey::Applied).unwrap(), None);
    assert_eq!(e.get_range_local(6, b"desc").unwrap(), None);
    assert_eq!(e.keys_in(&KeySpan::all()).unwrap().len(), 2);
}

#[test]
fn batches_write_data_and_state_together() {
    let (_dir, e) = engine();
    let mut b = e.batch(1);
    b.put(&e, b"k1", 5, 5, b"v1");
    b.put(&e, b"k2", 5, 5, b"v2");
    b.put(&e, b"k3", 5, 5, b"v3");
    b.put_state(&e, StateKey::Applied, b"5");
    e.commit(b).unwrap();
    assert_eq!(
        e.get(b"k1").unwrap().map(|v| (v.version, v.value)),
        Some((5, b"v1".to_vec()))
    );
    let (page, more) = e
        .scan(
            &KeySpan {
                start: b"k1".to_vec(),
                end: b"k3".to_vec(),
            },
            10,
            false,
        )
        .unwrap();
    assert_eq!(page.len(), 2);
    assert!(!more);
    let (page, more) = e.scan(&KeySpan::all(), 2, false).unwrap();
    assert_eq!((page.len(), more), (2, true));
    let (page, more) = e.scan(&KeySpan::all(), 2, true).unwrap();
    assert_eq!(page[0].key, b"k3".to_vec());
    assert!(more);
    // Descending, the end stays exclusive.
    let span = KeySpan {
        start: b"k1".to_vec(),
        end: b"k3".to_vec(),
    };
    let (page, more) = e.scan(&span, 10, true).unwrap();
    let keys: Vec<_> = page.into_iter().map(|v| v.key).collect();
    assert_eq!((keys, more), (vec![b"k2".to_vec(), b"k1".to_vec()], false));
    let mut b = e.batch(1);
    b.delete(&e, b"k2", 6, 6);
    b.delete(&e, b"k3", 6, 6);
    e.commit(b).unwrap();
    assert_eq!(e.keys_in(&KeySpan::all()).unwrap(), vec![b"k1".to_vec()]);
    assert_eq!(
        e.state_get(1, StateKey::Applied).unwrap(),
        Some(b"5".to_vec())
    );
}

/// Key `k`'s versions: puts at 10 ("a") and 30 ("c"), a delete at 40, a put at 50
/// ("e"); a rollback mark at 20; a lock. Key `k\0` (a longer key sharing the prefix)
/// has one put at 25; key `j` one at 5.
fn versioned() -> (tempfile::TempDir, Engine) {
    let (dir, e) = engine();
    let mut b = e.batch(1);
    b.put(&e, b"k", 10, 9, b"a");
    b.put_version(&e, b"k", 20, VersionKind::Rollback, 20, b"");
    b.put(&e, b"k", 30, 29, b"c");
    b.delete(&e, b"k", 40, 40);
    b.put(&e, b"k", 50, 50, b"e");
    b.put_lock(&e, b"k", b"lock of k");
    b.put(&e, b"k\0", 25, 25, b"longer");
    b.put(&e, b"j", 5, 5, b"j");
    e.commit(b).unwrap();
    (dir, e)
}

#[test]
fn a_read_at_a_timestamp_sees_the_newest_version_at_or_below_it() {
    let (_dir, e) = versioned();
    let at = |ts| e.get_at(b"k", ts).unwrap().map(|v| (v.version, v.value));
    assert_eq!(at(5), None);
    assert_eq!(at(10), Some((10, b"a".to_vec())));
    // The rollback mark at 20 is passed over.
    assert_eq!(at(20), Some((10, b"a".to_vec())));
    assert_eq!(at(35), Some((30, b"c".to_vec())));
    assert_eq!(at(45), None);
    assert_eq!(at(50), Some((50, b"e".to_vec())));
    assert_eq!(e.get(b"k").unwrap().map(|v| v.version), Some(50));
    // The longer key's versions never show through.
    assert_eq!(
        e.get_at(b"k", 26).unwrap().map(|v| v.value),
        Some(b"a".to_vec())
    );
    assert_eq!(
        e.get_at(b"k\0", 26).unwrap().map(|v| v.value),
        Some(b"longer".to_vec())
    );
    assert_eq!(e.lock(b"k").unwrap(), Some(b"lock of k".to_vec()));
    assert_eq!(e.lock(b"j").unwrap(), None);
    let records: Vec<_> = e
        .versions_of(b"k")
        .unwrap()
        .into_iter()
        .map(|r| (r.ts, r.kind, r.start_ts))
        .collect();
    assert_eq!(
        records,
        vec![
            (50, VersionKind::Put, 50),
            (40, VersionKind::Delete, 40),
            (30, VersionKind::Put, 29),
            (20, VersionKind::Rollback, 20),
            (10, VersionKind::Put, 9),
        ]
    );
}

#[test]
fn scans_at_a_timestamp_both_ways_see_each_key_once() {
    let (_dir, e) = versioned();
    let keys_at = |ts, reverse| {
        let (page, more) = e.scan_at(&KeySpan::all(), ts, 10, reverse).unwrap();
        assert!(!more);
        page.into_iter()
            .map(|v| (String::from_utf8_lossy(&v.key).into_owned(), v.version))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys_at(26, false),
        [("j".into(), 5), ("k".into(), 10), ("k\0".into(), 25)]
    );
    assert_eq!(
        keys_at(26, true),
        [("k\0".into(), 25), ("k".into(), 10), ("j".into(), 5)]
    );
    // At 45, k is deleted.
    assert_eq!(keys_at(45, false), [("j".into(), 5), ("k\0".into(), 25)]);
    assert_eq!(keys_at(4, true), Vec::<(String, u64)>::new());
    // A page stops where the limit is, and says more remain.
    let (page, more) = e.scan_at(&KeySpan::all(), 60, 2, true).unwrap();
    assert_eq!((page.len(), more), (2, true));
    assert_eq!(page[0].key, b"k\0".to_vec());
    assert_eq!(
        e.locks_in(&KeySpan::all(), 10).unwrap(),
        vec![(b"k".to_vec(), b"lock of k".to_vec())]
    );
    assert_eq!(
        e.keys_in(&KeySpan::all()).unwrap(),
        vec![b"j".to_vec(), b"k".to_vec(), b"k\0".to_vec()]
    );
}

#[test]
fn compaction_drops_versions_hidden_below_the_safe_point() {
    let (_dir, e) = versioned();
    e.flush().unwrap();
    e.gc().set_safe_point(35);
    e.compact_span(&KeySpan::all());
    // Below 35: k's put at 30 hides 10; the rollback mark at 20 goes. Above: kept.
    let ts: Vec<u64> = e.versions_of(b"k").unwrap().iter().map(|r| r.ts).collect();
    assert_eq!(ts, [50, 40, 30]);
    assert_eq!(e.gc().dropped(), 2);
    assert_eq!(e.lock(b"k").unwrap(), Some(b"lock of k".to_vec()));
    assert_eq!(
        e.get_at(b"k", 35).unwrap().map(|v| v.value),
        Some(b"c".to_vec())
    );
    assert_eq!(e.get(b"j").unwrap().map(|v| v.version), Some(5));
}

#[test]
fn changes_between_two_timestamps_are_found_in_key_order() {
    let (_dir, e) = versioned();
    let all = KeySpan::all();
    // k: puts at 10, 30, 50, a delete at 40, a rollback mark at 20; k\0 at 25; j at 5.
    assert_eq!(e.changed_between(&all, 50, 100).unwrap(), None);
    assert_eq!(
        e.changed_between(&all, 45, 100).unwrap(),
        Some((b"k".to_vec(), 50))
    );
    // Rollback marks are not changes: between 15 and 24, nothing.
    assert_eq!(e.changed_between(&all, 15, 24).unwrap(), None);
    assert_eq!(
        e.changed_between(&all, 15, 25).unwrap(),
        Some((b"k\0".to_vec(), 25))
    );
    assert_eq!(
        e.changed_between(&all, 0, 5).unwrap(),
        Some((b"j".to_vec(), 5))
    );
    let ts: Vec<u64> = e
        .versions_since(b"k", 30)
        .unwrap()
        .iter()
        .map(|r| r.ts)
        .collect();
    assert_eq!(ts, [50, 40, 30]);
}
