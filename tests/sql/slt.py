#!/usr/bin/env python3
"""Runs SQL logic test files (a subset of sqllogictest) against a Postgres-wire server.

    python slt.py --dsn DSN [--fresh] [-v] FILE...

Each file runs on one connection of its own, in autocommit mode: explicit
BEGIN / COMMIT / ROLLBACK in a file drive its transactions. With --fresh, each
file runs in a new database (slt_<pid>_<n>, created and dropped through the
DSN's own database), so files cannot see each other's tables.

Every statement is sent with the simple query protocol (psycopg sends a query
without parameters with PQsendQuery when results are asked for in text format
and prepare=False), and every column is read back as the server's text format.

File format, records separated by blank lines, `#` lines are comments:

    statement ok                  must succeed
    statement count N             must succeed and report N rows in its tag
    statement error SQLSTATE      must fail with exactly that SQLSTATE
    query [rowsort|nosort]        rows follow `----`, one per line, columns
    SQL...                        joined by single spaces; NULL as `NULL`,
    ----                          the empty string as `(empty)`
    row...
    query error SQLSTATE          must fail with exactly that SQLSTATE
    halt                          stop reading the file here

A `query` header may also carry a sqllogictest column-type word (e.g. `IT`),
which is ignored. Exits 1 on any mismatch, 0 otherwise; the last line printed
is `slt: N passed, N failed`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field

try:
    import psycopg
    from psycopg import sql as pgsql
    from psycopg.adapt import Loader
    from psycopg.conninfo import make_conninfo
except ImportError:  # pragma: no cover
    sys.exit(
        "slt.py needs psycopg 3: python3 -m venv $HOME/.cache/shoal/sqlvenv && "
        "$HOME/.cache/shoal/sqlvenv/bin/pip install 'psycopg[binary]'"
    )


class TextLoader(Loader):
    """Returns the server's text representation unchanged, as str."""

    def load(self, data):
        if isinstance(data, memoryview):
            data = bytes(data)
        return data.decode("utf-8", errors="backslashreplace")


def register_text_loaders(conn: psycopg.Connection) -> None:
    oids = {0}  # 0: psycopg's fallback for any type it does not know
    for t in psycopg.postgres.types:
        oids.add(t.oid)
        if getattr(t, "array_oid", 0):
            oids.add(t.array_oid)
    for oid in oids:
        conn.adapters.register_loader(oid, TextLoader)


SQLSTATE = re.compile(r"^[0-9A-Z]{5}$")


@dataclass
class Record:
    kind: str  # "statement" | "query" | "halt"
    line: int
    sql: str = ""
    expect_ok: bool = True
    sqlstate: str | None = None
    count: int | None = None
    sort: str = "nosort"
    rows: list[str] = field(default_factory=list)


class ParseError(Exception):
    pass


def parse(path: str) -> list[Record]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    records: list[Record] = []
    i = 0
    n = len(lines)

    def err(lineno: int, msg: str) -> ParseError:
        return ParseError(f"{path}:{lineno}: {msg}")

    while i < n:
        raw = lines[i].rstrip()
        if raw == "" or raw.startswith("#"):
            i += 1
            continue
        lineno = i + 1
        words = raw.split()
        head = words[0]
        i += 1
        if head == "halt":
            records.append(Record("halt", lineno))
            break
        if head not in ("statement", "query"):
            raise err(lineno, f"expected `statement` or `query`, got {raw!r}")
        rec = Record(head, lineno)
        args = words[1:]
        if head == "statement":
            if args == ["ok"]:
                pass
            elif len(args) == 2 and args[0] == "count":
                if not args[1].isdigit():
                    raise err(lineno, f"bad count {args[1]!r}")
                rec.count = int(args[1])
            elif len(args) == 2 and args[0] == "error":
                rec.expect_ok = False
                rec.sqlstate = args[1]
            else:
                raise err(lineno, f"bad statement header {raw!r}")
        else:
            if args and args[0] == "error":
                if len(args) != 2:
                    raise err(lineno, f"bad query header {raw!r}")
                rec.expect_ok = False
                rec.sqlstate = args[1]
            else:
                for a in args:
                    if a in ("rowsort", "nosort"):
                        rec.sort = a
                    elif re.fullmatch(r"[A-Z]+", a):
                        pass  # sqllogictest column types: not checked
                    else:
                        raise err(lineno, f"bad query header word {a!r}")
        if rec.sqlstate is not None and not SQLSTATE.match(rec.sqlstate):
            raise err(lineno, f"bad SQLSTATE {rec.sqlstate!r} (5 characters)")

        sql_lines: list[str] = []
        while i < n and lines[i].strip() != "" and lines[i].rstrip() != "----":
            if not lines[i].startswith("#"):
                sql_lines.append(lines[i].rstrip())
            i += 1
        if not sql_lines:
            raise err(lineno, "record without SQL")
        rec.sql = "\n".join(sql_lines)
        if i < n and lines[i].rstrip() == "----":
            if rec.kind != "query" or not rec.expect_ok:
                raise err(i + 1, "`----` only follows a `query` that expects rows")
            i += 1
            while i < n and lines[i].strip() != "":
                rec.rows.append(lines[i].rstrip())
                i += 1
        records.append(rec)
    return records


def cell(v) -> str:
    if v is None:
        return "NULL"
    if v == "":
        return "(empty)"
    return v


@dataclass
class Outcome:
    ok: bool
    sqlstate: str | None = None
    message: str = ""
    rows: list[str] | None = None
    rowcount: int = -1
    fatal: bool = False


def run_sql(conn: psycopg.Connection, sql: str) -> Outcome:
    try:
        with conn.cursor() as cur:
            # No parameters + text results + prepare=False: simple query protocol.
            cur.execute(sql, prepare=False)
            rows = None
            if cur.description is not None:
                rows = [" ".join(cell(v) for v in row) for row in cur.fetchall()]
            return Outcome(True, rows=rows, rowcount=cur.rowcount)
    except psycopg.Error as e:
        fatal = conn.closed or conn.broken
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return Outcome(False, sqlstate=e.sqlstate, message=msg, fatal=fatal)


def describe(o: Outcome) -> str:
    if o.ok:
        return f"success (rowcount {o.rowcount})"
    return f"error {o.sqlstate or '(no SQLSTATE)'}: {o.message}"


def check(rec: Record, o: Outcome) -> str | None:
    """Returns a description of the mismatch, or None."""
    if not rec.expect_ok:
        if o.ok:
            return f"expected: error {rec.sqlstate}\ngot:      {describe(o)}"
        if o.sqlstate != rec.sqlstate:
            return f"expected: error {rec.sqlstate}\ngot:      {describe(o)}"
        return None
    if not o.ok:
        return f"expected: success\ngot:      {describe(o)}"
    if rec.kind == "statement":
        if rec.count is not None and o.rowcount != rec.count:
            return f"expected: count {rec.count}\ngot:      count {o.rowcount}"
        return None
    if o.rows is None:
        return "expected: rows\ngot:      a statement that returns no rows"
    want, got = list(rec.rows), list(o.rows)
    if rec.sort == "rowsort":
        want.sort()
        got.sort()
    if want != got:
        w = "\n".join("    " + r for r in want) or "    (no rows)"
        g = "\n".join("    " + r for r in got) or "    (no rows)"
        return f"expected{' (rowsort)' if rec.sort == 'rowsort' else ''}:\n{w}\ngot:\n{g}"
    return None


def connect(conninfo: str) -> psycopg.Connection:
    conn = psycopg.connect(conninfo, autocommit=True)
    register_text_loaders(conn)
    return conn


def run_file(path: str, dsn: str, fresh: bool, seq: int, verbose: bool) -> tuple[int, int]:
    """Returns (passed, failed) for the file's records."""
    try:
        records = parse(path)
    except (OSError, ParseError) as e:
        print(f"FAIL {e}")
        return 0, 1

    admin = None
    conninfo = dsn
    dbname = None
    if fresh:
        dbname = f"slt_{os.getpid()}_{seq}"
        admin = connect(dsn)
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(dbname)))
        conninfo = make_conninfo(dsn, dbname=dbname)

    passed = failed = 0
    try:
        conn = connect(conninfo)
        try:
            for rec in records:
                if rec.kind == "halt":
                    break
                if verbose:
                    print(f"{path}:{rec.line}: {rec.sql.splitlines()[0]}")
                o = run_sql(conn, rec.sql)
                problem = check(rec, o)
                if problem is None:
                    passed += 1
                else:
                    failed += 1
                    print(f"FAIL {path}:{rec.line}")
                    print("  " + rec.sql.replace("\n", "\n  "))
                    print("  " + problem.replace("\n", "\n  "))
                    print()
                if o.fatal:
                    print(f"FAIL {path}:{rec.line}: connection lost; rest of file skipped")
                    failed += 1
                    break
        finally:
            conn.close()
    finally:
        if admin is not None:
            try:
                admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {}").format(pgsql.Identifier(dbname)))
            finally:
                admin.close()
    return passed, failed


def main() -> int:
    ap = argparse.ArgumentParser(description="Run SQL logic test files against a Postgres-wire server.")
    ap.add_argument("--dsn", required=True, help="e.g. postgresql://postgres@127.0.0.1:5432/defaultdb")
    ap.add_argument("--fresh", action="store_true", help="run each file in a database of its own (Postgres only)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each record as it runs")
    ap.add_argument("files", nargs="+", metavar="FILE")
    args = ap.parse_args()

    total_pass = total_fail = 0
    for seq, path in enumerate(args.files):
        try:
            p, f = run_file(path, args.dsn, args.fresh, seq, args.verbose)
        except psycopg.Error as e:
            print(f"FAIL {path}: cannot connect or set up: {e}")
            p, f = 0, 1
        total_pass += p
        total_fail += f
        print(f"{'ok  ' if f == 0 else 'FAIL'} {path}: {p} passed, {f} failed")
    print(f"slt: {total_pass} passed, {total_fail} failed")
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
