package providertest_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// TestWaitHelpers drives the helpers against the sim, whose instances stay
// pending for boot_time, so WaitState has to poll more than once.
func TestWaitHelpers(t *testing.T) {
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := sim.New(provider.Config{Deployment: "d", State: s.ProviderState(), Options: map[string]string{"boot_time": "30ms"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := providertest.Ctx(t, 20*time.Second)
	hostID := "6f1c1b3e-0000-4000-8000-000000000001"
	in, err := p.Create(ctx, provider.CreateSpec{HostID: hostID, Name: provider.InstanceName(hostID), Region: "sim-east1", MachineType: "sim-small", DiskGB: 10,
		Labels: map[string]string{provider.LabelHost: hostID, provider.LabelDeployment: "d"}})
	if err != nil {
		t.Fatal(err)
	}
	ref := in.Ref(hostID)
	if got := providertest.WaitState(t, ctx, p, ref, provider.StateRunning); got.State != provider.StateRunning {
		t.Fatalf("WaitState returned %+v", got)
	}
	if err := p.Delete(ctx, ref, false); err != nil {
		t.Fatal(err)
	}
	providertest.WaitGone(t, ctx, p, ref)
	_, err = p.Status(ctx, ref)
	providertest.WantKind(t, err, errkind.NotFound)
	if k := providertest.KindOf(err); k != errkind.NotFound {
		t.Fatalf("KindOf(not found) = %s", k)
	}
	if k := providertest.KindOf(nil); k != "none" {
		t.Fatalf("KindOf(nil) = %s, want none", k)
	}
}

func TestSleepLog(t *testing.T) {
	var sl providertest.SleepLog
	if err := sl.Sleep(context.Background(), 4*time.Second); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sl.Sleep(done, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep with an ended context = %v, want context.Canceled", err)
	}
	if got := sl.Waits(); !slices.Equal(got, []time.Duration{4 * time.Second, time.Second}) {
		t.Fatalf("Waits = %v", got)
	}
}
