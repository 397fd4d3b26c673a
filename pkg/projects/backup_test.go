package projects

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// The schedule queues a backup job for each project on a running host
// whose newest backup is older than backup.schedule (or that has none),
// skips projects on hosts that are off and projects backed up recently,
// queues nothing without a configured repository or with the schedule
// off, and lists stale projects with their last backup.
func TestScheduleBackups(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	host := func(name string, status model.Status) model.Host {
		h := model.Host{ID: uuid.NewString(), Name: name, Owner: "alice", Provider: "local", Region: "local",
			Status: status, Spec: model.HostSpec{MachineType: "local", DiskGB: 10}, CreatedAt: t0, UpdatedAt: t0}
		if err := st.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	project := func(h model.Host) model.Project {
		p := model.Project{ID: uuid.NewString(), Title: "p", Owner: "alice", HostID: h.ID, Image: "cocalc-base",
			Limits: Defaults, State: model.ProjectStopped, CreatedAt: t0, UpdatedAt: t0}
		if err := st.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	up, off := host("dev", model.StatusRunning), host("old", model.StatusOff)
	never, recent, old, onOff := project(up), project(up), project(up), project(off)
	now := t0.Add(48 * time.Hour)
	for p, at := range map[string]time.Time{recent.ID: now.Add(-time.Hour), old.ID: now.Add(-30 * time.Hour)} {
		if err := st.RecordBackups(ctx, p, []model.BackupRecord{{ProjectID: p, ID: uuid.NewString(), ShortID: "abcd1234", HostID: up.ID, Time: at}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := New(st, socketAgents{path: filepath.Join(t.TempDir(), "no-agent.sock")})
	s.Now = func() time.Time { return now }
	s.Backup.Schedule = 24 * time.Hour

	if rep, err := s.ScheduleBackups(ctx); err != nil || rep.Queued != 0 {
		t.Fatalf("without a repository: %+v %v, want nothing queued", rep, err)
	}
	if _, err := st.PutBackupConfig(ctx, "/srv/backups", nil, now); err != nil {
		t.Fatal(err)
	}
	rep, err := s.ScheduleBackups(ctx)
	if err != nil || rep.Queued != 2 || rep.Skipped != 1 {
		t.Fatalf("schedule: %+v %v, want 2 queued (never and old), 1 skipped (host off)", rep, err)
	}
	for _, p := range []model.Project{never, old, recent, onOff} {
		jobs, err := st.ListJobs(ctx, store.JobFilter{Subject: model.ProjectSubject(p.ID), ActiveOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		want := p.ID == never.ID || p.ID == old.ID
		if (len(jobs) == 1 && jobs[0].Action == model.ActionBackupCreate) != want {
			t.Fatalf("project %s: jobs %+v, want a backup job %v", p.ID, jobs, want)
		}
	}
	// Asking again queues nothing new while those are pending.
	if rep, err := s.ScheduleBackups(ctx); err != nil || rep.Queued != 0 {
		t.Fatalf("second pass: %+v %v", rep, err)
	}
	if n, _ := st.ListJobs(ctx, store.JobFilter{ActiveOnly: true}); len(n) != 2 {
		t.Fatalf("second pass made more jobs: %d", len(n))
	}

	stale, err := s.StaleBackups(ctx, Caller{Account: "alice"}, false, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 3 || stale[0].ID != never.ID && stale[0].ID != onOff.ID || stale[2].ID != old.ID || stale[2].LastBackup == nil {
		t.Fatalf("stale: %+v, want never-backed-up first, then old", stale)
	}

	s.Backup.Schedule = 0
	if rep, err := s.ScheduleBackups(ctx); err != nil || rep.Queued != 0 {
		t.Fatalf("schedule off: %+v %v", rep, err)
	}
}
