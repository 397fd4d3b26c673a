package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

func newProject(hostID, owner string) model.Project {
	return model.Project{
		ID: uuid.NewString(), Title: "thesis", Owner: owner, HostID: hostID, Image: "localhost/base",
		Limits:             model.ProjectLimits{MemoryBytes: 2 << 30, CPUs: 1.5, PidsLimit: 500, DiskBytes: 10 << 30},
		IdleTimeoutSeconds: 3600, State: model.ProjectCreating, LastAction: string(model.ActionProjectCreate),
		CreatedAt: t0, UpdatedAt: t0,
	}
}

func TestProjects(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h1, h2 := newHost("h1"), newHost("h2")
		for _, h := range []model.Host{h1, h2} {
			if err := s.CreateHost(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		p := newProject(h1.ID, "alice")
		if err := s.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateProject(ctx, p); !errkind.Is(err, errkind.Conflict) {
			t.Fatalf("duplicate id: %v", err)
		}
		// The host must exist.
		orphan := newProject(uuid.NewString(), "alice")
		if err := s.CreateProject(ctx, orphan); err == nil {
			t.Fatal("created a project on a host that does not exist")
		}
		got, err := s.GetProject(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Limits != p.Limits || got.Title != "thesis" || got.IdleTimeoutSeconds != 3600 || got.State != model.ProjectCreating ||
			!got.CreatedAt.Equal(t0) || got.LastActivity != nil || got.DeletedAt != nil {
			t.Fatalf("round trip: %+v\nwant %+v", got, p)
		}
		if _, err := s.GetProject(ctx, uuid.NewString()); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("missing project: %v", err)
		}

		act := t0.Add(time.Minute)
		got.State, got.LastActivity, got.UpdatedAt = model.ProjectRunning, &act, t0.Add(2*time.Minute)
		if err := s.UpdateProject(ctx, got); err != nil {
			t.Fatal(err)
		}
		again, _ := s.GetProject(ctx, p.ID)
		if again.State != model.ProjectRunning || again.LastActivity == nil || !again.LastActivity.Equal(act) {
			t.Fatalf("after update: %+v", again)
		}
		missing := newProject(h1.ID, "x")
		if err := s.UpdateProject(ctx, missing); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("update of a missing project: %v", err)
		}

		p2 := newProject(h2.ID, "bob")
		p3 := newProject(h1.ID, "bob")
		for _, q := range []model.Project{p2, p3} {
			if err := s.CreateProject(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		count := func(f store.ProjectFilter) int {
			t.Helper()
			ps, err := s.ListProjects(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			return len(ps)
		}
		if n := count(store.ProjectFilter{}); n != 3 {
			t.Fatalf("all: %d", n)
		}
		if n := count(store.ProjectFilter{HostID: h1.ID}); n != 2 {
			t.Fatalf("on h1: %d", n)
		}
		if n := count(store.ProjectFilter{Owner: "bob", HostID: h1.ID}); n != 1 {
			t.Fatalf("bob on h1: %d", n)
		}
		now := t0.Add(time.Hour)
		p3.DeletedAt, p3.State, p3.UpdatedAt = &now, model.ProjectDeleted, now
		if err := s.UpdateProject(ctx, p3); err != nil {
			t.Fatal(err)
		}
		if n := count(store.ProjectFilter{Owner: "bob"}); n != 1 {
			t.Fatalf("bob's live projects: %d", n)
		}
		if n := count(store.ProjectFilter{Owner: "bob", IncludeDeleted: true}); n != 2 {
			t.Fatalf("bob's projects with deleted: %d", n)
		}
		if err := s.PurgeProject(ctx, p3.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetProject(ctx, p3.ID); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("after purge: %v", err)
		}
	})
}

// What is observed on a host must never overwrite a worker's write.
func TestUpdateProjectIfIdle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h1")
		if err := s.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		p := newProject(h.ID, "alice")
		if err := s.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
		seen := p
		seen.State, seen.UpdatedAt = model.ProjectStopped, t0.Add(time.Second)
		// Stale expectation: refused.
		if ok, err := s.UpdateProjectIfIdle(ctx, seen, t0.Add(-time.Second)); err != nil || ok {
			t.Fatalf("stale write: %v %v", ok, err)
		}
		// A queued job for the project: refused.
		job := projectJob(p.ID, model.ActionProjectStart)
		if _, _, err := s.EnqueueJob(ctx, job); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.UpdateProjectIfIdle(ctx, seen, t0); err != nil || ok {
			t.Fatalf("write with a pending job: %v %v", ok, err)
		}
		// A different action for the same project is refused while one is
		// pending: project actions are serialized per project.
		if _, _, err := s.EnqueueJob(ctx, projectJob(p.ID, model.ActionProjectStop)); !errkind.Is(err, errkind.Conflict) {
			t.Fatalf("second action for the project: %v", err)
		}
		claimed := claimOne(t, s, store.Claim{Owner: "w", Lease: time.Minute, Now: t0})
		if claimed == nil {
			t.Fatal("the project's job was not claimed")
		}
		if err := finishOne(s, store.Finish{JobID: claimed.ID, Owner: "w", State: model.JobDone, Now: t0}); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.UpdateProjectIfIdle(ctx, seen, t0); err != nil || !ok {
			t.Fatalf("idle write: %v %v", ok, err)
		}
		got, _ := s.GetProject(ctx, p.ID)
		if got.State != model.ProjectStopped {
			t.Fatalf("state = %s", got.State)
		}
	})
}

func TestSharedHostsAdminsAndIdlePolicy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h1")
		if err := s.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		if err := s.SetHostShared(ctx, h.ID, true); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetHost(ctx, h.ID); !got.Shared {
			t.Fatal("host not shared")
		}
		if err := s.SetHostShared(ctx, uuid.NewString(), true); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("sharing a missing host: %v", err)
		}
		if a, err := s.ListAdmins(ctx); err != nil || len(a) != 0 {
			t.Fatalf("admins = %v, %v", a, err)
		}
		if err := s.SetAdmin(ctx, "root-op", true); err != nil {
			t.Fatal(err)
		}
		s.EnsureAccount(ctx, "alice") //nolint:errcheck
		if a, err := s.ListAdmins(ctx); err != nil || len(a) != 1 || a[0] != "root-op" {
			t.Fatalf("admins = %v, %v", a, err)
		}
		if v, err := s.GetIdlePolicy(ctx, h.ID); err != nil || v != 0 {
			t.Fatalf("unset idle policy = %d, %v", v, err)
		}
		if err := s.SetIdlePolicy(ctx, h.ID, 1800, t0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetIdlePolicy(ctx, h.ID, 600, t0); err != nil {
			t.Fatal(err)
		}
		if v, err := s.GetIdlePolicy(ctx, h.ID); err != nil || v != 600 {
			t.Fatalf("idle policy = %d, %v", v, err)
		}
		if m, err := s.ListIdlePolicies(ctx); err != nil || len(m) != 1 || m[h.ID] != 600 {
			t.Fatalf("idle policies = %v, %v", m, err)
		}
		// Turned off, a policy is no longer listed.
		if err := s.SetIdlePolicy(ctx, h.ID, 0, t0); err != nil {
			t.Fatal(err)
		}
		if m, err := s.ListIdlePolicies(ctx); err != nil || len(m) != 0 {
			t.Fatalf("idle policies after --off = %v, %v", m, err)
		}
	})
}

func projectJob(projectID string, a model.Action) model.Job {
	j := newJob(projectID, a)
	j.Subject = model.ProjectSubject(projectID)
	return j
}
