#!/bin/sh
# A web app in a project loaded with wrk directly on the container's
# address (plain HTTP) and through the host's HTTPS ingress (TLS, token
# check, proxy into the container): requests/s and p99 of each, their
# ratio (goal ≥ 0.85) and the p99 the ingress adds (goal ≤ 2 ms). Root:
# real btrfs, podman and an agent.
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
if [ "$(id -u)" -ne 0 ]; then
	echo '{"skipped": "needs root (btrfs loop pool, podman)"}'
	exit 0
fi
if [ -n "${SHORT:-}" ]; then
	# Two 10 s wrk runs and a project container: the ingress tests run
	# the same path in CI.
	echo '{"skipped": "not in --short: run bench/run.sh"}'
	exit 0
fi
out=$(go test ./pkg/agent -run '^$' -bench 'IngressHTTP$' -benchtime 1x 2>&1) || true
m() { echo "$out" | metric BenchmarkIngressHTTP "$1"; }
ratio=$(m throughput-ratio)
if [ "$ratio" = null ]; then
	echo "$out" >&2
	exit 1
fi
printf '{"direct_req_s": %s, "ingress_req_s": %s, "throughput_ratio": %s, "direct_p99_ms": %s, "ingress_p99_ms": %s, "added_p99_ms": %s, "goal_ratio": 0.85, "goal_added_p99_ms": 2}\n' \
	"$(m direct-req/s)" "$(m ingress-req/s)" "$ratio" "$(m direct-p99-ms)" "$(m ingress-p99-ms)" "$(m added-p99-ms)"
