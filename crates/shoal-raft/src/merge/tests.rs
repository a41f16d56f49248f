//! A merge's steps applied the way both ranges' state machines apply them, on one
//! node's store.

use shoal_storage::{keys, KeySpan, StateKey};

use crate::command::{Command, OpResult, Refusal, WriteOp};
use crate::dispatch::tests::Harness;
use crate::range::{Frozen, RangeDescriptor};

fn put(k: &str) -> Command {
    Command::Write(vec![WriteOp::Put {
        key: k.into(),
        value: b"v".to_vec(),
    }])
}

/// Runs `cmd` as range `d`'s entry at `index`, frozen as `frozen` says; returns the
/// response and the range's state after it.
fn on(
    h: &mut Harness,
    d: &mut RangeDescriptor,
    frozen: &mut Option<Frozen>,
    index: u64,
    cmd: Command,
) -> crate::command::CommandResponse {
    h.range_id = d.range_id;
    h.descriptor = Some(d.clone());
    h.frozen = *frozen;
    let r = h.run(index, cmd);
    *d = h.descriptor.clone().unwrap();
    *frozen = h.frozen;
    r
}

#[test]
fn a_frozen_right_range_is_absorbed_by_its_left_neighbour_once() {
    let mut h = Harness::new();
    let whole = RangeDescriptor::new(2, &KeySpan::all());
    let (mut left, mut right) = whole.split(b"m", 3);
    let (mut lf, mut rf) = (None, None);
    let r = on(&mut h, &mut right, &mut rf, 1, put("x"));
    assert!(r.refusal().is_none(), "{r:?}");

    // Frozen: its writes are refused with their key (the sender routes them again).
    let r = on(
        &mut h,
        &mut right,
        &mut rf,
        2,
        Command::Freeze {
            left_id: 2,
            token: 10,
        },
    );
    assert!(r.refusal().is_none(), "{r:?}");
    assert_eq!(
        rf,
        Some(Frozen {
            left_id: 2,
            token: 10
        })
    );
    let w = on(&mut h, &mut right, &mut rf, 3, put("y"));
    assert!(
        matches!(w.refusal(), Some(Refusal::KeyOutside { key, .. }) if key == b"y"),
        "{w:?}"
    );
    assert_eq!(h.engine.get(b"y").unwrap(), None);
    // Another attempt cannot freeze it again; the same one can.
    let r = on(
        &mut h,
        &mut right,
        &mut rf,
        4,
        Command::Freeze {
            left_id: 2,
            token: 11,
        },
    );
    assert!(matches!(r.refusal(), Some(Refusal::Other(_))), "{r:?}");
    let r = on(
        &mut h,
        &mut right,
        &mut rf,
        5,
        Command::Freeze {
            left_id: 2,
            token: 10,
        },
    );
    assert!(r.refusal().is_none(), "{r:?}");

    // An attempt fenced off never merges; a later one does, once.
    let f = on(
        &mut h,
        &mut left,
        &mut lf,
        6,
        Command::FenceMerge {
            right_id: 3,
            token: 9,
        },
    );
    assert_eq!(f.results, vec![OpResult::MergeFenced { merged: false }]);
    let stale = Command::Merge {
        right: right.clone(),
        token: 9,
    };
    let r = on(&mut h, &mut left, &mut lf, 7, stale);
    assert!(matches!(r.refusal(), Some(Refusal::Other(_))), "{r:?}");
    assert_eq!(left.end, b"m");
    let r = on(
        &mut h,
        &mut left,
        &mut lf,
        8,
        Command::Merge {
            right: right.clone(),
            token: 10,
        },
    );
    assert!(r.refusal().is_none(), "{r:?}");
    assert!(left.start.is_empty() && left.end.is_empty(), "{left:?}");
    assert_eq!(left.epoch.version, right.epoch.version + 1);
    assert_eq!(h.engine.state_get(3, StateKey::Created).unwrap(), None);
    let f = on(
        &mut h,
        &mut left,
        &mut lf,
        9,
        Command::FenceMerge {
            right_id: 3,
            token: 10,
        },
    );
    assert_eq!(f.results, vec![OpResult::MergeFenced { merged: true }]);
    let again = Command::Merge {
        right: right.clone(),
        token: 12,
    };
    let r = on(&mut h, &mut left, &mut lf, 10, again);
    assert!(matches!(r.refusal(), Some(Refusal::Other(_))), "{r:?}");

    // The right range's keys are the left's now, and its writes go there.
    assert!(h.engine.get(b"x").unwrap().is_some());
    let w = on(&mut h, &mut left, &mut lf, 11, put("y"));
    assert!(w.refusal().is_none(), "{w:?}");
    assert!(h.engine.get(b"y").unwrap().is_some());
    let stored = h
        .engine
        .get_range_local(2, keys::DESCRIPTOR_SUFFIX)
        .unwrap();
    assert!(stored.is_some());
}

#[test]
fn a_merge_is_refused_unless_the_ranges_touch_on_the_same_replicas() {
    let mut h = Harness::new();
    let whole = RangeDescriptor::new(2, &KeySpan::all());
    let (mut left, rest) = whole.split(b"g", 3);
    let (gap, right) = rest.split(b"m", 4);
    let mut lf = None;
    // Not adjacent: `gap` lies between.
    let r = on(
        &mut h,
        &mut left,
        &mut lf,
        1,
        Command::Merge {
            right: right.clone(),
            token: 1,
        },
    );
    assert!(matches!(r.refusal(), Some(Refusal::Other(_))), "{r:?}");
    // Adjacent, but on other nodes.
    let elsewhere = gap.with_replicas(&[7].into(), [7]);
    let r = on(
        &mut h,
        &mut left,
        &mut lf,
        2,
        Command::Merge {
            right: elsewhere,
            token: 1,
        },
    );
    assert!(matches!(r.refusal(), Some(Refusal::Other(_))), "{r:?}");
    assert_eq!(left.end, b"g");
    // A thaw of the attempt that froze a range lets it take writes again.
    let (mut g, mut gf) = (gap, None);
    on(
        &mut h,
        &mut g,
        &mut gf,
        3,
        Command::Freeze {
            left_id: 2,
            token: 5,
        },
    );
    let r = on(&mut h, &mut g, &mut gf, 4, Command::Thaw { token: 4 });
    assert!(matches!(r.refusal(), Some(Refusal::Other(_))), "{r:?}");
    let r = on(&mut h, &mut g, &mut gf, 5, Command::Thaw { token: 5 });
    assert!(r.refusal().is_none() && gf.is_none(), "{r:?}");
    let w = on(&mut h, &mut g, &mut gf, 6, put("h"));
    assert!(w.refusal().is_none(), "{w:?}");
}
