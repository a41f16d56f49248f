//! The `shoal` CLI against a real cluster: plain and JSON output, exit codes, init.

use shoal_tests::{shoal, TestCluster, FAST_ELECTIONS};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_commands_print_what_scripts_need() {
    let c = TestCluster::start(3, FAST_ELECTIONS).unwrap();
    let hosts = c.addrs().join(",");
    let first = c.nodes[0].grpc.clone();

    // init through the CLI, once.
    let out = tokio::task::spawn_blocking(move || shoal(&["init", "--host", &first]))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("3 node(s)"), "{}", stdout(&out));
    c.wait_leader(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let h = hosts.as_str();
    let out = shoal(&["init", "--host", &c.nodes[1].grpc]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already initialised"));

    let out = shoal(&["kv", "put", "greeting", "hello world", "--host", h]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = shoal(&["kv", "get", "greeting", "--host", h]);
    assert_eq!(stdout(&out), "hello world\n");
    let out = shoal(&["kv", "get", "greeting", "--host", h, "--format", "json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["value"], "hello world");
    assert!(j["version"].as_u64().unwrap() > 0);

    let out = shoal(&["kv", "get", "missing", "--host", h]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    for (k, v) in [("b", "2"), ("a", "1"), ("c", "3")] {
        assert!(shoal(&["kv", "put", k, v, "--host", h]).status.success());
    }
    let out = shoal(&["kv", "scan", "a", "c", "--host", h]);
    assert_eq!(stdout(&out), "a\t1\nb\t2\n");
    let out = shoal(&["kv", "scan", "a", "--limit", "1", "--host", h]);
    assert_eq!(stdout(&out), "a\t1\n");

    // A timestamp, then a change: reads at the timestamp see the keys as they were.
    let out = shoal(&["kv", "now", "--host", h]);
    let then = stdout(&out).trim().to_string();
    assert!(then.parse::<u64>().is_ok(), "{then:?}");
    assert!(shoal(&["kv", "put", "b", "20", "--host", h])
        .status
        .success());
    let out = shoal(&["kv", "get", "b", "--at", &then, "--host", h]);
    assert_eq!(stdout(&out), "2\n");
    let out = shoal(&["kv", "scan", "a", "c", "--at", &then, "--host", h]);
    assert_eq!(stdout(&out), "a\t1\nb\t2\n");
    let out = shoal(&["kv", "get", "b", "--host", h]);
    assert_eq!(stdout(&out), "20\n");
    let out = shoal(&["kv", "get", "b", "--at", "1", "--host", h]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SNAPSHOT_TOO_OLD"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shoal(&["kv", "put", "b", "2", "--host", h])
        .status
        .success());

    let out = shoal(&[
        "kv",
        "txn",
        "--if",
        "value(a) = 1",
        "--then",
        "put a 10",
        "--else",
        "get a",
        "--host",
        h,
    ]);
    assert_eq!(stdout(&out).lines().next(), Some("SUCCESS"));
    let out = shoal(&[
        "kv",
        "txn",
        "--if",
        "value(a) = 1",
        "--then",
        "put a 11",
        "--else",
        "get a",
        "--host",
        h,
    ]);
    assert_eq!(stdout(&out), "FAILURE\n10\n");
    let out = shoal(&["kv", "txn", "--if", "nonsense", "--host", h]);
    assert_eq!(out.status.code(), Some(1));

    let out = shoal(&["kv", "del", "b", "--host", h]);
    assert!(out.status.success());
    let out = shoal(&["kv", "del", "b", "--host", h]);
    assert_eq!(out.status.code(), Some(1));

    let out = shoal(&["node", "ls", "--host", h]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(text.matches('*').count(), 1, "exactly one leader: {text}");
}
