#!/bin/sh
# `cocalc-hosts list` over 10,000 hosts made through the host service and
# the queue, table and JSON, on SQLite and Postgres (opening the store
# included), next to sqlite3/psql dumping the same rows in the same run.
# The goal is 150 ms or less for each.
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
if [ -n "${SHORT:-}" ]; then export BENCH_HOSTS=50; n=1x; else n=5x; fi
out=$(gobench ./pkg/cli List10k "$n")
b=BenchmarkList10k
printf '{"hosts": %s, "goal_ms": 150, "sqlite": {"table_ms": %s, "sqlite3_ms": %s, "json_ms": %s, "sqlite3_json_ms": %s}, "postgres": {"table_ms": %s, "psql_ms": %s, "json_ms": %s, "psql_json_ms": %s}}\n' "${BENCH_HOSTS:-10000}" \
	"$(echo "$out" | ms $b/sqlite/table)" "$(echo "$out" | ms $b/sqlite/raw-table)" "$(echo "$out" | ms $b/sqlite/json)" "$(echo "$out" | ms $b/sqlite/raw-json)" \
	"$(echo "$out" | ms $b/postgres/table)" "$(echo "$out" | ms $b/postgres/raw-table)" "$(echo "$out" | ms $b/postgres/json)" "$(echo "$out" | ms $b/postgres/raw-json)"
