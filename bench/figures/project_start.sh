#!/bin/sh
# Starting a project through the agent next to a raw `podman run -d` of
# the same image with the same limits (root: real btrfs and podman).
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
need_root "btrfs loop pools, podman with cgroup limits"
if [ -n "${SHORT:-}" ]; then n=1x; else n=20x; fi
out=$(gobench ./pkg/agent ProjectStart "$n")
printf '{"agent_ms": %s, "podman_run_ms": %s}\n' \
	"$(echo "$out" | ms BenchmarkProjectStart/agent)" "$(echo "$out" | ms BenchmarkProjectStart/podman-run)"
