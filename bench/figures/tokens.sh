#!/bin/sh
# Connect-token checks per second on one core (-cpu 1): a token a host has
# not seen before (parse, Ed25519 signature, claims; goal ≥ 20,000/s), the
# same token again (a session's later requests), an SSH certificate check
# at login, and the bare Ed25519 verification as the floor under them.
set -eu
cd "$(dirname "$0")/../.."
if [ -n "${SHORT:-}" ]; then t=2000x; else t=3s; fi
out=$(go test ./pkg/tokens -run '^$' -bench 'Verify|CheckCert' -benchtime "$t" -cpu 1 2>&1)
# rate NAME: operations per second of benchmark NAME (from its ns/op).
rate() {
	echo "$out" | awk -v n="$1" '$1 == n { for (i = 2; i < NF; i++) if ($(i+1) == "ns/op") { printf "%.0f", 1e9 / $i; found = 1 } } END { if (!found) print "null" }'
}
v=$(rate BenchmarkVerify)
if [ "$v" = null ]; then
	echo "$out" >&2
	exit 1
fi
printf '{"verify_per_s_one_core": %s, "verify_cached_per_s_one_core": %s, "ssh_cert_check_per_s_one_core": %s, "ed25519_verify_per_s_one_core": %s, "goal_verify_per_s": 20000}\n' \
	"$v" "$(rate BenchmarkVerifyCached)" "$(rate BenchmarkCheckCert)" "$(rate BenchmarkEd25519Verify)"
