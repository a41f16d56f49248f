//! shoal's own statements and a query's life on a real cluster: `EXPLAIN` naming each
//! access path (and an ORDER BY that the primary key's order answers without a sort),
//! `SHOW TABLES` and `SHOW CREATE TABLE` (whose statement makes the same table again),
//! a query's rows streamed as they are read, and a client's cancel request stopping a
//! query mid-way with `57014`, its connection serving on.

use std::time::Duration;

use futures::{pin_mut, StreamExt};
use shoal_tests::TestCluster;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// The plan `EXPLAIN` gives for `query`, a line per step.
async fn explain(db: &Client, query: &str) -> Vec<String> {
    db.query(&format!("EXPLAIN {query}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0).trim().to_string())
        .collect()
}

fn strings(rows: &[tokio_postgres::Row], col: usize) -> Vec<String> {
    rows.iter().map(|r| r.get::<_, String>(col)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_names_the_access_path_and_show_describes_the_tables() {
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let db = c.sql_client(0).await.unwrap();
    db.batch_execute(
        "CREATE TABLE orders (shop INT8, n TEXT, qty INT4 NOT NULL DEFAULT 7, code TEXT UNIQUE, \
         PRIMARY KEY (shop, n)); \
         CREATE INDEX orders_qty ON orders (qty); \
         CREATE TABLE shops (id INT8 PRIMARY KEY, name TEXT)",
    )
    .await
    .unwrap();
    db.batch_execute(
        "INSERT INTO orders VALUES (2, 'b', 1, 'x'), (1, 'z', 2, 'y'), (2, 'a', 3, 'z'), \
         (3, 'c', 4, NULL), (1, 'a', 5, NULL); \
         INSERT INTO shops VALUES (1, 'one'), (2, 'two')",
    )
    .await
    .unwrap();

    let before = db
        .query(
            "SELECT shop, n, qty, code FROM orders ORDER BY shop, n",
            &[],
        )
        .await
        .unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "SELECT * FROM orders WHERE shop = 1 AND n = 'a'",
            &["filter", "point get on orders (primary key)"],
        ),
        (
            "SELECT * FROM orders WHERE code = 'x'",
            &[
                "filter",
                "index lookup on orders using orders_code_key (unique)",
            ],
        ),
        (
            "SELECT * FROM orders WHERE qty = 3",
            &["filter", "index lookup on orders using orders_qty"],
        ),
        (
            "SELECT * FROM orders WHERE shop = 2",
            &[
                "filter",
                "range scan on orders (primary key: 1 column fixed)",
            ],
        ),
        (
            "SELECT * FROM orders WHERE shop > 1",
            &[
                "filter",
                "range scan on orders (primary key: 0 columns fixed, next bounded)",
            ],
        ),
        (
            "SELECT * FROM orders WHERE n = 'a'",
            &["filter", "full scan on orders"],
        ),
        (
            "SELECT shop, n FROM orders ORDER BY shop, n LIMIT 3 OFFSET 1",
            &[
                "limit 3 offset 1",
                "ordered by the primary key (no sort)",
                "full scan on orders",
            ],
        ),
        (
            "SELECT * FROM orders ORDER BY shop DESC",
            &["sort", "full scan on orders"],
        ),
        (
            "SELECT * FROM orders ORDER BY n",
            &["sort", "full scan on orders"],
        ),
        (
            "SELECT qty, count(*) FROM orders GROUP BY qty",
            &[
                "aggregate (1 group expression, 1 aggregate)",
                "full scan on orders",
            ],
        ),
        (
            "SELECT o.n, s.name FROM orders o JOIN shops s ON o.shop = s.id",
            &[
                "hash join on o and s",
                "full scan on orders",
                "full scan on shops (into the hash table)",
            ],
        ),
        // Writes: planned, not run.
        (
            "UPDATE orders SET qty = 9 WHERE shop = 1 AND n = 'a'",
            &["update orders", "filter", "point get on orders (primary key)"],
        ),
        (
            "UPDATE orders o SET qty = qty + 1 WHERE o.code = 'x'",
            &[
                "update orders",
                "filter",
                "index lookup on orders using orders_code_key (unique)",
            ],
        ),
        ("UPDATE orders SET qty = 0", &["update orders", "full scan on orders"]),
        (
            "DELETE FROM orders WHERE shop = 2",
            &[
                "delete from orders",
                "filter",
                "range scan on orders (primary key: 1 column fixed)",
            ],
        ),
        (
            "DELETE FROM orders WHERE qty = 3",
            &["delete from orders", "filter", "index lookup on orders using orders_qty"],
        ),
        (
            "INSERT INTO shops VALUES (3, 'three'), (4, 'four')",
            &["insert into shops (2 rows)"],
        ),
        (
            "INSERT INTO shops VALUES (1, 'uno') ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            &["insert into shops (1 row)", "on conflict do update"],
        ),
        (
            "INSERT INTO shops SELECT shop + 10, n FROM orders WHERE shop = 1",
            &[
                "insert into shops",
                "filter",
                "range scan on orders (primary key: 1 column fixed)",
            ],
        ),
    ];
    for (query, want) in cases {
        assert_eq!(explain(&db, query).await, *want, "EXPLAIN {query}");
    }

    let after = db
        .query(
            "SELECT shop, n, qty, code FROM orders ORDER BY shop, n",
            &[],
        )
        .await
        .unwrap();
    let show = |rows: &[tokio_postgres::Row]| -> Vec<String> {
        rows.iter()
            .map(|r| {
                format!(
                    "{:?} {:?} {:?} {:?}",
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i32>(2),
                    r.get::<_, Option<String>>(3)
                )
            })
            .collect()
    };
    assert_eq!(
        show(&after),
        show(&before),
        "an EXPLAIN of a write changed the rows"
    );
    let shops = db.query("SELECT count(*) FROM shops", &[]).await.unwrap();
    assert_eq!(
        shops[0].get::<_, i64>(0),
        2,
        "an EXPLAIN of an INSERT inserted"
    );
    // A plan of a write that could not run is refused as the write would be.
    for (bad, code) in [
        ("EXPLAIN UPDATE nowhere SET x = 1", "42P01"),
        ("EXPLAIN DELETE FROM orders WHERE nope = 1", "42703"),
        (
            "EXPLAIN INSERT INTO shops VALUES (1, 'x') ON CONFLICT (name) DO NOTHING",
            "42P10",
        ),
        ("EXPLAIN CREATE TABLE t (a INT8 PRIMARY KEY)", "0A000"),
    ] {
        let e = db.query(bad, &[]).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some(code), "{bad}: {e:?}");
    }

    // The primary key's order, read without a sort, is ORDER BY's order.
    let rows = db
        .query(
            "SELECT shop, n FROM orders ORDER BY shop, n LIMIT 3 OFFSET 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            (1, "z".to_string()),
            (2, "a".to_string()),
            (2, "b".to_string())
        ]
    );
    let rows = db
        .query("SELECT n FROM orders WHERE shop = 2 ORDER BY shop", &[])
        .await
        .unwrap();
    assert_eq!(strings(&rows, 0), ["a", "b"]);

    // SHOW TABLES, by name; SHOW CREATE TABLE, whose text makes the same table.
    let tables = db.query("SHOW TABLES", &[]).await.unwrap();
    assert_eq!(strings(&tables, 0), ["orders", "shops"]);
    let shown = db.query("SHOW CREATE TABLE orders", &[]).await.unwrap();
    assert_eq!(shown[0].get::<_, String>(0), "orders");
    let create: String = shown[0].get(1);
    assert!(
        create.starts_with("CREATE TABLE orders (")
            && create.contains("qty integer NOT NULL DEFAULT 7")
            && create.contains("PRIMARY KEY (shop, n)")
            && create.contains("CREATE INDEX orders_qty ON orders (qty);"),
        "{create}"
    );
    db.batch_execute(&create.replace("orders", "copied"))
        .await
        .unwrap();
    let again: String = db
        .query_one("SHOW CREATE TABLE copied", &[])
        .await
        .unwrap()
        .get(1);
    assert_eq!(again, create.replace("orders", "copied"));
    let e = db
        .query("SHOW CREATE TABLE nowhere", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_streams_its_rows_and_a_cancel_request_stops_it() {
    const ROWS: i64 = 4_000;
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let db = c.sql_client(1).await.unwrap();
    db.batch_execute("CREATE TABLE pairs (k INT8 PRIMARY KEY, g INT8 NOT NULL)")
        .await
        .unwrap();
    for b in 0..ROWS / 500 {
        let values: Vec<String> = (b * 500..(b + 1) * 500)
            .map(|k| format!("({k}, {})", k % 2))
            .collect();
        db.batch_execute(&format!("INSERT INTO pairs VALUES {}", values.join(",")))
            .await
            .unwrap();
    }

    // Read whole, streamed: every row, in key order.
    let other = c.sql_client(2).await.unwrap();
    let rows = other
        .query_raw("SELECT k FROM pairs", std::iter::empty::<i64>())
        .await
        .unwrap();
    pin_mut!(rows);
    let mut next = 0i64;
    while let Some(row) = rows.next().await {
        assert_eq!(row.unwrap().get::<_, i64>(0), next);
        next += 1;
    }
    assert_eq!(next, ROWS);

    // A join of 8 million rows (every row meets the 2,000 of its parity): its first
    // rows come while the rest are still to be made (a node that made them all first
    // would hold about a gigabyte, and answer after the cancel), and a cancel request
    // after the first row ends it with 57014.
    let all = ROWS * ROWS / 2;
    let rows = db
        .query_raw(
            "SELECT a.k, b.k FROM pairs a JOIN pairs b ON a.g = b.g",
            std::iter::empty::<i64>(),
        )
        .await
        .unwrap();
    pin_mut!(rows);
    let first = tokio::time::timeout(Duration::from_secs(30), rows.next())
        .await
        .expect("no first row of the join in 30 s")
        .unwrap()
        .unwrap();
    assert_eq!(first.get::<_, i64>(0) % 2, first.get::<_, i64>(1) % 2);
    db.cancel_token().cancel_query(NoTls).await.unwrap();
    let mut got = 1;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(30), rows.next())
            .await
            .expect("the cancelled query neither ended nor sent a row in 30 s")
        {
            Some(Ok(_)) => got += 1,
            Some(Err(e)) => break e,
            None => panic!("the cancelled query sent all {got} rows"),
        }
    };
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    assert!(got < all, "{got} rows");
    eprintln!("{got} of {all} rows before the cancel took effect");

    // The connection serves on, and a cancel that comes between statements touches
    // none of the next ones (given the time to arrive: as with Postgres, one sent just
    // before a statement may land on it).
    db.cancel_token().cancel_query(NoTls).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM pairs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS);
    let e = db.simple_query("SELECT * FROM nope").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));
    let rows = db
        .simple_query("SELECT k FROM pairs WHERE k < 3")
        .await
        .unwrap();
    let n = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(n, 3);
}

/// The sum over the nodes of a counter's value in their /metrics.
fn counter(c: &TestCluster, name: &str) -> f64 {
    (0..c.nodes.len())
        .filter_map(|i| c.http_get(i, "/metrics").ok())
        .flat_map(|(_, text)| {
            text.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_table_over_a_transactions_limit_drops_and_its_rows_are_deleted_after() {
    // 6,000 rows and as many index entries: more keys than one transaction may
    // write (10,000), so the rows cannot go in the drop's own transaction.
    const ROWS: usize = 6_000;
    let c = TestCluster::start_initialized(3, &[]).await.unwrap();
    let db = c.sql_client(0).await.unwrap();
    db.batch_execute(
        "CREATE TABLE big (id INT8 PRIMARY KEY, v TEXT); CREATE INDEX big_v ON big (v)",
    )
    .await
    .unwrap();
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(2_000) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, 'v{i}')")).collect();
        db.batch_execute(&format!("INSERT INTO big VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
    let n: i64 = db
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS as i64);
    let before = counter(&c, "shoal_sql_dropped_keys_deleted_total");

    db.batch_execute("DROP TABLE big").await.unwrap();
    let e = db.query("SELECT count(*) FROM big", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));
    // The name is free at once, for a table of its own.
    db.batch_execute(
        "CREATE TABLE big (id INT8 PRIMARY KEY, w INT4); INSERT INTO big VALUES (1, 2)",
    )
    .await
    .unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the new table sees none of the old one's rows");

    // The old rows and index entries are deleted after the drop, all of them.
    let want = (2 * ROWS) as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut deleted = 0.0;
    while std::time::Instant::now() < deadline {
        deleted = counter(&c, "shoal_sql_dropped_keys_deleted_total") - before;
        if deleted >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(deleted, want, "keys of the dropped table deleted");
    let n: i64 = db
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the cleanup left the new table alone");
}
