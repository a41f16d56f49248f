"""Turns the JSON records of a compare.sh run into bench/RESULTS.md: medians over the
rounds, shoal/etcd ratios, and the goals."""
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def main():
    results, fsync_path, command = sys.argv[1], sys.argv[2], sys.argv[3]
    command = command.strip()
    runs = [json.loads(l) for l in open(results) if l.strip()]
    fsync = json.load(open(fsync_path))["fdatasync_ms"]
    groups = defaultdict(list)
    for r in runs:
        key = (r["workload"], r["clients"], r["distribution"], r["consistency"], r["target"])
        groups[key].append(r)

    def med(key, f):
        rs = groups.get(key, [])
        return statistics.median(f(r) for r in rs) if rs else None

    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("free -g | awk '/Mem:/ {print $2}'")
    print("# Benchmark results: shoal and etcd on the same machine\n")
    print("Produced by `bench/compare.sh` (command below); every figure is the median over the")
    print("rounds, each round running etcd then shoal on the same workload. Latencies in ms.\n")
    print("## Machine and versions\n")
    print(f"- CPU: {cpu}, {os.cpu_count()} cores; memory: {mem} GiB; kernel {platform.release()}")
    print(f"- disk fdatasync floor (4 KiB appends, {fsync['count']} samples): p50 {fsync['p50']:.3f} ms, p99 {fsync['p99']:.3f} ms")
    print(f"- shoal {sh('git rev-parse --short HEAD')} (release build); {sh('etcd --version | head -1')}")
    print("- both clusters: 3 members on loopback, data on the same disk; clients: 8 connections")
    print(f"- command: `{command}`; run at {sh('date -u +%Y-%m-%dT%H:%MZ')}\n")
    print("## Results\n")
    print("| workload | clients | keys | reads | etcd ops/s | shoal ops/s | shoal/etcd | etcd p50 | shoal p50 | etcd p99 | shoal p99 | errors (etcd/shoal) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    seen = []
    for (w, c, d, cons, t) in groups:
        k = (w, c, d, cons)
        if k not in seen:
            seen.append(k)
    for (w, c, d, cons) in seen:
        e, s = (w, c, d, cons, "etcd"), (w, c, d, cons, "shoal")
        eo, so = med(e, lambda r: r["ops_per_sec"]), med(s, lambda r: r["ops_per_sec"])
        ratio = f"{so / eo:.2f}x" if eo and so else "-"
        f = lambda key, q: med(key, lambda r: r["latency_ms"][q])
        errs = f"{sum(r['errors'] for r in groups.get(e, []))}/{sum(r['errors'] for r in groups.get(s, []))}"
        fmt = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"
        print(f"| {w} | {c} | {d} | {cons if w not in ('put',) else '-'} | {fmt(eo, 0)} | {fmt(so, 0)} | {ratio} | {fmt(f(e, 'p50'))} | {fmt(f(s, 'p50'))} | {fmt(f(e, 'p99'))} | {fmt(f(s, 'p99'))} | {errs} |")

    print("\n## Goals\n")
    def ratio(w, c, d, cons):
        eo = med((w, c, d, cons, "etcd"), lambda r: r["ops_per_sec"])
        so = med((w, c, d, cons, "shoal"), lambda r: r["ops_per_sec"])
        return (so / eo) if eo and so else None
    wr = ratio("put", 64, "uniform", "linearizable")
    rr = ratio("get", 64, "uniform", "linearizable")
    single = med(("put", 1, "uniform", "linearizable", "shoal"), lambda r: r["latency_ms"]["p50"])
    rtt = med(("get", 1, "uniform", "stale", "shoal"), lambda r: r["latency_ms"]["p50"])
    def verdict(v, goal):
        return "not measured" if v is None else ("met" if v >= goal else f"missed ({v:.2f}x of {goal}x)")
    print(f"- write throughput at 64 clients >= 1.5x etcd: {'-' if wr is None else f'{wr:.2f}x'}, {verdict(wr, 1.5)}")
    print(f"- linearizable read throughput >= 2x etcd: {'-' if rr is None else f'{rr:.2f}x'}, {verdict(rr, 2.0)}")
    p99s = []
    for (w, c, d, cons) in seen:
        ep = med((w, c, d, cons, "etcd"), lambda r: r["latency_ms"]["p99"])
        sp = med((w, c, d, cons, "shoal"), lambda r: r["latency_ms"]["p99"])
        if ep and sp:
            p99s.append((f"{w}/{c}/{cons}", sp <= ep, sp, ep))
    ok = [n for n, good, *_ in p99s if good]
    bad = [f"{n} ({sp:.2f} vs {ep:.2f} ms)" for n, good, sp, ep in p99s if not good]
    print(f"- p99 latency <= etcd's: met for {len(ok)} of {len(p99s)} workloads" + (f"; missed: {', '.join(bad)}" if bad else ""))
    if single is not None:
        floor = fsync["p50"] + (rtt or 0)
        print(f"- single-client write latency <= 1.3x (fsync floor + loopback round trip): p50 {single:.3f} ms vs "
              f"{fsync['p50']:.3f} + {0 if rtt is None else rtt:.3f} ms = {floor:.3f} ms: "
              f"{single / floor:.2f}x, {'met' if single <= 1.3 * floor else 'missed'}")
        print("  (the round trip is the p50 of a single-client stale read of one node: a gRPC request and a point read)")
    print("\nWhy a goal is missed: the section below; what each tuning change bought: `bench/TUNING.md`.")
    print("Scans (workload E): etcd 3.4 counts every key of a range request even with a limit;")
    print("shoal reads only the page, so that ratio reflects the difference in work done.")


if __name__ == "__main__":
    main()
