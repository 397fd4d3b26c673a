package sim_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// createUntilOK retries Create the way the queue does: as long as the
// error is retryable, waiting what the provider asked for, or a short
// backoff. The wait is pacing, not an assertion.
func createUntilOK(ctx context.Context, p provider.Provider, sp provider.CreateSpec, errs *atomic.Int64) (provider.Instance, error) {
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		inst, err := p.Create(ctx, sp)
		if err == nil {
			return inst, nil
		}
		errs.Add(1)
		if !errkind.Retryable(err) || attempt == 500 {
			return inst, fmt.Errorf("attempt %d: %w", attempt, err)
		}
		wait := errkind.RetryAfter(err)
		if wait <= 0 {
			wait = backoff
			backoff = min(2*backoff, 20*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return inst, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// TestFaultyCreatesConverge creates 200 hosts through a faulty cloud from
// two "processes" (two store connections, two providers) that both try
// every host, as two workers do when a lease expires mid-create. Every
// host must end with exactly one VM, and both processes must have been
// told the same instance.
func TestFaultyCreatesConverge(t *testing.T) {
	storetest.DSNs(t, func(t *testing.T, dsn string) {
		const hosts, procs, workersPerProc = 200, 2, 4
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		faults := map[string]string{
			"error_rate": "0.2", "rate_limit_rate": "0.1", "retry_after": "2ms",
			"create_ghost_rate": "0.3", "timeout_rate": "0.02", "timeout": "5ms",
		}
		var stores []store.Store
		var ps []provider.Provider
		for i := range procs {
			s := openDSN(t, dsn)
			opts := map[string]string{"seed": fmt.Sprint(i + 1)}
			for k, v := range faults {
				opts[k] = v
			}
			stores = append(stores, s)
			ps = append(ps, newSim(t, s, opts))
		}
		ids := make([]string, hosts)
		for i := range ids {
			ids[i] = uuid.NewString()
		}

		var errCount atomic.Int64
		var mu sync.Mutex
		got := map[string]map[string]bool{} // instance name → IDs returned to callers
		var wg sync.WaitGroup
		for pi, p := range ps {
			work := make(chan string)
			for range workersPerProc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for hostID := range work {
						inst, err := createUntilOK(ctx, p, spec(hostID), &errCount)
						if err != nil {
							t.Errorf("process %d, host %s: %v", pi, hostID, err)
							continue
						}
						mu.Lock()
						if got[inst.Name] == nil {
							got[inst.Name] = map[string]bool{}
						}
						got[inst.Name][inst.ID] = true
						mu.Unlock()
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(work)
				for _, id := range ids {
					work <- id
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if errCount.Load() == 0 {
			t.Fatal("no faults were injected: the test proves nothing")
		}
		t.Logf("%d hosts, %d processes: %d failed Create calls retried", hosts, procs, errCount.Load())

		recs, err := sim.Records(ctx, stores[0].ProviderState())
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != hosts {
			t.Fatalf("%d VMs for %d hosts", len(recs), hosts)
		}
		for _, id := range ids {
			name := provider.InstanceName(id)
			r, ok := recs[name]
			switch {
			case !ok:
				t.Errorf("host %s lost: no VM", id)
			case r.Creations != 1:
				t.Errorf("host %s: VM created %d times", id, r.Creations)
			case len(got[name]) != 1 || !got[name][r.ID]:
				t.Errorf("host %s: callers were told instances %v, the cloud has %s", id, got[name], r.ID)
			case r.HostID != id:
				t.Errorf("VM %s belongs to host %q, want %s", name, r.HostID, id)
			}
		}
		// A fault-free view of the same cloud lists them all.
		list, err := newSim(t, stores[1], nil).List(ctx)
		if err != nil || len(list) != hosts {
			t.Fatalf("list: %v, %d instances", err, len(list))
		}
	})
}
