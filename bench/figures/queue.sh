#!/bin/sh
# Queue actions/s draining 20,000 and 200 queued creates with 4 workers,
# and enqueue -> claim latency on an idle queue, on SQLite and Postgres,
# each next to River doing the same work in the same run (bench/river, a
# module of its own so that River is never a dependency of the product).
set -eu
# Each drain runs on a database that has already run 100 jobs (warm-up),
# as a long-running worker meets a burst; -warmup 0 times the first worker
# of a new database instead.
# The database-only ceiling (pgbench sending an action's statements at
# their cheapest, with no worker) is measured for -floor in the same run.
if [ -n "${SHORT:-}" ]; then depths=40; samples=5; warmup=5; floor=1s; else depths=20000,200; samples=200; warmup=100; floor=20s; fi
cd "$(dirname "$0")/../river"
# -mod=mod: bench/river requires this repository by a replace directive,
# so a dependency added to the product must not break the benchmark.
go run -mod=mod . -depths "$depths" -latency-samples "$samples" -warmup "$warmup" -floor "$floor"
