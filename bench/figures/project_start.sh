#!/bin/sh
# Starting a project through the agent next to a raw `podman run -d` of
# the same image with the same limits, interleaved, medians (root: real
# btrfs and podman).
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
need_root "btrfs loop pools, podman with cgroup limits"
if [ -n "${SHORT:-}" ]; then n=1x; else n=20x; fi
out=$(go test ./pkg/agent -run '^$' -bench ProjectStart -benchtime "$n" 2>&1)
printf '{"agent_ms": %s, "podman_run_ms": %s, "ratio": %s}\n' "$(echo "$out" | metric BenchmarkProjectStart agent-ms)" \
	"$(echo "$out" | metric BenchmarkProjectStart podman-run-ms)" "$(echo "$out" | metric BenchmarkProjectStart ratio)"
