package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

func newProjectWithJob(p model.Project, diskCap int64) store.NewProject {
	return store.NewProject{Project: p, DiskCap: diskCap, Job: model.Job{ID: uuid.NewString(), Subject: model.ProjectSubject(p.ID),
		Action: model.ActionProjectCreate, MaxAttempts: 3, RunAfter: t0, CreatedAt: t0}}
}

// A host and its create job commit together or not at all: when queueing
// the job fails, no host is left behind (it would be provisioning with
// nothing to move it on), and a host that cannot be made leaves no job.
func TestCreateHostWithJob(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h1")
		job, err := s.CreateHostWithJob(ctx, h, newJob(h.ID, model.ActionCreate))
		if err != nil {
			t.Fatal(err)
		}
		if job.State != model.JobQueued || job.Subject != model.HostSubject(h.ID) || string(job.Payload) != "{}" {
			t.Fatalf("job %+v", job)
		}
		if got, err := s.GetHost(ctx, h.ID); err != nil || got.Status != model.StatusProvisioning {
			t.Fatalf("host %+v, %v", got, err)
		}

		// The enqueue fails (a job id already taken): no host.
		h2 := newHost("h2")
		dup := newJob(h2.ID, model.ActionCreate)
		dup.ID = job.ID
		if _, err := s.CreateHostWithJob(ctx, h2, dup); err == nil {
			t.Fatal("a job with a taken id was queued")
		}
		// A job for another subject is refused before anything is written.
		if _, err := s.CreateHostWithJob(ctx, h2, newJob(h.ID, model.ActionCreate)); err == nil {
			t.Fatal("a host was created with another host's job")
		}
		if _, err := s.GetHost(ctx, "h2"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("a host whose job was not queued is there: %v", err)
		}

		// The host fails (its name is taken): no job.
		again := newHost("h1")
		if _, err := s.CreateHostWithJob(ctx, again, newJob(again.ID, model.ActionCreate)); !errkind.Is(err, errkind.Conflict) {
			t.Fatalf("a second host named h1: %v", err)
		}
		jobs, err := s.ListJobs(ctx, store.JobFilter{})
		if err != nil || len(jobs) != 1 || jobs[0].ID != job.ID {
			t.Fatalf("jobs %+v, %v; want only the first host's", jobs, err)
		}
	})
}

// A project, its create job and (for a clone) its move commit together
// or not at all.
func TestCreateProjectWithJob(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h")
		if err := s.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		const gb = int64(1 << 30)
		src := newProject(h.ID, "alice")
		first := newProjectWithJob(src, 100*gb)
		job, err := s.CreateProjectWithin(ctx, first)
		if err != nil || job.State != model.JobQueued || job.Subject != model.ProjectSubject(src.ID) {
			t.Fatalf("job %+v, %v", job, err)
		}

		// A clone whose job cannot be queued (its id is taken) leaves
		// neither the copy nor its move.
		cp := newProject(h.ID, "alice")
		n := newProjectWithJob(cp, 100*gb)
		n.Job.ID = job.ID
		n.Move = &model.Move{ID: uuid.NewString(), Kind: model.MoveKindClone, ProjectID: src.ID, CloneID: cp.ID, StartedAt: t0, UpdatedAt: t0}
		if _, err := s.CreateProjectWithin(ctx, n); err == nil {
			t.Fatal("a job with a taken id was queued")
		}
		if _, err := s.GetProject(ctx, cp.ID); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("a project whose job was not queued is there: %v", err)
		}
		if _, err := s.GetMove(ctx, n.Move.ID); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("the move of a clone never made is there: %v", err)
		}
		// With a job of its own, the clone and its move are recorded.
		n.Job.ID = uuid.NewString()
		if _, err := s.CreateProjectWithin(ctx, n); err != nil {
			t.Fatal(err)
		}
		if m, err := s.GetMove(ctx, n.Move.ID); err != nil || m.CloneID != cp.ID {
			t.Fatalf("move %+v, %v", m, err)
		}
	})
}
