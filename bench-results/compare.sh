#!/usr/bin/env bash
# Before/after the group-commit change, run alternately under the same load:
# bench-results/compare.sh BEFORE_BIN AFTER_BIN OUT.jsonl
set -u
before=$1; after=$2; out=$3
for rep in 1 2 3; do
    for bin in "$before" "$after"; do
        tag=$([ "$bin" = "$before" ] && echo before || echo after)
        "$bin" --json bench --case all --mode durable --n 10000 | sed "s/^{/{\"build\":\"$tag\",/" >>"$out"
    done
done
