//! The CLI habits of people coming from etcdctl and cockroach (issue 18, item 6), each
//! through the real `shoal` binary against a real cluster: aligned tables, the shared
//! flags read from the environment, a missing key's own exit code, `scan --prefix`,
//! `--reverse`, `--keys-only`, one duration syntax, help on every flag, shell words
//! split as a shell splits them, and the README's shell session, run as it is shown.

use std::process::{Command, Output};

use shoal_tests::{TestCluster, FAST_ELECTIONS};

/// `shoal ARGS` with `env` set and none of the shared flags' variables inherited.
fn shoal_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(shoal_tests::shoal_bin());
    cmd.args(args)
        .env_remove("SHOAL_HOST")
        .env_remove("SHOAL_FORMAT")
        .env_remove("SHOAL_TIMEOUT")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running shoal")
}

fn shoal(args: &[&str]) -> Output {
    shoal_env(args, &[])
}

/// `shoal ARGS --host HOSTS`, which must succeed; its stdout.
fn ok(hosts: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--host", hosts]);
    let out = shoal(&all);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `shoal shell` against `hosts` with `script` on its stdin.
fn shell(hosts: &str, script: &str) -> Output {
    shoal_tests::run_with_input(
        Command::new(shoal_tests::shoal_bin())
            .args(["shell", "--host", hosts])
            .env_remove("SHOAL_FORMAT")
            .env_remove("SHOAL_TIMEOUT")
            .env("HOME", std::env::temp_dir()),
        script.as_bytes(),
    )
    .unwrap()
}

/// Checks that every line of a table starts its columns where the header's names
/// start: the table is aligned, not separated by tabs.
fn assert_aligned(text: &str, header: &[&str]) {
    assert!(!text.contains('\t'), "{text}");
    let mut lines = text.lines();
    let head = lines.next().expect("a header line");
    let mut starts = Vec::new();
    let mut from = 0;
    for name in header {
        let at = from
            + head[from..]
                .find(name)
                .unwrap_or_else(|| panic!("{name}: {text}"));
        starts.push(at);
        from = at + name.len();
    }
    for line in lines {
        for &at in &starts[1..] {
            let (before, after) = (line.as_bytes().get(at - 1), line.as_bytes().get(at));
            assert!(
                before == Some(&b' ') && after.is_some_and(|b| *b != b' '),
                "column at {at} of {line:?}:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_take_a_prefix_an_order_and_keys_only_and_print_aligned_tables() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let hosts = c.addrs().join(",");
    let h = hosts.as_str();
    for (k, v) in [
        ("a", "1"),
        ("user/1", "ada"),
        ("user/10", "edsger"),
        ("user/2", "grace hopper"),
        ("user0", "not under user/"),
        ("users", "nor this"),
        ("zebra", "stripes"),
    ] {
        ok(h, &["kv", "put", k, v]);
    }
    // Two ranges, so that a span and its reverse cross a range boundary.
    ok(h, &["range", "split", "user/10"]);

    assert_eq!(
        ok(h, &["kv", "scan", "--prefix", "user/"]),
        "KEY      VALUE\nuser/1   ada\nuser/10  edsger\nuser/2   grace hopper\n"
    );
    assert_eq!(
        ok(h, &["kv", "scan", "--prefix", "user/", "--keys-only"]),
        "user/1\nuser/10\nuser/2\n"
    );
    assert_eq!(
        ok(h, &["kv", "scan", "--prefix", "user/", "--reverse"]),
        "KEY      VALUE\nuser/2   grace hopper\nuser/10  edsger\nuser/1   ada\n"
    );
    // --reverse --limit N: the span's last N keys, last first (across the split).
    assert_eq!(
        ok(
            h,
            &[
                "kv",
                "scan",
                "a",
                "--reverse",
                "--limit",
                "4",
                "--keys-only"
            ]
        ),
        "zebra\nusers\nuser0\nuser/2\n"
    );
    assert_eq!(
        ok(
            h,
            &[
                "kv",
                "scan",
                "a",
                "user/2",
                "--reverse",
                "--limit",
                "2",
                "--keys-only"
            ]
        ),
        "user/10\nuser/1\n"
    );
    assert_eq!(
        ok(h, &["kv", "scan", "", "--reverse", "--keys-only"]),
        "zebra\nusers\nuser0\nuser/2\nuser/10\nuser/1\na\n"
    );
    assert_eq!(
        ok(h, &["kv", "scan", "a", "--limit", "2", "--keys-only"]),
        "a\nuser/1\n"
    );
    // JSON: one object per line; with --keys-only, key and version without the value.
    let json = ok(
        h,
        &[
            "kv",
            "scan",
            "--prefix",
            "user/",
            "--keys-only",
            "--format",
            "json",
        ],
    );
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{json}");
    assert_eq!(rows[2]["key"], "user/2");
    assert!(rows[2]["version"].as_u64().unwrap() > 0);
    assert!(rows[2].get("value").is_none(), "{json}");
    // --at with --reverse: the keys as they were then, in descending order.
    let then = ok(h, &["kv", "now"]).trim().to_string();
    ok(h, &["kv", "put", "user/1", "changed"]);
    assert_eq!(
        ok(
            h,
            &[
                "kv",
                "scan",
                "--prefix",
                "user/",
                "--reverse",
                "--at",
                &then
            ]
        ),
        "KEY      VALUE\nuser/2   grace hopper\nuser/10  edsger\nuser/1   ada\n"
    );
    // Values that would break a row are escaped in the table, exact in JSON.
    ok(h, &["kv", "put", "user/3", "two\nlines"]);
    let table = ok(h, &["kv", "scan", "user/3", "user/4"]);
    assert_eq!(table, "KEY     VALUE\nuser/3  two\\nlines\n");
    let json = ok(h, &["kv", "scan", "user/3", "user/4", "--format", "json"]);
    assert!(json.contains(r#""value":"two\nlines""#), "{json}");
    // An empty span prints nothing.
    assert_eq!(ok(h, &["kv", "scan", "--prefix", "nobody/"]), "");
    // A span is START [END] or --prefix, not both.
    for bad in [
        &["kv", "scan", "a", "--prefix", "user/"][..],
        &["kv", "scan", "--prefix", "user/", "a", "b"],
        &["kv", "scan"],
    ] {
        let out = shoal(&[bad, &["--host", h]].concat());
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }

    // node ls, range ls and node status: aligned tables under their headers.
    let nodes = ok(h, &["node", "ls"]);
    assert_eq!(nodes.lines().count(), 4, "{nodes}");
    // (LEADER is blank but on the leader's row.)
    assert_aligned(
        &nodes,
        &["ID", "NAME", "ADDRESS", "ROLE", "LIVENESS", "REPLICAS"],
    );
    assert_eq!(nodes.matches('*').count(), 1, "one leader: {nodes}");
    for n in &c.nodes {
        assert!(nodes.contains(&n.grpc), "{nodes}");
    }
    let ranges = ok(h, &["range", "ls"]);
    assert_eq!(ranges.lines().count(), 3, "{ranges}");
    assert_aligned(
        &ranges,
        &["ID", "SPAN", "EPOCH", "REPLICAS", "LEADER", "SIZE"],
    );
    assert!(ranges.contains(r#"[-inf, "user/10")"#), "{ranges}");
    let status = ok(&c.nodes[0].grpc, &["node", "status"]);
    let table = &status[status.find("RANGE").expect("a table of ranges")..];
    assert_eq!(table.lines().count(), 3, "{status}");
    assert_aligned(
        table,
        &["RANGE", "ROLE", "TERM", "LEADER", "COMMITTED", "APPLIED"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_flags_read_the_environment_and_a_missing_key_has_its_own_exit_code() {
    let c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let hosts = c.addrs().join(",");
    let h = hosts.as_str();
    ok(h, &["kv", "put", "k", "v"]);

    // SHOAL_HOST, SHOAL_FORMAT, SHOAL_TIMEOUT stand for --host, --format, --timeout.
    let env = [
        ("SHOAL_HOST", h),
        ("SHOAL_FORMAT", "json"),
        ("SHOAL_TIMEOUT", "20s"),
    ];
    let out = shoal_env(&["kv", "get", "k"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["value"], "v");
    // A flag wins over its variable.
    let out = shoal_env(&["kv", "get", "k", "--format", "plain"], &env);
    assert_eq!(stdout(&out), "v\n");
    let out = shoal_env(
        &["kv", "get", "k"],
        &[("SHOAL_HOST", h), ("SHOAL_FORMAT", "yaml")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--format"), "{}", stderr(&out));

    // One duration syntax: units, and a bare number of seconds.
    for t in ["1500ms", "20s", "5m", "1m30s", "3"] {
        let out = shoal_env(&["kv", "get", "k", "--timeout", t], &[("SHOAL_HOST", h)]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "--timeout {t}: {}",
            stderr(&out)
        );
        let out = shoal_env(
            &["kv", "get", "k"],
            &[("SHOAL_HOST", h), ("SHOAL_TIMEOUT", t)],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "SHOAL_TIMEOUT={t}: {}",
            stderr(&out)
        );
    }
    for t in ["soon", "-1s", "5x"] {
        let flag = format!("--timeout={t}");
        let out = shoal_env(&["kv", "get", "k", &flag], &[("SHOAL_HOST", h)]);
        assert_eq!(out.status.code(), Some(2), "--timeout {t}");
        assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));
        let out = shoal_env(
            &["kv", "get", "k"],
            &[("SHOAL_HOST", h), ("SHOAL_TIMEOUT", t)],
        );
        assert_eq!(out.status.code(), Some(2), "SHOAL_TIMEOUT={t}");
    }
    let out = shoal_env(&["kv", "get", "k", "--timeout", "0s"], &[("SHOAL_HOST", h)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));

    // A missing key: 3, its message on stderr, nothing on stdout; get and del alike.
    for args in [&["kv", "get", "nokey"][..], &["kv", "del", "nokey"]] {
        let out = shoal(&[args, &["--host", h]].concat());
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(r#"key "nokey" not found"#),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
    let then = ok(h, &["kv", "now"]).trim().to_string();
    let out = shoal(&["kv", "get", "nokey", "--at", &then, "--host", h]);
    assert_eq!(out.status.code(), Some(3));
    // A failure is 1: a cluster that does not answer (within a short --timeout)...
    let dead = format!("127.0.0.1:{}", shoal_tests::free_port());
    let t0 = std::time::Instant::now();
    let out = shoal(&["kv", "get", "k", "--host", &dead, "--timeout", "1500ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
    // ... or a refused operation; and a usage error is 2.
    let out = shoal(&["kv", "txn", "--if", "nonsense", "--host", h]);
    assert_eq!(out.status.code(), Some(1));
    let out = shoal(&["kv", "get", "--host", h]);
    assert_eq!(out.status.code(), Some(2));

    // The shell on stdin runs every line and exits with the first failure's code.
    let out = shell(h, "get k\nget nokey\nput k2 v2\nfrob\n");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], "v", "{text}");
    assert!(lines[1].starts_with("OK (version "), "{text}");
    assert_eq!(ok(h, &["kv", "get", "k2"]), "v2\n");
    let out = shell(h, "frob\nget nokey\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = shell(h, "get k\n");
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), "v\n".into()));
    // Its words are split as a shell splits them: quotes, escapes, comments.
    let out = shell(
        h,
        "put 'a key' \"a \\\"quoted\\\" value\"  # a comment\nget a\\ key\n# a line of comment\n\
         txn --if \"value(a key) = a \\\"quoted\\\" value\" --then 'get b'\n\
         put broken 'open\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("OK (version "), "{text}");
    assert_eq!(
        &lines[1..],
        ["a \"quoted\" value", "SUCCESS", "(not found)"],
        "{text}"
    );
    assert!(
        stderr(&out).contains("unterminated quote"),
        "{}",
        stderr(&out)
    );
    // Inside a transaction: --prefix and --keys-only, not --reverse.
    let out = shell(
        h,
        "begin\nput p/1 one\nscan --prefix p/ --keys-only\nscan --prefix p/ --reverse\nrollback\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        &text.lines().skip(1).collect::<Vec<_>>(),
        &["OK (at commit)", "p/1", "ROLLBACK"],
        "{text}"
    );
    assert!(stderr(&out).contains("--reverse"), "{}", stderr(&out));
}

/// Every argument of every command has a line of help (`-h`), as `kv txn`'s
/// `--if`/`--then`/`--else` once had none.
#[test]
fn every_flag_and_argument_has_help() {
    let commands: &[&[&str]] = &[
        &["start"],
        &["init"],
        &["kv", "get"],
        &["kv", "put"],
        &["kv", "del"],
        &["kv", "scan"],
        &["kv", "now"],
        &["kv", "del-range"],
        &["kv", "txn"],
        &["node", "ls"],
        &["node", "remove"],
        &["node", "decommission"],
        &["node", "status"],
        &["node", "drain"],
        &["range", "ls"],
        &["range", "lookup"],
        &["range", "split"],
        &["demo"],
        &["shell"],
        &["sql"],
    ];
    for cmd in commands {
        let out = shoal(&[cmd, &["-h"][..]].concat());
        assert_eq!(out.status.code(), Some(0), "{cmd:?}: {}", stderr(&out));
        let text = stdout(&out);
        let mut entries = 0;
        let mut in_list = false;
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if line == "Arguments:" || line == "Options:" {
                in_list = true;
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let entry = line.trim_start();
            if !in_list || indent == 0 || indent > 6 || !entry.starts_with(['-', '<', '[']) {
                continue;
            }
            // `  -x, --flag <V>  Help [env: ..]`: the name, two spaces, the help; or
            // the help on the next line, further in.
            let help = match entry.split_once("  ") {
                Some((_, h)) => h.trim().to_string(),
                None => lines
                    .peek()
                    .filter(|n| n.len() - n.trim_start().len() > indent)
                    .map(|n| n.trim().to_string())
                    .unwrap_or_default(),
            };
            assert!(
                !help.is_empty() && !help.starts_with('['),
                "{cmd:?}: no help for {entry:?}\n{text}"
            );
            entries += 1;
        }
        assert!(entries > 0, "{cmd:?}: no flags found in\n{text}");
    }
    let out = shoal(&["kv", "txn", "--help"]);
    let text = stdout(&out);
    for flag in ["--if <COMPARE>", "--then <OP>", "--else <OP>"] {
        let after = &text[text.find(flag).unwrap_or_else(|| panic!("{flag}: {text}"))..];
        let help = after.lines().nth(1).unwrap_or_default().trim();
        assert!(!help.is_empty(), "{flag}: {text}");
    }
}

/// The session shown in README.md, run through `shoal shell` on a real cluster: each
/// command's answer is what the README shows, versions (timestamps) aside. The
/// cluster's durations are given in the one syntax (`100ms`, `0.5s`, `5s`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_shell_session_is_what_the_shell_answers() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let session = readme_session(&readme);
    let commands: Vec<&str> = session.iter().map(|(c, _)| c.as_str()).collect();
    assert!(commands.len() >= 10, "{commands:?}");
    for needed in ["txn --if", "begin", "commit", "scan --prefix", "--reverse"] {
        assert!(
            commands.iter().any(|c| c.contains(needed)),
            "the README's session shows no {needed:?}: {commands:?}"
        );
    }

    let c = TestCluster::start_initialized(
        3,
        &[
            "--heartbeat-ms",
            "100ms",
            "--election-timeout-ms",
            "0.5s",
            "--drain-timeout-secs",
            "5s",
        ],
    )
    .await
    .unwrap();
    let hosts = c.addrs().join(",");
    let script: String = commands.iter().map(|c| format!("{c}\n")).collect();
    let out = shell(&hosts, &script);
    let (got_out, got_err) = (stdout(&out), stderr(&out));

    // What the README shows after each command, split as the shell prints it:
    // `error:` lines on stderr, the rest on stdout.
    let mut want_out = Vec::new();
    let mut want_err = Vec::new();
    let mut owner = Vec::new();
    for (cmd, lines) in &session {
        for l in lines {
            if l.starts_with("error: ") {
                want_err.push(l.clone());
            } else {
                want_out.push(normalise(l));
                owner.push(cmd.as_str());
            }
        }
    }
    let got: Vec<String> = got_out.lines().map(normalise).collect();
    for (i, want) in want_out.iter().enumerate() {
        assert_eq!(
            got.get(i),
            Some(want),
            "after `{}` the README shows {want:?}; the shell printed:\n{got_out}\nstderr:\n{got_err}",
            owner[i]
        );
    }
    assert_eq!(
        got.len(),
        want_out.len(),
        "more output than the README shows:\n{got_out}"
    );
    let got_err: Vec<&str> = got_err.lines().collect();
    assert_eq!(got_err, want_err, "stderr");
    let failed = want_err.iter().any(|e| e.contains("not found")) as i32 * 3;
    assert_eq!(out.status.code(), Some(failed), "the shell's exit code");
}

/// The README's shell session: the code block whose lines begin with `shoal> `, as
/// (command, the lines shown after it).
fn readme_session(readme: &str) -> Vec<(String, Vec<String>)> {
    let blocks: Vec<&str> = readme
        .split("```")
        .skip(1)
        .step_by(2)
        .filter(|b| b.lines().nth(1).is_some_and(|l| l.starts_with("shoal> ")))
        .collect();
    assert_eq!(blocks.len(), 1, "one shell session in the README");
    let mut session: Vec<(String, Vec<String>)> = Vec::new();
    for line in blocks[0].lines().skip(1) {
        let cmd = line
            .strip_prefix("shoal> ")
            .or_else(|| line.strip_prefix("shoal(txn)> "));
        match (cmd, session.last_mut()) {
            (Some(c), _) => session.push((c.to_string(), Vec::new())),
            (None, Some((_, out))) => out.push(line.to_string()),
            (None, None) => panic!("output before any command: {line:?}"),
        }
    }
    session
}

/// A line with its timestamps (versions, snapshots: numbers of 15 digits or more)
/// replaced, the one thing of the session that changes from run to run.
fn normalise(line: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    for ch in line.chars().chain(std::iter::once('\0')) {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        if digits.len() >= 15 {
            out.push_str("<ts>");
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        if ch != '\0' {
            out.push(ch);
        }
    }
    out
}
