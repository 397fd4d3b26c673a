# shellcheck shell=sh
# Helpers for figure scripts (sourced, not run).

# gobench PKG PATTERN BENCHTIME: runs Go benchmarks and prints
# "name ms_per_op" per result line (name without the -N CPU suffix).
gobench() {
	go test "$1" -run '^$' -bench "$2" -benchtime "$3" 2>&1 |
		awk '/^Benchmark.*ns\/op/ { n = $1; sub(/-[0-9]+$/, "", n); for (i = 2; i < NF; i++) if ($(i+1) == "ns/op") printf "%s %.3f\n", n, $i / 1e6 }'
}

# ms NAME: the ms/op of benchmark NAME in the gobench output on stdin.
ms() { awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "null" }'; }

# metric BENCH UNIT: the value printed before UNIT (a b.ReportMetric
# unit) on benchmark BENCH's result line in the go test output on stdin.
metric() {
	awk -v b="$1" -v u="$2" '$1 ~ "^" b "(-[0-9]+)?$" { for (i = 3; i <= NF; i++) if ($i == u) { print $(i-1); found = 1 } } END { if (!found) print "null" }'
}

# skip REASON: prints the figure as skipped, with REASON, and ends the
# script (sourced: it exits the figure's script).
skip() {
	printf '{"skipped": "%s"}\n' "$1"
	exit 0
}

# need_root WHAT: skips the figure when not run as root, which WHAT needs.
need_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root ($1)"
}
