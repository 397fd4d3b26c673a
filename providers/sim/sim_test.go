package sim_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const deployment = "test-deployment"

func openSQLite(t *testing.T) *store.SQLStore {
	t.Helper()
	return openDSN(t, filepath.Join(t.TempDir(), "state.db"))
}

func openPostgres(t *testing.T) *store.SQLStore {
	t.Helper()
	return openDSN(t, pgtest.Shared(t).NewDatabase(t))
}

func openDSN(t *testing.T, dsn string) *store.SQLStore {
	t.Helper()
	s, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// backends runs fn on a fresh SQLite file and a fresh Postgres database.

func newSim(t *testing.T, s store.Store, opts map[string]string) *sim.Provider {
	t.Helper()
	p, err := sim.New(provider.Config{Deployment: deployment, State: s.ProviderState(), Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func spec(hostID string) provider.CreateSpec {
	return provider.CreateSpec{
		HostID: hostID, Name: provider.InstanceName(hostID), Region: "sim-east1", MachineType: "sim-small", DiskGB: 10,
		Labels: map[string]string{provider.LabelDeployment: deployment, provider.LabelHost: hostID},
	}
}

func contractOptions() providertest.Options {
	return providertest.Options{
		Spec:         provider.CreateSpec{Region: "sim-east1", MachineType: "sim-small", DiskGB: 10},
		Deployment:   deployment,
		Timeout:      time.Minute,
		PollInterval: 5 * time.Millisecond,
	}
}

func TestContract(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		providertest.RunWithOptions(t, contractOptions(), func(t *testing.T) provider.Provider {
			return newSim(t, openSQLite(t), nil)
		})
	})
	// With a boot time and latency the suite has to wait for states
	// rather than find them immediately.
	t.Run("sqlite_slow_boot", func(t *testing.T) {
		providertest.RunWithOptions(t, contractOptions(), func(t *testing.T) provider.Provider {
			return newSim(t, openSQLite(t), map[string]string{"boot_time": "50ms", "latency": "1ms"})
		})
	})
	t.Run("postgres", func(t *testing.T) {
		providertest.RunWithOptions(t, contractOptions(), func(t *testing.T) provider.Provider {
			return newSim(t, openPostgres(t), nil)
		})
	})
	// Run with defaults, as a provider author would first call it.
	t.Run("defaults", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) provider.Provider { return newSim(t, openSQLite(t), nil) })
	})
}

func TestRegisteredAndOptionErrors(t *testing.T) {
	reg, err := provider.Lookup("sim")
	if err != nil {
		t.Fatal(err)
	}
	if !reg.Capabilities.Simulated || reg.Capabilities.Stop != provider.StopReal {
		t.Fatalf("registered capabilities: %+v", reg.Capabilities)
	}
	s := openSQLite(t)
	p, err := provider.Open("sim", provider.Config{Deployment: deployment, State: s.ProviderState(),
		Options: map[string]string{"latency": "0s", "error_rate": "0", "seed": "42", "capacity_error_regions": " sim-west1 , "}})
	if err != nil {
		t.Fatalf("valid options: %v", err)
	}
	if p.Name() != "sim" {
		t.Fatalf("name %q", p.Name())
	}
	for _, c := range []struct {
		opts map[string]string
		want []string
	}{
		{map[string]string{"error_rate": "2"}, []string{"error_rate", `"2"`}},
		{map[string]string{"rate_limit_rate": "x"}, []string{"rate_limit_rate", `"x"`}},
		{map[string]string{"latency": "fast"}, []string{"latency", `"fast"`}},
		{map[string]string{"boot_time": "-1s"}, []string{"boot_time", `"-1s"`}},
		{map[string]string{"seed": "-3"}, []string{"seed", `"-3"`}},
		{map[string]string{"error_rates": "0.1"}, []string{"unknown option", "error_rates", "error_rate"}},
	} {
		_, err := provider.Open("sim", provider.Config{Deployment: deployment, State: s.ProviderState(), Options: c.opts})
		if err == nil {
			t.Fatalf("options %v: no error", c.opts)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("options %v: error %q does not mention %s", c.opts, err, w)
			}
		}
	}
	if _, err := sim.New(provider.Config{Deployment: deployment}); err == nil {
		t.Fatal("a sim without a state store must be refused")
	}
	if _, err := sim.New(provider.Config{State: s.ProviderState()}); err == nil {
		t.Fatal("a sim without a deployment must be refused")
	}
}

func TestCatalog(t *testing.T) {
	p := newSim(t, openSQLite(t), map[string]string{"capacity_error_regions": "sim-west1"})
	cat, err := p.Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	regions, gpus := map[string]bool{}, map[string]bool{}
	for _, e := range cat {
		regions[e.Region+"/"+e.Zone] = true
		gpus[e.GPUModel] = true
		if !e.Simulated || e.PricingSource != "simulated" || e.HourlyPrice <= 0 || e.VCPUs <= 0 {
			t.Fatalf("bad entry %+v", e)
		}
		if e.Available == (e.Region == "sim-west1") {
			t.Fatalf("availability should follow capacity_error_regions: %+v", e)
		}
		if want := map[string]float64{"sim-east1": 0.08, "sim-west1": 0.12}[e.Region]; e.DiskPricePerGBMonth != want {
			t.Fatalf("%s %s: disk price %v per GB-month, want %v", e.Zone, e.InstanceType, e.DiskPricePerGBMonth, want)
		}
	}
	for _, want := range []string{"sim-east1/sim-east1-a", "sim-east1/sim-east1-b", "sim-west1/sim-west1-a"} {
		if !regions[want] {
			t.Errorf("catalog lacks %s", want)
		}
	}
	if !gpus["l4"] || !gpus["a100"] {
		t.Errorf("catalog lacks GPUs: %v", gpus)
	}
}

func TestCreateValidationAndCapacity(t *testing.T) {
	ctx := context.Background()
	p := newSim(t, openSQLite(t), map[string]string{"capacity_error_regions": "sim-west1"})
	for name, mod := range map[string]func(*provider.CreateSpec){
		"unknown region":     func(s *provider.CreateSpec) { s.Region = "mars-1" },
		"unknown type":       func(s *provider.CreateSpec) { s.MachineType = "huge" },
		"zone not in region": func(s *provider.CreateSpec) { s.Zone = "sim-west1-a" },
		"a100 not in zone a": func(s *provider.CreateSpec) { s.MachineType, s.Zone = "sim-gpu-a100", "sim-east1-a" },
		"wrong gpu":          func(s *provider.CreateSpec) { s.MachineType, s.GPUModel = "sim-gpu-l4", "a100" },
		"bad name":           func(s *provider.CreateSpec) { s.Name = "Disk/evil" },
		"name of 64":         func(s *provider.CreateSpec) { s.Name = "a" + strings.Repeat("b", 63) },
		"negative disk":      func(s *provider.CreateSpec) { s.DiskGB = -1 },
	} {
		sp := spec(uuid.NewString())
		mod(&sp)
		_, err := p.Create(ctx, sp)
		if errkind.Of(err) != errkind.Invalid || errkind.Retryable(err) {
			t.Errorf("%s: got %v, want a non-retryable invalid error", name, err)
		}
	}
	sp := spec(uuid.NewString())
	sp.Region = "sim-west1"
	_, err := p.Create(ctx, sp)
	if errkind.Of(err) != errkind.Capacity || !errkind.Retryable(err) {
		t.Fatalf("capacity region: got %v", err)
	}
	// A GPU spec without a machine type picks a type with that GPU and a
	// zone that offers it.
	sp = spec(uuid.NewString())
	sp.MachineType, sp.GPUModel, sp.GPUCount = "", "a100", 1
	inst, err := p.Create(ctx, sp)
	if err != nil || inst.Zone != "sim-east1-b" || inst.Meta["machine_type"] != "sim-gpu-a100" {
		t.Fatalf("a100: %v %+v", err, inst)
	}
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	p := newSim(t, openSQLite(t), nil)
	ref := provider.Ref{HostID: "nope", Name: provider.InstanceName("nope")}
	_, e1 := p.Status(ctx, ref)
	_, e2 := p.Start(ctx, ref)
	_, e3 := p.Stop(ctx, ref)
	_, e4 := p.ResizeDisk(ctx, ref, 100)
	e5 := p.Delete(ctx, ref, false)
	e6 := p.Delete(ctx, ref, true)
	for i, err := range []error{e1, e2, e3, e4, e5, e6} {
		if !errkind.Is(err, errkind.NotFound) {
			t.Errorf("call %d: got %v, want NotFound", i+1, err)
		}
	}
}

func TestDeleteKeepDiskAndReattach(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	p := newSim(t, s, nil)
	hostID := uuid.NewString()
	sp := spec(hostID)
	sp.DiskGB = 20
	inst, err := p.Create(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ResizeDisk(ctx, inst.Ref(hostID), 10); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("shrink: got %v, want invalid", err)
	}
	if _, err := p.ResizeDisk(ctx, inst.Ref(hostID), 30); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, inst.Ref(hostID), true); err != nil {
		t.Fatal(err)
	}
	disks, _ := sim.Disks(ctx, s.ProviderState())
	if d := disks[sp.Name]; d.ID != inst.DataDisk || d.SizeGB != 30 || d.Zone != inst.Zone {
		t.Fatalf("kept disk: %+v (all %v), want %s of 30 GB", d, disks, inst.DataDisk)
	}
	again, err := p.Create(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == inst.ID || again.DataDisk != inst.DataDisk || again.Meta["disk_gb"] != "30" {
		t.Fatalf("reattach: %+v, want a new VM with disk %s of 30 GB", again, inst.DataDisk)
	}
	if disks, _ := sim.Disks(ctx, s.ProviderState()); len(disks) != 0 {
		t.Fatalf("an attached disk is not kept separately: %v", disks)
	}
	// A kept disk pins the zone: a create elsewhere cannot attach it.
	if err := p.Delete(ctx, again.Ref(hostID), true); err != nil {
		t.Fatal(err)
	}
	elsewhere := sp
	elsewhere.Zone = "sim-east1-b"
	if _, err := p.Create(ctx, elsewhere); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("create away from the kept disk: got %v", err)
	}
	// Deleting without keepDisk removes a kept disk even with no VM.
	if err := p.Delete(ctx, again.Ref(hostID), false); err != nil {
		t.Fatalf("delete the kept disk: %v", err)
	}
	if err := p.Delete(ctx, again.Ref(hostID), false); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("nothing left: got %v", err)
	}
	recs, _ := sim.Records(ctx, s.ProviderState())
	disks, _ = sim.Disks(ctx, s.ProviderState())
	if len(recs) != 0 || len(disks) != 0 {
		t.Fatalf("left behind: %v %v", recs, disks)
	}
}

func TestListIsPerDeployment(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	mine := newSim(t, s, nil)
	theirs, err := sim.New(provider.Config{Deployment: "other", State: s.ProviderState()})
	if err != nil {
		t.Fatal(err)
	}
	a, b := uuid.NewString(), uuid.NewString()
	if _, err := mine.Create(ctx, spec(a)); err != nil {
		t.Fatal(err)
	}
	// The spec claims our deployment, but the provider labels with its own.
	if _, err := theirs.Create(ctx, spec(b)); err != nil {
		t.Fatal(err)
	}
	l1, _ := mine.List(ctx)
	l2, _ := theirs.List(ctx)
	if len(l1) != 1 || l1[0].HostID != a || len(l2) != 1 || l2[0].HostID != b {
		t.Fatalf("lists: %+v / %+v", l1, l2)
	}
	if l2[0].Labels[provider.LabelDeployment] != "other" {
		t.Fatalf("labels %v", l2[0].Labels)
	}
}

func TestInjectedFaults(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)

	fail := newSim(t, s, map[string]string{"error_rate": "1"})
	if _, err := fail.List(ctx); errkind.Of(err) != errkind.Transient {
		t.Fatalf("error_rate=1: got %v", err)
	}

	limited := newSim(t, s, map[string]string{"rate_limit_rate": "1", "retry_after": "3s"})
	_, err := limited.Status(ctx, provider.Ref{Name: "ch-x"})
	if errkind.Of(err) != errkind.RateLimited || errkind.RetryAfter(err) != 3*time.Second {
		t.Fatalf("rate limit: got %v, retry after %s", err, errkind.RetryAfter(err))
	}

	hang := newSim(t, s, map[string]string{"timeout_rate": "1", "timeout": "1h"})
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = hang.List(cctx) // returns when ctx ends, not after an hour
	if errkind.Of(err) != errkind.Transient || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: got %v", err)
	}
	short := newSim(t, s, map[string]string{"timeout_rate": "1", "timeout": "1ms"})
	if _, err := short.List(ctx); errkind.Of(err) != errkind.Transient {
		t.Fatalf("timeout: got %v", err)
	}

	ghost := newSim(t, s, map[string]string{"create_ghost_rate": "1"})
	hostID := uuid.NewString()
	_, err = ghost.Create(ctx, spec(hostID))
	if errkind.Of(err) != errkind.Transient {
		t.Fatalf("ghost create: got %v", err)
	}
	recs, _ := sim.Records(ctx, s.ProviderState())
	rec, made := recs[provider.InstanceName(hostID)]
	if !made {
		t.Fatal("a ghost create must make the VM")
	}
	inst, err := ghost.Create(ctx, spec(hostID))
	if err != nil || inst.ID != rec.ID {
		t.Fatalf("retry after a ghost create must return the VM it made: %v %+v, want %s", err, inst, rec.ID)
	}
}

// With duplicate_names the sim is a cloud whose names are not unique:
// two Creates of one name make two VMs, and refs resolve by instance id.
func TestDuplicateNames(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	p := newSim(t, s, map[string]string{"duplicate_names": "true"})
	hostID := uuid.NewString()
	a, err := p.Create(ctx, spec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Create(ctx, spec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || a.Name != b.Name {
		t.Fatalf("two creates of one name: %s/%s and %s/%s, want two ids of one name", a.Name, a.ID, b.Name, b.ID)
	}
	recs, _ := sim.Records(ctx, s.ProviderState())
	if _, ok := recs[a.ID]; !ok || len(recs) != 2 {
		t.Fatalf("records %v, want two keyed by id", recs)
	}
	if l, err := p.List(ctx); err != nil || len(l) != 2 {
		t.Fatalf("list: %v, %d instances, want both", err, len(l))
	}
	// A name alone no longer says which VM.
	if _, err := p.Status(ctx, provider.Ref{Name: a.Name}); errkind.Of(err) != errkind.Conflict || !strings.Contains(err.Error(), "instance id") {
		t.Fatalf("status by an ambiguous name: %v, want a conflict naming the way out", err)
	}
	if inst, err := p.Stop(ctx, a.Ref(hostID)); err != nil || inst.ID != a.ID || inst.State != provider.StateStopped {
		t.Fatalf("stop by id: %v %+v", err, inst)
	}
	if inst, err := p.Status(ctx, b.Ref(hostID)); err != nil || inst.State != provider.StateRunning {
		t.Fatalf("the other VM: %v %+v, want running", err, inst)
	}
	if err := p.Delete(ctx, b.Ref(hostID), false); err != nil {
		t.Fatal(err)
	}
	// One left: the name finds it again.
	if inst, err := p.Status(ctx, provider.Ref{Name: a.Name}); err != nil || inst.ID != a.ID {
		t.Fatalf("status by the name of the one left: %v %+v", err, inst)
	}
	if _, err := p.Status(ctx, b.Ref(hostID)); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("deleted VM: %v, want not found", err)
	}
}
