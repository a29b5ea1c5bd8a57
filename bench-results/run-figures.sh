#!/usr/bin/env bash
# The release figures of pending-docs/perf18.md: three runs of each durable case,
# the HTTP cases, the query scale and PostgreSQL with 1, 2 and 3 nodes.
# Usage: bench-results/run-figures.sh OUT.jsonl [PG_CONNECTION_STRING]
set -u
out=${1:?usage: run-figures.sh OUT.jsonl [pg]}
pg=${2:-}
bin=./target/release/nagare
run() { echo "# $*" >&2; "$bin" --json bench "$@" >>"$out" || echo "# FAILED: $*" >&2; }
for rep in 1 2 3; do
    run --case all --mode durable --n 20000
    run --case straight --mode durable --concurrency 1 --n 3000
    run --case http --n 20000
    run --case worker --n 10000
    run --case all --mode mem --n 20000
done
run --case query
if [ -n "$pg" ]; then
    for nodes in 1 2 3; do
        run --case all --mode durable --n 5000 --store "$pg" --nodes "$nodes"
    done
    run --case straight --mode durable --concurrency 1 --n 500 --store "$pg"
fi
