#!/usr/bin/env bash
# Where a node's CPU goes, by part: a sampling profile (perf, the cpu-clock event) of a
# 3-node cluster's processes under load, with their syscalls, context switches and
# CPU per operation counted beside it (perf stat), for one build in several set-ups:
#   bench/profile.sh BIN [IMAGE]           runs of 12 s over 100,000 records
#   bench/profile.sh --quick BIN [IMAGE]   runs of 6 s over 10,000 records
# Set-ups: `1 range` and `64 ranges` (bare processes on loopback, the records split
# into 64 ranges first); with IMAGE (the same build's image, docker/build-image.sh),
# `pod` (containers on a Docker bridge network with their own IPs, as a StatefulSet's
# pods) and `host` (containers on the host network, as the DaemonSet's), 1 range each;
# and `own cgroups`, the `1 range` cluster again with each node moved into a CPU
# cgroup of its own (as each container is; root, cgroup v1 or v2): what the
# scheduler's fairness between groups alone costs, without a container.
# Workloads: put and linearizable get at 64 clients (8 connections), 256-byte values.
# Each set-up runs alone (the others stopped), so the profiles do not share the CPU.
#
# A part is named from the function each sample landed in (no call stacks): code
# inlined into another crate's function counts as that crate's. Writes its section of
# bench/RESULTS.md (--quick: bench/results-quick.md); perf's data and the nodes' logs
# stay in $SHOAL_BENCH_DIR (default ~/.cache/shoal/profile-run). Needs perf (Debian's
# linux-perf, installed if missing) with access to the nodes (root, or
# kernel.perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [--quick] BIN [IMAGE]   (or --help)"
command="$0 $*"
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    --quick) quick=1; shift ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || [ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }
source bench/cluster.sh
bin=$(cd "$1" && pwd)
image=${2:-}
for f in shoal shoal-bench; do
  [ -x "$bin/$f" ] || { echo "$bin/$f: missing" >&2; exit 2; }
done
if [ -n "$image" ]; then
  docker image inspect "$image" >/dev/null 2>&1 || { echo "no image $image (docker/build-image.sh)" >&2; exit 2; }
fi
if ! command -v perf >/dev/null 2>&1; then
  _sudo=""; [ "$(id -u)" -ne 0 ] && _sudo="sudo"
  $_sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -qq linux-perf >&2
fi

if [ "$quick" = 1 ]; then
  secs=6; records=10000
else
  secs=12; records=100000
fi
work="${SHOAL_BENCH_DIR:-$HOME/.cache/shoal/profile-run}"
rm -rf "$work"
mkdir -p "$work"
results="$work/runs.json"
pods_net="shoal-bench-profile"
pods_subnet=172.31.78

cleanup() {
  for n in one many; do
    declare -p "${n}_pids" >/dev/null 2>&1 && shoal_stop "$n"
  done
  docker rm -f $(docker ps -aq --filter "name=^shoal-bench-pod-prof") >/dev/null 2>&1 || true
  docker network rm "$pods_net" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

# The cgroup cpu.stat file of a process (v2, or v1's cpu controller), if any.
cpu_stat() {
  local rel
  rel=$(awk -F: '$2 == "" || $2 ~ /(^|,)cpu(,|$)/ {print $3; exit}' "/proc/$1/cgroup")
  for f in "/sys/fs/cgroup$rel/cpu.stat" "/sys/fs/cgroup/cpu$rel/cpu.stat" "/sys/fs/cgroup/cpu,cpuacct$rel/cpu.stat"; do
    [ -r "$f" ] && { echo "$f"; return; }
  done
}

# profile SETUP EPS PIDS...: one run of each workload against the cluster at EPS,
# perf watching its nodes' PIDS.
profile() {
  local setup=$1 eps=$2
  shift 2
  local pids=("$@") list w tag stats=()
  list=$(IFS=,; echo "${pids[*]}")
  for p in "${pids[@]}"; do stats+=("$(cpu_stat "$p")"); done
  for w in put get; do
    tag="$setup-$w"
    tag=${tag// /_}
    for f in "${stats[@]}"; do [ -n "$f" ] && cat "$f"; done >"$work/$tag.throttle-before" || true
    (
      sleep 1
      perf stat -x, -e task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter \
        -p "$list" -o "$work/$tag.stat" -- sleep $((secs - 2)) &
      perf record -q -e cpu-clock -F 499 -p "$list" -o "$work/$tag.data" -- sleep $((secs - 2)) \
        >/dev/null 2>&1
      wait
    ) &
    local watcher=$!
    "$bin/shoal-bench" --target shoal --endpoints "$eps" --workload "$w" --clients 64 \
      --connections 8 --consistency linearizable --records "$records" --value-size 256 \
      --duration "$secs" --label "$setup" --json "$results" >/dev/null
    wait "$watcher"
    for f in "${stats[@]}"; do [ -n "$f" ] && cat "$f"; done >"$work/$tag.throttle-after" || true
    perf report -i "$work/$tag.data" --stdio --no-children --sort dso,sym -q --percent-limit 0 \
      --field-separator='|' >"$work/$tag.report" 2>/dev/null
    echo "$setup $w: $(wc -l <"$work/$tag.report") functions sampled" >&2
  done
}

load() {
  "$bin/shoal-bench" --target shoal --endpoints "$1" --workload put --load --operations 1 \
    --records "$records" --value-size 256 --clients 64 --connections 8 "${@:2}" >/dev/null
}

shoal_cluster one "$work" "$bin" 27400
load "$one_eps"
profile "1 range" "$one_eps" "${one_pids[@]}"
# The CPU controller's hierarchy: v1's own mount, or v2's unified one.
cg_root=/sys/fs/cgroup/cpu
[ -d "$cg_root" ] || cg_root=/sys/fs/cgroup
if [ -w "$cg_root" ]; then
  for i in 0 1 2; do
    mkdir -p "$cg_root/shoal-profile-$i"
    echo "${one_pids[$i]}" >"$cg_root/shoal-profile-$i/cgroup.procs"
  done
  profile "own cgroups" "$one_eps" "${one_pids[@]}"
fi
shoal_stop one
unset one_pids
rmdir "$cg_root"/shoal-profile-* 2>/dev/null || true

shoal_cluster many "$work" "$bin" 27450
load "$many_eps" --split-into 64
profile "64 ranges" "$many_eps" "${many_pids[@]}"
shoal_stop many
unset many_pids

if [ -n "$image" ]; then
  docker network create --subnet "$pods_subnet.0/24" "$pods_net" >/dev/null
  shoal_containers prof_pod 1 bridge
  load "$prof_pod_eps"
  profile "pod" "$prof_pod_eps" "${prof_pod_pids[@]}"
  docker rm -f $(docker ps -aq --filter "name=^shoal-bench-pod-prof_pod") >/dev/null
  shoal_containers prof_host 2 host
  load "$prof_host_eps"
  profile "host" "$prof_host_eps" "${prof_host_pids[@]}"
fi

python3 - "$work" "$results" "$command" "$bin" "$image" "$((secs - 2))" >"$work/section.md" <<'PY'
import json, os, re, subprocess, sys
work, results, command, bin_dir, image, window = sys.argv[1:]
window = float(window)
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()

# The parts, first match wins: (name, kernel's?, a pattern over the function's name).
PARTS = [
    ("storage (RocksDB)", False, r"rocksdb"),
    ("consensus (openraft)", False, r"openraft"),
    ("gRPC and HTTP/2 (tonic, h2, hyper, tower)", False, r"tonic|\bh2::|_ZN2h2|hyper|tower|\bhttp::|http_body"),
    ("encoding (prost, postcard, serde)", False, r"prost|postcard|serde"),
    ("async runtime (tokio)", False, r"tokio|\bmio::|_ZN3mio"),
    ("allocator (malloc, free)", False, r"malloc|free|realloc|calloc|_int_|tcache|arena|unlink_chunk"),
    ("memory copies (memcpy, memmove, memset, memcmp)", False, r"mem(cpy|move|set|cmp)"),
    ("locks (std sync, parking_lot, pthread)", False, r"parking_lot|pthread_mutex|std::sync|futex|Mutex|RwLock"),
    ("tracing, metrics", False, r"tracing|prometheus"),
    ("shoal's own code", False, r"shoal"),
    ("other user code (std, libc, hashing, time)", False, r""),
    ("kernel: scheduler, futex, epoll (wake-ups)", True,
     r"sched|futex|wake|ttwu|enqueue_|dequeue_|task_switch|switch_to|switch_mm|epoll|select_task|pick_next|update_curr|hrtimer|rcu|idle|load_balance|cpuacct|cgroup"),
    ("kernel: network (TCP/IP, loopback, veth, bridge, netfilter, their softirqs)", True,
     r"^_*(tcp|udp|ip_|ipv4|ipv6|ip6|inet|sock|sk_|skb|net|dev_|veth|br_|nf_|ipt_|loopback|napi|csum|neigh|fib|raw_v|lock_sock|release_sock)|conntrack|sendmsg|recvmsg|xmit|softirq"),
    ("kernel: files and disk (ext4, fsync, page cache)", True,
     r"ext4|jbd2|blk|file|vfs|filemap|iomap|fdatasync|fsync|bio_|xfs|nvme|virtio_blk|overlay|ovl_|generic_perform_write|writeback|find_get_block|dput|dentry|inode|path_|fdget|fput"),
    ("kernel: syscall entry and exit (seccomp included)", True,
     r"entry_SYSCALL|syscall|seccomp|__x64_sys|exit_to_user|irqentry_exit|audit"),
    ("kernel: memory (page faults, mappings, slab)", True,
     r"page_fault|clear_page|handle_mm|do_anonymous|alloc_pages|mmap|munmap|madvise|zap_|lru|memcg|folio|mem_cgroup|kmem_cache|kmalloc|kfree|slab|mas_|vma"),
    ("kernel: device notifications (the VM's virtio queues: iowrite)", True, r"iowrite|ioread|virtqueue|vring|vp_notify"),
    ("kernel: sampled as interrupts turn back on (whatever ran with them off)", True,
     r"spin_unlock_irq|local_irq|arch_local_irq"),
    ("kernel: other", True, r""),
]

def classify(dso, sym):
    kernel = "[kernel" in dso or sym.startswith("[k]")
    name = sym.split("] ", 1)[-1] + ("" if kernel else " " + dso)
    for part, k, pat in PARTS:
        if k == kernel and re.search(pat, name):
            return part

def perf_stat(path):
    out = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) > 3 and f[0][:1].isdigit():
            out[f[2]] = float(f[0])
    return out

def throttled(tag):
    def read(p):
        t = {}
        for line in open(p) if os.path.exists(p) else []:
            k, _, v = line.partition(" ")
            if v.strip().isdigit():
                t[k] = t.get(k, 0) + int(v)
        return t
    a, b = read(f"{work}/{tag}.throttle-before"), read(f"{work}/{tag}.throttle-after")
    return b.get("nr_throttled", 0) - a.get("nr_throttled", 0) if a else None

runs = {}
for line in open(results):
    if line.strip():
        r = json.loads(line)
        runs[(r["label"], r["workload"])] = r
setups = [s for s in ["1 range", "own cgroups", "64 ranges", "pod", "host"] if (s, "put") in runs]
rows = {}
for s in setups:
    for w in ("put", "get"):
        tag = f"{s}-{w}".replace(" ", "_")
        st = perf_stat(f"{work}/{tag}.stat")
        r = runs[(s, w)]
        ops = r["ops_per_sec"] * window  # operations while perf watched
        shares = {p[0]: 0.0 for p in PARTS}
        for line in open(f"{work}/{tag}.report"):
            f = [x.strip() for x in line.split("|")]
            if len(f) >= 3 and f[0].endswith("%"):
                shares[classify(f[1], f[2])] += float(f[0].rstrip("%"))
        total = sum(shares.values()) or 1.0
        cpu_us = st.get("task-clock", 0) * 1000 / ops  # task-clock: CPU-ms
        rows[(s, w)] = dict(
            ops=r["ops_per_sec"], p50=r["latency_ms"]["p50"], cpu_us=cpu_us,
            per_op={k: st.get(k, 0) / ops for k in
                    ("raw_syscalls:sys_enter", "context-switches", "cpu-migrations", "page-faults")},
            parts={k: v / total * cpu_us for k, v in shares.items()},
            throttled=throttled(tag), errors=r["errors"])

first = runs[(setups[0], "put")]
print("## Where a node's CPU goes (bench/profile.sh)\n")
print(f"- command: `{command.strip()}`, run at {sh('date -u +%Y-%m-%dT%H:%MZ')}; shoal {sh('git rev-parse --short HEAD')}")
print(f"- build: `{bin_dir}`" + (f"; image `{image}`" if image else "") + f"; {sh('nproc')} cores; {sh('perf --version')}")
print(f"- 3-node clusters, insecure, one set-up at a time; each workload once, 64 clients over 8 "
      f"connections, {first['records']} records of {first['value_size']} bytes; perf over {window:.0f} s "
      "in the middle of each run, the three nodes' counts together; CPU in microseconds of "
      "CPU per operation (all three nodes)\n")
print("| set-up | workload | ops/s | p50 ms | CPU us/op | syscalls/op | context switches/op | migrations/op | page faults/op | cgroup periods throttled | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in setups:
    for w in ("put", "get"):
        x = rows[(s, w)]
        po = x["per_op"]
        t = x["throttled"]
        print(f"| {s} | {w} | {x['ops']:.0f} | {x['p50']:.2f} | {x['cpu_us']:.0f} | "
              f"{po['raw_syscalls:sys_enter']:.1f} | {po['context-switches']:.2f} | "
              f"{po['cpu-migrations']:.3f} | {po['page-faults']:.3f} | {'-' if t is None else t} | {x['errors']} |")
for w in ("put", "get"):
    print(f"\nCPU per {w} by part (microseconds per operation; the function each sample landed in):\n")
    extra = []
    if "64 ranges" in setups:
        extra.append(("64 ranges", "64 - 1"))
    for s in ("own cgroups", "pod", "host"):
        if s in setups:
            extra.append((s, f"{s} - 1 range"))
    print("| part | " + " | ".join(setups) + "".join(f" | {h}" for _, h in extra) + " |")
    print("|---|" + "---|" * (len(setups) + len(extra)))
    names = [p[0] for p in PARTS]
    names.sort(key=lambda n: -max(rows[(s, w)]["parts"][n] for s in setups))
    for n in names:
        vals = [rows[(s, w)]["parts"][n] for s in setups]
        if max(vals) < 0.5:
            continue
        base = rows[("1 range", w)]["parts"][n]
        print(f"| {n} | " + " | ".join(f"{v:.1f}" for v in vals)
              + "".join(f" | {rows[(s, w)]['parts'][n] - base:+.1f}" for s, _ in extra) + " |")
    tot = [rows[(s, w)]["cpu_us"] for s in setups]
    base = rows[("1 range", w)]["cpu_us"]
    print("| **all** | " + " | ".join(f"**{v:.1f}**" for v in tot)
          + "".join(f" | **{rows[(s, w)]['cpu_us'] - base:+.1f}**" for s, _ in extra) + " |")
PY
out="bench/RESULTS.md"; [ "$quick" = 1 ] && out="bench/results-quick.md"
python3 bench/section.py put "$out" profile "$work/section.md"
cat "$work/section.md"
echo "wrote $out"
