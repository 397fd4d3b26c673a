package hosts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/providers/gcp/gcpfake"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// configured is a provider set that knows which providers are set up.
type configured map[string]provider.Provider

func (c configured) Get(_ context.Context, name string) (provider.Provider, error) {
	if p, ok := c[name]; ok {
		return p, nil
	}
	return nil, errors.New("not configured")
}

func (c configured) Configured(context.Context) (map[string]provider.Provider, error) { return c, nil }

func openStore(t *testing.T) *store.SQLStore {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openSim(t *testing.T, st *store.SQLStore, opts map[string]string) provider.Provider {
	t.Helper()
	dep, _ := st.Deployment(context.Background())
	p, err := provider.Open("sim", provider.Config{Deployment: dep, State: st.ProviderState(), Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runAllProgress works every queued job, collecting progress messages.
func runAllProgress(t *testing.T, svc *hosts.Service, st store.Store) []string {
	t.Helper()
	var msgs []string
	w := queue.NewWorker(st, svc)
	w.Idle = time.Millisecond
	w.OnEvent = func(e queue.Event) {
		if e.Message != "" {
			msgs = append(msgs, e.Message)
		}
	}
	if err := w.Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestCreatePicksCheapestAndRecordsPrice(t *testing.T) {
	st := openStore(t)
	svc := hosts.New(st, configured{"sim": openSim(t, st, nil)})
	ctx := context.Background()
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Provider: "sim",
		Spec: model.HostSpec{GPUModel: "L4", CPUs: 4, MemoryGiB: 16, DiskGB: 50}})
	if err != nil {
		t.Fatal(err)
	}
	h := sub.Host
	if h.Spec.MachineType != "sim-gpu-l4" || h.Region != "sim-east1" || h.Zone != "sim-east1-a" || h.HourlyPrice != 0.85 || h.Spec.GPUModel != "l4" || h.Spec.GPUCount != 1 {
		t.Fatalf("chose %+v", h)
	}
	runAllProgress(t, svc, st)
	log, _ := st.ListLog(ctx, store.LogFilter{HostID: h.ID})
	if len(log) != 1 || log[0].Status != "done" || !strings.HasPrefix(log[0].PricingVersion, "simulated@sha256:") {
		t.Fatalf("log: %+v", log)
	}
	// The cheapest machine meeting --cpu 4 without a GPU.
	sub, err = svc.Create(ctx, hosts.CreateRequest{Name: "cpu", Owner: "a", Provider: "sim", Spec: model.HostSpec{CPUs: 4}})
	if err != nil || sub.Host.Spec.MachineType != "sim-medium" || sub.Host.HourlyPrice != 0.10 {
		t.Fatalf("cpu host: %v %+v", err, sub.Host)
	}
	// Spot: the spot price is what the host costs.
	sub, err = svc.Create(ctx, hosts.CreateRequest{Name: "spot", Owner: "a", Provider: "sim", Spec: model.HostSpec{CPUs: 4, Spot: true}})
	if err != nil || sub.Host.HourlyPrice != 0.03 {
		t.Fatalf("spot host: %v %+v", err, sub.Host)
	}
}

func TestPlanExplainsBadRequests(t *testing.T) {
	st := openStore(t)
	svc := hosts.New(st, configured{"sim": openSim(t, st, nil)})
	ctx := context.Background()
	for _, tc := range []struct {
		req  hosts.CreateRequest
		want string
	}{
		{hosts.CreateRequest{Provider: "sim", Spec: model.HostSpec{GPUModel: "l40"}}, `sim has no GPU model "l40" (GPU models: a100, l4)`},
		{hosts.CreateRequest{Provider: "sim", Region: "sim-east"}, `sim has no region "sim-east" (regions: sim-east1, sim-west1)`},
		{hosts.CreateRequest{Provider: "sim", Spec: model.HostSpec{GPUModel: "l4", MemoryGiB: 64}}, "also meets --ram 64 (the most memory is 32 GiB); lower --ram, or relax --gpu, --gpus"},
		{hosts.CreateRequest{Provider: "sim", Spec: model.HostSpec{CPUs: 64}}, "meets --cpu 64 (the most vCPUs is 16); lower --cpu"},
		{hosts.CreateRequest{Provider: "sim", Spec: model.HostSpec{MachineType: "sim-gpu-a100"}, Zone: "sim-east1-a"}, "no machine is offered at sim in zone sim-east1-a of type sim-gpu-a100"},
	} {
		tc.req.Name, tc.req.Owner = "x", "a"
		_, err := svc.Plan(ctx, tc.req)
		if !errkind.Is(err, errkind.Invalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an Invalid error containing %q", tc.req, err, tc.want)
		}
	}
}

func TestCapacityFallsBackToNextCheapest(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	// The catalog was fetched while every region had capacity...
	svc := hosts.New(st, configured{"sim": openSim(t, st, nil)})
	if _, err := svc.CatalogCache().Refresh(ctx, openSim(t, st, nil)); err != nil {
		t.Fatal(err)
	}
	// ...and sim-east1 ran out since.
	full := openSim(t, st, map[string]string{"capacity_error_regions": "sim-east1"})
	svc = hosts.New(st, configured{"sim": full})
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Provider: "sim", Spec: model.HostSpec{GPUModel: "l4"}})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Host.Region != "sim-east1" {
		t.Fatalf("the cached catalog should have chosen sim-east1 first, got %s", sub.Host.Region)
	}
	msgs := runAllProgress(t, svc, st)
	h, _ := st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusRunning || h.Region != "sim-west1" || h.Zone != "sim-west1-a" || h.Spec.MachineType != "sim-gpu-l4" {
		t.Fatalf("after fallback: %s in %s/%s (%s): %s", h.Status, h.Region, h.Zone, h.Spec.MachineType, h.LastError)
	}
	joined := strings.Join(msgs, "\n")
	for _, want := range []string{"no capacity for sim-gpu-l4 in sim-east1-a; trying sim-gpu-l4 in sim-east1-b",
		"no capacity for sim-gpu-l4 in sim-east1-b; trying sim-gpu-l4 in sim-west1-a"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("progress lacks %q:\n%s", want, joined)
		}
	}
	recs, _ := sim.Records(ctx, st.ProviderState())
	if len(recs) != 1 {
		t.Fatalf("%d VMs, want 1", len(recs))
	}
	for _, r := range recs {
		if r.Region != "sim-west1" || r.Creations != 1 {
			t.Fatalf("VM %+v", r)
		}
	}
}

func TestNoFallbackOutsideWhatTheUserAllowed(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	svc := hosts.New(st, configured{"sim": openSim(t, st, nil)})
	if _, err := svc.CatalogCache().Refresh(ctx, openSim(t, st, nil)); err != nil {
		t.Fatal(err)
	}
	svc = hosts.New(st, configured{"sim": openSim(t, st, map[string]string{"capacity_error_regions": "sim-east1"})})
	svc.MaxAttempts = 1
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Provider: "sim", Region: "sim-east1",
		Spec: model.HostSpec{GPUModel: "l4"}})
	if err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	h, _ := st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusError || h.Region != "sim-east1" || !strings.Contains(h.LastError, "no capacity") ||
		!strings.Contains(h.LastError, "tried 1 machines after the first") {
		t.Fatalf("with --region sim-east1 only its zones may be tried: %s in %s: %s", h.Status, h.Region, h.LastError)
	}
	if recs, _ := sim.Records(ctx, st.ProviderState()); len(recs) != 0 {
		t.Fatalf("%d VMs", len(recs))
	}
}

// rebranded is the sim under another name with other prices: a second
// cloud for cross-cloud selection.
type rebranded struct {
	provider.Provider
	name  string
	scale float64
	caps  *provider.Capabilities
}

func (r rebranded) Name() string { return r.name }

func (r rebranded) Capabilities() provider.Capabilities {
	if r.caps != nil {
		return *r.caps
	}
	return r.Provider.Capabilities()
}

func (r rebranded) Catalog(ctx context.Context) ([]catalog.Entry, error) {
	es, err := r.Provider.Catalog(ctx)
	for i := range es {
		es[i].Provider = r.name
		es[i].HourlyPrice *= r.scale
	}
	return es, err
}

func TestCreateWithoutCloudPicksCheapestConfigured(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	base := openSim(t, st, nil)
	noGPU := base.Capabilities()
	noGPU.GPU = false
	set := configured{
		"sim":      base,
		"cheapsim": rebranded{base, "cheapsim", 0.5, nil},
		"cheapest": rebranded{base, "cheapest", 0.1, &noGPU}, // cheapest, but no GPUs
		"pricesim": rebranded{base, "pricesim", 3, nil},
	}
	svc := hosts.New(st, set)
	plan, err := svc.Plan(ctx, hosts.CreateRequest{Name: "x", Owner: "a", Spec: model.HostSpec{GPUModel: "l4", DiskGB: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Choice.Provider != "cheapsim" || plan.Choice.InstanceType != "sim-gpu-l4" || plan.Estimate.HourlyPrice != 0.425 {
		t.Fatalf("plan %+v", plan.Choice)
	}
	// $0.425 × 730 h + 100 GB × $0.10 (the sim's disk price applies only to "sim").
	if plan.Estimate.ComputeMonthly != 310.25 || plan.Estimate.DiskGB != 100 {
		t.Fatalf("estimate %+v", plan.Estimate)
	}
	// A cloud left out is not worth a warning when a machine was found;
	// it is named when nothing fits.
	if len(plan.Warnings) != 0 {
		t.Fatalf("warnings %v, want none", plan.Warnings)
	}
	_, err = svc.Plan(ctx, hosts.CreateRequest{Name: "x", Owner: "a", Spec: model.HostSpec{GPUModel: "l4", GPUCount: 64}})
	if errkind.Of(err) != errkind.Invalid || !strings.Contains(fmt.Sprint(err), "left out cheapest: provider cheapest has no GPUs") {
		t.Fatalf("nothing fits: %v, want an invalid request naming the cloud left out", err)
	}
	// Three zones offer the L4 on each of three GPU clouds: eight other
	// machines, two other clouds to move to if the choice has no capacity.
	if plan.Alternatives != 8 || len(plan.Query.Providers) != 1 || plan.Query.Providers[0] != "cheapsim" ||
		strings.Join(plan.OtherClouds, ",") != "pricesim,sim" {
		t.Fatalf("alternatives %d, query %+v, other clouds %v", plan.Alternatives, plan.Query, plan.OtherClouds)
	}
	// Without a GPU the cheapest cloud wins.
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "cpu", Owner: "a", Spec: model.HostSpec{CPUs: 2}})
	if err != nil || sub.Host.Provider != "cheapest" || sub.Host.Spec.MachineType != "sim-small" {
		t.Fatalf("cpu host: %v %+v", err, sub.Host)
	}
	var pl struct {
		Query catalog.Query `json:"query"`
	}
	json.Unmarshal(sub.Job.Payload, &pl) //nolint:errcheck
	if len(pl.Query.Providers) != 1 || pl.Query.Providers[0] != "cheapest" || pl.Query.CPUs != 2 {
		t.Fatalf("create payload query %+v", pl.Query)
	}

	// Nothing configured is bad input, and so is a request no configured
	// cloud can serve.
	none := hosts.New(st, configured{})
	_, err = none.Create(ctx, hosts.CreateRequest{Name: "y", Owner: "a", Spec: model.HostSpec{CPUs: 2}})
	if !errkind.Is(err, errkind.Invalid) || !strings.Contains(err.Error(), "no cloud is configured") {
		t.Fatalf("nothing configured: %v", err)
	}
	// A create that names no cloud and no need lands nowhere by itself
	// (issue 8 item 4); default_cloud names the cloud.
	if _, err := svc.Create(ctx, hosts.CreateRequest{Name: "y", Owner: "a"}); !errkind.Is(err, errkind.Invalid) ||
		!strings.Contains(err.Error(), "no cloud given: pass --cloud NAME") || !strings.Contains(err.Error(), "default_cloud") {
		t.Fatalf("create without cloud or needs: %v", err)
	}
	svc.DefaultProvider = "sim"
	if plan, err := svc.Plan(ctx, hosts.CreateRequest{Name: "y", Owner: "a"}); err != nil || plan.Choice.Provider != "sim" {
		t.Fatalf("plan with default_cloud sim: %+v, %v", plan.Choice, err)
	}
	svc.DefaultProvider = ""
	onlyNoGPU := hosts.New(st, configured{"cheapest": set["cheapest"]})
	if _, err := onlyNoGPU.Create(ctx, hosts.CreateRequest{Name: "y", Owner: "a", Spec: model.HostSpec{GPUModel: "l4"}}); !errkind.Is(err, errkind.Invalid) ||
		!strings.Contains(err.Error(), "no configured cloud can serve this request: provider cheapest has no GPUs") {
		t.Fatalf("no GPU cloud: %v", err)
	}
}

// deleteCounter counts Delete calls, to see the cleanup before a host
// moves to another cloud.
type deleteCounter struct {
	provider.Provider
	deletes int
}

func (d *deleteCounter) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	d.deletes++
	return d.Provider.Delete(ctx, ref, keepDisk)
}

// With no --cloud, a create whose cloud has no capacity anywhere moves to
// the next cheapest cloud, after cleaning up on the one it leaves. With
// --cloud it never does.
func TestCapacityFallsBackToAnotherCloud(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	// The catalog was fetched while the cheap cloud had capacity...
	cache := hosts.New(st, nil).CatalogCache()
	if _, err := cache.Refresh(ctx, rebranded{openSim(t, st, nil), "cheapsim", 0.5, nil}); err != nil {
		t.Fatal(err)
	}
	// ...and since, it has none in any region.
	full := &deleteCounter{Provider: rebranded{openSim(t, st, map[string]string{"capacity_error_regions": "sim-east1,sim-west1"}), "cheapsim", 0.5, nil}}
	svc := hosts.New(st, configured{"cheapsim": full, "sim": openSim(t, st, nil)})
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Spec: model.HostSpec{GPUModel: "l4", DiskGB: 20}})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Host.Provider != "cheapsim" {
		t.Fatalf("the cheaper cloud should be chosen first, got %s", sub.Host.Provider)
	}
	msgs := strings.Join(runAllProgress(t, svc, st), "\n")
	h, _ := st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusRunning || h.Provider != "sim" || h.Region != "sim-east1" || h.HourlyPrice != 0.85 {
		t.Fatalf("after moving clouds: %s on %s in %s at %v: %s", h.Status, h.Provider, h.Region, h.HourlyPrice, h.LastError)
	}
	for _, want := range []string{
		"no capacity for sim-gpu-l4 in sim-east1-a; trying sim-gpu-l4 in sim-east1-b",
		"no capacity for cheapsim sim-gpu-l4 in sim-west1-a; trying sim sim-gpu-l4 in sim-east1-a at $0.8500/hour",
		"removing what the attempts left on cheapsim before moving to sim",
	} {
		if !strings.Contains(msgs, want) {
			t.Fatalf("progress lacks %q:\n%s", want, msgs)
		}
	}
	if full.deletes != 1 {
		t.Fatalf("%d cleanups on the cloud left behind, want 1", full.deletes)
	}
	if recs, _ := sim.Records(ctx, st.ProviderState()); len(recs) != 1 {
		t.Fatalf("%d VMs, want 1", len(recs))
	}
	log, _ := st.ListLog(ctx, store.LogFilter{HostID: h.ID})
	if last := log[len(log)-1]; last.Status != "done" || last.Provider != "sim" || !strings.HasPrefix(last.PricingVersion, "simulated@") {
		t.Fatalf("the action's log entry should name the cloud it ended on: %+v", last)
	}

	// Named with --cloud, the host stays on that cloud and fails, though
	// another configured cloud has room.
	svc = hosts.New(st, configured{"sim": openSim(t, st, map[string]string{"capacity_error_regions": "sim-east1,sim-west1"}),
		"roomy": rebranded{openSim(t, st, nil), "roomy", 1, nil}})
	svc.MaxAttempts = 1
	sub, err = svc.Create(ctx, hosts.CreateRequest{Name: "pinned", Owner: "a", Provider: "sim", Spec: model.HostSpec{GPUModel: "l4"}})
	if err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	h, _ = st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusError || h.Provider != "sim" || !strings.Contains(h.LastError, "tried 2 machines after the first") {
		t.Fatalf("with --cloud sim: %s on %s: %s", h.Status, h.Provider, h.LastError)
	}
}

// A dry run prices the data disk Create will really make: on GCP,
// providers.gcp.data_disk_gb when the host asks for no size, and never
// less than the smallest persistent disk GCP makes.
func TestPlanPricesTheDiskCreateMakes(t *testing.T) {
	srv := gcpfake.New(gcpfake.Options{})
	t.Cleanup(srv.Close)
	p, err := provider.Open("gcp", provider.Config{Deployment: "d", Options: map[string]string{
		"project": srv.Project(), "zone": "us-central1-a", "endpoint": srv.URL, "billing_endpoint": srv.URL, "data_disk_gb": "25"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.(provider.Closer).Close() })
	svc := hosts.New(openStore(t), configured{"gcp": p})
	for asked, want := range map[int]int{0: 25, 5: 10, 40: 40} {
		plan, err := svc.Plan(context.Background(), hosts.CreateRequest{Name: "x", Owner: "a", Provider: "gcp",
			Spec: model.HostSpec{MachineType: "e2-standard-2", DiskGB: asked}})
		if err != nil {
			t.Fatal(err)
		}
		if plan.Estimate.DiskGB != want || plan.Estimate.DiskMonthly <= 0 {
			t.Errorf("--disk %d: the estimate prices %d GB ($%v/month), want %d GB", asked, plan.Estimate.DiskGB, plan.Estimate.DiskMonthly, want)
		}
	}
}
