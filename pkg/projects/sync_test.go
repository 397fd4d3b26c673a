package projects

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// socketAgents reaches every host's agent on one unix socket path.
type socketAgents struct{ path string }

func (a socketAgents) AgentClient(context.Context, model.Host) (*agentapi.Client, error) {
	return agentapi.NewClient(a.path), nil
}

// An agent that cannot be reached says nothing about its projects: the
// sync reports the host and leaves every record as it was; hosts that are
// not running are not asked at all.
func TestSyncAllUnreachableChangesNothing(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	host := func(name string, status model.Status) model.Host {
		h := model.Host{
			ID: uuid.NewString(), Name: name, Owner: "alice", Provider: "local", Region: "local",
			Status: status, Spec: model.HostSpec{MachineType: "local", DiskGB: 10},
			CreatedAt: t0, UpdatedAt: t0,
		}
		if err := st.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	project := func(h model.Host) model.Project {
		p := model.Project{
			ID: uuid.NewString(), Title: "p", Owner: "alice", HostID: h.ID, Image: "cocalc-base",
			Limits: Defaults, State: model.ProjectRunning, CreatedAt: t0, UpdatedAt: t0,
		}
		if err := st.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	running, off := host("dev", model.StatusRunning), host("old", model.StatusOff)
	p1, p2 := project(running), project(off)

	s := New(st, socketAgents{path: filepath.Join(t.TempDir(), "no-agent.sock")})
	s.Now = func() time.Time { return t0.Add(time.Hour) }
	rep, err := s.SyncAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Hosts != 1 || len(rep.Unreachable) != 1 || rep.Unreachable[0].Host != running.ID || rep.Unreachable[0].Error == "" {
		t.Fatalf("want only host dev asked and reported unreachable, got %+v", rep)
	}
	if rep.Checked != 0 || len(rep.Updated) != 0 {
		t.Fatalf("an unreachable agent must change nothing, got %+v", rep)
	}
	for _, want := range []model.Project{p1, p2} {
		got, err := st.GetProject(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != want.State || !got.UpdatedAt.Equal(want.UpdatedAt) || got.LastError != "" {
			t.Fatalf("project %s changed: %+v", want.ID, got)
		}
	}
}
