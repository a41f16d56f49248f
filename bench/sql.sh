#!/usr/bin/env bash
# SQL beside the KV API, and shoal beside PostgreSQL, in one run on this machine:
#   bench/sql.sh            3 rounds of 10 s per run (about 8 minutes once built)
#   bench/sql.sh --quick    3 rounds of 4 s per run, writes bench/results-quick.md
# writes its section of bench/RESULTS.md.
#
# A 3-node shoal cluster on loopback and a local PostgreSQL server (Debian's,
# fsync=on, synchronous_commit=on, data on the same disk), 10,000 records each.
# 1. The same operation through the KV API and through SQL, one load generator
#    (shoal-bench, 64 clients): a linearizable get against
#    `SELECT v FROM bench_kv WHERE k = $1`, a put against an upsert of one row
#    (`INSERT ... ON CONFLICT (k) DO UPDATE`), prepared; KV over 8 SDK connections,
#    SQL over 64 Postgres connections spread over the nodes.
# 2. pgbench -n -M prepared, 64 connections, the scripts of bench/sql/ (a point
#    select and a single-row UPDATE by primary key), against shoal (its three nodes'
#    SQL ports in turn) and against PostgreSQL.
# Targets in alternation, medians of the rounds. The hand-written notes between
# `<!-- sql-why -->` markers in the section are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h | --help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  "" | --quick) ;;
  *) echo "usage: $0 [--quick | --help]" >&2; exit 2 ;;
esac
quick=0
[ "${1:-}" = "--quick" ] && quick=1
source scripts/env.sh
source bench/cluster.sh
cargo build --release --quiet -p shoal-cli -p shoal-bench
bin="$CARGO_TARGET_DIR/release"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$pgbin/pgbench" ] || { echo "no pgbench in $pgbin (scripts/env.sh installs postgresql)" >&2; exit 1; }

secs=10; [ "$quick" = 1 ] && secs=4
records=10000
work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/bench-sql}"
rm -rf "$work"
mkdir -p "$work"
# The Postgres server runs as its own user, which must reach its directory: one
# under /tmp (a home directory is often closed to other users).
pgdir=$(mktemp -d /tmp/shoal-bench-pg.XXXXXX)
chmod 755 "$pgdir"
results="$work/results.jsonl"
pg_started=0
cleanup() {
  shoal_stop sqlb 2>/dev/null || true
  [ "$pg_started" = 1 ] && tests/sql/postgres.sh stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$pgdir"
}
trap cleanup EXIT

shoal_cluster sqlb "$work" "$bin" 27500
pg_dsn=$(tests/sql/postgres.sh start "$pgdir")
pg_started=1

# pgbench's table, 10,000 rows, in both.
rows_sql() {
  python3 - "$records" <<'PY'
import sys
n = int(sys.argv[1])
print("DROP TABLE IF EXISTS pgb; CREATE TABLE pgb (k INT8 PRIMARY KEY, v INT8 NOT NULL);")
for s in range(1, n + 1, 500):
    print("INSERT INTO pgb VALUES " + ",".join(f"({k}, 0)" for k in range(s, min(s + 500, n + 1))) + ";")
PY
}
IFS=, read -r -a sql_addrs <<<"$sqlb_sql"
shoal_dsn="postgresql://root@${sql_addrs[0]}/defaultdb"
rows_sql | psql -q -v ON_ERROR_STOP=1 "$shoal_dsn" >/dev/null
rows_sql | psql -q -v ON_ERROR_STOP=1 "$pg_dsn" >/dev/null

common=(--records "$records" --duration "$secs" --clients 64 --value-size 256 --json "$results")
"$bin/shoal-bench" --target shoal --endpoints "$sqlb_eps" --workload put --load --operations 1 \
  --records "$records" --clients 64 >/dev/null
"$bin/shoal-bench" --target sql --endpoints "$sqlb_sql" --workload put --load --operations 1 \
  --records "$records" --clients 64 --connections 64 >/dev/null

# One pgbench run: a JSON record like shoal-bench's.
pgbench_run() {
  local target=$1 script=$2 round=$3 host port out
  shift 3
  if [ "$target" = shoal ]; then
    # pgbench takes one host: each round starts on the next node.
    IFS=: read -r host port <<<"${sql_addrs[$(((round - 1) % 3))]}"
    out=$("$pgbin/pgbench" -n -M prepared -c 64 -j 2 -T "$secs" -f "bench/sql/$script.sql" \
      -h "$host" -p "$port" -U root defaultdb 2>&1) || { echo "$out" >&2; return 1; }
  else
    out=$("$pgbin/pgbench" -n -M prepared -c 64 -j 2 -T "$secs" -f "bench/sql/$script.sql" \
      "$pg_dsn" 2>&1) || { echo "$out" >&2; return 1; }
  fi
  python3 - "$target" "$script" "$round" "$secs" <<PY >>"$results"
import json, re, sys
target, script, rnd, secs = sys.argv[1:]
out = """$out"""
tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
lat = float(re.search(r"latency average = ([0-9.]+) ms", out).group(1))
failed = re.search(r"number of failed transactions: ([0-9]+)", out)
print(json.dumps({"label": f"round {rnd}", "target": f"pgbench-{target}", "workload": script,
                  "clients": 64, "seconds": float(secs), "ops_per_sec": tps,
                  "errors": int(failed.group(1)) if failed else 0,
                  "latency_ms": {"mean": lat}}))
PY
  python3 -c 'import json, sys
r = json.loads(sys.stdin.readlines()[-1])
print("| %s | pgbench %s | %s | 64 | %.0f | mean %.2f ms |" % (r["label"], sys.argv[1], r["workload"], r["ops_per_sec"], r["latency_ms"]["mean"]))' "$target" <"$results"
}

for r in 1 2 3; do
  for wl in get put; do
    extra=(); [ "$wl" = get ] && extra=(--consistency linearizable)
    "$bin/shoal-bench" --target shoal --endpoints "$sqlb_eps" --workload "$wl" --connections 8 \
      --label "round $r" "${extra[@]}" "${common[@]}"
    "$bin/shoal-bench" --target sql --endpoints "$sqlb_sql" --workload "$wl" --connections 64 \
      --label "round $r" "${extra[@]}" "${common[@]}"
  done
  for script in point-select update; do
    pgbench_run shoal "$script" "$r"
    pgbench_run postgres "$script" "$r"
  done
done

out="bench/RESULTS.md"; [ "$quick" = 1 ] && out="bench/results-quick.md"
python3 bench/section.py get "$out" sql-why >"$work/why.md"
python3 - "$results" "$0 $*" >"$work/section.md" <<'PY'
import json, os, platform, statistics, subprocess, sys
results, command = sys.argv[1:]
command = command.strip()
runs = [json.loads(l) for l in open(results) if l.strip()]
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
med = statistics.median
def pick(target, workload):
    rs = [r for r in runs if r["target"] == target and r["workload"] == workload]
    return {
        "ops": med(r["ops_per_sec"] for r in rs),
        "p50": med(r["latency_ms"].get("p50", float("nan")) for r in rs),
        "mean": med(r["latency_ms"]["mean"] for r in rs),
        "errors": sum(r["errors"] for r in rs),
        "rounds": ", ".join(f"{r['ops_per_sec']:.0f}" for r in rs),
    }
print("## SQL\n")
print(f"Produced by `{command}` at {sh('date -u +%Y-%m-%dT%H:%MZ')}, shoal {sh('git rev-parse --short HEAD')} (release build), {sh('ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1')}/postgres {sh('psql --version').split()[-1]}.")
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
print(f"Machine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}; 3 shoal nodes on loopback and one PostgreSQL")
print("server (fsync=on, synchronous_commit=on), data on the same disk, the load generators on the same cores.")
print(f"10,000 records; medians of 3 rounds of {runs[0]['seconds']:.0f} s, targets in alternation, 64 clients.\n")
print("Same operation, KV API against SQL (`shoal-bench`; KV: `--target shoal --connections 8`, SQL: `--target sql")
print("--connections 64`, prepared statements, 256-byte values). Latencies in ms.\n")
print("| operation | KV ops/s | SQL ops/s | SQL/KV | KV p50 | SQL p50 | SQL mean | SQL runs (ops/s) | errors (KV / SQL) |")
print("|---|---|---|---|---|---|---|---|---|")
goals = []
for w, name in [("get", "point read by key (linearizable)"), ("put", "write of one key (SQL: upsert of one row)")]:
    k, s = pick("shoal", w), pick("sql", w)
    ratio = s["ops"] / k["ops"]
    goals.append((name, ratio))
    print(f"| {name} | {k['ops']:.0f} | {s['ops']:.0f} | {ratio:.2f}x | {k['p50']:.2f} | {s['p50']:.2f} | {s['mean']:.2f} | {s['rounds']} | {k['errors']} / {s['errors']} |")
print()
for name, ratio in goals:
    print(f"- Goal, SQL at least 0.7x the KV API's throughput, {name}: {ratio:.2f}x, {'met' if ratio >= 0.7 else 'missed'}.")
print("\npgbench (`pgbench -n -M prepared -c 64 -j 2 -T S -f bench/sql/SCRIPT.sql`; shoal: one node's SQL port per round,")
print("the next node the next round; latency: pgbench's average).\n")
print("| script | PostgreSQL tps | shoal tps | shoal/PostgreSQL | PostgreSQL mean ms | shoal mean ms | shoal runs (tps) | failed (PostgreSQL / shoal) |")
print("|---|---|---|---|---|---|---|---|")
for script in ["point-select", "update"]:
    p, s = pick("pgbench-postgres", script), pick("pgbench-shoal", script)
    print(f"| {script} | {p['ops']:.0f} | {s['ops']:.0f} | {s['ops'] / p['ops']:.2f}x | {p['mean']:.2f} | {s['mean']:.2f} | {s['rounds']} | {p['errors']} / {s['errors']} |")
PY
{ cat "$work/section.md"; echo; echo "<!-- sql-why -->"; cat "$work/why.md"; echo "<!-- /sql-why -->"; } >"$work/full.md"
python3 bench/section.py put "$out" sql "$work/full.md"
cat "$work/section.md"
echo "wrote $out"
