// Package testutil holds helpers shared by tests and benchmarks.
package testutil

import (
	"os"
	"strconv"
)

// BenchSize is the size a benchmark works on: def, or BENCH_HOSTS when
// set to a positive number (bench/run.sh --short sets it small, so that
// CI checks that the benchmarks run, in seconds).
func BenchSize(def int) int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_HOSTS")); err == nil && n > 0 {
		return n
	}
	return def
}
