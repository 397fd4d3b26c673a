#!/bin/sh
# Runs the benchmarks behind the numbers in the issue notes. Results vary
# with the machine; compare runs with benchstat.
#   queue throughput: sim provider at zero latency, 4 workers, SQLite and Postgres
#   reconcile: one pass over 10,000 sim hosts
#   list: `cocalc-hosts list` over 10,000 hosts
set -eu
cd "$(dirname "$0")/.."
go test ./pkg/queue -run '^$' -bench QueueThroughput -benchtime 2000x
go test ./pkg/reconcile -run '^$' -bench Reconcile -benchtime 1x
go test ./pkg/cli -run '^$' -bench List10k -benchtime 10x
