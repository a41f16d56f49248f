#!/usr/bin/env bash
# Two builds of shoal side by side on transactions, in one run, on this machine:
#   bench/ab-txn.sh BASE_BIN NEW_BIN    3 rounds of 4 s per run over 10,000 records
# BASE_BIN and NEW_BIN are build directories each holding `shoal` and `shoal-bench`
# (e.g. two worktrees' release builds); this script builds nothing. Starts a 3-node
# cluster on loopback from each build, loads the same 10,000 records split into 4
# ranges into both, then runs `txn2` and `put` at 1 and 64 clients (8 connections)
# against both in alternation. Prints, per workload, the medians of throughput and
# p50 of each build and the NEW/BASE ratios. SECS sets the seconds per run; the JSON
# records stay in $SHOAL_BENCH_DIR (default ~/.cache/shoal/ab-txn).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h | --help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
[ $# -eq 2 ] || { echo "usage: $0 BASE_BIN NEW_BIN   (or --help)" >&2; exit 2; }
source bench/cluster.sh
ab_bins "$1" "$2"
work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/ab-txn}"
rm -rf "$work"
mkdir -p "$work"
shoal_cluster base "$work" "$base_bin" 27700
shoal_cluster new "$work" "$new_bin" 27800
trap 'shoal_stop base; shoal_stop new' EXIT
bin_of() { if [ "$1" = base ]; then echo "$base_bin"; else echo "$new_bin"; fi; }
eps_of() { if [ "$1" = base ]; then echo "$base_eps"; else echo "$new_eps"; fi; }
for t in base new; do
  "$(bin_of $t)/shoal-bench" --target shoal --endpoints "$(eps_of $t)" --workload put --load \
    --operations 1 --records 10000 --split-into 4 --clients 64 >/dev/null
done
sleep 3
for _ in 1 2 3; do
  for w in txn2:1 put:1 txn2:64 put:64; do
    IFS=: read -r wl c <<<"$w"
    for t in base new; do
      "$(bin_of $t)/shoal-bench" --target shoal --endpoints "$(eps_of $t)" --workload "$wl" \
        --clients "$c" --connections 8 --records 10000 --duration "${SECS:-4}" --value-size 256 \
        --label "$t" --json "$work/results.jsonl" >/dev/null
    done
  done
done
python3 - "$work/results.jsonl" <<'PY'
import json, statistics as st, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for w, c in sorted({(r["workload"], r["clients"]) for r in rs}):
    row = {}
    for t in ("base", "new"):
        x = [r for r in rs if r["workload"] == w and r["clients"] == c and r["label"] == t]
        row[t] = (st.median(r["ops_per_sec"] for r in x), st.median(r["latency_ms"]["p50"] for r in x), sum(r["errors"] for r in x))
    (bo, bp, be), (no, np_, ne) = row["base"], row["new"]
    print(f"{w:5} {c:3}  base {bo:7.0f}/s p50 {bp:6.2f}  new {no:7.0f}/s p50 {np_:6.2f}  new/base ops {no / bo:.2f} p50 {np_ / bp:.2f}  errors {be}/{ne}")
PY
