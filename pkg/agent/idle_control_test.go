package agent

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// idleCloud is a cloud whose hosts run agents (sim's hosts do not: the
// hosts service refuses to reach an agent on them) and whose API is sim's.
type idleCloud struct{ *sim.Provider }

func (idleCloud) Name() string { return "idlecloud" }

func init() {
	reg, _ := provider.Lookup(sim.Name)
	reg.Capabilities.Simulated = false
	provider.Register(provider.Registration{
		Name: "idlecloud", Description: "sim's API with hosts that run agents (this test only)", Capabilities: reg.Capabilities,
		New: func(cfg provider.Config) (provider.Provider, error) {
			p, err := sim.New(cfg)
			return idleCloud{p}, err
		},
	})
}

// oneAgent reaches this test's agent for every host.
type oneAgent struct{ c *agentapi.Client }

func (a oneAgent) AgentClient(context.Context, model.Host) (*agentapi.Client, error) { return a.c, nil }

type oneProvider struct{ p provider.Provider }

func (o oneProvider) Get(_ context.Context, name string) (provider.Provider, error) {
	if name != o.p.Name() {
		return nil, errors.New("not configured")
	}
	return o.p, nil
}

// On a cloud where powering off does not end billing, the agent of an
// idle host stops its projects and stays up, and the control plane's
// worker stops the host through the cloud's API.
func TestControlPlaneStopsIdleHost(t *testing.T) {
	h := newHost(t, func(c *agentapi.Config) {
		c.StopProjectsOnExit, c.SelfStopCommand, c.IdleStopByControlPlane = false, "", true
	})
	id := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib}, 0) // never idle-stopped by itself

	ctx := tctx(t)
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dep, _ := st.Deployment(ctx)
	cloud, err := provider.Open("idlecloud", provider.Config{Deployment: dep, State: st.ProviderState()})
	if err != nil {
		t.Fatal(err)
	}
	svc := hosts.New(st, oneProvider{cloud})
	svc.Agents = oneAgent{h.client}
	now := time.Now()
	host := model.Host{ID: uuid.NewString(), Name: "gpu", Owner: "alice", Provider: "idlecloud", Region: "sim-east1",
		Status: model.StatusRunning, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateHost(ctx, host); err != nil {
		t.Fatal(err)
	}

	// Not idle long enough yet: nothing to stop.
	p, err := h.client.SetIdle(ctx, agentapi.IdlePolicy{StopAfterSeconds: 3600})
	if err != nil || p.StoppedBy != agentapi.IdleStopByControlPlane {
		t.Fatalf("SetIdle = %+v, %v", p, err)
	}
	if err := st.SetIdlePolicy(ctx, host.ID, 3600, now); err != nil {
		t.Fatal(err)
	}
	if stops, err := svc.StopIdleHosts(ctx); err != nil || len(stops) != 0 {
		t.Fatalf("stops before the host is idle: %+v, %v", stops, err)
	}

	// Idle past a 1 s policy: the agent stops the project and stays up.
	if _, err := h.client.SetIdle(ctx, agentapi.IdlePolicy{StopAfterSeconds: 1}); err != nil {
		t.Fatal(err)
	}
	waitState(t, h, id, agentapi.ProjectStopped, 30*time.Second)
	if s, _ := h.client.Project(ctx, id); s.StoppedReason != "host idle" {
		t.Fatalf("stopped project = %+v; want reason host idle", s)
	}
	select {
	case err := <-h.exited:
		h.proc = nil
		t.Fatalf("the agent exited (%v); the control plane stops this host", err)
	default:
	}
	// The worker's pass stops the host through the provider: one stop
	// job, and a second pass while it is pending adds none.
	stops, err := svc.StopIdleHosts(ctx)
	if err != nil || len(stops) != 1 || stops[0].Name != "gpu" || stops[0].Job == "" || stops[0].Error != "" || stops[0].IdleSince == nil {
		t.Fatalf("idle stops = %+v, %v", stops, err)
	}
	job, err := st.GetJob(ctx, stops[0].Job)
	if err != nil || job.Action != model.ActionStop || job.Subject != model.HostSubject(host.ID) {
		t.Fatalf("pending job = %+v, %v", job, err)
	}
	if again, err := svc.StopIdleHosts(ctx); err != nil || len(again) != 1 || again[0].Job != job.ID {
		t.Fatalf("second pass = %+v, %v", again, err)
	}
	h.client.SetIdle(ctx, agentapi.IdlePolicy{StopAfterSeconds: 0}) //nolint:errcheck
}
