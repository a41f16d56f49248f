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

    // A missing key has its own exit code (3), distinct from a failure's 1.
    let out = shoal(&["kv", "get", "missing", "--host", h]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    for (k, v) in [("b", "2"), ("a", "1"), ("c", "3")] {
        assert!(shoal(&["kv", "put", k, v, "--host", h]).status.success());
    }
    let out = shoal(&["kv", "scan", "a", "c", "--host", h]);
    assert_eq!(stdout(&out), "KEY  VALUE\na    1\nb    2\n");
    let out = shoal(&["kv", "scan", "a", "--limit", "1", "--host", h]);
    assert_eq!(stdout(&out), "KEY  VALUE\na    1\n");

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
    assert_eq!(stdout(&out), "KEY  VALUE\na    1\nb    2\n");
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
    assert_eq!(out.status.code(), Some(3));

    let out = shoal(&["node", "ls", "--host", h]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(text.matches('*').count(), 1, "exactly one leader: {text}");
}

/// Runs `shoal shell` against `hosts` with `script` on its stdin.
fn shell(hosts: &str, script: &str) -> std::process::Output {
    shoal_tests::run_with_input(
        std::process::Command::new(shoal_tests::shoal_bin())
            .args(["shell", "--host", hosts])
            .env("HOME", std::env::temp_dir()),
        script.as_bytes(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_txn_and_the_shells_transactions_span_ranges() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let hosts = c.addrs().join(",");
    let h = hosts.as_str();
    let out = shoal(&["range", "split", "m", "--host", h]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `kv txn` whose keys lie in two ranges: compares and ops across them, atomic.
    assert!(shoal(&["kv", "put", "a", "1", "--host", h])
        .status
        .success());
    let out = shoal(&[
        "kv",
        "txn",
        "--if",
        "value(a) = 1",
        "--then",
        "put x 2",
        "--then",
        "put a 2",
        "--else",
        "get x",
        "--host",
        h,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out).lines().next(),
        Some("SUCCESS"),
        "{}",
        stdout(&out)
    );
    let a = shoal(&["kv", "get", "a", "--host", h, "--format", "json"]);
    let x = shoal(&["kv", "get", "x", "--host", h, "--format", "json"]);
    let (a, x): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&stdout(&a)).unwrap(),
        serde_json::from_str(&stdout(&x)).unwrap(),
    );
    assert_eq!(
        (a["value"].as_str(), x["value"].as_str()),
        (Some("2"), Some("2"))
    );
    assert_eq!(a["version"], x["version"], "one commit timestamp");
    let out = shoal(&[
        "kv",
        "txn",
        "--if",
        "value(a) = 1",
        "--then",
        "put x 3",
        "--else",
        "get x",
        "--host",
        h,
    ]);
    assert_eq!(stdout(&out), "FAILURE\n2\n");

    // The shell: a transaction's reads see its writes, others see them at commit;
    // a rolled back one leaves nothing.
    let out = shell(
        h,
        "begin\nput a 10\nput z 10\nget a\nscan a\ncommit\nget z\nbegin\nput z 99\nrollback\nget z\ncommit\nexit\n",
    );
    let (o, e) = (
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    // On stdin, the shell runs every line and exits with the first failure's code:
    // the `commit` with no transaction open.
    assert_eq!(out.status.code(), Some(1), "{o}\n{e}");
    let lines: Vec<&str> = o.lines().collect();
    assert!(lines[0].starts_with("BEGIN (snapshot at "), "{o}");
    assert_eq!(
        &lines[1..8],
        [
            "OK (at commit)",
            "OK (at commit)",
            "10",
            "KEY  VALUE",
            "a    10",
            "x    2",
            "z    10"
        ],
        "{o}"
    );
    assert!(lines[8].starts_with("COMMIT (version "), "{o}");
    assert_eq!(lines[9], "10", "{o}");
    assert!(lines[10].starts_with("BEGIN"), "{o}");
    assert_eq!(&lines[11..], ["OK (at commit)", "ROLLBACK", "10"], "{o}");
    assert!(e.contains("no transaction is open"), "{e}");
}
