#!/usr/bin/env bash
# shoal and etcd side by side, in one run, on this machine:
#   bench/compare.sh            full run (about 15 minutes), writes bench/RESULTS.md
#   bench/compare.sh --quick    a short run (under 5 minutes), writes bench/results-quick.md
#
# Installs etcd from Debian if missing, builds shoal and the load generator (release),
# starts a 3-member etcd cluster and a 3-node shoal cluster on loopback with their
# data on the same disk, measures that disk's fdatasync floor, then runs each workload
# against both targets in alternation (etcd, shoal, etcd, shoal, ...), several rounds,
# and reports medians and ratios.
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
if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server (Debian package)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
cargo build --release --quiet -p shoal-cli -p shoal-bench
bin="$CARGO_TARGET_DIR/release"

work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/bench-run}"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.jsonl"
pids=(); shoal_pids=()
cleanup() {
  for p in "${pids[@]}" "${shoal_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# --- etcd: 3 members on loopback ------------------------------------------------
cluster="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$work/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token shoal-bench \
    --quota-backend-bytes 8589934592 --log-level error >"$work/etcd-$i.log" 2>&1 &
  pids+=($!)
done
etcd_eps="127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793"

# --- shoal: 3 nodes on loopback --------------------------------------------------
shoal_cluster shoal "$work" "$bin" 27070
for _ in $(seq 1 60); do
  ETCDCTL_API=3 etcdctl --endpoints "$etcd_eps" put bench-ready 1 >/dev/null 2>&1 && break
  sleep 1
done

# --- the disk's floor --------------------------------------------------------------
"$bin/fsync-floor" "$work" 1000 >"$work/fsync.json"

# --- workloads -------------------------------------------------------------------
if [ "$quick" = 1 ]; then
  rounds=3; secs=4; records=10000
  workloads=("put:64:uniform:linearizable" "put:1:uniform:linearizable" "get:64:uniform:linearizable" "a:64:zipfian:linearizable")
else
  rounds=3; secs=10; records=100000
  workloads=(
    "put:64:uniform:linearizable" "put:1:uniform:linearizable"
    "get:64:uniform:linearizable" "get:64:uniform:stale" "get:1:uniform:stale"
    "a:64:zipfian:linearizable" "b:64:zipfian:linearizable" "c:64:zipfian:linearizable"
    "e:64:zipfian:linearizable" "f:64:zipfian:linearizable"
  )
fi
common=(--records "$records" --duration "$secs" --connections 8 --value-size 256 --json "$results")
for t in etcd shoal; do
  eps=$etcd_eps; [ "$t" = shoal ] && eps=$shoal_eps
  "$bin/shoal-bench" --target "$t" --endpoints "$eps" --workload put --load --operations 1 \
    --records "$records" --clients 64 >/dev/null
done
for r in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    IFS=: read -r wl clients dist cons <<<"$w"
    for t in etcd shoal; do
      eps=$etcd_eps; [ "$t" = shoal ] && eps=$shoal_eps
      "$bin/shoal-bench" --target "$t" --endpoints "$eps" --workload "$wl" --clients "$clients" \
        --distribution "$dist" --consistency "$cons" --label "round $r" "${common[@]}"
    done
  done
done

out="bench/RESULTS.md"; [ "$quick" = 1 ] && out="bench/results-quick.md"
# The sections written elsewhere stay: bench/ranges.sh's, bench/tso.sh's, the last
# bench/ab.sh comparison, and the hand-written reasons for the goals missed.
kept=(why ranges tso ab txn)
for s in "${kept[@]}"; do python3 bench/section.py get "$out" "$s" >"$work/$s.md"; done
python3 bench/report.py "$results" "$work/fsync.json" "$0 $*" >"$out"
for s in "${kept[@]}"; do
  [ -s "$work/$s.md" ] && python3 bench/section.py put "$out" "$s" "$work/$s.md"
done
echo "wrote $out"
