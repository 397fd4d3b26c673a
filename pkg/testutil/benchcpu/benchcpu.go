// Package benchcpu reports a benchmark's CPU time per operation besides
// its wall time: on a shared 2-core machine other work inflates ns/op,
// not this.
package benchcpu

import (
	"syscall"
	"testing"
	"time"
)

// PerOp starts counting the process's CPU time; call what it returns
// when the timed loop ends (defer benchcpu.PerOp(b)()).
func PerOp(b *testing.B) func() {
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before) //nolint:errcheck
	return func() {
		var after syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &after) //nolint:errcheck
		cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
