package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// status reports a failed job, a host in error and the queue the same
// way directly and through a server (an admin's only there).
func TestStatusReportsProblems(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, nil)
			ctx := context.Background()
			direct := e.app.Ops()
			root, _ := client.New(e.http.URL, e.keys["root"])
			served := client.Ops{C: root}

			h, err := direct.Status(ctx, model.HealthRequest{})
			if err != nil || !h.Healthy || len(h.Problems) != 0 || h.Backend != backend || h.Leader {
				t.Fatalf("an empty deployment: %+v, %v", h, err)
			}
			// A process leads (as a worker would).
			lead, err := e.st.TryLead(ctx)
			if err != nil || lead == nil {
				t.Fatalf("take the leader lock: %v", err)
			}
			defer lead.Release()

			// A job that failed, one queued, a host in error.
			box := e.addHost("alice", "failbox")
			now := time.Now()
			// startBox runs a start of box that ends in state at at.
			startBox := func(state model.JobState, errMsg string, at time.Time) {
				e.endJob(e.queueStart(box, at), state, errMsg, at)
			}
			startBox(model.JobFailed, "the cloud said no", now)
			box.Status, box.LastError = model.StatusError, "boot failed"
			if err := e.st.UpdateHost(ctx, box); err != nil {
				t.Fatal(err)
			}
			waiting := e.addHost("bob", "waitbox")
			if _, _, err := e.st.EnqueueJob(ctx, model.Job{ID: uuid.NewString(), Subject: model.HostSubject(waiting.ID), Action: model.ActionStop,
				MaxAttempts: 1, RunAfter: now.Add(-time.Minute), CreatedAt: now}); err != nil {
				t.Fatal(err)
			}

			for name, ops := range map[string]interface {
				Status(context.Context, model.HealthRequest) (model.Health, error)
			}{"direct": direct, "served": served} {
				h, err := ops.Status(ctx, model.HealthRequest{})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if h.Healthy || h.FailedJobs != 1 || len(h.Failed) != 1 || h.Failed[0].LastError != "the cloud said no" {
					t.Fatalf("%s: the failed job is not reported: %+v", name, h)
				}
				if h.Queued != 1 || h.OldestDue == nil || h.OldestDue.Action != model.ActionStop || h.OldestWait < 59 {
					t.Fatalf("%s: the queue: %+v", name, h)
				}
				if !h.Leader {
					t.Fatalf("%s: the leader is not seen", name)
				}
				if h.Hosts[model.StatusError] != 1 || h.Hosts[model.StatusOff] != 1 {
					t.Fatalf("%s: hosts by status: %v", name, h.Hosts)
				}
				kinds := map[string]string{}
				for _, p := range h.Problems {
					kinds[p.Kind] = p.Message
				}
				if !strings.Contains(kinds["failed_jobs"], "1 job(s) failed") || !strings.Contains(kinds["host_error"], "failbox is in error: boot failed") {
					t.Fatalf("%s: problems: %+v", name, h.Problems)
				}
			}
			// A later start of the same host that was done: the failure no
			// longer stands.
			startBox(model.JobDone, "", now.Add(time.Second))
			if h, err := direct.Status(ctx, model.HealthRequest{}); err != nil || h.FailedJobs != 0 || len(h.Failed) != 0 {
				t.Fatalf("a failure followed by a success: %d %+v, %v", h.FailedJobs, h.Failed, err)
			}
			// Asked only about failures after now, none is reported.
			if h, err := direct.Status(ctx, model.HealthRequest{FailedSince: now.Add(time.Minute)}); err != nil || h.FailedJobs != 0 {
				t.Fatalf("failures after now: %d, %v", h.FailedJobs, err)
			}
			alice, _ := client.New(e.http.URL, e.keys["alice"])
			if _, err := (client.Ops{C: alice}).Status(ctx, model.HealthRequest{}); !errkind.Is(err, errkind.Forbidden) {
				t.Fatalf("a plain account asks for the status: %v", err)
			}
			if _, err := served.Status(ctx, model.HealthRequest{MinFreePercent: 120}); !errkind.Is(err, errkind.Invalid) {
				t.Fatalf("min free 120%%: %v", err)
			}
		})
	}
}
