//! Commands applied the way a range's state machine applies them, one committed
//! batch per entry: the tests of each command's function (`writes`, `once`, `meta`,
//! `split`) through the dispatcher.

use std::collections::HashSet;

use shoal_storage::{keys, Engine, EngineOptions, KeySpan, StateKey};

use super::apply;
use crate::apply::{Apply, Effect};
use crate::command::{
    Command, CommandResponse, Compare, CompareOp, CompareTarget, Found, OpResult, Refusal, TxnOp,
    WriteOp,
};
use crate::meta::{decommissioning, descriptors};
use crate::range::{Frozen, RangeDescriptor, FIRST_RANGE_ID};
use crate::types::{LogId, StoredMembership};

pub struct Harness {
    pub engine: Engine,
    pub range_id: u64,
    pub membership: StoredMembership,
    pub descriptor: Option<RangeDescriptor>,
    pub frozen: Option<Frozen>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A meta range over every key, with members 1..=3.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        let nodes: std::collections::BTreeSet<u64> = [1, 2, 3].into();
        let m = openraft::Membership::new_with_defaults(vec![nodes], []);
        Self {
            engine,
            range_id: FIRST_RANGE_ID,
            membership: StoredMembership::new(None, m),
            descriptor: None,
            frozen: None,
            _dir: dir,
        }
    }

    pub fn run(&mut self, index: u64, cmd: Command) -> CommandResponse {
        let mut batch = self.engine.batch(self.range_id);
        let log_id = LogId::new(
            openraft::vote::leader_id_adv::LeaderId {
                term: 1,
                node_id: 1,
            },
            index,
        );
        let mut a = Apply {
            engine: &self.engine,
            batch: &mut batch,
            range_id: self.range_id,
            log_id,
            membership: &self.membership,
            descriptor: self.descriptor.as_ref(),
            ts: None,
            frozen: self.frozen,
        };
        let (resp, effect) = apply(&mut a, &cmd).unwrap();
        self.engine.commit(batch).unwrap();
        match effect {
            Effect::Split { left, .. } | Effect::Merged { left, .. } => {
                self.descriptor = Some(left)
            }
            Effect::Frozen(f) => self.frozen = f,
            Effect::None => {}
        }
        resp
    }
}

// ---- writes -------------------------------------------------------------

fn put(k: &str, v: &str) -> WriteOp {
    WriteOp::Put {
        key: k.into(),
        value: v.into(),
    }
}

#[test]
fn txn_compares_version_value_and_existence() {
    let mut h = Harness::new();
    h.run(3, Command::Write(vec![put("a", "1")]));
    let cas = |ver: u64| Command::Txn {
        compares: vec![Compare {
            key: b"a".to_vec(),
            op: CompareOp::Equal,
            target: CompareTarget::Version(ver),
        }],
        success: vec![TxnOp::Write(put("a", "2"))],
        failure: vec![TxnOp::Get { key: b"a".to_vec() }],
    };
    let r = h.run(4, cas(2));
    assert!(!r.succeeded);
    assert_eq!(
        r.results,
        vec![OpResult::Get(Some(Found {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
            version: 3
        }))]
    );
    let r = h.run(5, cas(3));
    assert!(r.succeeded);
    assert_eq!(r.results, vec![OpResult::Put(5)]);
    let missing = Compare {
        key: b"zz".to_vec(),
        op: CompareOp::Equal,
        target: CompareTarget::Exists(false),
    };
    assert!(missing.holds(None));
    let val = Compare {
        key: b"a".to_vec(),
        op: CompareOp::Greater,
        target: CompareTarget::Value(b"1".to_vec()),
    };
    assert!(val.holds(h.engine.get(b"a").unwrap().as_ref()));
    assert!(!val.holds(None));
}

#[test]
fn ops_in_one_command_see_each_other() {
    let mut h = Harness::new();
    h.run(1, Command::Write(vec![put("a", "1"), put("b", "1")]));
    let r = h.run(
        2,
        Command::Write(vec![
            put("c", "1"),
            WriteOp::DeleteRange {
                start: b"a".to_vec(),
                end: b"c\0".to_vec(),
            },
            put("b", "2"),
            WriteOp::Delete { key: b"a".to_vec() },
        ]),
    );
    assert_eq!(
        r.results,
        vec![
            OpResult::Put(2),
            OpResult::Deleted(3),
            OpResult::Put(2),
            OpResult::Deleted(0)
        ]
    );
    let e = &h.engine;
    assert_eq!(e.get(b"a").unwrap(), None);
    assert_eq!(e.get(b"b").unwrap().map(|v| v.value), Some(b"2".to_vec()));
    assert_eq!(e.get(b"c").unwrap(), None);
}

// ---- once ---------------------------------------------------------------

/// A put of `v` under "k" by client 9, as request `seq`.
fn once(v: &str, seq: u64, acked_below: u64) -> Command {
    Command::Once {
        client_id: 9,
        seq,
        acked_below,
        cmd: Box::new(Command::Write(vec![WriteOp::Put {
            key: b"k".to_vec(),
            value: v.into(),
        }])),
    }
}

fn value(h: &Harness) -> Option<Vec<u8>> {
    h.engine.get(b"k").unwrap().map(|v| v.value)
}

#[test]
fn a_retried_request_applies_once_and_gets_its_first_answer() {
    let mut h = Harness::new();
    assert_eq!(
        h.run(5, once("first", 1, 1)).results,
        vec![OpResult::Put(5)]
    );
    h.run(
        6,
        Command::Write(vec![WriteOp::Put {
            key: b"k".to_vec(),
            value: b"other".to_vec(),
        }]),
    );
    // The retry of request 1 answers as the first time and changes nothing.
    assert_eq!(
        h.run(7, once("first", 1, 1)).results,
        vec![OpResult::Put(5)]
    );
    assert_eq!(value(&h), Some(b"other".to_vec()));
    // Once the client reports request 1 answered, its record is dropped.
    h.run(8, once("second", 2, 2));
    let kept = |seq| {
        h.engine
            .get_range_local(1, &keys::request_suffix(9, seq))
            .unwrap()
    };
    assert_eq!(kept(1), None);
    assert!(kept(2).is_some());
}

/// Found by the majority-ring nemesis: an attempt of a put that timed out was
/// committed after the client had its answer (from another attempt) and had
/// reported it received; the late duplicate applied a second time, over a newer
/// write.
#[test]
fn a_late_duplicate_of_an_answered_request_never_applies() {
    let mut h = Harness::new();
    h.run(5, once("old", 1, 1));
    // The client got its answer and writes again, reporting request 1 received.
    h.run(6, once("new", 2, 2));
    // The other attempt of request 1 arrives late: refused, no effect.
    let late = h.run(7, once("old", 1, 1));
    assert_eq!(late.results, vec![OpResult::StaleRequest { low: 2 }]);
    assert!(!late.succeeded);
    assert_eq!(value(&h), Some(b"new".to_vec()));
}

/// Tried as a plain gRPC client would: a request whose seq is below its own
/// `acked_below` was answered OK with a version, and nothing was written. (The node
/// refuses it before proposing it; a replica applying one, proposed by an older node,
/// refuses it as well, recording the client's acknowledgement as every version does.)
#[test]
fn a_request_below_its_own_acknowledged_mark_is_refused_and_writes_nothing() {
    let mut h = Harness::new();
    let r = h.run(12, {
        let Command::Once { cmd, .. } = once("v", 3, 9) else {
            unreachable!()
        };
        Command::Once {
            client_id: 78,
            seq: 3,
            acked_below: 9,
            cmd,
        }
    });
    assert_eq!(r.results, vec![OpResult::StaleRequest { low: 9 }]);
    assert!(!r.succeeded);
    assert_eq!(value(&h), None);
    assert!(h
        .engine
        .get_range_local(1, &keys::request_suffix(78, 3))
        .unwrap()
        .is_none());
}

// ---- meta ---------------------------------------------------------------

#[test]
fn node_ids_are_never_given_twice() {
    let mut h = Harness::new();
    // Members 1..=3 exist: the first id allocated is 4, then 5.
    assert_eq!(
        h.run(1, Command::AllocNodeId).results,
        vec![OpResult::NodeId(4)]
    );
    assert_eq!(
        h.run(2, Command::AllocNodeId).results,
        vec![OpResult::NodeId(5)]
    );
    assert_eq!(
        h.run(3, Command::AllocRangeId).results,
        vec![OpResult::RangeId(2)]
    );
    assert_eq!(
        h.run(4, Command::AllocRangeId).results,
        vec![OpResult::RangeId(3)]
    );
}

#[test]
fn writes_keep_earlier_versions_readable_at_their_versions() {
    let mut h = Harness::new();
    h.run(1, Command::Write(vec![put("k", "one"), put("j", "x")]));
    h.run(2, Command::Write(vec![put("k", "two")]));
    let r = h.run(
        3,
        Command::Write(vec![WriteOp::DeleteRange {
            start: b"a".to_vec(),
            end: Vec::new(),
        }]),
    );
    assert_eq!(r.results, vec![OpResult::Deleted(2)]);
    // A delete of a key without a value writes nothing.
    h.run(
        4,
        Command::Write(vec![WriteOp::Delete {
            key: b"zz".to_vec(),
        }]),
    );
    let at = |h: &Harness, k: &str, ts| {
        h.engine
            .get_at(k.as_bytes(), ts)
            .unwrap()
            .map(|v| (v.version, String::from_utf8(v.value).unwrap()))
    };
    assert_eq!(at(&h, "k", 1), Some((1, "one".into())));
    assert_eq!(at(&h, "k", 2), Some((2, "two".into())));
    assert_eq!(at(&h, "k", 3), None);
    assert_eq!(at(&h, "j", 2), Some((1, "x".into())));
    assert_eq!(h.engine.get(b"j").unwrap(), None);
    assert!(h.engine.versions_of(b"zz").unwrap().is_empty());
}

#[test]
fn a_command_at_a_timestamp_writes_versions_at_it_and_a_retry_keeps_its_first_answer() {
    let mut h = Harness::new();
    let at = |ts, seq, v: &str| Command::At {
        ts,
        cmd: Box::new(Command::Once {
            client_id: 9,
            seq,
            acked_below: 1,
            cmd: Box::new(Command::Write(vec![put("k", v)])),
        }),
    };
    let r = h.run(1, at(1_000, 1, "one"));
    assert_eq!(
        (r.version, r.results.clone()),
        (1_000, vec![OpResult::Put(1_000)])
    );
    // The same request again (at another timestamp): its first answer, no new version.
    let again = h.run(2, at(2_000, 1, "one"));
    assert_eq!(again, r);
    h.run(3, at(3_000, 2, "two"));
    let versions: Vec<u64> = h
        .engine
        .versions_of(b"k")
        .unwrap()
        .iter()
        .map(|v| v.ts)
        .collect();
    assert_eq!(versions, [3_000, 1_000]);
    // Without a timestamp, the log index is the version.
    let r = h.run(4, Command::Write(vec![put("j", "x")]));
    assert_eq!(r.results, vec![OpResult::Put(4)]);
}

#[test]
fn the_timestamp_high_water_mark_only_rises_and_only_on_the_meta_range() {
    let mut h = Harness::new();
    assert_eq!(crate::meta::timestamp_high(&h.engine).unwrap(), 0);
    let reserve = |up_to| Command::ReserveTimestamps { up_to };
    assert_eq!(
        h.run(1, reserve(500)).results,
        [OpResult::TimestampHigh(500)]
    );
    // A lower reservation (an old leader's, applied late) never lowers the mark.
    assert_eq!(
        h.run(2, reserve(300)).results,
        [OpResult::TimestampHigh(500)]
    );
    assert_eq!(crate::meta::timestamp_high(&h.engine).unwrap(), 500);
    assert_eq!(
        h.run(3, reserve(900)).results,
        [OpResult::TimestampHigh(900)]
    );
    assert_eq!(crate::meta::timestamp_high(&h.engine).unwrap(), 900);
    // Any other range refuses it.
    h.range_id = 7;
    let r = h.run(4, reserve(2000));
    assert!(matches!(r.refusal(), Some(Refusal::Other(_))), "{r:?}");
    assert_eq!(crate::meta::timestamp_high(&h.engine).unwrap(), 900);
}

#[test]
fn the_routing_table_keeps_the_newest_descriptor_and_marks_read_back() {
    let mut h = Harness::new();
    let d = RangeDescriptor::new(2, &KeySpan::all());
    let (l, _) = d.split(b"m", 3);
    h.run(1, Command::PutDescriptors(vec![l.clone()]));
    // An older descriptor of the same range does not replace a newer one.
    h.run(2, Command::PutDescriptors(vec![d]));
    assert_eq!(descriptors(&h.engine).unwrap(), vec![l]);
    h.run(
        3,
        Command::SetDecommissioning {
            node_id: 7,
            on: true,
        },
    );
    h.run(
        4,
        Command::SetDecommissioning {
            node_id: 8,
            on: true,
        },
    );
    h.run(
        5,
        Command::SetDecommissioning {
            node_id: 7,
            on: false,
        },
    );
    assert_eq!(decommissioning(&h.engine).unwrap(), HashSet::from([8]));
}

// ---- split --------------------------------------------------------------

#[test]
fn a_split_cuts_the_descriptor_and_starts_the_right_half_at_the_split() {
    let mut h = Harness::new();
    h.descriptor = Some(RangeDescriptor::new(1, &KeySpan::all()));
    let split = |version| Command::Split {
        key: b"m".to_vec(),
        new_range_id: 5,
        expected_version: version,
    };
    // A split planned at another epoch version changes nothing.
    let r = h.run(3, split(7));
    assert!(matches!(r.refusal(), Some(Refusal::Other(_))), "{r:?}");
    assert_eq!(h.engine.state_get(5, StateKey::Created).unwrap(), None);
    let r = h.run(4, split(1));
    assert_eq!(r.results, vec![OpResult::RangeId(5)]);
    let left = h.descriptor.clone().unwrap();
    assert_eq!((left.end.as_slice(), left.epoch.version), (&b"m"[..], 2));
    assert!(h.engine.state_get(5, StateKey::Created).unwrap().is_some());
    assert!(h
        .engine
        .get_range_local(5, keys::DESCRIPTOR_SUFFIX)
        .unwrap()
        .is_some());
    // A write routed before the split into the right half's keys is refused.
    let w = h.run(
        5,
        Command::Write(vec![crate::command::WriteOp::Put {
            key: b"x".to_vec(),
            value: b"v".to_vec(),
        }]),
    );
    assert!(
        matches!(w.refusal(), Some(Refusal::KeyOutside { key, .. }) if key == b"x"),
        "{w:?}"
    );
    assert_eq!(h.engine.get(b"x").unwrap(), None);
}
