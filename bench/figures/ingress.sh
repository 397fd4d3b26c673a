#!/bin/sh
# A web app in a project loaded with wrk directly on the container's
# address (plain HTTP) and through the host's HTTPS ingress (TLS, token
# check, proxy into the container): requests/s and p99 of each, their
# ratio (goal ≥ 0.85) and the p99 the ingress adds (goal ≤ 2 ms), and the
# CPU time per request of the agent (the ingress), the app and wrk: on two
# cores shared by all three, those bound the ratio. Root: real btrfs, podman
# and an agent.
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
need_root "btrfs loop pool, podman"
# Not in the short run (CI's): two 10 s wrk runs and a project container;
# the ingress tests run the same path in CI.
[ -z "${SHORT:-}" ] || skip "not in --short: run bench/run.sh"
out=$(go test ./pkg/agent -run '^$' -bench 'IngressHTTP$' -benchtime 1x 2>&1) || true
m() { echo "$out" | metric BenchmarkIngressHTTP "$1"; }
ratio=$(m throughput-ratio)
if [ "$ratio" = null ]; then
	echo "$out" >&2
	exit 1
fi
printf '{"direct_req_s": %s, "ingress_req_s": %s, "throughput_ratio": %s, "direct_p99_ms": %s, "ingress_p99_ms": %s, "added_p99_ms": %s, "ingress_cpu_us_per_req": %s, "app_cpu_us_per_req": %s, "wrk_direct_cpu_us_per_req": %s, "wrk_ingress_cpu_us_per_req": %s, "goal_ratio": 0.85, "goal_added_p99_ms": 2}\n' \
	"$(m direct-req/s)" "$(m ingress-req/s)" "$ratio" "$(m direct-p99-ms)" "$(m ingress-p99-ms)" "$(m added-p99-ms)" "$(m ingress-cpu-us/req)" "$(m app-cpu-us/req)" \
	"$(m wrk-direct-cpu-us/req)" "$(m wrk-ingress-cpu-us/req)"
