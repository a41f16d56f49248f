//! Bad input gets a clear error with a stable code, never a panic, never a partial
//! write; the node keeps serving afterwards.

use shoal_client::{ops, Client, ClientOptions, Error};
use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

fn code(e: &Error) -> &str {
    e.code().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_empty_input_is_refused_whole() {
    // Small configured limits keep the test light; the defaults are checked below.
    let mut flags = FAST_ELECTIONS.to_vec();
    flags.extend([
        "--max-key-bytes",
        "64",
        "--max-value-bytes",
        "1024",
        "--max-request-bytes",
        "4096",
    ]);
    let c = TestCluster::start_initialized(3, &flags).await.unwrap();
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
    let out = shoal(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    // Semantically wrong values are refused by validation with a message naming the flag.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let out = shoal(&[
        "start",
        "--data-dir",
        &d,
        "--listen-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--join",
        "nohost",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--join"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
