#!/bin/sh
# Runs every fuzz target (parsers of outside input) for a while each:
#   ./bench/fuzz.sh [BUDGET]     default 2m per target; CI runs 2000x each
# BUDGET is go test's -fuzztime: a duration, or a count of runs ("2000x").
# CI uses a count: a duration races Go's fuzzing coordinator at its
# deadline on a loaded machine and fails with a bare "context deadline
# exceeded" and no failing input (golang/go#75804).
# A crasher lands in the package's testdata/fuzz/ and fails `go test`
# from then on: keep it there as a regression test and fix the parser.
set -eu
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/local/go/bin"
T=${1:-2m}
list=$(mktemp)
trap 'rm -f "$list"' EXIT
grep -rho --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' -H cmd pkg providers |
	sed 's|^\(.*\)/[^/]*_test.go:func |./\1 |' | sort -u >"$list"
status=0
while read -r pkg target; do
	echo "fuzz: $pkg $target ($T)" >&2
	go test "$pkg" -run '^$' -fuzz "^$target\$" -fuzztime "$T" >&2 </dev/null || status=1
done <"$list"
exit $status
