//! SQL on a real cluster, through real Postgres clients: the logic files of
//! `tests/sql` (whose answers a real PostgreSQL server gives too, checked here),
//! tokio-postgres with the extended protocol and binary parameters, an application on
//! psycopg (run against PostgreSQL too), psql, and bad
//! input (errors with their SQLSTATE, garbage on the port, a client gone
//! mid-transaction) after which the node keeps serving and nothing is half written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shoal_tests::sql_bank::{self, SqlBank};
use shoal_tests::TestCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Python with psycopg that runs the logic files (scripts/env.sh makes it).
fn python() -> PathBuf {
    std::env::var_os("SHOAL_SQL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/shoal/sqlvenv/bin/python")
        })
}

fn logic_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the logic files: {files:?}");
    files
}

fn run_logic_files(dsn: &str, fresh: bool) {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/sql/slt.py"))
        .arg("--dsn")
        .arg(dsn);
    if fresh {
        cmd.arg("--fresh");
    }
    let out = cmd.args(logic_files()).output().expect("running slt.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "logic files against {dsn}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// Runs `tests/sql/app.py`, an application on psycopg, against `dsn`.
fn run_app(dsn: &str) {
    let out = Command::new(python())
        .arg(repo().join("tests/sql/app.py"))
        .arg("--dsn")
        .arg(dsn)
        .output()
        .expect("running app.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.ends_with("app: ok\n"),
        "app.py against {dsn}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dsn(c: &TestCluster, i: usize) -> String {
    c.sql_dsn(i)
}

async fn connect(c: &TestCluster, i: usize) -> Client {
    c.sql_client(i).await.unwrap()
}

fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_logic_files_answer_on_shoal_as_postgres_answers_them() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    run_logic_files(&dsn(&c, 1), false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_application_on_psycopg_writes_reads_and_meets_its_errors() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let dsn = dsn(&c, 2);
    tokio::task::spawn_blocking(move || run_app(&dsn))
        .await
        .unwrap();
}

#[test]
fn the_logic_files_answers_are_postgres_own() {
    // Postgres refuses to run as root and must reach its directory.
    let dir = tempfile::Builder::new()
        .prefix("shoal-pg-")
        .tempdir_in("/tmp")
        .unwrap();
    let script = repo().join("tests/sql/postgres.sh");
    let out = Command::new(&script)
        .arg("start")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "starting postgres: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dsn = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let result = std::panic::catch_unwind(|| {
        run_logic_files(&dsn, true);
        run_app(&dsn);
    });
    let _ = Command::new(&script).arg("stop").arg(dir.path()).output();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rust_driver_writes_and_reads_with_binary_parameters_and_gets_sqlstates() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let db = connect(&c, 0).await;
    db.batch_execute(
        "CREATE TABLE accounts (id INT8 PRIMARY KEY, owner TEXT NOT NULL, balance FLOAT8, \
         active BOOL DEFAULT true, photo BYTEA, small INT4)",
    )
    .await
    .unwrap();
    // Prepared, with binary parameters of each type.
    let insert = db
        .prepare(
            "INSERT INTO accounts (id, owner, balance, photo, small) VALUES ($1, $2, $3, $4, $5)",
        )
        .await
        .unwrap();
    for i in 0..20i64 {
        let n = db
            .execute(
                &insert,
                &[
                    &i,
                    &format!("owner-{i}"),
                    &(i as f64 * 1.5),
                    &vec![i as u8, 0, 255],
                    &(i as i32),
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let row = db
        .query_one(
            "SELECT owner, balance, active, photo, small FROM accounts WHERE id = $1",
            &[&7i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "owner-7");
    assert_eq!(row.get::<_, f64>(1), 10.5);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, Vec<u8>>(3), vec![7u8, 0, 255]);
    assert_eq!(row.get::<_, i32>(4), 7);
    let rows = db
        .query(
            "SELECT id FROM accounts WHERE id >= $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            &[&5i64, &15i64, &3i64],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![14, 13, 12]);
    let sum: f64 = db
        .query_one("SELECT sum(balance) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, (0..20).map(|i| i as f64 * 1.5).sum::<f64>());
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM accounts WHERE owner LIKE $1",
            &[&"owner-1%"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 11);

    // Failures, each with its SQLSTATE; the connection goes on serving.
    let dup = db
        .execute(
            &insert,
            &[&3i64, &"again", &0.0f64, &Vec::<u8>::new(), &0i32],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&dup), Some(&SqlState::UNIQUE_VIOLATION), "{dup:?}");
    let null = db
        .execute("INSERT INTO accounts (id) VALUES (100)", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&null), Some(&SqlState::NOT_NULL_VIOLATION), "{null:?}");
    let missing = db.query("SELECT * FROM nope", &[]).await.unwrap_err();
    assert_eq!(
        code(&missing),
        Some(&SqlState::UNDEFINED_TABLE),
        "{missing:?}"
    );
    let column = db
        .query("SELECT nope FROM accounts", &[])
        .await
        .unwrap_err();
    assert_eq!(
        code(&column),
        Some(&SqlState::UNDEFINED_COLUMN),
        "{column:?}"
    );
    let syntax = db.batch_execute("SELEC 1").await.unwrap_err();
    assert_eq!(code(&syntax), Some(&SqlState::SYNTAX_ERROR), "{syntax:?}");
    let text = db
        .batch_execute("INSERT INTO accounts (id, owner) VALUES ('x', 'y')")
        .await
        .unwrap_err();
    assert_eq!(
        code(&text),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{text:?}"
    );
    let range = db
        .execute("UPDATE accounts SET small = 3000000000 WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(
        code(&range),
        Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE),
        "{range:?}"
    );
    // Nothing of the failed statements was written.
    let n: i64 = db
        .query_one("SELECT count(*) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20);
    let small: i32 = db
        .query_one("SELECT small FROM accounts WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(small, 1);

    // A transaction: its writes seen by itself, by nobody else before COMMIT.
    let other = connect(&c, 2).await;
    db.batch_execute(
        "BEGIN; UPDATE accounts SET balance = balance - 5 WHERE id = 1; \
                      UPDATE accounts SET balance = balance + 5 WHERE id = 2",
    )
    .await
    .unwrap();
    let mine: f64 = db
        .query_one("SELECT balance FROM accounts WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(mine, 1.5 - 5.0);
    let theirs: f64 = other
        .query_one("SELECT balance FROM accounts WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(theirs, 1.5);
    db.batch_execute("COMMIT").await.unwrap();
    let total: f64 = other
        .query_one("SELECT sum(balance) FROM accounts WHERE id IN (1, 2)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 1.5 + 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_on_the_sql_port_gets_its_sqlstate_or_a_clean_close_and_leaves_nothing() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let db = connect(&c, 0).await;
    db.batch_execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INT8)")
        .await
        .unwrap();

    // Garbage on the port: the connection is closed, the node goes on.
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xFFu8; 64][..],
        &[0, 0, 0, 8, 0, 0, 0, 0][..],
        // A cancel request naming no connection: ignored, the connection closed.
        &[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2][..],
    ] {
        let mut s = tokio::net::TcpStream::connect(&c.nodes[0].sql)
            .await
            .unwrap();
        let _ = s.write_all(garbage).await;
        let mut buf = vec![0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(
            read.is_ok(),
            "the node neither answered nor closed after {garbage:?}"
        );
    }

    // A statement over the size limit (the node's request limit: 8 MiB).
    let big = format!("INSERT INTO kv VALUES ('a', {})", "1".repeat(9 << 20));
    let e = db.batch_execute(&big).await.unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{e:?}");

    // A client gone mid-transaction: nothing of it is written.
    {
        let gone = connect(&c, 1).await;
        gone.batch_execute("BEGIN; INSERT INTO kv VALUES ('half', 1), ('done', 2)")
            .await
            .unwrap();
        drop(gone);
    }
    // Another connection, and a failed transaction block.
    db.batch_execute("BEGIN").await.unwrap();
    db.batch_execute("INSERT INTO kv VALUES ('x', 1)")
        .await
        .unwrap();
    let e = db
        .batch_execute("INSERT INTO kv VALUES ('x', 2)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::UNIQUE_VIOLATION));
    let e = db.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    db.batch_execute("COMMIT").await.unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a rolled back or abandoned transaction left rows");

    // The KV API cannot write the SQL tables' keys, nor delete them with "everything".
    let kv = c.client();
    kv.put("plain", "1").await.unwrap();
    let e = kv.put(b"\xfft-sneaky".to_vec(), "1").await.unwrap_err();
    assert!(e.to_string().contains("0xFF"), "{e}");
    db.batch_execute("INSERT INTO kv VALUES ('kept', 7)")
        .await
        .unwrap();
    kv.delete_range("", "").await.unwrap();
    assert!(kv.get("plain").await.unwrap().is_none());
    let v: i64 = db
        .query_one("SELECT v FROM kv WHERE k = 'kept'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 7);
    let all = kv.scan("", "", 0).await.unwrap();
    assert!(
        all.is_empty(),
        "a KV scan of everything saw SQL rows: {all:?}"
    );
}

/// Runs psql with `script` on stdin against node `i`; (exit code, stdout, stderr).
fn psql(c: &TestCluster, i: usize, script: &str) -> (i32, String, String) {
    let out = shoal_tests::run_with_input(
        Command::new("psql").args([&dsn(c, i), "-X", "-v", "ON_ERROR_STOP=1", "-f", "-"]),
        script.as_bytes(),
    )
    .expect("running psql");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_scripts_describe_write_read_and_stop_at_an_error() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let (rc, out, err) = psql(
        &c,
        0,
        "CREATE TABLE fruit (id INT8 PRIMARY KEY, name TEXT NOT NULL, price FLOAT8 DEFAULT 1.5);\n\
         CREATE UNIQUE INDEX fruit_name ON fruit (name);\n\
         INSERT INTO fruit (id, name) VALUES (1, 'apple'), (2, 'pear');\n\
         \\dt\n\
         \\d fruit\n\
         SELECT name, price FROM fruit ORDER BY id;\n",
    );
    assert_eq!(rc, 0, "{out}\n{err}");
    for want in [
        "INSERT 0 2",
        " public | fruit | table | root",
        "Table \"public.fruit\"",
        " id     | bigint           |           | not null | ",
        " price  | double precision |           |          | 1.5",
        "\"fruit_pkey\" PRIMARY KEY, btree (id)",
        "\"fruit_name\" UNIQUE, btree (name)",
        " apple |   1.5",
        "(2 rows)",
    ] {
        assert!(out.contains(want), "psql's output lacks {want:?}:\n{out}");
    }
    // ON_ERROR_STOP: psql exits 3 at the first error, the statements after it unrun.
    let (rc, _, err) = psql(
        &c,
        1,
        "INSERT INTO fruit VALUES (3, 'fig');\nINSERT INTO fruit VALUES (3, 'fig');\nINSERT INTO fruit VALUES (4, 'kiwi');\n",
    );
    assert_eq!(rc, 3, "{err}");
    assert!(
        err.contains("duplicate key value violates unique constraint"),
        "{err}"
    );
    let (_, out, _) = psql(&c, 2, "SELECT count(*) FROM fruit;\n\\d nothing\n");
    assert!(out.contains("     3\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shoal_sql_shell_runs_statements_from_flags_and_stdin_and_fails_with_the_sqlstate() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let host = c.nodes[0].sql.clone();
    let out = shoal_tests::shoal(&[
        "sql",
        "--host",
        &host,
        "-e",
        "CREATE TABLE notes (id INT8 PRIMARY KEY, body TEXT)",
        "-e",
        "INSERT INTO notes VALUES (1, 'first'), (2, 'second; with a semicolon')",
        "-e",
        "SELECT id, body FROM notes ORDER BY id",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| 2  | second; with a semicolon |"),
        "{stdout}"
    );
    assert!(stdout.contains("(2 rows)"), "{stdout}");

    // The host and the timeout from the environment, the timeout in the CLI's one
    // duration syntax.
    let out = Command::new(shoal_tests::shoal_bin())
        .args(["sql", "-e", "SELECT count(*) FROM notes"])
        .env("SHOAL_SQL_HOST", &host)
        .env("SHOAL_TIMEOUT", "20s")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("| 2 "),
        "{out:?}"
    );

    // Statements on stdin (`kubectl exec -i ... shoal sql < script`): those before a
    // failure run and print; the failure's SQLSTATE goes to stderr, the exit code is 1.
    let out = shoal_tests::run_with_input(
        Command::new(shoal_tests::shoal_bin()).args(["sql", "--host", &host]),
        b"INSERT INTO notes VALUES (3, 'third');\nSELECT count(*) FROM notes;\nSELECT nope FROM notes;\nINSERT INTO notes VALUES (4, 'never');\n",
    )
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("| 3     |"), "{stdout}");
    assert!(stderr.contains("42703"), "{stderr}");
    let out = shoal_tests::shoal(&["sql", "--host", &host, "-e", "SELECT count(*) FROM notes"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("| 3     |"));
    // No server there: a clear error, exit code 1.
    let out = shoal_tests::shoal(&[
        "sql",
        "--host",
        "127.0.0.1:1",
        "--connect-timeout",
        "2",
        "-e",
        "SELECT 1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting to the SQL server"));
}

/// POSTs `body` to `path` on node `i`'s HTTP port with curl; (status, body).
fn curl(c: &TestCluster, i: usize, path: &str, body: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "--data-binary",
            body,
        ])
        .arg(format!("http://{}{path}", c.nodes[i].http))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (json, code) = text
        .trim_end()
        .rsplit_once('\n')
        .expect("curl's status line");
    (
        code.parse().unwrap(),
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_http_sql_api_executes_queries_and_transactions_and_answers_sqlstates() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let (code, r) = curl(
        &c,
        0,
        "/db/execute",
        r#"["CREATE TABLE users (id INT8 PRIMARY KEY, name TEXT NOT NULL, admin BOOL DEFAULT false)",
            ["INSERT INTO users (id, name) VALUES ($1, $2)", 1, "fiona"],
            ["INSERT INTO users VALUES ($1, $2, $3)", 2, "sinead", true]]"#,
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["results"][1]["rows_affected"], 1, "{r}");
    let (_, r) = curl(
        &c,
        1,
        "/db/query?level=strong",
        r#"["SELECT id, name, admin FROM users ORDER BY id", ["SELECT name FROM users WHERE id = $1", 2]]"#,
    );
    assert_eq!(
        r["results"][0]["columns"],
        serde_json::json!(["id", "name", "admin"]),
        "{r}"
    );
    assert_eq!(
        r["results"][0]["types"],
        serde_json::json!(["bigint", "text", "boolean"]),
        "{r}"
    );
    assert_eq!(
        r["results"][0]["values"],
        serde_json::json!([[1, "fiona", false], [2, "sinead", true]])
    );
    assert_eq!(r["results"][1]["values"], serde_json::json!([["sinead"]]));
    // In one transaction: a failure rolls every statement back.
    let (code, r) = curl(
        &c,
        2,
        "/db/execute?transaction",
        r#"[["INSERT INTO users (id, name) VALUES ($1, $2)", 3, "declan"], "INSERT INTO users (id) VALUES (4)"]"#,
    );
    assert_eq!(code, 200);
    assert_eq!(r["results"][1]["sqlstate"], "23502", "{r}");
    let (_, r) = curl(&c, 0, "/db/query", r#"["SELECT count(*) FROM users"]"#);
    assert_eq!(r["results"][0]["values"], serde_json::json!([[2]]), "{r}");
    // Without it, each statement stands alone.
    let (_, r) = curl(
        &c,
        0,
        "/db/execute",
        r#"["INSERT INTO users (id, name) VALUES (5, 'eve')", "INSERT INTO nope VALUES (1)"]"#,
    );
    assert_eq!(r["results"][0]["rows_affected"], 1, "{r}");
    assert_eq!(r["results"][1]["sqlstate"], "42P01", "{r}");
    // Malformed requests: 400 and nothing run.
    for bad in [
        "not json",
        r#"{"a": 1}"#,
        r#"[["SELECT $1", {"x": 1}]]"#,
        r#"[42]"#,
    ] {
        let (code, r) = curl(&c, 0, "/db/execute", bad);
        assert_eq!(code, 400, "{bad}: {r}");
    }
    let (code, _) = curl(&c, 0, "/db/query?level=psychic", r#"["SELECT 1"]"#);
    assert_eq!(code, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bank_table_over_many_ranges_keeps_its_total_while_ranges_split_and_a_node_is_killed() {
    use shoal_storage::keys;
    const ACCOUNTS: i64 = 64;
    const TOTAL: i64 = ACCOUNTS * 100;
    let mut flags = vec!["--range-max-bytes", "16384"];
    flags.extend_from_slice(shoal_tests::FAST_ELECTIONS);
    let mut c = TestCluster::start_initialized(3, &flags).await.unwrap();
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.sql.clone()).collect();
    sql_bank::create(&addrs, ACCOUNTS, 100, 300).await.unwrap();
    // The table's rows spread over at least 16 ranges: splits at rows' keys (the
    // first table's id is 100), besides those its size makes.
    let admin = c.client();
    let row_key = |id: i64| {
        let mut k = keys::sql_index_prefix(100, keys::PRIMARY_INDEX);
        keys::push_int_part(&mut k, id);
        k
    };
    for id in (4..ACCOUNTS).step_by(4) {
        // A split the range's own size split raced is refused; the key may be a
        // boundary already. The count below is what matters.
        for _ in 0..3 {
            if admin.split_range(row_key(id)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let in_table = |r: &shoal_proto::v1::RangeInfo| {
        let end = &r.descriptor.as_ref().unwrap().end;
        end.is_empty() || end.as_slice() > row_key(0).as_slice()
    };
    let spread = admin
        .ranges()
        .await
        .unwrap()
        .ranges
        .iter()
        .filter(|r| in_table(r))
        .count();
    assert!(spread >= 16, "the table lies in {spread} ranges");

    let bank = SqlBank::start(&addrs, ACCOUNTS, TOTAL, 4, 2);
    // Faults: more splits of the table, a node killed and brought back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for id in [2, 6, 10, 14] {
        let _ = admin.split_range(row_key(id)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.kill9(2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.restart(2).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let report = bank.finish().await;
    assert!(
        report.violations.is_empty(),
        "snapshots saw transfers half done: {:?}",
        report.violations
    );
    // Progress, not speed: on a loaded machine a reader's full scan of 16+ ranges takes
    // about a second.
    assert!(report.transfers >= 5, "{report:?}");
    assert!(report.reads >= 5, "{report:?}");
    sql_bank::check(&addrs, ACCOUNTS, TOTAL, Duration::from_secs(30))
        .await
        .unwrap();
    // Those sums and transfers read the rows and pages of ranges their node leads
    // there, and the rest through the cluster: both kinds made the whole table.
    let metrics: String = (0..c.nodes.len())
        .map(|i| c.http_get(i, "/metrics").unwrap().1)
        .collect();
    for rpc in ["Get.Local", "Scan.Local"] {
        assert!(
            metrics.contains(&format!("rpc=\"{rpc}\"")),
            "no {rpc} read was served by its gateway"
        );
    }
    eprintln!("{report:?}");
}
