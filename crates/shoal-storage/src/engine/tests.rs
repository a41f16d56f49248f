use super::*;

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
        b.put(&e, k, 1, &[0u8; 91]);
    }
    e.commit(b).unwrap();
    // Each pair: data key (2 bytes) + stored value (8-byte version + 91).
    let all = e.span_stats(&KeySpan::all(), 0).unwrap();
    assert_eq!((all.bytes, all.keys), (4 * 101, 4));
    assert_eq!(all.middle, Some(b"b".to_vec()));
    let under = e.span_stats(&KeySpan::all(), 4 * 101).unwrap();
    assert_eq!((under.bytes, under.middle), (4 * 101, None));
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
        b.put(&e, k, 1, b"v");
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
    b.put(&e, b"k1", 5, b"v1");
    b.put(&e, b"k2", 5, b"v2");
    b.put(&e, b"k3", 5, b"v3");
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
    b.delete_span(
        &e,
        &KeySpan {
            start: b"k2".to_vec(),
            end: Vec::new(),
        },
    );
    e.commit(b).unwrap();
    assert_eq!(e.keys_in(&KeySpan::all()).unwrap(), vec![b"k1".to_vec()]);
    assert_eq!(
        e.state_get(1, StateKey::Applied).unwrap(),
        Some(b"5".to_vec())
    );
}
