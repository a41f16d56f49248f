#!/usr/bin/env bash
# Range merges, on this machine (about 3 minutes):
#   bench/merges.sh [--debug]
# A 3-node cluster loaded with 20,000 records and split into 64 ranges, merged back
# into one range by `shoal range merge ""` (the first range absorbs the next, 63
# times): the first 32 merges idle, the rest while 64 clients put (the put workload,
# 256-byte values). Prints each phase's merge times (median, max, in ms, each the
# whole CLI call; a failed merge is printed and left out) and the put workload's
# summary (errors included). --debug uses
# the debug build (for a quick look; times are then not the release's).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
source bench/cluster.sh
if [ "${1:-}" = "--debug" ]; then
  cargo build --quiet -p shoal-cli -p shoal-bench
  bin="$CARGO_TARGET_DIR/debug"
else
  cargo build --release --quiet -p shoal-cli -p shoal-bench
  bin="$CARGO_TARGET_DIR/release"
fi
work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/bench-merges}"
rm -rf "$work"
mkdir -p "$work"
m_pids=()
trap 'kill "${m_pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

shoal_cluster m "$work" "$bin" 27500
"$bin/shoal-bench" --endpoints "$m_eps" --split-into 64 --load --operations 0 --records 20000 \
  --target shoal --clients 64 >/dev/null
count_ranges() {
  SHOAL_HOST="$m_eps" "$bin/shoal" range ls --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["ranges"]))'
}
echo "ranges before: $(count_ranges)"

# Merges N times, each timed; writes the times (ms) to FILE.
merge_times() {
  local n=$1 file=$2 t0 t1
  : >"$file"
  for _ in $(seq 1 "$n"); do
    t0=$(date +%s%N)
    if SHOAL_HOST="$m_eps" "$bin/shoal" range merge "" >/dev/null 2>>"$work/errors.txt"; then
      t1=$(date +%s%N)
      echo $(((t1 - t0) / 1000000)) >>"$file"
    else
      echo "merge failed: $(tail -1 "$work/errors.txt")" >&2
    fi
  done
}
summary() {
  python3 -c 'import statistics,sys; v=[int(x) for x in open(sys.argv[1])]; print(f"{len(v)} merges: median {statistics.median(v):.0f} ms, max {max(v)} ms")' "$1"
}

merge_times 32 "$work/idle.txt"
echo "idle: $(summary "$work/idle.txt")"
"$bin/shoal-bench" --endpoints "$m_eps" --workload put --records 20000 --duration 30 --clients 64 \
  --connections 8 --value-size 256 --target shoal >"$work/put.txt" 2>&1 &
load=$!
sleep 3
merge_times 31 "$work/load.txt"
wait "$load"
echo "under the put load: $(summary "$work/load.txt")"
echo "ranges after: $(count_ranges)"
echo "put workload (30 s, merges in its first part):"
cat "$work/put.txt"
