#!/bin/sh
# Runs every fuzz target (parsers of outside input) for a while each:
#   ./bench/fuzz.sh [DURATION]     default 2m per target; CI runs 3s each
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
