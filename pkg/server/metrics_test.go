package server_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/promtest"
)

// /metrics parses with Prometheus's own text parser, and moves when a job
// runs: the queue empties, the host's status changes, the worker's
// attempt is counted and timed.
func TestMetricsMoveWithAJob(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, nil)
			ctx := context.Background()
			m := server.NewMetrics(e.st, nil, func() bool { return true })
			e.app.ObserveProviderCalls(m.ProviderCall)
			ts := httptest.NewServer(m.Handler())
			t.Cleanup(ts.Close)

			sub, err := e.srv.Hosts.Create(ctx, hosts.CreateRequest{Name: "metricbox", Owner: "alice", Provider: "sim"})
			if err != nil {
				t.Fatal(err)
			}
			before := scrape(t, ts.URL)
			wantValue(t, before, "cocalc_hosts_jobs", 1, "action", "create", "state", "queued")
			wantValue(t, before, "cocalc_hosts_hosts", 1, "provider", "sim", "status", string(model.StatusProvisioning))
			wantValue(t, before, "cocalc_hosts_database_up", 1)
			wantValue(t, before, "cocalc_hosts_leader", 1)
			if v := before.Value("cocalc_hosts_queue_oldest_due_seconds"); v == nil || *v < 0 {
				t.Fatalf("oldest due job's wait: %v", v)
			}
			if before.Value("cocalc_hosts_job_attempts_total", "action", "create", "outcome", "done", "error_kind", "") != nil {
				t.Fatal("an attempt counted before any ran")
			}

			h, err := e.app.Handler(ctx)
			if err != nil {
				t.Fatal(err)
			}
			w := queue.NewWorker(e.st, h)
			w.OnEvent = m.Job
			if ran, err := w.RunOne(ctx, sub.Job.ID); err != nil || !ran {
				t.Fatalf("run the create job: ran %t, %v", ran, err)
			}
			after := scrape(t, ts.URL)
			if after.Value("cocalc_hosts_jobs", "action", "create", "state", "queued") != nil {
				t.Fatal("the create job is still counted as queued")
			}
			wantValue(t, after, "cocalc_hosts_hosts", 1, "provider", "sim", "status", string(model.StatusRunning))
			wantValue(t, after, "cocalc_hosts_job_attempts_total", 1, "action", "create", "outcome", "done", "error_kind", "")
			hist := after.Find("cocalc_hosts_job_attempt_seconds", "action", "create", "outcome", "done")
			if hist == nil || hist.GetHistogram().GetSampleCount() != 1 {
				t.Fatalf("attempt time histogram: %v", hist)
			}
			// The create job called the (simulated) cloud's API.
			if v := after.Value("cocalc_hosts_provider_calls_total", "provider", "sim", "op", "create", "outcome", "ok"); v == nil || *v < 1 {
				t.Fatalf("sim create calls: %v", v)
			}
			if calls := after.Find("cocalc_hosts_provider_call_seconds", "provider", "sim", "op", "create"); calls == nil || calls.GetHistogram().GetSampleCount() < 1 {
				t.Fatalf("sim create call times: %v", calls)
			}
			// The running sim host has no agent: no answer age for it.
			if v := after.Value("cocalc_hosts_agent_answer_age_seconds", "host", "metricbox"); v != nil {
				t.Fatalf("a simulated host's agent answer age: %g", *v)
			}
		})
	}
}

// Agent reachability on /metrics comes from what the control plane
// records: a running host whose agent took its access list 30 s ago is
// 30 s old, one whose agent never answered is +Inf, and stopped hosts
// are left out.
func TestMetricsAgentAnswerAge(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e, now, url := newMetricsAt(t, backend)
			ctx := context.Background()
			withAgent := func(name string, status model.Status, rt model.Runtime) model.Host {
				h := e.addHost("alice", name)
				h.Status, h.Runtime = status, rt
				if err := e.st.UpdateHost(ctx, h); err != nil {
					t.Fatal(err)
				}
				return h
			}
			answered := withAgent("answered", model.StatusRunning, model.Runtime{Meta: map[string]string{"socket": "/run/a.sock"}})
			if err := e.st.PutHostIngress(ctx, model.HostIngress{HostID: answered.ID, PushedAt: now.Add(-30 * time.Second)}); err != nil {
				t.Fatal(err)
			}
			withAgent("silent", model.StatusRunning, model.Runtime{SSHHost: "203.0.113.7"})
			withAgent("stopped", model.StatusOff, model.Runtime{SSHHost: "203.0.113.8"})
			fams := scrape(t, url)
			wantValue(t, fams, "cocalc_hosts_agent_answer_age_seconds", 30, "host", "answered", "provider", "sim")
			if v := fams.Value("cocalc_hosts_agent_answer_age_seconds", "host", "silent"); v == nil || !math.IsInf(*v, 1) {
				t.Fatalf("a running host whose agent never answered: %v", v)
			}
			if n := len(fams["cocalc_hosts_agent_answer_age_seconds"].GetMetric()); n != 2 {
				t.Fatalf("%d answer ages, want 2 (the stopped host left out)", n)
			}
		})
	}
}

// Backup freshness on /metrics: a histogram of the live projects' newest
// backups' ages (a deleted project's backups left out) and a count of
// those never backed up.
func TestMetricsBackupAge(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e, now, url := newMetricsAt(t, backend)
			ctx := context.Background()
			h := e.addHost("alice", "backedup")
			project := func(ago ...time.Duration) model.Project {
				p := model.Project{ID: uuid.NewString(), Title: "t", Owner: "alice", HostID: h.ID, Image: "cocalc-base",
					State: model.ProjectStopped, CreatedAt: now, UpdatedAt: now}
				if err := e.st.CreateProject(ctx, p); err != nil {
					t.Fatal(err)
				}
				var rs []model.BackupRecord
				for i, d := range ago {
					rs = append(rs, model.BackupRecord{ProjectID: p.ID, ID: fmt.Sprintf("%s-%d", p.ID, i), ShortID: fmt.Sprint(i), HostID: h.ID, Time: now.Add(-d)})
				}
				if err := e.st.RecordBackups(ctx, p.ID, rs, nil); err != nil {
					t.Fatal(err)
				}
				return p
			}
			project(3*24*time.Hour, 30*time.Minute) // newest: half an hour
			project(3 * 24 * time.Hour)
			project()
			gone := project(time.Minute)
			gone.DeletedAt = &now
			if err := e.st.UpdateProject(ctx, gone); err != nil {
				t.Fatal(err)
			}
			fams := scrape(t, url)
			wantValue(t, fams, "cocalc_hosts_projects_never_backed_up", 1)
			hist := fams.Find("cocalc_hosts_project_backup_age_seconds").GetHistogram()
			if hist.GetSampleCount() != 2 || hist.GetSampleSum() != (30*time.Minute+3*24*time.Hour).Seconds() {
				t.Fatalf("backup ages: %d projects, sum %gs", hist.GetSampleCount(), hist.GetSampleSum())
			}
			for _, b := range hist.GetBucket() {
				want := map[float64]uint64{3600: 1, 6 * 3600: 1, 86400: 1, 2 * 86400: 1, 7 * 86400: 2, 30 * 86400: 2, math.Inf(1): 2}[b.GetUpperBound()]
				if b.GetCumulativeCount() != want {
					t.Errorf("projects backed up within %gs: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
				}
			}
		})
	}
}

// newMetricsAt serves the metrics of a new env whose clock stands at now.
func newMetricsAt(t *testing.T, backend string) (e *env, now time.Time, url string) {
	e = newEnv(t, backend, nil)
	now = time.Now().UTC().Truncate(time.Millisecond)
	m := server.NewMetrics(e.st, func() time.Time { return now }, nil)
	ts := httptest.NewServer(m.Handler())
	t.Cleanup(ts.Close)
	return e, now, ts.URL
}

func scrape(t *testing.T, url string) promtest.Families {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
	fams, err := promtest.Parse(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

func wantValue(t *testing.T, fams promtest.Families, name string, want float64, labels ...string) {
	t.Helper()
	if v := fams.Value(name, labels...); v == nil || *v != want {
		t.Fatalf("%s%v = %v, want %g", name, labels, v, want)
	}
}
