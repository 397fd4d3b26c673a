#!/bin/sh
# The dashboard over 10,000 hosts and 50,000 projects: the CPU time of a
# frame after the first load while the selection moves (goal < 16 ms),
# the heap it holds for that fleet, and the time from a job's commit to
# the row changing on screen on Postgres, through its change events
# (over BENCH_HOSTS hosts and five times as many projects: 50 with SHORT).
set -eu
cd "$(dirname "$0")/../.."
if [ -n "${SHORT:-}" ]; then export BENCH_HOSTS=50; n=1x; else n=20x; fi
# metric NAME UNIT: the value before UNIT on NAME's result line.
metric() { awk -v n="$1" -v u="$2" '{ b = $1; sub(/-[0-9]+$/, "", b) } b == n { for (i = 2; i < NF; i++) if ($(i+1) == u) { print $i; found = 1 } } END { if (!found) print "null" }'; }
ms() { awk '{ if ($1 == "null") print "null"; else printf "%.3f\n", $1 / 1e6 }'; }
ui=$(go test ./pkg/tui -run '^$' -bench 'Frame/.*-160x48|FleetMemory' -benchtime "$n" 2>&1)
live=$(go test ./pkg/cli -run '^$' -bench 'CommitToScreenPostgres' -benchtime "$n" 2>&1)
printf '{"hosts": 10000, "projects": 50000, "goal_frame_ms": 16, "frame_cpu_ms": {"hosts": %s, "projects": %s, "details": %s}, "heap_mib": %s, "commit_to_screen": {"hosts": %s, "p50_ms": %s, "p99_ms": %s}}\n' \
	"$(echo "$ui" | metric BenchmarkFrame/hosts-160x48 cpu-ns/op | ms)" \
	"$(echo "$ui" | metric BenchmarkFrame/projects-160x48 cpu-ns/op | ms)" \
	"$(echo "$ui" | metric BenchmarkFrame/details-160x48 cpu-ns/op | ms)" \
	"$(echo "$ui" | metric BenchmarkFleetMemory MiB-held)" \
	"${BENCH_HOSTS:-10000}" \
	"$(echo "$live" | metric BenchmarkCommitToScreenPostgres p50-ms)" \
	"$(echo "$live" | metric BenchmarkCommitToScreenPostgres p99-ms)"
