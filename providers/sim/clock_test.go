package sim

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestTransitionsFollowTheClock checks that states are computed from
// timestamps: no process has to be running for a VM to finish booting,
// and a second process sees the same state.
func TestTransitionsFollowTheClock(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clock := &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	open := func() *Provider {
		p, err := New(provider.Config{Deployment: "d", State: s.ProviderState(), Options: map[string]string{"boot_time": "1m"}})
		if err != nil {
			t.Fatal(err)
		}
		p.now = clock.now
		return p
	}
	a, b := open(), open()
	expect := func(p *Provider, ref provider.Ref, want provider.State) provider.Instance {
		t.Helper()
		inst, err := p.Status(ctx, ref)
		if err != nil || inst.State != want {
			t.Fatalf("at %s: %v, state %q, want %q", clock.now().Format(time.TimeOnly), err, inst.State, want)
		}
		return inst
	}

	inst, err := a.Create(ctx, provider.CreateSpec{HostID: "h1", Name: provider.InstanceName("h1")})
	if err != nil || inst.State != provider.StatePending || inst.PublicIP != "" {
		t.Fatalf("create: %v %+v", err, inst)
	}
	ref := inst.Ref("h1")
	clock.add(59 * time.Second)
	expect(b, ref, provider.StatePending)
	clock.add(time.Second)
	running := expect(b, ref, provider.StateRunning)
	if running.PublicIP == "" || running.PrivateIP != inst.PrivateIP {
		t.Fatalf("running instance addresses: %+v", running)
	}

	if st, err := b.Stop(ctx, ref); err != nil || st.State != provider.StateStopped || st.PublicIP != "" {
		t.Fatalf("stop: %v %+v", err, st)
	}
	expect(a, ref, provider.StateStopped)

	if st, err := a.Start(ctx, ref); err != nil || st.State != provider.StatePending {
		t.Fatalf("start: %v %+v", err, st)
	}
	// Starting a booting instance is a no-op, not a reboot.
	clock.add(30 * time.Second)
	if _, err := b.Start(ctx, ref); err != nil {
		t.Fatal(err)
	}
	clock.add(30 * time.Second)
	expect(a, ref, provider.StateRunning)

	// Stopping a booting instance stops it.
	if _, err := a.Stop(ctx, ref); err != nil {
		t.Fatal(err)
	}
	a.Start(ctx, ref) //nolint:errcheck
	if _, err := a.Stop(ctx, ref); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour)
	expect(b, ref, provider.StateStopped)

	recs, err := Records(ctx, s.ProviderState())
	if err != nil || len(recs) != 1 || recs[ref.Name].Creations != 1 || recs[ref.Name].HostID != "h1" {
		t.Fatalf("records: %v %+v", err, recs)
	}
}
