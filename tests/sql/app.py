#!/usr/bin/env python3
"""An application on psycopg 3: what a Python service does with its database.

    app.py --dsn postgresql://root@HOST:PORT/defaultdb

It creates its tables, writes with parameters (server-side binding: the extended
protocol, in text and in binary), reads its rows back as Python values, runs a
transaction that commits and one that rolls back, and meets the errors an
application meets (a duplicate key, a missing table, a NOT NULL column, a bad
integer), each as psycopg's exception class for its SQLSTATE, the connection still
usable after each. It prints one line per step and `app: ok` at the end; any
mismatch raises, and the exit code is non-zero.

The same script runs against shoal and against a real PostgreSQL server (the test
does both), so what it expects is what Postgres answers.
"""

import argparse
import datetime
import sys

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb


def expect(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")
    print(f"app: {what}: ok")


def expect_error(conn, cls, sql, params=None):
    """Runs `sql` in its own transaction; it must fail with `cls`."""
    try:
        with conn.transaction():
            conn.execute(sql, params)
    except cls as e:
        print(f"app: {cls.__name__} ({e.sqlstate}): ok")
        return
    raise AssertionError(f"{sql!r} did not fail with {cls.__name__}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    args = ap.parse_args()

    with psycopg.connect(args.dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute("DROP TABLE IF EXISTS app_orders")
        conn.execute("DROP TABLE IF EXISTS app_users")
        conn.execute(
            "CREATE TABLE app_users ("
            " id INT8 PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT,"
            " active BOOL NOT NULL DEFAULT true, score FLOAT8,"
            " avatar BYTEA, joined TIMESTAMPTZ, prefs JSONB)"
        )
        conn.execute(
            "CREATE TABLE app_orders (user_id INT8, n INT4, total INT8 NOT NULL,"
            " PRIMARY KEY (user_id, n))"
        )

        joined = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.timezone.utc)
        users = [
            (1, "ada@example.com", "Ada", 9.5, b"\x00\xff", joined, Jsonb({"theme": "dark"})),
            (2, "bob@example.com", "Bob", None, None, None, None),
            (3, "cy@example.com", None, 1.25, b"", joined, Jsonb([1, 2])),
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO app_users (id, email, name, score, avatar, joined, prefs)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                users,
            )
        # Binary parameters and binary results.
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT id, email, score, avatar FROM app_users WHERE id = %s", (1,))
            expect(cur.fetchone(), (1, "ada@example.com", 9.5, b"\x00\xff"), "binary row")

        rows = conn.execute(
            "SELECT id, name, active, score, joined, prefs FROM app_users ORDER BY id"
        ).fetchall()
        expect(
            rows,
            [
                (1, "Ada", True, 9.5, joined, {"theme": "dark"}),
                (2, "Bob", True, None, None, None),
                (3, None, True, 1.25, joined, [1, 2]),
            ],
            "rows as Python values",
        )

        # A transaction that commits: an order and its user's score, together.
        with conn.transaction():
            conn.execute("INSERT INTO app_orders VALUES (%s, %s, %s)", (1, 1, 250))
            conn.execute("UPDATE app_users SET score = score + %s WHERE id = %s", (1.0, 1))
        # One that rolls back: nothing of it stays.
        try:
            with conn.transaction():
                conn.execute("INSERT INTO app_orders VALUES (%s, %s, %s)", (2, 1, 99))
                raise RuntimeError("the application changes its mind")
        except RuntimeError:
            pass
        expect(
            conn.execute("SELECT user_id, n, total FROM app_orders").fetchall(),
            [(1, 1, 250)],
            "committed and rolled back transactions",
        )
        expect(
            conn.execute("SELECT score FROM app_users WHERE id = 1").fetchone()[0],
            10.5,
            "update in the transaction",
        )

        # The errors an application meets, each as its class; the connection goes on.
        expect_error(
            conn,
            errors.UniqueViolation,
            "INSERT INTO app_users (id, email) VALUES (%s, %s)",
            (4, "ada@example.com"),
        )
        expect_error(conn, errors.UniqueViolation, "INSERT INTO app_users (id, email) VALUES (1, 'x@y')")
        expect_error(conn, errors.UndefinedTable, "SELECT * FROM app_nothing")
        expect_error(conn, errors.UndefinedColumn, "SELECT nope FROM app_users")
        expect_error(conn, errors.NotNullViolation, "INSERT INTO app_orders (user_id, n) VALUES (5, 5)")
        expect_error(conn, errors.InvalidTextRepresentation, "SELECT * FROM app_users WHERE id = 'x'")
        expect_error(conn, errors.SyntaxError, "SELEKT 1")

        # An upsert with RETURNING, and an aggregate over the table.
        got = conn.execute(
            "INSERT INTO app_orders VALUES (%s, %s, %s)"
            " ON CONFLICT (user_id, n) DO UPDATE SET total = app_orders.total + excluded.total"
            " RETURNING total",
            (1, 1, 50),
        ).fetchone()
        expect(got, (300,), "upsert returning")
        got = conn.execute(
            "SELECT count(*), sum(total) FROM app_orders WHERE user_id = %s", (1,)
        ).fetchone()
        expect(got, (1, 300), "aggregate")
        deleted = conn.execute("DELETE FROM app_users WHERE active AND id > %s", (1,)).rowcount
        expect(deleted, 2, "delete row count")

        conn.execute("DROP TABLE app_orders")
        conn.execute("DROP TABLE app_users")
    print("app: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
