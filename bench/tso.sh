#!/usr/bin/env bash
# The timestamp oracle's throughput, on this machine:
#   bench/tso.sh            3 rounds of 10 s per run (about 2 minutes once built)
#   bench/tso.sh --quick    3 rounds of 4 s per run, writes bench/results-quick.md
# writes its section of bench/RESULTS.md (the hand-written notes in it, between
# `<!-- tso-why -->` markers, are kept).
#
# A 3-node cluster on loopback; `shoal-bench --workload tso` with 64 clients over 8
# connections (calls spread over the three nodes), asking 1 timestamp per call, then
# 16 per call (a gateway taking a small batch per transaction), in alternation.
# During each run: each node's CPU, the load generator's, and the rest of the
# machine's (other processes: a busy machine shows there). etcd has no timestamp
# oracle, so nothing is run against it.
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

secs=10; [ "$quick" = 1 ] && secs=4
counts=(1 16)
work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/bench-tso}"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.jsonl"
tso_pids=()
trap 'kill "${tso_pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

shoal_cluster tso "$work" "$bin" 27300
# The oracle's first batch waits for its first reservation: not part of a run.
"$bin/shoal-bench" --target shoal --endpoints "$tso_eps" --workload tso --operations 64 >/dev/null
TIMEFORMAT='%U %S %R'
# The machine's busy CPU time, in clock ticks.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
for r in 1 2 3; do
  for c in "${counts[@]}"; do
    (sleep 1; b=$(busy); n=$(shoal_cpu tso $((secs - 2)))
     echo "$n $(( ($(busy) - b) * 100 / $(getconf CLK_TCK) / (secs - 2) ))" >"$work/cpu-$c-$r") &
    cpu=$!
    # The load generator's user and system CPU seconds, and its wall seconds.
    { time "$bin/shoal-bench" --target shoal --endpoints "$tso_eps" --workload tso \
      --tso-count "$c" --clients 64 --connections 8 --duration "$secs" \
      --label "round $r" --json "$results" 2>&3; } 3>&2 2>"$work/time-$c-$r"
    wait "$cpu"
  done
done

out="bench/RESULTS.md"; [ "$quick" = 1 ] && out="bench/results-quick.md"
python3 bench/section.py get "$out" tso-why >"$work/why.md"
python3 - "$results" "$work" "$0 $*" "${counts[*]}" >"$work/section.md" <<'PY'
import json, os, platform, statistics, subprocess, sys
results, work, command, counts = sys.argv[1:]
command = command.strip()
counts = [int(c) for c in counts.split()]
runs = [json.loads(l) for l in open(results) if l.strip()]
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
med = statistics.median
GOAL = 200_000
print("## Timestamp oracle\n")
print(f"Produced by `{command}` at {sh('date -u +%Y-%m-%dT%H:%MZ')}, shoal {sh('git rev-parse --short HEAD')} (release build).")
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
print(f"Machine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}; a 3-node cluster on loopback,")
print("the load generator on the same cores. Each run: `shoal-bench --workload tso --tso-count N")
print(f"--clients 64 --connections 8 --duration {runs[0]['seconds']:.0f}` (`Txn.Timestamps` calls spread over the three nodes), every")
print("caller's timestamps checked (strictly increasing, above every timestamp returned before the")
print("call began, none given twice); medians of 3 rounds, the counts in alternation. Latencies in ms;")
print("CPU in % of one core (of 200%): the nodes' (the meta range's leader is one of them), the load")
print("generator's, and the rest of the machine's during the run (near 0 on an idle machine).\n")
print("| timestamps per call | timestamps/s | calls/s | p50 | p99 | runs (timestamps/s) | node CPU, % of a core | load generator CPU | other processes' CPU | errors | violations |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
best = {}
for c in counts:
    rs = [r for r in runs if r["tso_count"] == c]
    ts = med(r["timestamps_per_sec"] for r in rs)
    best[c] = ts
    calls = med(r["ops_per_sec"] for r in rs)
    p50 = med(r["latency_ms"]["p50"] for r in rs)
    p99 = med(r["latency_ms"]["p99"] for r in rs)
    each = ", ".join(f"{r['timestamps_per_sec']:.0f}" for r in rs)
    nodes, gen, other = [], [], []
    for i, r in enumerate(rs, 1):
        *n, machine = (float(v) for v in open(f"{work}/cpu-{c}-{i}").read().split())
        nodes.append(n)
        user, system, wall = (float(v) for v in open(f"{work}/time-{c}-{i}").read().split()[-3:])
        gen.append((user + system) / wall * 100)
        other.append(max(0.0, machine - sum(n) - gen[-1]))
    node_cpu = " / ".join(f"{med(n[k] for n in nodes):.0f}" for k in range(len(nodes[0])))
    errors = sum(r["errors"] for r in rs)
    bad = sum(sum(r["violations"].values()) for r in rs)
    print(f"| {c} | {ts:.0f} | {calls:.0f} | {p50:.2f} | {p99:.2f} | {each} | {node_cpu} | {med(gen):.0f}% | {med(other):.0f}% | {errors} | {bad} |")
print()
verdict = lambda c: f"{best[c]:.0f}/s, {'met' if best[c] >= GOAL else f'missed ({best[c] / GOAL:.2f}x of the goal)'}"
print(f"Goal, at least {GOAL:,} timestamps per second through batching: at 1 per call {verdict(1)};")
print(f"at 16 per call {verdict(16)}. etcd has no timestamp oracle: not measured against it.")
PY
if [ -s "$work/why.md" ]; then
  { echo; echo "<!-- tso-why -->"; cat "$work/why.md"; echo "<!-- /tso-why -->"; } >>"$work/section.md"
fi
python3 bench/section.py put "$out" tso "$work/section.md"
echo "wrote the tso section of $out"
