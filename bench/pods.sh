#!/usr/bin/env bash
# What a container costs shoal: one build, as bare processes and as containers of
# its image, side by side in one run on this machine:
#   bench/pods.sh BIN IMAGE           3 rounds of 10 s per run over 100,000 records
#   bench/pods.sh --quick BIN IMAGE   3 rounds of 4 s per run over 10,000 records
# BIN is a build directory holding `shoal` and `shoal-bench` (e.g.
# $CARGO_TARGET_DIR/release); IMAGE is the image of the same `shoal`
# (docker/build-image.sh). Prints a Markdown report on stdout; the JSON records, the
# CPU samples and the nodes' logs stay in $SHOAL_BENCH_DIR (default
# ~/.cache/shoal/pods-run). Writes its section of bench/RESULTS.md (--quick:
# bench/results-quick.md).
#
# Five 3-node clusters, insecure, data on the same disk (bind mounts for the
# containers), all up at once:
#   bare        processes on loopback;
#   bridge      containers on a Docker bridge network, each with its own IP, as the
#               pods of a StatefulSet (the clients on the host reach the pod IPs);
#   host        containers on the host network, as the DaemonSet's;
#   limits      as bridge, with the StatefulSet's resources as cgroup settings
#               (requests.cpu 500m as CPU shares, limits.memory 2Gi);
#   unconfined  as bridge, without Docker's default seccomp profile (the
#               manifests ask for RuntimeDefault, which the other containers run
#               under): what the syscall filter costs.
# The same records are loaded into each, then each workload runs against every
# cluster in turn, round after round: put at 64 clients, linearizable get at 64
# clients (8 connections), put at 1 client. Reports the medians of throughput and
# p50 and each set-up's ratio to bare.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [--quick] BIN IMAGE   (or --help)"
command="$0 $*"
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    --quick) quick=1; shift ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }
source bench/cluster.sh
bin=$(cd "$1" && pwd)
image=$2
for f in shoal shoal-bench; do
  [ -x "$bin/$f" ] || { echo "$bin/$f: missing" >&2; exit 2; }
done
docker image inspect "$image" >/dev/null 2>&1 || { echo "no image $image (docker/build-image.sh)" >&2; exit 2; }

if [ "$quick" = 1 ]; then
  rounds=3; secs=4; records=10000
else
  rounds=3; secs=10; records=100000
fi
setups=(bare bridge host limits unconfined)
workloads=("put:64" "get:64" "put:1")

work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/pods-run}"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.jsonl"
pods_net="shoal-bench-pods"
pods_subnet=172.31.77
bare_pids=()

stop_all() {
  shoal_stop bare
  docker rm -f $(docker ps -aq --filter "name=^shoal-bench-pod-") >/dev/null 2>&1 || true
  docker network rm "$pods_net" >/dev/null 2>&1 || true
}
trap stop_all EXIT
stop_all

docker network create --subnet "$pods_subnet.0/24" "$pods_net" >/dev/null
shoal_cluster bare "$work" "$bin" 27400
shoal_containers bridge 1 bridge
shoal_containers host 2 host
shoal_containers limits 3 bridge --cpu-shares 512 --memory 2g --memory-swap 2g
shoal_containers unconfined 4 bridge --security-opt seccomp=unconfined
declare -A eps=([bare]="$bare_eps" [bridge]="$bridge_eps" [host]="$host_eps"
  [limits]="$limits_eps" [unconfined]="$unconfined_eps")

for s in "${setups[@]}"; do
  "$bin/shoal-bench" --target shoal --endpoints "${eps[$s]}" --workload put --load --operations 1 \
    --records "$records" --clients 64 --connections 8 >/dev/null
done
common=(--target shoal --records "$records" --duration "$secs" --connections 8 --value-size 256 --json "$results")
for r in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    IFS=: read -r wl clients <<<"$w"
    for s in "${setups[@]}"; do
      bench_run "$s" "$work/cpu-$s-$wl-$clients-$r" "$secs" "$bin" \
        --endpoints "${eps[$s]}" --workload "$wl" --clients "$clients" \
        --consistency linearizable --label "$s round $r" "${common[@]}"
    done
  done
done

python3 - "$results" "$work" "$command" "$bin" "$image" >"$work/section.md" <<'PY'
import json, statistics, subprocess, sys
from collections import defaultdict
results, work, command, bin_dir, image = sys.argv[1:]
med = statistics.median
runs = [json.loads(l) for l in open(results) if l.strip()]
groups = defaultdict(list)
for r in runs:
    setup, _, rnd = r["label"].partition(" round ")
    r["setup"], r["round"] = setup, int(rnd)
    groups[(r["workload"], r["clients"], setup)].append(r)
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
def cpu(r):
    path = f"{work}/cpu-{r['setup']}-{r['workload']}-{r['clients']}-{r['round']}"
    return sum(float(v) for v in open(path).read().split())
setups = ["bare", "bridge", "host", "limits", "unconfined"]
print("## Pods against bare processes\n")
print(f"- command: `{command.strip()}`, run at {sh('date -u +%Y-%m-%dT%H:%MZ')}")
print(f"- build: `{bin_dir}`; image `{image}`; {sh('nproc')} cores, "
      f"{sh('docker version -f {{.Server.Version}}')} Docker, cgroup {sh('stat -fc %T /sys/fs/cgroup')}")
print(f"- five 3-node clusters, insecure, {runs[0]['records']} records of {runs[0]['value_size']} bytes; "
      "runs in turn, round after round; medians of the rounds; latencies in ms; "
      "CPU: the three nodes' together, in % of one core\n")
print("| workload | clients | " + " | ".join(f"{s} ops/s" for s in setups) + " | "
      + " | ".join(f"{s}/bare" for s in setups[1:]) + " | " + " | ".join(f"{s} p50" for s in setups) + " |")
print("|---|---|" + "---|" * (len(setups) * 3 - 1))
for (w, c) in (("put", 64), ("get", 64), ("put", 1)):
    if (w, c, "bare") not in groups:
        continue
    ops = {s: med(r["ops_per_sec"] for r in groups[(w, c, s)]) for s in setups}
    p50 = {s: med(r["latency_ms"]["p50"] for r in groups[(w, c, s)]) for s in setups}
    print(f"| {w} | {c} | " + " | ".join(f"{ops[s]:.0f}" for s in setups) + " | "
          + " | ".join(f"{ops[s] / ops['bare']:.2f}x" for s in setups[1:]) + " | "
          + " | ".join(f"{p50[s]:.2f}" for s in setups) + " |")
print("\nCPU per operation (node CPU-seconds per 1000 operations, medians):\n")
print("| workload | clients | " + " | ".join(setups) + " |")
print("|---|---|" + "---|" * len(setups))
for (w, c) in (("put", 64), ("get", 64), ("put", 1)):
    if (w, c, "bare") not in groups:
        continue
    row = []
    for s in setups:
        per = [cpu(r) / 100 / max(r["ops_per_sec"], 1) * 1000 for r in groups[(w, c, s)]]
        row.append(f"{med(per):.2f}")
    print(f"| {w} | {c} | " + " | ".join(row) + " |")
errs = sum(r["errors"] for r in runs)
if errs:
    print(f"\n{errs} errors in all: see {results}.")
PY
out="bench/RESULTS.md"; [ "$quick" = 1 ] && out="bench/results-quick.md"
python3 bench/section.py put "$out" pods "$work/section.md"
cat "$work/section.md"
echo "wrote $out"
