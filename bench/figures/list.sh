#!/bin/sh
# `cocalc-hosts list` over 10,000 hosts, table and JSON (SQLite, opening
# the store included); the goal is 150 ms or less for both.
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
if [ -n "${SHORT:-}" ]; then export BENCH_HOSTS=50; n=1x; else n=10x; fi
out=$(gobench ./pkg/cli List10k "$n")
printf '{"hosts": %s, "table_ms": %s, "json_ms": %s, "goal_ms": 150}\n' "${BENCH_HOSTS:-10000}" \
	"$(echo "$out" | ms BenchmarkList10k/table)" "$(echo "$out" | ms BenchmarkList10k/json)"
