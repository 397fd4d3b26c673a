#!/bin/sh
# Prints one JSON report with every benchmark figure next to its reference
# measured in the same run (see README "Benchmarks"):
#   ./bench/run.sh            the full run (tens of minutes on 2 cores)
#   ./bench/run.sh --short    every figure at a tiny size, in about a
#                             minute: CI runs it to check that it runs
# Each figure is a script bench/figures/NAME.sh that prints one JSON
# object; a new figure is one more script there. A figure that
# fails is reported as {"error": "..."} and makes the run exit 1.
# The older per-area benchmarks (catalog, cost, bootstrap, idle memory)
# stay in bench/more.sh.
set -eu
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/local/go/bin"
export PATH
SHORT=
case "${1:-}" in
--short) SHORT=1 ;;
"") ;;
*) echo "usage: bench/run.sh [--short]" >&2; exit 2 ;;
esac
export SHORT
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for f in bench/figures/*.sh; do
	name=$(basename "$f" .sh)
	[ "$name" != lib ] || continue
	echo "bench: $name" >&2
	if sh "$f" >"$tmp/$name.json" 2>"$tmp/$name.err" && jq -e . "$tmp/$name.json" >/dev/null 2>&1; then
		:
	else
		status=1
		tail -c 2000 "$tmp/$name.err" >&2
		jq -n --rawfile e "$tmp/$name.err" '{error: ($e | .[-500:])}' >"$tmp/$name.json"
	fi
done
jq -n --arg started "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
	--arg go "$(go env GOVERSION)" --argjson cpus "$(nproc)" --argjson short "$([ -n "$SHORT" ] && echo true || echo false)" \
	'{machine: {started: $started, cpus: $cpus, load_average: $load, go: $go, short: $short}, figures: {}}' >"$tmp/report.json"
for j in "$tmp"/*.json; do
	name=$(basename "$j" .json)
	[ "$name" != report ] || continue
	jq --arg n "$name" --slurpfile v "$j" '.figures[$n] = $v[0]' "$tmp/report.json" >"$tmp/next" && mv "$tmp/next" "$tmp/report.json"
done
cat "$tmp/report.json"
exit $status
