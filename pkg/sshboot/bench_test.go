package sshboot_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/sshboot"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
)

// BenchmarkBootstrapFresh measures the time from a machine answering SSH
// to its agent answering, on a fresh test VM whose packages (podman,
// btrfs-progs, restic) are already present: checks, uploading the agent,
// the bootstrap script (loop-file pool, quotas, podman storage, agent
// service) and the first agent status over SSH. Making the VM is not
// timed, nor is compressing the agent, which the CLI does once and keeps.
// bench/bootstrap.sh runs it with a real cocalc-hosts build as the agent.
func BenchmarkBootstrapFresh(b *testing.B) {
	warm := newEnv(b)
	bin, err := warm.boot.Agent.For(context.Background(), "linux/"+runtime.GOARCH)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := warm.boot.Agent.Gzipped(bin); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b)
		vm := sshvm.New(b, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
		h := e.host(vm, "root", "")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		// Reachable: the SSH server answers a login.
		if _, err := e.pool.Wait(ctx, sshboot.Target(h), 30*time.Second, nil); err != nil {
			b.Fatal(err)
		}
		e.pool.Forget(sshboot.Target(h)) // the bootstrap makes its own connection, as in production
		start := time.Now()
		b.StartTimer()
		if _, err := e.boot.Bootstrap(ctx, h, "bench", nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		total += time.Since(start)
		cancel()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/bootstrap")
	b.ReportMetric(float64(bin.Size)/(1<<20), "MiB-agent")
}
