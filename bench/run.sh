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
#   catalog: cheapest selection over 50,000 rows; serving and refreshing a cached 50,000-row catalog (SQLite)
#   cost: `cost` over 1,000 hosts with 20 log entries each (SQLite)
go test ./pkg/catalog -run '^$' -bench 'Select50k|CacheGet50k' -benchtime 3x
go test ./pkg/cost -run '^$' -bench Report1000Hosts -benchtime 3x
#   projects (root; real podman and btrfs): project start through the agent next to a raw
#   `podman run -d` of the same image in the same run; memory of 50 idle projects on one host;
#   `project start` end to end through the CLI and the queue (bench/project_start.sh)
go test ./pkg/agent -run '^$' -bench ProjectStart -benchtime 20x
go test ./pkg/agent -run '^$' -bench IdleProjects50 -benchtime 1x
./bench/project_start.sh 10
#   bootstrap over SSH (root): seconds from SSH reachable to agent healthy on a fresh test VM
#   with the packages present, a real cocalc-hosts build as the agent (bench/bootstrap.sh)
./bench/bootstrap.sh 5
