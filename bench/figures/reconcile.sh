#!/bin/sh
# One reconcile pass over 10,000 sim hosts (every VM matching its host).
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
[ -z "${SHORT:-}" ] || export BENCH_HOSTS=80
out=$(gobench ./pkg/reconcile Reconcile10k 1x)
printf '{"hosts": %s, "sqlite_ms": %s, "postgres_ms": %s}\n' "${BENCH_HOSTS:-10000}" \
	"$(echo "$out" | ms BenchmarkReconcile10k/sqlite)" "$(echo "$out" | ms BenchmarkReconcile10k/postgres)"
