package sshboot_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
)

// The link between the control plane and a machine goes down in the
// middle of its bootstrap, at a random moment and for a random while (as
// a flapping network or a cloud's network reconfiguration would). The
// bootstrap completes (TCP rides out a short cut) or fails with an error
// once the pool sees the connection dead; either way, a retry once the
// link is back completes it, and whichever step was cut, the machine ends
// up running one agent under one supervisor, answering as this host.
func TestLinkDownDuringBootstrap(t *testing.T) {
	e := newEnv(t)
	// Find a dead connection in seconds, not the default's tens of
	// seconds, so that cuts longer than that fail the run in this test.
	e.pool.KeepAlive, e.pool.DialTimeout = 500*time.Millisecond, 2*time.Second
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range 3 {
		vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
		h := e.host(vm, "root", "")
		// A first run takes a few seconds: cut anywhere in it.
		cut := time.Duration(r.Int64N(int64(4 * time.Second)))
		down := 500*time.Millisecond + time.Duration(r.Int64N(int64(5*time.Second)))
		bctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		done := make(chan error, 1)
		go func() {
			_, err := e.boot.Bootstrap(bctx, h, "job-"+uuid.NewString()[:8], nil)
			done <- err
		}()
		var err error
		finished := false
		select {
		case err = <-done:
			finished = true
		case <-time.After(cut):
			vm.SetLink(t, false)
			select {
			case err = <-done:
				finished = true
			case <-time.After(down):
			}
			vm.SetLink(t, true)
		}
		if !finished {
			err = <-done
		}
		cancel()
		t.Logf("run %d: link cut after %v for %v: first bootstrap: %v", i, cut, down, err)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "SSH") {
				t.Fatalf("run %d: the failed bootstrap's error must be one line that says SSH failed: %q", i, msg)
			}
			// Transient: the queue retries it by itself.
			if k := errkind.Of(err); k != errkind.Transient {
				t.Fatalf("run %d: error kind %v, want transient (a retry fixes it): %v", i, k, err)
			}
			e.bootstrap(t, h)
		}
		agents := strings.TrimSpace(vm.MustExec(t, "pgrep -c -f '^/usr/local/bin/cocalc-hosts agent --config' || true"))
		supervisors := strings.TrimSpace(vm.MustExec(t, "pgrep -c -f '^/bin/sh /usr/local/lib/cocalc-hosts/supervise' || true"))
		if agents != "1" || supervisors != "1" {
			t.Fatalf("run %d: %s agent(s) and %s supervisor(s) on the machine, want one of each:\n%s", i, agents, supervisors,
				vm.MustExec(t, "ps -eo pid,ppid,args"))
		}
		c, _ := e.boot.AgentClient(ctx(t), h)
		st, err := c.Status(ctx(t))
		if err != nil || st.HostID != h.ID {
			t.Fatalf("run %d: agent status %+v, %v; want it answering as host %s", i, st, err, h.ID)
		}
	}
}
