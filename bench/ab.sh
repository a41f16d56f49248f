#!/usr/bin/env bash
# Two builds of shoal side by side, in one run, on this machine:
#   bench/ab.sh BASE_BIN NEW_BIN            3 rounds of 10 s per run over 100,000 records
#   bench/ab.sh --quick BASE_BIN NEW_BIN    3 rounds of 4 s per run over 10,000 records
#   bench/ab.sh [--quick] --sql BASE_BIN NEW_BIN   the same operations through SQL
#     (a point select and an upsert of one row, prepared, over 64 Postgres
#     connections spread over the nodes; `shoal-bench --target sql`)
#   bench/ab.sh [--quick] --ranges N BASE_BIN NEW_BIN   the records split into N
#     ranges in each cluster (`shoal-bench --split-into`) before the runs
#   bench/ab.sh [--quick] --secure BIN BIN   insecure (BASE) against secure (NEW):
#     the NEW cluster runs with certificates made by `shoal cert` (TLS on every
#     connection, between nodes too) and its clients connect over TLS; adds put at 1
#     client (latency) and reports the goals: at most 10% less throughput, at most
#     0.1 ms more p50
# BASE_BIN and NEW_BIN are build directories (e.g. a worktree's
# $CARGO_TARGET_DIR/release) each holding `shoal` and `shoal-bench`; this script builds
# nothing. Prints a Markdown report on stdout; the JSON records, the node CPU samples
# and the nodes' logs stay in $SHOAL_BENCH_DIR (default ~/.cache/shoal/ab-run).
#
# Starts a 3-node cluster on loopback from each build (data on the same disk), loads
# the same records into both (each with its own load generator), then runs each
# workload against both in alternation (base, new, base, new, ...): put at 64
# clients, and linearizable get at 64 clients over the loaded records, 8 connections.
# During each run: each node's CPU. Reports medians over the rounds of throughput, p50
# and p99, the NEW/BASE ratios, and the goals for put at 64 clients (NEW throughput
# at least 0.9x BASE's, NEW p50 at most 1.1x BASE's). The clusters are started once
# and stopped at the end. The nodes take their other settings from the environment
# (`shoal start`'s SHOAL_* variables), e.g. SHOAL_RANGE_MAX_BYTES=1073741824 keeps
# each cluster one range: a build that keeps old versions grows its range past the
# default split size within a full run, and a split alone changes the cost of a write.
# The report lists each cluster's ranges after loading and after the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [--quick] [--ranges N] [--sql | --secure] BASE_BIN NEW_BIN   (or --help)"
command="$0 $*"
quick=0
secure=0
target=shoal
split=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    --quick) quick=1; shift ;;
    --sql) target=sql; shift ;;
    --secure) secure=1; shift ;;
    --ranges)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "--ranges takes a count of ranges" >&2; exit 2; }
      split=(--split-into "$2"); shift 2 ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }
source bench/cluster.sh
ab_bins "$1" "$2"

if [ "$quick" = 1 ]; then
  rounds=3; secs=4; records=10000
else
  rounds=3; secs=10; records=100000
fi
builds=(base new)
declare -A bin=([base]="$base_bin" [new]="$new_bin")
workloads=("put:64:linearizable" "get:64:linearizable")
[ "$secure" = 1 ] && workloads+=("put:1:linearizable")

work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/ab-run}"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.jsonl"
base_pids=(); new_pids=()
trap 'shoal_stop base; shoal_stop new' EXIT

shoal_cluster base "$work" "$base_bin" 27400
# The flags of NEW's clients (and, with --secure, of its nodes).
new_flags=()
if [ "$secure" = 1 ]; then
  for c in "create-ca" "create-node 127.0.0.1 localhost" "create-client root"; do
    # shellcheck disable=SC2086
    "$new_bin/shoal" cert $c --certs-dir "$work/certs" --ca-key "$work/ca.key" >/dev/null
  done
  new_flags=(--certs-dir "$work/certs")
fi
shoal_cluster new "$work" "$new_bin" 27500 "${new_flags[@]}"
declare -A flags=([base]="" [new]="${new_flags[*]}")
declare -A eps=([base]="$base_eps" [new]="$new_eps")
connections=8
if [ "$target" = sql ]; then
  declare -A eps=([base]="$base_sql" [new]="$new_sql")
  connections=64
fi

for b in "${builds[@]}"; do
  # shellcheck disable=SC2086
  "${bin[$b]}/shoal-bench" --target "$target" --endpoints "${eps[$b]}" --workload put --load \
    --operations 1 --records "$records" --clients 64 --connections "$connections" ${flags[$b]} \
    "${split[@]}" >/dev/null
done
# Where each cluster's ranges and their leaders are (a write's timestamp is local on
# the meta range's leader, one call to it from any other node).
declare -A grpc=([base]="$base_eps" [new]="$new_eps")
ranges() {
  for b in "${builds[@]}"; do
    # shellcheck disable=SC2086
    SHOAL_HOST="${grpc[$b]}" "${bin[$b]}/shoal" range ls ${flags[$b]} >"$work/ranges-$b-$1.txt" 2>&1 || true
  done
}
ranges loaded

common=(--target "$target" --records "$records" --duration "$secs" --connections "$connections"
  --value-size 256 --json "$results")
for r in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    IFS=: read -r wl clients cons <<<"$w"
    for b in "${builds[@]}"; do
      # shellcheck disable=SC2086
      bench_run "$b" "$work/cpu-$b-$wl-$clients-$r" "$secs" "${bin[$b]}" \
        --endpoints "${eps[$b]}" --workload "$wl" --clients "$clients" \
        --consistency "$cons" --label "$b round $r" "${common[@]}" ${flags[$b]}
    done
  done
done
ranges run

python3 - "$results" "$work" "$command" "$base_bin" "$new_bin" "$secure" <<'PY'
import json, statistics, subprocess, sys
from collections import defaultdict
results, work, command, base_bin, new_bin, secure = sys.argv[1:]
secure = secure == "1"
med = statistics.median
runs = [json.loads(l) for l in open(results) if l.strip()]
groups = defaultdict(list)
for r in runs:
    build, _, rnd = r["label"].partition(" round ")
    r["build"], r["round"] = build, int(rnd)
    groups[(r["workload"], r["clients"], r["consistency"], build)].append(r)

def cpu(r):
    path = f"{work}/cpu-{r['build']}-{r['workload']}-{r['clients']}-{r['round']}"
    return [float(v) for v in open(path).read().split()]

sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
print(f"# A/B: two builds of shoal (target `{runs[0]['target']}`)\n")
print(f"- command: `{command.strip()}`, run at {sh('date -u +%Y-%m-%dT%H:%MZ')}")
print(f"- BASE: `{base_bin}`; NEW: `{new_bin}`")
if secure:
    print("- BASE runs insecure (`--insecure`, plaintext); NEW runs secure (`--certs-dir`: TLS "
          "between clients and nodes and between nodes, certificates from `shoal cert`)")
print(f"- {sh('nproc')} cores; two 3-node clusters on loopback, {runs[0]['records']} records of "
      f"{runs[0]['value_size']} bytes loaded in each; {runs[0]['connections']} connections; "
      "runs in alternation, base then new. Latencies in ms; node CPU in % of one core.\n")
print("## Runs\n")
print("| workload | clients | reads | round | build | ops/s | p50 | p99 | errors | node CPU |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in sorted(runs, key=lambda r: (r["workload"] != "put", r["clients"], r["round"], r["build"] != "base")):
    print(f"| {r['workload']} | {r['clients']} | {r['consistency'] if r['workload'] != 'put' else '-'} | {r['round']} "
          f"| {r['build']} | {r['ops_per_sec']:.0f} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} "
          f"| {r['errors']} | {' / '.join(f'{c:.0f}' for c in cpu(r))} |")
print("\n## Medians\n")
print("| workload | clients | reads | base ops/s | new ops/s | new/base | base p50 | new p50 | new/base | base p99 | new p99 | new/base | node CPU base | node CPU new |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
keys = []
for (w, c, cons, _) in groups:
    if (w, c, cons) not in keys:
        keys.append((w, c, cons))
m = {}
for k in keys:
    row = {}
    for b in ("base", "new"):
        rs = groups[k + (b,)]
        cpus = [cpu(r) for r in rs]
        row[b] = dict(
            ops=med(r["ops_per_sec"] for r in rs),
            p50=med(r["latency_ms"]["p50"] for r in rs),
            p99=med(r["latency_ms"]["p99"] for r in rs),
            cpu=" / ".join(f"{med(c[i] for c in cpus):.0f}" for i in range(len(cpus[0]))),
        )
    m[k] = row
    b, n = row["base"], row["new"]
    w, c, cons = k
    print(f"| {w} | {c} | {cons if w != 'put' else '-'} | {b['ops']:.0f} | {n['ops']:.0f} | {n['ops'] / b['ops']:.2f}x "
          f"| {b['p50']:.2f} | {n['p50']:.2f} | {n['p50'] / b['p50']:.2f}x | {b['p99']:.2f} | {n['p99']:.2f} "
          f"| {n['p99'] / b['p99']:.2f}x | {b['cpu']} | {n['cpu']} |")
if secure:
    print("\n## Goals (secure NEW against insecure BASE)\n")
    for k in (("put", 64, "linearizable"), ("get", 64, "linearizable")):
        if k in m:
            t = m[k]["new"]["ops"] / m[k]["base"]["ops"]
            print(f"- {k[0]} at 64 clients, throughput >= 0.9x: {t:.2f}x, {'met' if t >= 0.9 else 'missed'}")
    one = m.get(("put", 1, "linearizable"))
    if one:
        d = one["new"]["p50"] - one["base"]["p50"]
        print(f"- put at 1 client, p50 at most 0.1 ms more: {d:+.3f} ms "
              f"({one['base']['p50']:.3f} -> {one['new']['p50']:.3f}), {'met' if d <= 0.1 else 'missed'}")
put = m.get(("put", 64, "linearizable"))
if put and not secure:
    print("\n## Goals (put at 64 clients)\n")
    t = put["new"]["ops"] / put["base"]["ops"]
    l = put["new"]["p50"] / put["base"]["p50"]
    print(f"- NEW throughput >= 0.9x BASE: {t:.2f}x, {'met' if t >= 0.9 else 'missed'}")
    print(f"- NEW p50 <= 1.1x BASE: {l:.2f}x, {'met' if l <= 1.1 else 'missed'}")
errs = sum(r["errors"] for r in runs)
if errs:
    print(f"\n{errs} errors in all: see the runs above.")
for b in ("base", "new"):
    for when, what in (("loaded", "after loading"), ("run", "after the runs")):
        print(f"\nRanges of the {b} cluster (`shoal range ls` {what}):\n")
        print("```")
        print(open(f"{work}/ranges-{b}-{when}.txt").read().rstrip())
        print("```")
PY
