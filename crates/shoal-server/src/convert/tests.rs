use super::*;
use proptest::prelude::*;
use shoal_raft::{RangeDescriptor, RangeEpoch, ReplicaDescriptor};
use std::collections::BTreeMap;

const LIMITS: Limits = Limits {
    max_key_bytes: 16,
    max_value_bytes: 64,
    max_request_bytes: 256,
};

fn located(id: u64) -> LocatedRange {
    LocatedRange {
        desc: RangeDescriptor {
            range_id: id,
            start: b"a".to_vec(),
            end: b"m".to_vec(),
            epoch: RangeEpoch {
                version: 3,
                conf_ver: 5,
            },
            replicas: vec![
                ReplicaDescriptor {
                    node_id: 1,
                    voter: true,
                },
                ReplicaDescriptor {
                    node_id: 2,
                    voter: false,
                },
            ],
        },
        addrs: BTreeMap::from([(1, "n1:7070".to_string())]),
    }
}

/// One error of every variant, with the gRPC code its status must have.
pub(crate) fn every_error() -> Vec<(Error, Code)> {
    vec![
        (
            Error::NotLeader {
                range_id: 4,
                leader_id: Some(2),
                leader_addr: Some("n2:7070".into()),
            },
            Code::Unavailable,
        ),
        (
            Error::EpochMismatch {
                range_id: 4,
                version: 3,
                named: 2,
                current: vec![located(4)],
            },
            Code::FailedPrecondition,
        ),
        (
            Error::KeyNotInRange {
                range_id: 4,
                message: "outside".into(),
                current: vec![located(4), located(5)],
            },
            Code::FailedPrecondition,
        ),
        (
            Error::CrossRange {
                current: vec![located(4)],
            },
            Code::InvalidArgument,
        ),
        (Error::RangeNotFound("none".into()), Code::NotFound),
        (Error::NotReady { range_id: 4 }, Code::Unavailable),
        (Error::NotInitialized("not yet".into()), Code::Unavailable),
        (Error::OutcomeUnknown("maybe".into()), Code::Unavailable),
        (Error::NoQuorum("alone".into()), Code::Unavailable),
        (Error::ShuttingDown("bye".into()), Code::Unavailable),
        (Error::Unavailable("later".into()), Code::Unavailable),
        (
            Error::invalid(ErrorCode::KeyTooLarge, "big"),
            Code::InvalidArgument,
        ),
        (Error::UnknownNode(9), Code::NotFound),
        (Error::Refused("no".into()), Code::FailedPrecondition),
        (
            Error::AlreadyInitialized("done".into()),
            Code::FailedPrecondition,
        ),
        (
            Error::PeerUnreachable("gone".into()),
            Code::FailedPrecondition,
        ),
        (
            Error::WrongNode { target: 3, me: 4 },
            Code::FailedPrecondition,
        ),
        (
            Error::RangeOverlap {
                range_id: 4,
                overlapping: vec![1],
            },
            Code::Unavailable,
        ),
        (
            Error::StaleRequest {
                client_id: 78,
                seq: 3,
                low: 9,
            },
            Code::FailedPrecondition,
        ),
        (
            Error::Peer {
                addr: "bootstrapping peer n3:7070".into(),
                status: Status::from(Error::AlreadyInitialized("taken".into())),
            },
            Code::FailedPrecondition,
        ),
        (Error::Storage("disk".into()), Code::Internal),
        (Error::Internal("bug".into()), Code::Internal),
    ]
}

#[test]
fn every_error_becomes_a_status_with_its_code_and_details() {
    use pb::error_detail::Detail;
    for (e, grpc) in every_error() {
        let code = e.code();
        let message = e.to_string();
        let s = Status::from(e.clone());
        assert_eq!(s.code(), grpc, "{e:?}");
        assert_eq!(ErrorCode::of(&s), Some(code), "{e:?}");
        assert_eq!(s.message(), message);
        let detail = shoal_proto::error::detail(&s).unwrap().detail;
        match (&e, detail) {
            (Error::NotLeader { .. }, Some(Detail::NotLeader(nl))) => {
                assert_eq!((nl.range_id, nl.leader_id), (4, 2));
                assert_eq!(nl.leader_addr, "n2:7070");
            }
            (
                Error::EpochMismatch { current, .. }
                | Error::KeyNotInRange { current, .. }
                | Error::CrossRange { current },
                Some(Detail::EpochMismatch(m)),
            ) => {
                assert_eq!(m.current.len(), current.len());
                let d = &m.current[0];
                assert_eq!((d.range_id, d.epoch.unwrap().version), (4, 3));
                assert_eq!(d.replicas[0].addr, "n1:7070");
                assert_eq!(d.replicas[1].role, "learner");
            }
            (
                Error::NotLeader { .. }
                | Error::EpochMismatch { .. }
                | Error::KeyNotInRange { .. }
                | Error::CrossRange { .. },
                d,
            ) => panic!("{e:?} lost its detail: {d:?}"),
            (_, None) => {}
            (_, d) => panic!("{e:?} carries an unexpected detail {d:?}"),
        }
    }
    // A peer's answer is relayed as it came.
    let remote = Status::from(Error::NoQuorum("x".into()));
    let relayed = Status::from(Error::Remote(remote.clone()));
    assert_eq!(
        (relayed.code(), relayed.details()),
        (remote.code(), remote.details())
    );
}

#[test]
fn every_request_round_trips_through_its_domain_form() {
    fn round<R: KvRpc + Clone + PartialEq + std::fmt::Debug>(wire: R) {
        let req = wire.clone().into_request(&LIMITS).unwrap();
        assert_eq!(R::from_request(req), wire);
    }
    let target = Some(pb::RangeTarget {
        range_id: 4,
        epoch: Some(pb::RangeEpoch {
            version: 3,
            conf_ver: 0,
        }),
    });
    let rid = Some(pb::RequestId {
        client_id: 7,
        seq: 5,
        acked_below: 5,
    });
    round(pb::GetRequest {
        key: b"k".to_vec(),
        consistency: pb::Consistency::Stale as i32,
        read_ts: 42,
        target,
    });
    round(pb::ScanRequest {
        start: b"a".to_vec(),
        end: b"z".to_vec(),
        limit: 10,
        consistency: 0,
        reverse: true,
        read_ts: 0,
        target,
    });
    round(pb::PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        request_id: rid,
        target,
    });
    round(pb::DeleteRequest {
        key: b"k".to_vec(),
        request_id: rid,
        target: None,
    });
    round(pb::DeleteRangeRequest {
        start: b"a".to_vec(),
        end: b"m".to_vec(),
        request_id: None,
        target,
    });
    round(pb::BatchRequest {
        ops: vec![
            shoal_client::ops::write_put("a", "1"),
            shoal_client::ops::write_delete("b"),
            shoal_client::ops::write_delete_range("c", "d"),
        ],
        request_id: rid,
        target,
    });
    round(pb::TxnRequest {
        compares: vec![
            shoal_client::ops::version_is("a", 3),
            shoal_client::ops::value_cmp("b", pb::compare::Op::Greater, "x"),
            shoal_client::ops::exists("c", false),
        ],
        success: vec![
            shoal_client::ops::put("a", "2"),
            shoal_client::ops::get("b"),
        ],
        failure: vec![shoal_client::ops::delete("c")],
        request_id: rid,
        target,
    });
}

#[test]
fn a_request_id_below_its_own_acknowledged_mark_is_refused_before_routing() {
    let put = pb::PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        request_id: Some(pb::RequestId {
            client_id: 78,
            seq: 3,
            acked_below: 9,
        }),
        target: None,
    };
    let e = put.into_request(&LIMITS).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}

fn within(op: &WriteOp) -> bool {
    match op {
        WriteOp::Put { key, value } => !key.is_empty() && key.len() <= 16 && value.len() <= 64,
        WriteOp::Delete { key } => !key.is_empty() && key.len() <= 16,
        WriteOp::DeleteRange { start, end } => {
            start.len() <= 16 && end.len() <= 16 && (end.is_empty() || start <= end)
        }
    }
}

#[test]
fn the_kv_api_neither_writes_nor_reaches_with_open_spans_the_sql_tables_keys() {
    let sql_key = vec![0xFF, b't', 1];
    let put = pb::PutRequest {
        key: sql_key.clone(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let e = put.into_request(&LIMITS).unwrap_err();
    assert_eq!(Status::from(e).code(), Code::InvalidArgument);
    // An open end stops where the SQL tables begin; an explicit end past it too.
    for (start, end, want) in [
        (&b"a"[..], &b""[..], vec![0xFF]),
        (b"a", &[0xFF, 9][..], vec![0xFF]),
        (&[0xFF, 1][..], b"", vec![0xFF, 1]),
    ] {
        let req = pb::DeleteRangeRequest {
            start: start.to_vec(),
            end: end.to_vec(),
            ..Default::default()
        }
        .into_request(&LIMITS)
        .unwrap();
        let Op::Write(WriteOp::DeleteRange { end, .. }) = req.op else {
            panic!("not a delete range: {req:?}");
        };
        assert_eq!(end, want);
    }
    let req = pb::ScanRequest {
        start: b"a".to_vec(),
        ..Default::default()
    }
    .into_request(&LIMITS)
    .unwrap();
    let Op::Scan { end, .. } = req.op else {
        panic!("not a scan: {req:?}");
    };
    assert_eq!(end, vec![0xFF]);
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    // What the `requests` fuzz target does (tests/fuzz), on every run: a batch
    // passes only if every op is within the limits, and then whole.
    #[test]
    fn a_batch_passes_only_within_the_limits(
        ops in proptest::collection::vec((0u8..3, bytes(20), bytes(80)), 0..6)
    ) {
        let ops: Vec<pb::WriteOp> = ops
            .into_iter()
            .map(|(kind, a, b)| {
                use pb::write_op::Op;
                let op = match kind {
                    0 => Op::Put(pb::PutOp { key: a, value: b }),
                    1 => Op::Delete(pb::DeleteOp { key: a }),
                    _ => Op::DeleteRange(pb::DeleteRangeOp { start: a, end: b }),
                };
                pb::WriteOp { op: Some(op) }
            })
            .collect();
        let n = ops.len();
        let sizes: usize = ops
            .iter()
            .map(|o| match &o.op {
                Some(pb::write_op::Op::Put(p)) => p.key.len() + p.value.len(),
                Some(pb::write_op::Op::Delete(d)) => d.key.len(),
                Some(pb::write_op::Op::DeleteRange(r)) => r.start.len() + r.end.len(),
                None => 0,
            })
            .sum();
        match batch(&LIMITS, ops) {
            Ok(out) => {
                prop_assert_eq!(out.len(), n);
                prop_assert!(out.iter().all(within));
                prop_assert!(sizes <= 256);
            }
            Err(e) => prop_assert_eq!(Status::from(e).code(), Code::InvalidArgument),
        }
    }

    #[test]
    fn arbitrary_bytes_as_requests_never_panic(data in bytes(200)) {
        if let Ok(r) = pb::BatchRequest::decode(data.as_slice()) {
            let _ = r.into_request(&LIMITS);
        }
        if let Ok(r) = pb::TxnRequest::decode(data.as_slice()) {
            let _ = r.into_request(&LIMITS);
        }
        if let Ok(r) = pb::ScanRequest::decode(data.as_slice()) {
            let _ = r.into_request(&LIMITS);
        }
    }
}

/// Every error of the node, as the SDK reads it back: the same stable code, and the
/// retry decision that code calls for.
#[test]
fn every_error_reaches_the_sdk_with_its_code_and_decision() {
    use shoal_client::retry::{decide, Decision};
    for (e, _) in every_error() {
        let code = e.code();
        let s = Status::from(e.clone());
        let sdk = shoal_client::Error::from_status("n1:7070", s.clone());
        assert_eq!(sdk.code(), Some(code.as_str()), "{e:?} -> {sdk:?}");
        let decision = decide(&s, false, true);
        let want = match &e {
            Error::NotLeader { .. } => Decision::Redirect {
                leader: Some("n2:7070".into()),
            },
            Error::EpochMismatch { .. } | Error::KeyNotInRange { .. } => {
                let Decision::Reroute { current } = &decision else {
                    panic!("{e:?}: {decision:?}")
                };
                assert!(!current.is_empty(), "{e:?} sent no descriptors");
                decision.clone()
            }
            Error::RangeNotFound(_) | Error::NotReady { .. } => Decision::Reroute {
                current: Vec::new(),
            },
            Error::NotInitialized(_)
            | Error::ShuttingDown(_)
            | Error::NoQuorum(_)
            | Error::RangeOverlap { .. } => Decision::Retry { unreachable: false },
            Error::OutcomeUnknown(_) | Error::Unavailable(_) => Decision::RetryIfIdempotent,
            _ => Decision::Fail,
        };
        assert_eq!(decision, want, "{e:?}");
    }
}
