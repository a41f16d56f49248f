//! Bad input gets a clear error with a stable code, never a panic, never a partial
//! write; the node keeps serving afterwards. One table per surface: the SDK's
//! requests, raw bytes on the gRPC and HTTP ports, the internal Raft and Peer
//! services, request ids a node will not apply, flags and env values.

use shoal_client::{ops, Client, ClientOptions, Error};
use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

fn code(e: &Error) -> &str {
    e.code().unwrap_or("")
}

/// Three nodes with small limits (64-byte keys, 1 KiB values, 4 KiB requests), which
/// keep the tests light; the defaults are checked on their own.
async fn small_limits_cluster() -> TestCluster {
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend([
        "--max-key-bytes",
        "64",
        "--max-value-bytes",
        "1024",
        "--max-request-bytes",
        "4096",
    ]);
    TestCluster::start_initialized(3, &flags).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_empty_input_is_refused_whole() {
    let c = small_limits_cluster().await;
    let client = c.client();

    let e = client.put("", "v").await.unwrap_err();
    assert_eq!(code(&e), "EMPTY_KEY", "{e}");
    let e = client.get("").await.unwrap_err();
    assert_eq!(code(&e), "EMPTY_KEY", "{e}");
    let e = client.put("k".repeat(65), "v").await.unwrap_err();
    assert_eq!(code(&e), "KEY_TOO_LARGE", "{e}");
    assert!(e.to_string().contains("limit is 64"), "{e}");
    let e = client.put("big", vec![0u8; 1025]).await.unwrap_err();
    assert_eq!(code(&e), "VALUE_TOO_LARGE", "{e}");
    assert_eq!(client.get("big").await.unwrap(), None);

    // A batch over the request limit: nothing of it is written.
    let ops: Vec<_> = (0..5)
        .map(|i| ops::write_put(format!("batch-{i}"), vec![b'v'; 1000]))
        .collect();
    let e = client.batch(ops).await.unwrap_err();
    assert_eq!(code(&e), "REQUEST_TOO_LARGE", "{e}");
    // A batch with one bad op among good ones: nothing of it is written either.
    let ops = vec![
        ops::write_put("good-1", "v"),
        ops::write_put("", "v"),
        ops::write_put("good-2", "v"),
    ];
    let e = client.batch(ops).await.unwrap_err();
    assert_eq!(code(&e), "EMPTY_KEY", "{e}");
    assert!(client.scan("batch-", "batch.", 0).await.unwrap().is_empty());
    assert_eq!(client.get("good-1").await.unwrap(), None);
    let e = client.batch(vec![]).await.unwrap_err();
    assert_eq!(code(&e), "INVALID_ARGUMENT", "{e}");

    // Malformed requests: an op with no operation, a compare without its operand,
    // a reversed span.
    let e = client
        .batch(vec![shoal_client::WriteOp { op: None }])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "INVALID_ARGUMENT", "{e}");
    let mut cmp = ops::version_is("k", 1);
    cmp.operand = None;
    let e = client
        .txn(vec![cmp], vec![ops::put("k", "v")], vec![])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "INVALID_ARGUMENT", "{e}");
    assert_eq!(client.get("k").await.unwrap(), None);
    let e = client.delete_range("z", "a").await.unwrap_err();
    assert_eq!(code(&e), "INVALID_ARGUMENT", "{e}");

    // Every node still serves.
    for i in 0..3 {
        let v = c
            .client_via(i)
            .put(format!("after-{i}"), "ok")
            .await
            .unwrap();
        assert!(v > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_are_8_kib_keys_and_4_mib_values() {
    let c = TestCluster::start_initialized(1, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    client.put("k".repeat(8 << 10), "v").await.unwrap();
    let e = client
        .put("k".repeat((8 << 10) + 1), "v")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "KEY_TOO_LARGE", "{e}");
    client.put("v-max", vec![1u8; 4 << 20]).await.unwrap();
    assert_eq!(
        client.get("v-max").await.unwrap().unwrap().value.len(),
        4 << 20
    );
    let e = client
        .put("v-over", vec![1u8; (4 << 20) + 1])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VALUE_TOO_LARGE", "{e}");
    assert_eq!(client.get("v-over").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_is_reported_as_unavailable() {
    let port = shoal_tests::free_port();
    let opts = ClientOptions {
        retry_deadline: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let client = Client::with_options([format!("127.0.0.1:{port}")], opts).unwrap();
    let e = client.get("k").await.unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");

    let out = shoal(&[
        "kv",
        "get",
        "k",
        "--host",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unavailable"), "{err}");
}

#[test]
fn wrong_flags_are_usage_errors() {
    let out = shoal(&["kv", "get"]);
    assert_eq!(out.status.code(), Some(2));
    let out = shoal(&["kv", "get", "k", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
    let out = shoal(&[
        "start",
        "--data-dir",
        "/tmp/x",
        "--listen-addr",
        "not-an-addr",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = shoal(&["start", "--data-dir", "/tmp/x", "--sql-addr", "5432"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sql-addr"));
    let out = shoal(&["start", "--data-dir", "/tmp/x", "--peer-addr", "7071"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--peer-addr"));
    let out = shoal(&["start", "--data-dir", "/tmp/x", "--read-policy", "trust-me"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--read-policy") && err.contains("read-index"),
        "{err}"
    );
    let out = shoal(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    // Semantically wrong values are refused by validation with a message naming the flag.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    for (flag, bad) in [
        ("--join", "nohost"),
        ("--gc-ttl", "0s"),
        ("--split-load-window", "500ms"),
    ] {
        let out = shoal(&[
            "start",
            "--data-dir",
            &d,
            "--listen-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--sql-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
            flag,
            bad,
        ]);
        assert_eq!(out.status.code(), Some(1), "{flag} {bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flag),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Sends raw bytes as a gRPC message: what a broken or hostile client can put on the
/// wire, past any SDK.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let v = buf.chunk().to_vec();
        buf.advance(v.len());
        Ok(Some(v))
    }
}

async fn raw_call(addr: &str, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let method = http::uri::PathAndQuery::from_static(path);
    match grpc
        .unary(tonic::Request::new(body), method, RawCodec)
        .await
    {
        Ok(r) => panic!("{path} accepted bad input: {:?}", r.into_inner()),
        Err(s) => s,
    }
}

/// Writes `bytes` on a fresh TCP connection to `addr` and returns what comes back
/// before the server closes it (or 5 s pass).
fn raw_tcp(addr: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Every bad input on the wire we know of, each with the exact error it gets; the
/// node serves afterwards and nothing was written. (Keys outside the range a request
/// names join this table when ranges split.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_wire_input_gets_its_exact_error_and_the_node_keeps_serving() {
    use prost::Message;
    use shoal_proto::v1 as pb;
    use tonic::Code;
    let c = small_limits_cluster().await;
    let addr = c.nodes[0].grpc.clone();
    let client = c.client();
    let node_id = client.status_of(&addr).await.unwrap().node_id;

    let valid_put = pb::PutRequest {
        target: None,
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        request_id: None,
    }
    .encode_to_vec();
    let get_unknown_consistency = pb::GetRequest {
        target: None,
        key: b"k".to_vec(),
        consistency: 7,
        read_ts: 0,
    }
    .encode_to_vec();
    // A read at timestamp 1: long before the retention window.
    let get_below_safe_point = pb::GetRequest {
        target: None,
        key: b"k".to_vec(),
        consistency: 0,
        read_ts: 1,
    }
    .encode_to_vec();
    let scan_below_safe_point = pb::ScanRequest {
        start: b"a".to_vec(),
        read_ts: 1,
        ..Default::default()
    }
    .encode_to_vec();
    let timestamps = |count: u64| pb::TxnTimestampsRequest { count }.encode_to_vec();
    let step = |step: Vec<u8>| pb::TxnStepRequest { step, target: None }.encode_to_vec();
    let not_a_step = shoal_raft::codec::encode(&shoal_raft::Command::Write(vec![
        shoal_raft::WriteOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    ]))
    .unwrap();
    let step_without_keys = shoal_raft::codec::encode(&shoal_raft::Command::CommitKeys {
        start_ts: 1,
        commit_ts: 2,
        keys: Vec::new(),
    })
    .unwrap();
    // A JoinRequest whose `addr` (a string) is not UTF-8.
    let join_not_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
    let raft = |range_id: u64, target_node_id: u64, payload: &[u8]| {
        pb::RaftMessage {
            range_id,
            payload: payload.to_vec(),
            target_node_id,
        }
        .encode_to_vec()
    };
    // Node-level calls carry the same envelope, as a `PeerMessage`.
    let peer = |range_id: u64, target_node_id: u64, payload: &[u8]| {
        pb::PeerMessage {
            range_id,
            payload: payload.to_vec(),
            target_node_id,
        }
        .encode_to_vec()
    };
    // A range 42 over every key: it overlaps range 1 on every node.
    let create_42 = shoal_raft::codec::encode(&shoal_raft::RangeDescriptor::new(
        42,
        &shoal_storage::KeySpan::all(),
    ))
    .unwrap();
    // (what, method, body, gRPC code, shoal code or message fragment)
    let table: Vec<(&str, &'static str, Vec<u8>, Code, &str)> = vec![
        (
            "truncated protobuf",
            "/shoal.v1.Kv/Put",
            valid_put[..valid_put.len() - 1].to_vec(),
            Code::Internal,
            "failed to decode Protobuf message",
        ),
        (
            "garbage protobuf",
            "/shoal.v1.Kv/Put",
            vec![0xff; 12],
            Code::Internal,
            "failed to decode Protobuf message",
        ),
        (
            "invalid UTF-8 in a string field",
            "/shoal.v1.Peer/Join",
            join_not_utf8,
            Code::Internal,
            "not UTF-8",
        ),
        (
            "message over the size limit",
            "/shoal.v1.Kv/Put",
            vec![0u8; 2 << 20],
            Code::OutOfRange,
            "message length too large",
        ),
        (
            "unknown enum value",
            "/shoal.v1.Kv/Get",
            get_unknown_consistency,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a get below the garbage collection's safe point",
            "/shoal.v1.Kv/Get",
            get_below_safe_point,
            Code::FailedPrecondition,
            "SNAPSHOT_TOO_OLD",
        ),
        (
            "a scan below the garbage collection's safe point",
            "/shoal.v1.Kv/Scan",
            scan_below_safe_point,
            Code::FailedPrecondition,
            "SNAPSHOT_TOO_OLD",
        ),
        (
            "an undecodable transaction step",
            "/shoal.v1.Kv/TxnStep",
            step(vec![0xff; 9]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a plain write sent as a transaction step",
            "/shoal.v1.Kv/TxnStep",
            step(not_a_step),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a transaction step touching no key",
            "/shoal.v1.Kv/TxnStep",
            step(step_without_keys),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "no timestamps asked of the oracle by a peer",
            "/shoal.v1.Peer/Timestamps",
            pb::TimestampsRequest { count: 0 }.encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "no timestamps asked for",
            "/shoal.v1.Txn/Timestamps",
            timestamps(0),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "more timestamps than one call may take",
            "/shoal.v1.Txn/Timestamps",
            timestamps(1 << 20),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a transaction's handle no node gave",
            "/shoal.v1.Txn/Get",
            pb::TxnGetRequest {
                handle: 42,
                key: b"k".to_vec(),
            }
            .encode_to_vec(),
            Code::NotFound,
            "TXN_NOT_FOUND",
        ),
        (
            "a transaction's put of an empty key",
            "/shoal.v1.Txn/Put",
            pb::TxnPutRequest {
                handle: 42,
                key: Vec::new(),
                value: b"v".to_vec(),
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "EMPTY_KEY",
        ),
        (
            "a transaction of an unknown isolation",
            "/shoal.v1.Txn/Begin",
            pb::TxnBeginRequest {
                isolation: 9,
                read_only: false,
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a put of a SQL table's key (0xFF...)",
            "/shoal.v1.Kv/Put",
            pb::PutRequest {
                key: b"\xfft-row".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "0xFF",
        ),
        (
            "a delete-range starting among the SQL tables' keys",
            "/shoal.v1.Kv/DeleteRange",
            pb::DeleteRangeRequest {
                start: b"\xfft".to_vec(),
                end: b"\xfft\xff".to_vec(),
                ..Default::default()
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "0xFF",
        ),
        (
            "a client's prewrite of a SQL table's key",
            "/shoal.v1.Kv/Prewrite",
            pb::PrewriteRequest {
                start_ts: 1 << 40,
                primary: b"\xfft-row".to_vec(),
                puts: vec![pb::PutOp {
                    key: b"\xfft-row".to_vec(),
                    value: b"v".to_vec(),
                }],
                ttl_ms: 1000,
                ..Default::default()
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "0xFF",
        ),
        (
            "garbage as a client's prewrite",
            "/shoal.v1.Kv/Prewrite",
            vec![0xff; 12],
            Code::Internal,
            "failed to decode Protobuf message",
        ),
        (
            "a client's prewrite without its start timestamp",
            "/shoal.v1.Kv/Prewrite",
            pb::PrewriteRequest {
                primary: b"k".to_vec(),
                puts: vec![pb::PutOp {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                }],
                ttl_ms: 1000,
                ..Default::default()
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a client's prewrite of a value over the limit",
            "/shoal.v1.Kv/Prewrite",
            pb::PrewriteRequest {
                start_ts: 1 << 40,
                primary: b"k".to_vec(),
                puts: vec![pb::PutOp {
                    key: b"k".to_vec(),
                    value: vec![b'v'; 1025],
                }],
                ttl_ms: 1000,
                ..Default::default()
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "VALUE_TOO_LARGE",
        ),
        (
            "a finish of a transaction without its start timestamp",
            "/shoal.v1.Txn/Finish",
            pb::TxnFinishRequest {
                txns: vec![pb::FinishTxn {
                    primary: b"k".to_vec(),
                    keys: vec![b"k".to_vec()],
                    ..Default::default()
                }],
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a commit of a transaction no node gave",
            "/shoal.v1.Txn/Commit",
            pb::TxnCommitRequest { handle: 7 }.encode_to_vec(),
            Code::NotFound,
            "TXN_NOT_FOUND",
        ),
        (
            "unknown method",
            "/shoal.v1.Kv/Frobnicate",
            valid_put.clone(),
            Code::Unimplemented,
            "",
        ),
        (
            "unknown service",
            "/nope.v1.Nope/Call",
            valid_put.clone(),
            Code::Unimplemented,
            "",
        ),
        (
            "unknown range id",
            "/shoal.v1.Raft/AppendEntries",
            raft(999, 0, b""),
            Code::NotFound,
            "RANGE_NOT_FOUND",
        ),
        (
            "message for another node id",
            "/shoal.v1.Raft/Vote",
            raft(1, node_id + 1000, b""),
            Code::FailedPrecondition,
            "WRONG_NODE",
        ),
        (
            "undecodable raft payload",
            "/shoal.v1.Raft/Vote",
            raft(1, node_id, &[0xff; 3]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "read index of an unknown range",
            "/shoal.v1.Raft/ReadIndex",
            raft(42, 0, b""),
            Code::NotFound,
            "RANGE_NOT_FOUND",
        ),
        (
            "undecodable replica to create",
            "/shoal.v1.Peer/CreateReplica",
            peer(42, node_id, &[0xff; 3]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "replica to create for another node id",
            "/shoal.v1.Peer/CreateReplica",
            peer(42, node_id + 1000, &create_42),
            Code::FailedPrecondition,
            "WRONG_NODE",
        ),
        (
            "replica to create overlapping one the node holds",
            "/shoal.v1.Peer/CreateReplica",
            peer(42, node_id, &create_42),
            Code::Unavailable,
            "RANGE_OVERLAP",
        ),
        (
            // A node of the version before calls the Peer methods at their old paths.
            "undecodable replica to create, at its path of the version before",
            "/shoal.v1.Raft/CreateReplica",
            raft(42, node_id, &[0xff; 3]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "undecodable heartbeat",
            "/shoal.v1.Peer/NodeHeartbeat",
            peer(1, node_id, &[0xff; 3]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "heartbeat for another node id",
            "/shoal.v1.Peer/NodeHeartbeat",
            peer(1, node_id + 1000, &[]),
            Code::FailedPrecondition,
            "WRONG_NODE",
        ),
        (
            "undecodable replica change",
            "/shoal.v1.Peer/ChangeReplicas",
            peer(1, node_id, &[0xff; 3]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "undecodable merge step",
            "/shoal.v1.Peer/MergeStep",
            peer(1, node_id, &[0xff; 3]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "merge step for another node id",
            "/shoal.v1.Peer/MergeStep",
            peer(1, node_id + 1000, &[]),
            Code::FailedPrecondition,
            "WRONG_NODE",
        ),
        (
            "bootstrap of a node that belongs to a cluster",
            "/shoal.v1.Peer/Bootstrap",
            pb::BootstrapRequest {
                cluster_id: "another".into(),
                node_id: 7,
            }
            .encode_to_vec(),
            Code::FailedPrecondition,
            "ALREADY_INITIALIZED",
        ),
        (
            "join from an address that is not host:port",
            "/shoal.v1.Peer/Join",
            pb::JoinRequest {
                addr: "nohost".into(),
                name: "n".into(),
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a user name that is no user name",
            "/shoal.v1.Admin/CreateUser",
            pb::CreateUserRequest {
                name: "Bad Name".into(),
                role: "readonly".into(),
                password: String::new(),
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a role that is none",
            "/shoal.v1.Admin/CreateUser",
            pb::CreateUserRequest {
                name: "app".into(),
                role: "superuser".into(),
                password: String::new(),
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "dropping root",
            "/shoal.v1.Admin/DropUser",
            pb::DropUserRequest {
                name: "root".into(),
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "dropping a user there is not",
            "/shoal.v1.Admin/DropUser",
            pb::DropUserRequest {
                name: "nobody".into(),
            }
            .encode_to_vec(),
            Code::NotFound,
            "USER_NOT_FOUND",
        ),
        (
            "a password over its limit",
            "/shoal.v1.Admin/CreateUser",
            pb::CreateUserRequest {
                name: "app".into(),
                role: "readonly".into(),
                password: "p".repeat(1025),
            }
            .encode_to_vec(),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "a password for a user there is not",
            "/shoal.v1.Admin/SetPassword",
            pb::SetPasswordRequest {
                name: "nobody".into(),
                password: "secret".into(),
            }
            .encode_to_vec(),
            Code::NotFound,
            "USER_NOT_FOUND",
        ),
        (
            "undecodable range report",
            "/shoal.v1.Peer/ReportRanges",
            peer(1, 0, &[0xff; 3]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
    ];
    // Requests a node will not apply must never be answered OK: a request id whose
    // seq is below its own acked_below (it says its answer came before it was sent).
    let stale_id = Some(pb::RequestId {
        client_id: 78,
        seq: 3,
        acked_below: 9,
    });
    let mut table = table;
    table.extend(
        stale_writes(stale_id, "stale")
            .into_iter()
            .map(|(what, path, body)| {
                (what, path, body, Code::InvalidArgument, "INVALID_ARGUMENT")
            }),
    );
    for (what, path, body, want_code, want) in table {
        // Calls between nodes go to the peer port (the client port refuses them).
        let internal = path.starts_with("/shoal.v1.Peer/") || path.starts_with("/shoal.v1.Raft/");
        let to = if internal { c.nodes[0].peer() } else { &addr };
        let s = raw_call(to, path, body).await;
        assert_eq!(s.code(), want_code, "{what}: {s:?}");
        let code = shoal_proto::error::code_of(&s);
        assert!(
            code == want || s.message().contains(want),
            "{what}: got {code} / {:?}",
            s.message()
        );
    }

    // Garbage on the gRPC port (HTTP/2 only): the connection is closed, with at most
    // an HTTP/2 GOAWAY.
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        (0..=255u8).cycle().take(10_000).collect::<Vec<u8>>(),
    ] {
        let reply = raw_tcp(&addr, &garbage);
        assert!(reply.len() < 1024, "{} bytes back", reply.len());
    }
    // Garbage on the HTTP port: 400; wrong method: 405; unknown path: 404.
    let http = c.nodes[0].http.clone();
    let reply = raw_tcp(&http, b"\x00\x01garbage\r\n\r\n");
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let reply = raw_tcp(
        &http,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 405"));
    let (code, _) = shoal_tests::http_get(&http, "/nope").unwrap();
    assert_eq!(code, 404);

    // A snapshot stream with an undecodable header, and an empty one.
    let peer = c.nodes[0].peer();
    let mut raft_client = pb::raft_client::RaftClient::connect(format!("http://{peer}"))
        .await
        .unwrap();
    let bad_header = pb::SnapshotChunk {
        range_id: 1,
        target_node_id: node_id,
        header: vec![0xff; 8],
        data: vec![1, 2, 3],
    };
    let s = raft_client
        .install_snapshot(futures::stream::iter([bad_header]))
        .await
        .unwrap_err();
    assert_eq!(shoal_proto::error::code_of(&s), "INVALID_ARGUMENT", "{s:?}");
    let s = raft_client
        .install_snapshot(futures::stream::iter(Vec::<pb::SnapshotChunk>::new()))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");

    // Requests routed with stale range knowledge: an epoch version the range is not
    // at (EPOCH_MISMATCH, with the current descriptor), a range this node does not hold
    // (RANGE_NOT_FOUND). The right epoch (whatever its conf_ver) is served.
    let mut kv = pb::kv_client::KvClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let target = |range_id, version| {
        Some(pb::RangeTarget {
            range_id,
            epoch: Some(pb::RangeEpoch {
                version,
                conf_ver: 0,
            }),
        })
    };
    let put = |target| pb::PutRequest {
        key: b"routed".to_vec(),
        value: b"v".to_vec(),
        request_id: None,
        target,
    };
    let s = kv.put(put(target(1, 7))).await.unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    let d = shoal_proto::error::detail(&s).unwrap();
    assert_eq!(d.code, "EPOCH_MISMATCH");
    match d.detail {
        Some(pb::error_detail::Detail::EpochMismatch(m)) => {
            let current = &m.current[0];
            assert_eq!(current.range_id, 1);
            assert_eq!(current.epoch.unwrap().version, 1);
            assert_eq!(current.replicas.len(), 3);
        }
        other => panic!("no descriptor in the details: {other:?}"),
    }
    let s = kv
        .get(pb::GetRequest {
            key: b"routed".to_vec(),
            consistency: 0,
            read_ts: 0,
            target: target(99, 1),
        })
        .await
        .unwrap_err();
    assert_eq!(shoal_proto::error::code_of(&s), "RANGE_NOT_FOUND", "{s:?}");
    assert_eq!(client.get("routed").await.unwrap(), None);
    // Sent to the leader (a follower would forward, and the leader checks again).
    let leader = c
        .wait_leader(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let mut kv_leader =
        pb::kv_client::KvClient::connect(format!("http://{}", c.nodes[leader].grpc))
            .await
            .unwrap();
    kv_leader.put(put(target(1, 1))).await.unwrap();
    client.delete("routed").await.unwrap();

    // A request id at or below an answer already dropped (the client said it had
    // every answer below 10): refused with its code, and nothing is written.
    let first = pb::PutRequest {
        key: b"dup-first".to_vec(),
        value: b"v".to_vec(),
        request_id: Some(pb::RequestId {
            client_id: 79,
            seq: 10,
            acked_below: 10,
        }),
        target: None,
    };
    kv_leader.put(first).await.unwrap();
    for seq in [9, 5] {
        let dropped = Some(pb::RequestId {
            client_id: 79,
            seq,
            acked_below: seq,
        });
        for (what, path, body) in stale_writes(dropped, "dup") {
            let s = raw_call(&addr, path, body).await;
            assert_eq!(
                s.code(),
                Code::FailedPrecondition,
                "{what} (seq {seq}): {s:?}"
            );
            assert_eq!(
                shoal_proto::error::code_of(&s),
                "STALE_REQUEST_ID",
                "{what} (seq {seq}): {s:?}"
            );
        }
    }
    assert_eq!(client.scan("dup-", "dup.", 0).await.unwrap().len(), 1);

    // Nothing was written, and every node serves.
    assert!(client.scan("stale-", "stale.", 0).await.unwrap().is_empty());
    assert_eq!(client.get("k").await.unwrap(), None);
    for i in 0..3 {
        c.client_via(i)
            .put(format!("after-{i}"), "ok")
            .await
            .unwrap();
        assert!(c.http_get(i, "/readyz").unwrap().0 == 200);
    }
}

/// A write of each kind carrying `request_id`, on keys under `prefix-`: (what, method,
/// body).
fn stale_writes(
    request_id: Option<shoal_proto::v1::RequestId>,
    prefix: &str,
) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use prost::Message;
    use shoal_proto::v1 as pb;
    let key = |k: &str| format!("{prefix}-{k}").into_bytes();
    vec![
        (
            "put with a stale request id",
            "/shoal.v1.Kv/Put",
            pb::PutRequest {
                key: key("put"),
                value: b"v".to_vec(),
                request_id,
                target: None,
            }
            .encode_to_vec(),
        ),
        (
            "delete with a stale request id",
            "/shoal.v1.Kv/Delete",
            pb::DeleteRequest {
                key: key("first"),
                request_id,
                target: None,
            }
            .encode_to_vec(),
        ),
        (
            "delete-range with a stale request id",
            "/shoal.v1.Kv/DeleteRange",
            pb::DeleteRangeRequest {
                start: key(""),
                end: key("~"),
                request_id,
                target: None,
            }
            .encode_to_vec(),
        ),
        (
            "batch with a stale request id",
            "/shoal.v1.Kv/Batch",
            pb::BatchRequest {
                ops: vec![ops::write_put(key("batch"), "v")],
                request_id,
                target: None,
            }
            .encode_to_vec(),
        ),
        (
            "txn with a stale request id",
            "/shoal.v1.Kv/Txn",
            pb::TxnRequest {
                compares: vec![],
                success: vec![ops::put(key("txn"), "v")],
                failure: vec![],
                request_id,
                target: None,
            }
            .encode_to_vec(),
        ),
    ]
}

#[test]
fn bad_env_values_and_arguments_are_usage_errors() {
    use std::os::unix::ffi::OsStrExt;
    // An env value that does not parse: exit 2, naming the flag.
    let out = std::process::Command::new(shoal_tests::shoal_bin())
        .args(["start", "--data-dir", "/tmp/x"])
        .env("SHOAL_HEARTBEAT_MS", "often")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--heartbeat-ms") && err.contains("often"),
        "{err}"
    );
    let out = std::process::Command::new(shoal_tests::shoal_bin())
        .args(["start", "--data-dir", "/tmp/x"])
        .env("SHOAL_READ_POLICY", "psychic")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(shoal_tests::shoal_bin())
        .args(["start", "--data-dir", "/tmp/x"])
        .env("SHOAL_GC_TTL", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--gc-ttl") && err.contains("forever"), "{err}");
    // A past read's timestamp that is not a number, or asked of a stale read.
    let out = shoal(&["kv", "get", "k", "--at", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--at"));
    let out = shoal(&["kv", "get", "k", "--at", "5", "--stale"]);
    assert_eq!(out.status.code(), Some(2));
    // A key that is not UTF-8 on the command line.
    let out = std::process::Command::new(shoal_tests::shoal_bin())
        .args(["kv", "get"])
        .arg(std::ffi::OsStr::from_bytes(&[0xff, 0xfe]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UTF-8"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
