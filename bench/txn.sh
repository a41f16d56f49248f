#!/usr/bin/env bash
# Transactions across ranges, shoal beside etcd, in one run on this machine:
#   bench/txn.sh            3 rounds of 10 s per run (about 6 minutes once built)
#   bench/txn.sh --quick    3 rounds of 4 s per run, writes bench/results-quick.md
# writes its section of bench/RESULTS.md (the hand-written notes in it, between
# `<!-- txn-why -->` markers, are kept).
#
# A 3-member etcd cluster and a 3-node shoal cluster on loopback, shoal's 10,000
# records split into 4 ranges (etcd is one Raft group). Workloads, 64 clients over 8
# connections, then 1 client: `put` (one key), `txn2` (two keys half the key space
# apart in one transaction: shoal's Batch across two ranges, etcd's Txn of two puts),
# `rmw4` (four keys a quarter apart read then written: shoal's interactive
# serializable transaction, etcd's Txn of gets then a Txn of puts guarded by the
# revisions read); targets in alternation, medians of the rounds.
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

secs=10; [ "$quick" = 1 ] && secs=4
records=10000
work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/bench-txn}"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.jsonl"
pids=(); txn_pids=()
cleanup() {
  for p in "${pids[@]}" "${txn_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

cluster="e1=http://127.0.0.1:24801,e2=http://127.0.0.1:24802,e3=http://127.0.0.1:24803"
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$work/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:2479$i" --advertise-client-urls "http://127.0.0.1:2479$i" \
    --listen-peer-urls "http://127.0.0.1:2480$i" --initial-advertise-peer-urls "http://127.0.0.1:2480$i" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token shoal-bench-txn \
    --quota-backend-bytes 8589934592 --log-level error >"$work/etcd-$i.log" 2>&1 &
  pids+=($!)
done
etcd_eps="127.0.0.1:24791,127.0.0.1:24792,127.0.0.1:24793"
shoal_cluster txn "$work" "$bin" 27400
for _ in $(seq 1 60); do
  ETCDCTL_API=3 etcdctl --endpoints "$etcd_eps" put bench-ready 1 >/dev/null 2>&1 && break
  sleep 1
done

common=(--records "$records" --duration "$secs" --connections 8 --value-size 256 --json "$results")
"$bin/shoal-bench" --target shoal --endpoints "$txn_eps" --workload put --load --operations 1 \
  --records "$records" --split-into 4 --clients 64 >/dev/null
"$bin/shoal-bench" --target etcd --endpoints "$etcd_eps" --workload put --load --operations 1 \
  --records "$records" --clients 64 >/dev/null
runs=("put:64" "txn2:64" "rmw4:64" "put:1" "txn2:1" "rmw4:1")
for r in 1 2 3; do
  for w in "${runs[@]}"; do
    IFS=: read -r wl clients <<<"$w"
    for t in etcd shoal; do
      eps=$etcd_eps; [ "$t" = shoal ] && eps=$txn_eps
      "$bin/shoal-bench" --target "$t" --endpoints "$eps" --workload "$wl" --clients "$clients" \
        --label "round $r" "${common[@]}"
    done
  done
done

out="bench/RESULTS.md"; [ "$quick" = 1 ] && out="bench/results-quick.md"
python3 bench/section.py get "$out" txn-why >"$work/why.md"
python3 - "$results" "$0 $*" >"$work/section.md" <<'PY'
import json, os, platform, statistics, subprocess, sys
results, command = sys.argv[1:]
command = command.strip()
runs = [json.loads(l) for l in open(results) if l.strip()]
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
med = statistics.median
def pick(target, workload, clients):
    rs = [r for r in runs if r["target"] == target and r["workload"] == workload and r["clients"] == clients]
    return {
        "ops": med(r["ops_per_sec"] for r in rs),
        "p50": med(r["latency_ms"]["p50"] for r in rs),
        "p99": med(r["latency_ms"]["p99"] for r in rs),
        "errors": sum(r["errors"] for r in rs),
        "rounds": ", ".join(f"{r['ops_per_sec']:.0f}" for r in rs),
    }
print("## Transactions across ranges\n")
print(f"Produced by `{command}` at {sh('date -u +%Y-%m-%dT%H:%MZ')}, shoal {sh('git rev-parse --short HEAD')} (release build), etcd {sh('etcd --version | head -1')}.")
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
print(f"Machine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}; 3 etcd members and 3 shoal nodes on")
print(f"loopback, data on the same disk, the load generator on the same cores. 10,000 records of 256 bytes; shoal's")
print(f"split into 4 ranges (etcd is one Raft group). Each run: `shoal-bench --workload W --clients C --connections 8")
print(f"--duration {runs[0]['seconds']:.0f}`; medians of 3 rounds, targets in alternation. Latencies in ms. `txn2`: two keys")
print("half the key space apart (shoal: a `Batch` across two ranges, which the SDK commits itself: prewrite both")
print("on their leaders, answer, then a node commits the locks (async commit)); `rmw4`: four keys read, then written (shoal: `client.transaction`, serializable,")
print("run again on a conflict; etcd: a `Txn` of gets, then a `Txn` of puts guarded by the revisions read).\n")
print("| workload | clients | etcd ops/s | shoal ops/s | shoal/etcd | etcd p50 | shoal p50 | shoal p99 | shoal runs (ops/s) | errors (etcd / shoal) |")
print("|---|---|---|---|---|---|---|---|---|---|")
table = {}
for w in ["put", "txn2", "rmw4"]:
    for c in [64, 1]:
        e, s = pick("etcd", w, c), pick("shoal", w, c)
        table[(w, c)] = s
        print(f"| {w} | {c} | {e['ops']:.0f} | {s['ops']:.0f} | {s['ops'] / e['ops']:.2f}x | {e['p50']:.2f} | {s['p50']:.2f} | {s['p99']:.2f} | {s['rounds']} | {e['errors']} / {s['errors']} |")
print()
for c in [64, 1]:
    r = table[("txn2", c)]["p50"] / table[("put", c)]["p50"]
    verdict = "met" if r <= 1.5 else "missed"
    print(f"- Goal, a transaction writing two keys in two ranges at p50 at most 1.5x a single put: at {c} client(s) {r:.2f}x, {verdict}.")
PY
{ cat "$work/section.md"; echo; echo "<!-- txn-why -->"; cat "$work/why.md"; echo "<!-- /txn-why -->"; } >"$work/full.md"
python3 bench/section.py put "$out" txn "$work/full.md"
echo "wrote $out"
