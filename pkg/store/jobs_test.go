package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
)

// A claim takes a batch: expired leases first, then due jobs in run
// order, never a job that is not due, never more than asked.
func TestClaimBatch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		var ids []string
		for i := range 5 {
			h := newHost(fmt.Sprintf("h%d", i))
			s.CreateHost(ctx, h)
			j := newJob(h.ID, model.ActionCreate)
			j.RunAfter = t0.Add(time.Duration(i) * time.Second)
			s.EnqueueJob(ctx, j)
			ids = append(ids, j.ID)
		}
		// w1 takes the first, then dies.
		first := claimOne(t, s, store.Claim{Owner: "w1", Lease: time.Minute, Now: t0})
		if first == nil || first.ID != ids[0] {
			t.Fatalf("first claim: %+v", first)
		}
		at := t0.Add(2 * time.Minute) // w1's lease expired; all five are due
		got, err := s.ClaimJobs(ctx, store.Claim{Owner: "w2", Lease: time.Minute, Limit: 3, Now: at})
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, j := range got {
			order = append(order, j.ID)
			if j.LeaseOwner != "w2" || j.State != model.JobRunning {
				t.Errorf("claimed job %+v", j)
			}
		}
		if fmt.Sprint(order) != fmt.Sprint(ids[:3]) {
			t.Fatalf("claimed %v, want the expired one then the two oldest due: %v", order, ids[:3])
		}
		if got[0].Attempts != 2 {
			t.Errorf("the taken-over job's attempt: %d, want 2", got[0].Attempts)
		}
		rest, err := s.ClaimJobs(ctx, store.Claim{Owner: "w3", Lease: time.Minute, Limit: 10, Now: t0.Add(3 * time.Second)})
		if err != nil || len(rest) != 1 || rest[0].ID != ids[3] {
			t.Fatalf("at t0+3s only %s is due and free: %+v %v", ids[3], rest, err)
		}
		if next, ok, err := s.NextJobAt(ctx); err != nil || !ok || !next.Equal(t0.Add(4*time.Second)) {
			t.Fatalf("next job at %v %v %v, want t0+4s (the last queued one)", next, ok, err)
		}
	})
}

// hostsWithStarts makes n hosts, each with a queued start.
func hostsWithStarts(ctx context.Context, s *store.SQLStore, n int) []model.Host {
	var hs []model.Host
	for i := range n {
		h := newHost(fmt.Sprintf("h%d", i))
		s.CreateHost(ctx, h)
		s.EnqueueJob(ctx, newJob(h.ID, model.ActionStart))
		hs = append(hs, h)
	}
	return hs
}

// One heartbeat extends every job of its owner and no other; the finishes
// of a batch commit together, and a lost lease rejects only its own.
func TestHeartbeatAndFinishBatches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		hs := hostsWithStarts(ctx, s, 3)
		mine, err := s.ClaimJobs(ctx, store.Claim{Owner: "w1", Lease: time.Minute, Limit: 2, Now: t0})
		if err != nil || len(mine) != 2 {
			t.Fatalf("claim: %v %v", mine, err)
		}
		other := claimOne(t, s, store.Claim{Owner: "w2", Lease: time.Minute, Now: t0})
		ids, err := s.HeartbeatJobs(ctx, "w1", t0.Add(5*time.Minute), t0)
		if err != nil || len(ids) != 2 {
			t.Fatalf("heartbeat of w1 extended %v (%v), want its two jobs", ids, err)
		}
		// w2's job expires and w3 takes it over; w1's jobs do not expire.
		taken, err := s.ClaimJobs(ctx, store.Claim{Owner: "w3", Lease: time.Minute, Limit: 5, Now: t0.Add(2 * time.Minute)})
		if err != nil || len(taken) != 1 || taken[0].ID != other.ID {
			t.Fatalf("takeover: %+v %v", taken, err)
		}
		write := func(j model.Job, status model.Status) []store.Write {
			var h model.Host
			for _, x := range hs {
				if x.ID == j.Subject.ID {
					h = x
				}
			}
			h.Status = status
			return []store.Write{store.HostWrite{Host: h}, store.LogWrite{Entry: model.LogEntry{HostID: h.ID, JobID: j.ID, Action: "start", Status: "done", Provider: "sim"}}}
		}
		errs := s.FinishJobs(ctx, []store.Finish{
			{JobID: mine[0].ID, Owner: "w1", State: model.JobDone, Now: t0, Writes: write(mine[0], model.StatusRunning)},
			{JobID: other.ID, Owner: "w2", State: model.JobDone, Now: t0, Writes: write(*other, model.StatusError)},
			{JobID: mine[1].ID, Owner: "w1", State: model.JobDone, Now: t0, Writes: write(mine[1], model.StatusRunning)},
		})
		if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], store.ErrLeaseLost) {
			t.Fatalf("finish errors %v, want nil, lease lost, nil", errs)
		}
		for _, j := range mine {
			got, _ := s.GetJob(ctx, j.ID)
			h, _ := s.GetHost(ctx, j.Subject.ID)
			if got.State != model.JobDone || h.Status != model.StatusRunning {
				t.Errorf("job %s %s, host %s", j.ID, got.State, h.Status)
			}
		}
		h, _ := s.GetHost(ctx, other.Subject.ID)
		logs, _ := s.ListLog(ctx, store.LogFilter{HostID: other.Subject.ID})
		if j, _ := s.GetJob(ctx, other.ID); j.State != model.JobRunning || j.LeaseOwner != "w3" || h.Status == model.StatusError || len(logs) != 0 {
			t.Fatalf("the rejected finish wrote: job %+v, host %s, %d log entries", j, h.Status, len(logs))
		}
	})
}

// A finish whose host is gone (removed by hand while its job ran) fails
// alone with NotFound and writes nothing; the other finishes of its batch
// commit, whatever their order.
func TestFinishBatchWithHostGone(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		hostsWithStarts(ctx, s, 3)
		jobs, err := s.ClaimJobs(ctx, store.Claim{Owner: "w1", Lease: time.Minute, Limit: 3, Now: t0})
		if err != nil || len(jobs) != 3 {
			t.Fatalf("claim: %v %v", jobs, err)
		}
		gone := jobs[1].Subject.ID
		if _, err := s.DB().ExecContext(ctx, `DELETE FROM project_hosts WHERE id = $1`, gone); err != nil {
			t.Fatal(err)
		}
		var fs []store.Finish
		for _, j := range jobs {
			h := model.Host{ID: j.Subject.ID, Name: "x" + j.Subject.ID[:8], Owner: "alice", Provider: "sim", Region: "sim-east1",
				Status: model.StatusRunning, CreatedAt: t0, UpdatedAt: t0}
			fs = append(fs, store.Finish{JobID: j.ID, Owner: "w1", State: model.JobDone, Now: t0, Writes: []store.Write{
				store.HostWrite{Host: h}, store.LogWrite{Entry: model.LogEntry{HostID: h.ID, JobID: j.ID, Action: "start", Status: "done", Provider: "sim"}}}})
		}
		errs := s.FinishJobs(ctx, fs)
		if errs[0] != nil || errs[2] != nil || !errkind.Is(errs[1], errkind.NotFound) {
			t.Fatalf("finish errors %v, want nil, host not found, nil", errs)
		}
		for i, j := range jobs {
			got, _ := s.GetJob(ctx, j.ID)
			logs, _ := s.ListLog(ctx, store.LogFilter{HostID: j.Subject.ID})
			want, wantLogs := model.JobDone, 1
			if i == 1 {
				want, wantLogs = model.JobRunning, 0
			}
			if got.State != want || len(logs) != wantLogs {
				t.Errorf("job %d: %s with %d log entries, want %s with %d", i, got.State, len(logs), want, wantLogs)
			}
			if h, err := s.GetHost(ctx, j.Subject.ID); i != 1 && (err != nil || h.Status != model.StatusRunning) {
				t.Errorf("host %d: %s %v, want running", i, h.Status, err)
			}
		}
	})
}

// Subscribers hear of every committed job change, from this store at once
// and from another process's (another store on the same database).
func TestSubscribe(t *testing.T) {
	for _, b := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "state.db") }},
		{"postgres", func(t *testing.T) string { return pgtest.Shared(t).NewDatabase(t) }},
	} {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dsn := b.dsn(t)
			open := func() *store.SQLStore {
				s, err := store.Open(ctx, dsn, store.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			here, there := open(), open()
			jobs := here.Subscribe(ctx, store.TopicJobs)
			hosts := here.Subscribe(ctx, store.TopicHosts)
			h := newHost("h")
			if err := there.CreateHost(ctx, h); err != nil {
				t.Fatal(err)
			}
			// Postgres names every row; SQLite names the rows this store
			// changed and reports other connections' commits without ids.
			pg := b.name == "postgres"
			waitChange(t, hosts, h.ID, pg)
			for _, s := range []*store.SQLStore{here, there} {
				exact := pg || s == here
				j := newJob(h.ID, model.ActionStart)
				if _, _, err := s.EnqueueJob(ctx, j); err != nil {
					t.Fatal(err)
				}
				waitChange(t, jobs, j.ID, exact)
				c := claimOne(t, s, store.Claim{Owner: "w", Lease: time.Minute, Now: t0})
				waitChange(t, jobs, j.ID, exact)
				if err := finishOne(s, store.Finish{JobID: c.ID, Owner: "w", State: model.JobDone, Now: t0}); err != nil {
					t.Fatal(err)
				}
				waitChange(t, jobs, j.ID, exact)
			}
			// Closing the store ends the subscriptions.
			here.Close()
			for range jobs {
			}
		})
	}
}

// waitChange waits for a change naming id or, unless exact, one without
// an id.
func waitChange(t *testing.T, ch <-chan store.Change, id string, exact bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("subscription closed while waiting for %s", id)
			}
			if c.ID == id || (c.ID == "" && !exact) {
				return
			}
		case <-deadline:
			t.Fatalf("no change for %s within 30s", id)
		}
	}
}
