#!/usr/bin/env bash
# Ranges at scale, on this machine:
#   bench/ranges.sh            64 ranges vs 1; 1,000 idle ranges (about 10 minutes)
#   bench/ranges.sh --quick    about 250 idle ranges, shorter runs (about 5 minutes)
#   bench/ranges.sh --stretch  also 10,000 idle ranges (about 25 minutes)
# writes its section of bench/RESULTS.md (--quick: bench/results-quick.md).
#
# 1. Throughput with 1 range and with 64 ranges under the same load: two 3-node
#    clusters (one left whole, one split in 64 at equal key counts), the put workload
#    and linearizable gets with 64 clients, run on each cluster in alternation, 3 rounds.
# 2. Idle ranges: the 64-range cluster split further into 1,000 ranges, left idle
#    until its ranges quiesce; each node's CPU over 30 s. Then the same cluster
#    restarted with --disable-quiescence (every range's timers and heartbeats running),
#    for comparison.
# 3. With --stretch: the same cluster, quiesced again, split on to 10,000 ranges; each
#    node's CPU and memory once they quiesce.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0; stretch=0
[ "${1:-}" = "--quick" ] && quick=1
[ "${1:-}" = "--stretch" ] && stretch=1
source scripts/env.sh
source bench/cluster.sh
cargo build --release --quiet -p shoal-cli -p shoal-bench
bin="$CARGO_TARGET_DIR/release"

if [ "$quick" = 1 ]; then
  idle=200; secs=4; records=20000; cpu_secs=10
else
  idle=1000; secs=10; records=100000; cpu_secs=30
fi
work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/bench-ranges}"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.jsonl"
one_pids=(); many_pids=()
trap 'kill "${one_pids[@]}" "${many_pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

shoal_cluster one "$work" "$bin" 27100
shoal_cluster many "$work" "$bin" 27200

# --- 1 range vs 64 ranges ---------------------------------------------------------
common=(--target shoal --records "$records" --duration "$secs" --clients 64 --connections 8 --value-size 256 --json "$results")
"$bin/shoal-bench" --endpoints "$one_eps" --load --operations 0 --records "$records" --target shoal --clients 64 >/dev/null
"$bin/shoal-bench" --endpoints "$many_eps" --split-into 64 --load --operations 0 --records "$records" --target shoal --clients 64 >/dev/null
for r in 1 2 3; do
  for w in put get; do
    "$bin/shoal-bench" --endpoints "$one_eps" --workload "$w" --label "1 range" "${common[@]}"
    "$bin/shoal-bench" --endpoints "$many_eps" --workload "$w" --label "64 ranges" "${common[@]}"
  done
done
shoal_stop one

# --- idle ranges ------------------------------------------------------------------
# Resident memory of each node, in MiB; ranges in the routing table.
rss() { for p in "${many_pids[@]}"; do awk '/VmRSS/ {printf "%d ", $2 / 1024}' "/proc/$p/status"; done; }
count_ranges() {
  SHOAL_HOST="$many_eps" "$bin/shoal" range ls --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["ranges"]))'
}
"$bin/shoal-bench" --endpoints "$many_eps" --split-into "$idle" --operations 0 --records "$records" --target shoal >/dev/null
ranges_total=$(count_ranges)
# Waits until every range but the meta range is quiesced on the three nodes.
quiesced() {
  python3 - "$@" <<'PY'
import sys, urllib.request
n = 0
for port in sys.argv[1:]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    n += sum(1 for l in body.splitlines() if l.startswith('shoal_raft{metric="quiesced"') and l.endswith(" 1"))
print(n)
PY
}
# Waits (up to $1 s) until every range but the meta range is quiesced on the three
# nodes; sets q (replicas quiesced) and settle (seconds waited).
await_quiesced() {
  local start
  start=$(date +%s)
  while :; do
    q=$(quiesced 27211 27212 27213)
    [ "$q" -ge $(( (ranges_total - 1) * 3 )) ] && break
    if [ $(( $(date +%s) - start )) -gt "$1" ]; then echo "only $q replicas quiesced after $1 s" >&2; break; fi
    sleep 2
  done
  settle=$(( $(date +%s) - start ))
}
await_quiesced 300
cpu_quiet=$(shoal_cpu many "$cpu_secs")
rss_quiet=$(rss)
shoal_stop many
shoal_cluster many "$work" "$bin" 27200 --disable-quiescence
sleep 15
cpu_busy=$(shoal_cpu many "$cpu_secs")
shoal_stop many
idle_total=$ranges_total; idle_q=$q; idle_settle=$settle
stretch_line=""
if [ "$stretch" = 1 ]; then
  shoal_cluster many "$work" "$bin" 27200
  t0=$(date +%s)
  "$bin/shoal-bench" --endpoints "$many_eps" --split-into 10000 --operations 0 --records "$records" --target shoal >/dev/null \
    || echo "splitting into 10,000 ranges failed" >&2
  split_secs=$(( $(date +%s) - t0 ))
  ranges_total=$(count_ranges)
  await_quiesced 900
  cpu_stretch=$(shoal_cpu many "$cpu_secs")
  stretch_line="$ranges_total|$split_secs|$q|$settle|$cpu_stretch|$(rss)"
  shoal_stop many
fi

out="bench/RESULTS.md"; [ "$quick" = 1 ] && out="bench/results-quick.md"
python3 - "$results" "$idle_total" "$idle_q" "$idle_settle" "$cpu_quiet" "$cpu_busy" "$rss_quiet" "$0 $*" "$cpu_secs" "$stretch_line" >"$work/section.md" <<'PY'
import json, os, statistics, subprocess, sys
from collections import defaultdict
results, total, q, settle, quiet, busy, rss, command, secs, stretch = sys.argv[1:]
command = command.strip()
runs = [json.loads(l) for l in open(results) if l.strip()]
g = defaultdict(list)
for r in runs:
    g[(r["workload"], r["label"])].append(r)
med = lambda k, f: statistics.median(f(r) for r in g[k])
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
print("## Ranges: idle cost, and 64 ranges vs 1\n")
print(f"Produced by `{command}` at {sh('date -u +%Y-%m-%dT%H:%MZ')}, shoal {sh('git rev-parse --short HEAD')} (release build),")
print(f"{os.cpu_count()} cores; 3-node clusters on loopback, data on the same disk.\n")
print("Same load on a cluster left as 1 range and on one split into 64 (64 clients, 8 connections,")
print("256-byte values, medians of 3 rounds run in alternation):\n")
print("| workload | 1 range ops/s | 64 ranges ops/s | 64/1 | 1 range p99 ms | 64 ranges p99 ms |")
print("|---|---|---|---|---|---|")
for w in ("put", "get"):
    a, b = (w, "1 range"), (w, "64 ranges")
    oa, ob = med(a, lambda r: r["ops_per_sec"]), med(b, lambda r: r["ops_per_sec"])
    pa, pb = med(a, lambda r: r["latency_ms"]["p99"]), med(b, lambda r: r["latency_ms"]["p99"])
    print(f"| {w}{' (linearizable)' if w == 'get' else ''} | {oa:.0f} | {ob:.0f} | {ob / oa:.2f}x | {pa:.2f} | {pb:.2f} |")
fmt = lambda s: ", ".join(f"{v}%" for v in s.split())
print(f"\n{total} ranges (3 replicas each, on every node), idle: {q} of {3 * (int(total) - 1)} non-meta replicas")
print(f"quiesced {settle} s after the last split. CPU per node over {secs} s, in % of one core:\n")
print(f"- quiesced (default): {fmt(quiet)} (resident memory per node: {', '.join(v + ' MiB' for v in rss.split())})")
print(f"- with `--disable-quiescence` (every range's timers and heartbeats running): {fmt(busy)}")
if stretch:
    total, split_secs, q, settle, cpu, rss = stretch.split("|")
    print(f"\nStretch: the same cluster split on to {total} ranges ({split_secs} s of splits); {q} of")
    print(f"{3 * (int(total) - 1)} non-meta replicas quiesced {settle} s after the last split. CPU per node over")
    print(f"{secs} s: {fmt(cpu)} (resident memory per node: {', '.join(v + ' MiB' for v in rss.split())}).")
PY
python3 bench/section.py put "$out" ranges "$work/section.md"
echo "wrote the ranges section of $out"
