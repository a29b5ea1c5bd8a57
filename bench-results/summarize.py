#!/usr/bin/env python3
"""Median [min-max] of ips, p50 and p99 per (build, case, mode) of nagare bench JSON lines."""
import json, sys, statistics
from collections import defaultdict
rows = defaultdict(list)
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "ips" not in r:
            continue
        rows[(r.get("build", ""), r["case"], r["mode"])].append(r)
def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
print("| build | case | mode | runs | per s, median [min–max] | p50 ms | p99 ms | peak RSS MiB |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for (build, case, mode), rs in rows.items():
    ips = sorted(r["ips"] for r in rs)
    med = statistics.median(ips)
    p50 = statistics.median(r["p50_ms"] for r in rs)
    p99 = statistics.median(r["p99_ms"] for r in rs)
    rss = max(r["peak_rss_mb"] for r in rs)
    span = f"{fmt(med)} [{fmt(ips[0])}–{fmt(ips[-1])}]" if len(rs) > 1 else fmt(med)
    print(f"| {build} | {case} | {mode} | {len(rs)} | {span} | {p50:.3f} | {p99:.3f} | {rss:.0f} |")
