//! A gRPC client that is not the SDK (the stubs generated from `proto/`, no range
//! cache, no retries, no redirects) talking to a follower while the leader is killed
//! with SIGKILL: the follower passes its requests on to the next leader once it is
//! known, so reads and writes that carry a request id succeed within their deadline;
//! a write without one may fail, but only with a coded status that says whether it may
//! have been applied. No failure reaches the client without its `ErrorDetail` code.
//!
//! And what such a client reaches: the client port, never the peers' traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_proto::error::{code_of, ErrorCode};
use shoal_proto::v1 as pb;
use shoal_proto::v1::kv_client::KvClient;
use shoal_proto::v1::peer_client::PeerClient;
use shoal_proto::v1::raft_client::RaftClient;
use shoal_tests::{free_port, TestCluster, FAST_ELECTIONS};
use tonic::transport::Channel;

/// Each request's deadline, as the client sends it (`grpc-timeout`).
const DEADLINE: Duration = Duration::from_secs(8);

/// What one client loop saw.
#[derive(Default)]
struct Seen {
    /// Writes answered OK: (key, value).
    acked: Vec<(String, String)>,
    reads: u64,
    /// Failures: (what, gRPC code, stable code, message).
    failed: Vec<(String, tonic::Code, String, String)>,
    /// The longest a request took.
    slowest: Duration,
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(DEADLINE);
    r
}

/// Puts `loop-{n}-{i}` (with a request id when `with_ids`) and reads it back, over and
/// over, until `stop`.
async fn client_loop(
    mut kv: KvClient<Channel>,
    n: u64,
    with_ids: bool,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let client_id = 1_000 + n;
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let (key, value) = (format!("loop-{n}-{i}"), format!("v{i}"));
        let request_id = with_ids.then_some(pb::RequestId {
            client_id,
            seq: i,
            acked_below: i,
        });
        let started = Instant::now();
        let put = kv
            .put(request(pb::PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                request_id,
                target: None,
            }))
            .await;
        seen.slowest = seen.slowest.max(started.elapsed());
        match put {
            Ok(_) => seen.acked.push((key.clone(), value.clone())),
            Err(s) => {
                seen.failed.push((
                    format!("put {key}"),
                    s.code(),
                    code_of(&s),
                    s.message().into(),
                ));
                continue;
            }
        }
        let started = Instant::now();
        let get = kv
            .get(request(pb::GetRequest {
                key: key.clone().into_bytes(),
                consistency: pb::Consistency::Linearizable as i32,
                read_ts: 0,
                target: None,
            }))
            .await;
        seen.slowest = seen.slowest.max(started.elapsed());
        match get {
            Ok(r) => {
                let got = r.into_inner().kv.map(|kv| kv.value);
                assert_eq!(got, Some(value.into_bytes()), "{key} read back wrong");
                seen.reads += 1;
            }
            Err(s) => seen.failed.push((
                format!("get {key}"),
                s.code(),
                code_of(&s),
                s.message().into(),
            )),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_grpc_client_on_a_follower_sees_only_coded_errors_through_a_leader_kill() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let leader = c.wait_leader(Duration::from_secs(10)).await.unwrap();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    c.client().put("warm", "up").await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", c.nodes[follower].grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..4u64)
        .map(|n| {
            let kv = KvClient::new(channel.clone());
            // Two loops send request ids, two do not.
            tokio::spawn(client_loop(kv, n, n % 2 == 0, stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.kill9(leader);
    let killed = Instant::now();
    // Until a new leader serves, and a while after.
    c.wait_leader_among(
        &(0..3).filter(|i| *i != leader).collect::<Vec<_>>(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for l in loops {
        seen.push(l.await.unwrap());
    }
    eprintln!(
        "leader killed {:?} before the loops stopped",
        killed.elapsed()
    );

    for (n, s) in seen.iter().enumerate() {
        let with_ids = n % 2 == 0;
        eprintln!(
            "loop {n} (request ids: {with_ids}): {} writes, {} reads, {} failures, slowest {:?}",
            s.acked.len(),
            s.reads,
            s.failed.len(),
            s.slowest
        );
        assert!(s.acked.len() > 10, "loop {n} made no progress");
        assert!(
            s.slowest < DEADLINE,
            "loop {n}: a request took {:?}",
            s.slowest
        );
        for (what, grpc, code, message) in &s.failed {
            // Every failure is coded ...
            let code = ErrorCode::parse(code).unwrap_or_else(|| {
                panic!("{what}: {grpc:?} {message:?} reached the client without a code")
            });
            // ... and only a write that could not be retried safely fails: it says
            // whether it may have been applied.
            assert!(
                !with_ids && what.starts_with("put"),
                "{what} failed ({code}: {message}) although retrying it was safe"
            );
            assert!(
                matches!(code, ErrorCode::OutcomeUnknown | ErrorCode::NotLeader),
                "{what}: {code}: {message}"
            );
        }
    }

    // Every acknowledged write is there.
    let client = c.client();
    for s in &seen {
        for (key, value) in &s.acked {
            let got = client.get(key).await.unwrap().map(|kv| kv.value);
            assert_eq!(got.as_deref(), Some(value.as_bytes()), "{key} lost");
        }
    }
}

/// The client port serves clients and, of the calls between nodes, only `Hello`,
/// which names the peer port; the peer port serves no client call. A node restarted
/// on another peer port is found there: its peers ask its client address before
/// every connection.
#[tokio::test(flavor = "multi_thread")]
async fn peer_traffic_has_a_port_of_its_own_and_clients_cannot_reach_it_through_theirs() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    c.client().put("before", "1").await.unwrap();
    let connect = |addr: String| async move {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let client_port = connect(c.nodes[0].grpc.clone()).await;
    let hello = PeerClient::new(client_port.clone())
        .hello(pb::HelloRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hello.peer_addr, c.nodes[0].peer());
    assert_eq!(hello.advertise_addr, c.nodes[0].grpc);

    // Raft and node-level calls at the client port: refused, coded, changing nothing.
    let vote = RaftClient::new(client_port.clone())
        .vote(pb::RaftMessage {
            range_id: 1,
            payload: vec![],
            target_node_id: hello.node_id,
        })
        .await
        .unwrap_err();
    let join = PeerClient::new(client_port.clone())
        .join(pb::JoinRequest {
            addr: "intruder:7070".into(),
            name: "intruder".into(),
        })
        .await
        .unwrap_err();
    for s in [vote, join] {
        assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
        assert_eq!(code_of(&s), ErrorCode::PermissionDenied.as_str());
        assert!(s.message().contains("--peer-addr"), "{}", s.message());
    }
    let nodes = c.client().nodes().await.unwrap().nodes;
    assert_eq!(nodes.len(), 3, "the join was refused, yet: {nodes:?}");

    // The peer port serves peers only.
    let peer_port = connect(c.nodes[0].peer().to_string()).await;
    let get = KvClient::new(peer_port)
        .get(request(pb::GetRequest {
            key: b"before".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(get.code(), tonic::Code::Unimplemented, "{get:?}");

    // Node 2 back on another peer port: with node 0 down, every write needs it.
    c.kill9(2);
    c.nodes[2].set_peer_addr(&format!("127.0.0.1:{}", free_port()));
    c.restart(2).unwrap();
    c.kill9(0);
    let client = c.client_of([1, 2]);
    tokio::time::timeout(Duration::from_secs(30), client.put("after", "2"))
        .await
        .expect("a write with node 2 on its new peer port")
        .unwrap();
    assert_eq!(client.get("before").await.unwrap().unwrap().value, b"1");
}
