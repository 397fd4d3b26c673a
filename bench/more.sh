#!/bin/sh
# Per-area benchmarks not (yet) in bench/run.sh's report, in Go's
# benchmark format (compare runs with benchstat). The queue, reconcile,
# list and project start figures are in bench/run.sh.
set -eu
cd "$(dirname "$0")/.."
#   catalog: cheapest selection over 50,000 rows; serving and refreshing a cached 50,000-row catalog (SQLite)
#   cost: `cost` over 1,000 hosts with 20 log entries each (SQLite)
go test ./pkg/catalog -run '^$' -bench 'Select50k|CacheGet50k' -benchtime 3x
go test ./pkg/cost -run '^$' -bench Report1000Hosts -benchtime 3x
#   projects (root; real podman and btrfs): memory of 50 idle projects on one host;
#   `project start` end to end through the CLI and the queue (bench/project_start.sh)
go test ./pkg/agent -run '^$' -bench IdleProjects50 -benchtime 1x
./bench/project_start.sh 10
#   bootstrap over SSH (root): seconds from SSH reachable to agent healthy on a fresh test VM
#   with the packages present, a real cocalc-hosts build as the agent (bench/bootstrap.sh)
./bench/bootstrap.sh 5
