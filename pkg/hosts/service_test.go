package hosts_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	_ "github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// limited is the sim with fewer capabilities, standing in for clouds such
// as Lambda (no stop, no persistent disk, no resize).
type limited struct {
	provider.Provider
	caps provider.Capabilities
}

func (l limited) Capabilities() provider.Capabilities { return l.caps }

type providers map[string]provider.Provider

func (p providers) Get(_ context.Context, name string) (provider.Provider, error) {
	if pr, ok := p[name]; ok {
		return pr, nil
	}
	return nil, errors.New("not configured")
}

func newService(t *testing.T, caps func(*provider.Capabilities)) (*hosts.Service, store.Store) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dep, _ := st.Deployment(context.Background())
	p, err := provider.Open("sim", provider.Config{Deployment: dep, State: st.ProviderState()})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Capabilities()
	caps(&c)
	return hosts.New(st, providers{"sim": limited{p, c}}), st
}

func TestStopRefusedWithoutStopCapability(t *testing.T) {
	svc, st := newService(t, func(c *provider.Capabilities) { c.Stop = provider.StopNone; c.PersistentDisk = false })
	ctx := context.Background()
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Provider: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Stop(ctx, "gpu", hosts.StopOptions{})
	if !errkind.Is(err, errkind.Refused) || !strings.Contains(err.Error(), "cocalc-hosts stop --deprovision gpu") {
		t.Fatalf("want a refusal naming --deprovision, got %v", err)
	}
	if jobs, _ := st.ListJobs(ctx, store.JobFilter{Subject: model.HostSubject(sub.Host.ID)}); len(jobs) != 1 {
		t.Fatalf("a refused stop must queue nothing: %d jobs", len(jobs))
	}
	_, err = svc.Delete(ctx, "gpu", hosts.DeleteOptions{KeepDisk: true})
	if !errkind.Is(err, errkind.Invalid) || !strings.Contains(err.Error(), "drop --keep-disk") {
		t.Fatalf("keep-disk on a provider without persistent disks: %v", err)
	}
	_, err = svc.Resize(ctx, "gpu", 100)
	if err == nil {
		t.Fatal("resize without the capability must be refused")
	}
}

func TestDeprovisionIsStopForProvidersWithoutStop(t *testing.T) {
	svc, st := newService(t, func(c *provider.Capabilities) { c.Stop = provider.StopNone })
	ctx := context.Background()
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Provider: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	runAll(t, svc, st)
	dep, err := svc.Stop(ctx, "gpu", hosts.StopOptions{Deprovision: true})
	if err != nil || dep.Job == nil || dep.Job.Action != model.ActionDelete {
		t.Fatalf("stop --deprovision should queue a delete keeping the disk: %v %+v", err, dep.Job)
	}
	runAll(t, svc, st)
	h, _ := st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusOff || h.Runtime.InstanceID != "" || h.DeletedAt != nil {
		t.Fatalf("after deprovision: %s %q", h.Status, h.Runtime.InstanceID)
	}
	// start makes a new VM on the kept disk.
	if _, err := svc.Start(ctx, "gpu"); err != nil {
		t.Fatal(err)
	}
	runAll(t, svc, st)
	h, _ = st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusRunning || h.Runtime.InstanceID == "" {
		t.Fatalf("after start: %s %q (%s)", h.Status, h.Runtime.InstanceID, h.LastError)
	}
}

func TestInvalidRequestsWriteNothing(t *testing.T) {
	svc, st := newService(t, func(*provider.Capabilities) {})
	ctx := context.Background()
	for _, req := range []hosts.CreateRequest{
		{Name: "UPPER", Provider: "sim"},
		{Name: "x", Provider: "nope"},
		{Name: "x", Provider: "sim", Region: "moon-1"},
		{Name: "x", Provider: "sim", Spec: model.HostSpec{MachineType: "sim-huge"}},
		{Name: "x", Provider: "sim", Spec: model.HostSpec{CPUs: 4096}},
		{Name: "x", Provider: "sim", Spec: model.HostSpec{DiskGB: -1}},
	} {
		req.Owner = "a"
		_, err := svc.Create(ctx, req)
		if !errkind.Is(err, errkind.Invalid) {
			t.Errorf("%+v: want an Invalid error, got %v", req, err)
		}
	}
	if hs, _ := st.ListHosts(ctx, store.HostFilter{IncludeDeleted: true}); len(hs) != 0 {
		t.Fatalf("invalid requests wrote %d hosts", len(hs))
	}
}

// runAll works every queued job to the end.
func runAll(t *testing.T, svc *hosts.Service, st store.Store) {
	t.Helper()
	w := queue.NewWorker(st, svc)
	w.Idle = time.Millisecond
	if err := w.Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
}

// A deleted host's log is found by its name while one deleted host
// carries it, and by id always; with two, the name is refused naming
// their ids (issue 8 item 15).
func TestLogOfDeletedHosts(t *testing.T) {
	svc, st := newService(t, func(*provider.Capabilities) {})
	ctx := context.Background()
	now := time.Now()
	mk := func(id string) {
		h := model.Host{ID: id, Name: "gone", Owner: "a", Provider: "sim", Status: model.StatusDeprovisioned,
			CreatedAt: now, UpdatedAt: now, DeletedAt: &now}
		if _, err := st.EnsureAccount(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	mk("00000000-0000-0000-0000-000000000001")
	if h, _, err := svc.Log(ctx, "gone", 0, 0); err != nil || h.ID != "00000000-0000-0000-0000-000000000001" {
		t.Fatalf("log of the one deleted %q: host %s, %v", "gone", h.ID, err)
	}
	mk("00000000-0000-0000-0000-000000000002")
	_, _, err := svc.Log(ctx, "gone", 0, 0)
	if errkind.Of(err) != errkind.Invalid || !strings.Contains(err.Error(), "00000000-0000-0000-0000-000000000002") {
		t.Fatalf("log of two deleted hosts named gone: %v, want an invalid request naming their ids", err)
	}
	if h, _, err := svc.Log(ctx, "00000000-0000-0000-0000-000000000002", 0, 0); err != nil || h.Name != "gone" {
		t.Fatalf("log by id: %s, %v", h.Name, err)
	}
	if _, _, err := svc.Log(ctx, "never", 0, 0); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("log of a host that never was: %v, want not found", err)
	}
}

// lostReplies is the sim whose instances are reported pending at create
// and whose status calls all fail, as a cloud whose replies cannot be
// read after the launch.
type lostReplies struct{ provider.Provider }

func (l lostReplies) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	in, err := l.Provider.Create(ctx, spec)
	in.State = provider.StatePending
	return in, err
}

func (l lostReplies) Status(context.Context, provider.Ref) (provider.Instance, error) {
	return provider.Instance{}, provider.Errorf(errkind.Refused, "sim", "status", "reply unreadable")
}

// The id of a created instance is on the host at once: a create whose
// wait fails leaves the id for the retry and reconcile (issue 8 item 11).
func TestCreateSavesTheInstanceIDAtOnce(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	dep, _ := st.Deployment(ctx)
	p, err := provider.Open("sim", provider.Config{Deployment: dep, State: st.ProviderState()})
	if err != nil {
		t.Fatal(err)
	}
	svc := hosts.New(st, providers{"sim": lostReplies{p}})
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Provider: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	runAll(t, svc, st)
	h, _ := st.GetHost(ctx, sub.Host.ID)
	list, err := p.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("instances %v, %v; want the one created", list, err)
	}
	if h.Status != model.StatusError || h.Runtime.InstanceID != list[0].ID {
		t.Fatalf("after a failed wait: %s with instance %q, want error with %q", h.Status, h.Runtime.InstanceID, list[0].ID)
	}
}
