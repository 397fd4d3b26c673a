package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newHost(name string) model.Host {
	return model.Host{
		ID: uuid.NewString(), Name: name, Owner: "alice", Provider: "sim", Region: "sim-east1",
		Status: model.StatusProvisioning, Spec: model.HostSpec{MachineType: "sim-small", DiskGB: 10},
		CreatedAt: t0, UpdatedAt: t0,
	}
}

func newJob(hostID string, a model.Action) model.Job {
	return model.Job{ID: uuid.NewString(), Subject: model.HostSubject(hostID), Action: a, MaxAttempts: 3, RunAfter: t0, CreatedAt: t0}
}

func TestHosts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("gpu1")
		h.Runtime = model.Runtime{InstanceID: "i-1", Meta: map[string]string{"k": "v"}}
		if err := s.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		byName, err := s.GetHost(ctx, "gpu1")
		if err != nil {
			t.Fatal(err)
		}
		byID, err := s.GetHost(ctx, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		if byName.ID != h.ID || byID.Name != "gpu1" || byID.Runtime.Meta["k"] != "v" || byID.Spec.DiskGB != 10 {
			t.Fatalf("round trip lost data: %+v", byID)
		}
		if !byID.CreatedAt.Equal(t0) {
			t.Fatalf("created_at %v, want %v", byID.CreatedAt, t0)
		}

		err = s.CreateHost(ctx, newHost("gpu1"))
		if !errkind.Is(err, errkind.Conflict) {
			t.Fatalf("duplicate name: got %v, want conflict", err)
		}
		if _, err := s.GetHost(ctx, "nope"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("missing host: got %v", err)
		}

		if err := s.SetHostShared(ctx, h.ID, true); err != nil {
			t.Fatal(err)
		}
		// byID was read before the host was shared: writing it back must
		// not unshare the host.
		// A create that found no capacity may move the host to another
		// cloud.
		byID.Status, byID.LastError, byID.Provider = model.StatusRunning, "boom", "othercloud"
		if err := s.UpdateHost(ctx, byID); err != nil {
			t.Fatal(err)
		}
		got, _ := s.GetHost(ctx, h.ID)
		if got.Status != model.StatusRunning || got.LastError != "boom" || !got.Shared || got.Provider != "othercloud" {
			t.Fatalf("update lost or unshared: %+v", got)
		}

		// A deleted host frees its name but stays addressable by id.
		now := t0.Add(time.Hour)
		got.DeletedAt, got.UpdatedAt = &now, now
		if err := s.UpdateHost(ctx, got); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateHost(ctx, newHost("gpu1")); err != nil {
			t.Fatalf("name of a deleted host should be free: %v", err)
		}
		live, _ := s.ListHosts(ctx, store.HostFilter{})
		all, _ := s.ListHosts(ctx, store.HostFilter{IncludeDeleted: true})
		if len(live) != 1 || len(all) != 2 {
			t.Fatalf("live %d all %d, want 1 and 2", len(live), len(all))
		}
		if old, err := s.GetHost(ctx, h.ID); err != nil || old.DeletedAt == nil {
			t.Fatalf("deleted host by id: %v %+v", err, old)
		}
		if other, _ := s.ListHosts(ctx, store.HostFilter{Provider: "gcp"}); len(other) != 0 {
			t.Fatalf("provider filter: %d hosts", len(other))
		}
		// Brief leaves out spec and runtime; nothing else changes.
		brief, err := s.ListHosts(ctx, store.HostFilter{Brief: true})
		if err != nil || len(brief) != 1 || brief[0].Spec != (model.HostSpec{}) || live[0].Spec == (model.HostSpec{}) {
			t.Fatalf("brief listing: %v %+v", err, brief)
		}
		brief[0].Spec, brief[0].Runtime = live[0].Spec, live[0].Runtime
		if !reflect.DeepEqual(brief[0], live[0]) {
			t.Fatalf("brief listing differs beyond spec and runtime:\n%+v\n%+v", brief[0], live[0])
		}
		// UpdatedSince selects the hosts written at or after it, a
		// deleted one too (a watcher must see deletions).
		changed, err := s.ListHosts(ctx, store.HostFilter{UpdatedSince: now, IncludeDeleted: true})
		if err != nil || len(changed) != 1 || changed[0].ID != h.ID {
			t.Fatalf("updated since %s: %v %+v", now, err, changed)
		}
		if none, _ := s.ListHosts(ctx, store.HostFilter{UpdatedSince: now.Add(time.Millisecond), IncludeDeleted: true}); len(none) != 0 {
			t.Fatalf("updated after the last write: %d hosts", len(none))
		}
	})
}

func TestEnqueueUnique(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h")
		s.CreateHost(ctx, h)
		j1, created, err := s.EnqueueJob(ctx, newJob(h.ID, model.ActionStart))
		if err != nil || !created || j1.State != model.JobQueued {
			t.Fatalf("first enqueue: %v %v %+v", err, created, j1)
		}
		j2, created, err := s.EnqueueJob(ctx, newJob(h.ID, model.ActionStart))
		if err != nil || created || j2.ID != j1.ID {
			t.Fatalf("same action should return the pending job: %v %v %s vs %s", err, created, j2.ID, j1.ID)
		}
		_, _, err = s.EnqueueJob(ctx, newJob(h.ID, model.ActionDelete))
		var busy *store.BusyError
		if !errors.As(err, &busy) || busy.Active.ID != j1.ID || !errkind.Is(err, errkind.Conflict) {
			t.Fatalf("other action should be refused with BusyError, got %v", err)
		}
	})
}

func TestEnqueueUniqueUnderConcurrency(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h")
		s.CreateHost(ctx, h)
		const n = 24
		var wg sync.WaitGroup
		ids := make(chan string, n)
		createdCount := make(chan bool, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j, created, err := s.EnqueueJob(ctx, newJob(h.ID, model.ActionStop))
				if err != nil {
					t.Error(err)
					return
				}
				ids <- j.ID
				createdCount <- created
			}()
		}
		wg.Wait()
		close(ids)
		close(createdCount)
		distinct := map[string]bool{}
		for id := range ids {
			distinct[id] = true
		}
		nCreated := 0
		for c := range createdCount {
			if c {
				nCreated++
			}
		}
		if len(distinct) != 1 || nCreated != 1 {
			t.Fatalf("%d distinct jobs, %d created; want exactly 1 and 1", len(distinct), nCreated)
		}
		jobs, _ := s.ListJobs(ctx, store.JobFilter{Subject: model.HostSubject(h.ID)})
		if len(jobs) != 1 {
			t.Fatalf("%d rows, want 1", len(jobs))
		}
	})
}

func TestClaimLeaseAndTakeover(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h")
		s.CreateHost(ctx, h)
		job, _, _ := s.EnqueueJob(ctx, newJob(h.ID, model.ActionCreate))

		if j := claimOne(t, s, store.Claim{Owner: "w1", Lease: time.Minute, Now: t0.Add(-time.Second)}); j != nil {
			t.Fatalf("job is not due yet, got %v", j)
		}
		j := claimOne(t, s, store.Claim{Owner: "w1", Lease: time.Minute, Now: t0})
		if j == nil || j.ID != job.ID || j.Attempts != 1 || j.LeaseOwner != "w1" || j.State != model.JobRunning {
			t.Fatalf("claim: %+v", j)
		}
		if again := claimOne(t, s, store.Claim{Owner: "w2", Lease: time.Minute, Now: t0.Add(30 * time.Second)}); again != nil {
			t.Fatalf("a leased job must not be claimed twice: %+v", again)
		}
		if ids, err := s.HeartbeatJobs(ctx, "w1", t0.Add(2*time.Minute), t0); err != nil || len(ids) != 1 || ids[0] != j.ID {
			t.Fatalf("heartbeat: %v %v", ids, err)
		}
		if again := claimOne(t, s, store.Claim{Owner: "w2", Lease: time.Minute, Now: t0.Add(90 * time.Second)}); again != nil {
			t.Fatalf("heartbeat should have extended the lease")
		}
		// w1 dies; after the lease, w2 takes over and counts the attempt.
		taken := claimOne(t, s, store.Claim{Owner: "w2", Lease: time.Minute, Now: t0.Add(3 * time.Minute)})
		if taken == nil || taken.LeaseOwner != "w2" || taken.Attempts != 2 {
			t.Fatalf("takeover: %+v", taken)
		}
		if ids, err := s.HeartbeatJobs(ctx, "w1", t0.Add(4*time.Minute), t0); err != nil || len(ids) != 0 {
			t.Fatalf("the old owner's heartbeat extended %v (%v)", ids, err)
		}
		err := finishOne(s, store.Finish{JobID: j.ID, Owner: "w1", State: model.JobDone, Now: t0})
		if !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("old owner finish: %v", err)
		}

		h.Status = model.StatusRunning
		h.LastAction = "create"
		err = finishOne(s, store.Finish{JobID: j.ID, Owner: "w2", State: model.JobDone, Now: t0.Add(4 * time.Minute),
			Writes: []store.Write{store.HostWrite{Host: h}, store.LogWrite{Entry: model.LogEntry{HostID: h.ID, JobID: j.ID, Action: "create", Status: "done", Provider: "sim", HostStatus: model.StatusRunning}}}})
		if err != nil {
			t.Fatal(err)
		}
		done, _ := s.GetJob(ctx, j.ID)
		if done.State != model.JobDone || done.FinishedAt == nil || done.LeaseOwner != "" {
			t.Fatalf("finished job: %+v", done)
		}
		got, _ := s.GetHost(ctx, h.ID)
		logs, _ := s.ListLog(ctx, store.LogFilter{HostID: h.ID})
		if got.Status != model.StatusRunning || len(logs) != 1 || logs[0].HostStatus != model.StatusRunning {
			t.Fatalf("finish must update host and log together: %+v %+v", got, logs)
		}
		// The host is free again.
		if _, created, err := s.EnqueueJob(ctx, newJob(h.ID, model.ActionStop)); err != nil || !created {
			t.Fatalf("enqueue after done: %v %v", err, created)
		}
	})
}

func TestFinishIsAtomic(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h")
		s.CreateHost(ctx, h)
		s.EnqueueJob(ctx, newJob(h.ID, model.ActionStart))
		j := claimOne(t, s, store.Claim{Owner: "w", Lease: time.Minute, Now: t0})
		ghost := newHost("ghost") // not in the store: the host update fails
		err := finishOne(s, store.Finish{JobID: j.ID, Owner: "w", State: model.JobDone, Now: t0, Writes: []store.Write{
			store.HostWrite{Host: ghost}, store.LogWrite{Entry: model.LogEntry{HostID: h.ID, Action: "start", Status: "done", Provider: "sim"}}}})
		if !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("want not found, got %v", err)
		}
		still, _ := s.GetJob(ctx, j.ID)
		logs, _ := s.ListLog(ctx, store.LogFilter{HostID: h.ID})
		if still.State != model.JobRunning || len(logs) != 0 {
			t.Fatalf("a failed finish must change nothing: %s, %d log rows", still.State, len(logs))
		}
	})
}

func TestClaimSpecificJobAndRetry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		a, b := newHost("a"), newHost("b")
		s.CreateHost(ctx, a)
		s.CreateHost(ctx, b)
		ja, _, _ := s.EnqueueJob(ctx, newJob(a.ID, model.ActionStart))
		jb, _, _ := s.EnqueueJob(ctx, newJob(b.ID, model.ActionStart))
		got := claimOne(t, s, store.Claim{Owner: "cli", Lease: time.Minute, JobID: jb.ID, Now: t0})
		if got == nil || got.ID != jb.ID {
			t.Fatalf("claim by id: %+v", got)
		}
		// Requeue with a delay: not claimable before run_after.
		err := finishOne(s, store.Finish{JobID: jb.ID, Owner: "cli", State: model.JobQueued, RunAfter: t0.Add(time.Minute), Error: "429", Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		next := claimOne(t, s, store.Claim{Owner: "w", Lease: time.Minute, Now: t0.Add(time.Second)})
		if next == nil || next.ID != ja.ID {
			t.Fatalf("want job a, got %+v", next)
		}
		if none := claimOne(t, s, store.Claim{Owner: "w", Lease: time.Minute, Now: t0.Add(2 * time.Second)}); none != nil {
			t.Fatalf("job b is backing off, got %+v", none)
		}
		if err := finishOne(s, store.Finish{JobID: ja.ID, Owner: "w", State: model.JobDone, Now: t0.Add(3 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		retry := claimOne(t, s, store.Claim{Owner: "w", Lease: time.Minute, Now: t0.Add(2 * time.Minute)})
		if retry == nil || retry.ID != jb.ID || retry.Attempts != 2 || retry.LastError != "429" {
			t.Fatalf("retry: %+v", retry)
		}
	})
}

func TestUpdateHostIfIdle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h")
		s.CreateHost(ctx, h)
		changed := h
		changed.Status, changed.UpdatedAt = model.StatusOff, t0.Add(time.Minute)
		entry := &model.LogEntry{HostID: h.ID, Action: "reconcile", Status: "changed", Provider: "sim"}
		// A stale expectation writes nothing.
		if ok, err := s.UpdateHostIfIdle(ctx, changed, t0.Add(time.Second), entry); ok || err != nil {
			t.Fatalf("stale: %v %v", ok, err)
		}
		// An active job blocks the write.
		s.EnqueueJob(ctx, newJob(h.ID, model.ActionStart))
		if ok, err := s.UpdateHostIfIdle(ctx, changed, t0, entry); ok || err != nil {
			t.Fatalf("busy: %v %v", ok, err)
		}
		if logs, _ := s.ListLog(ctx, store.LogFilter{HostID: h.ID}); len(logs) != 0 {
			t.Fatalf("skipped writes must not log: %+v", logs)
		}
		j := claimOne(t, s, store.Claim{Owner: "w", Lease: time.Minute, Now: t0})
		finishOne(s, store.Finish{JobID: j.ID, Owner: "w", State: model.JobDone, Now: t0})
		if ok, err := s.UpdateHostIfIdle(ctx, changed, t0, entry); !ok || err != nil {
			t.Fatalf("idle: %v %v", ok, err)
		}
		got, _ := s.GetHost(ctx, h.ID)
		logs, _ := s.ListLog(ctx, store.LogFilter{HostID: h.ID})
		if got.Status != model.StatusOff || len(logs) != 1 {
			t.Fatalf("%s %d", got.Status, len(logs))
		}
	})
}

func TestLogIsAppendOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		e, err := s.AppendLog(ctx, model.LogEntry{HostID: "h", Action: "create", Status: "done", Provider: "sim",
			Spec: json.RawMessage(`{"a":1}`), PricingVersion: "v1"})
		if err != nil || e.ID == 0 {
			t.Fatalf("append: %v %+v", err, e)
		}
		if _, err := s.DB().ExecContext(ctx, `UPDATE cloud_vm_log SET status = 'x'`); err == nil {
			t.Fatal("UPDATE of cloud_vm_log must be rejected")
		}
		if _, err := s.DB().ExecContext(ctx, `DELETE FROM cloud_vm_log`); err == nil {
			t.Fatal("DELETE of cloud_vm_log must be rejected")
		}
		for i := range 5 {
			s.AppendLog(ctx, model.LogEntry{HostID: "h", Action: fmt.Sprint(i), Status: "done", Provider: "sim"})
		}
		last, _ := s.ListLog(ctx, store.LogFilter{HostID: "h", Limit: 2})
		if len(last) != 2 || last[0].Action != "3" || last[1].Action != "4" {
			t.Fatalf("newest two, oldest first: %+v", last)
		}
		after, _ := s.ListLog(ctx, store.LogFilter{HostID: "h", AfterID: last[0].ID})
		if len(after) != 1 || after[0].Action != "4" {
			t.Fatalf("after id: %+v", after)
		}
		all, _ := s.ListLog(ctx, store.LogFilter{HostID: "h"})
		if len(all) != 6 || string(all[0].Spec) != `{"a":1}` || all[0].PricingVersion != "v1" {
			t.Fatalf("all: %+v", all)
		}
	})
}

func TestCatalogAndProviderState(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		if _, err := s.GetCatalog(ctx, "sim", "machine_types", "all"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("empty cache: %v", err)
		}
		for i := range 2 {
			err := s.PutCatalog(ctx, store.CatalogRecord{Provider: "sim", Kind: "machine_types", Scope: "all",
				Payload: json.RawMessage(fmt.Sprintf(`[%d]`, i)), FetchedAt: t0, ExpiresAt: t0.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
		}
		c, err := s.GetCatalog(ctx, "sim", "machine_types", "all")
		if err != nil || string(c.Payload) != `[1]` || !c.ExpiresAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("catalog: %v %+v", err, c)
		}

		ps := s.ProviderState()
		ok, err := ps.PutIfAbsent(ctx, "sim", "vm1", json.RawMessage(`{"n":1}`))
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if ok, _ := ps.PutIfAbsent(ctx, "sim", "vm1", json.RawMessage(`{"n":2}`)); ok {
			t.Fatal("second PutIfAbsent must not store")
		}
		ps.Put(ctx, "sim", "vm2", json.RawMessage(`{}`))
		v, _ := ps.Get(ctx, "sim", "vm1")
		all, _ := ps.List(ctx, "sim")
		if string(v) != `{"n":1}` || len(all) != 2 {
			t.Fatalf("state: %s %v", v, all)
		}
		ps.Delete(ctx, "sim", "vm1")
		if _, err := ps.Get(ctx, "sim", "vm1"); err == nil {
			t.Fatal("deleted record still there")
		}
	})
}

func TestDeploymentIsStable(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		a, err := s.Deployment(context.Background())
		if err != nil || a == "" {
			t.Fatal(a, err)
		}
		if b, _ := s.Deployment(context.Background()); b != a {
			t.Fatalf("deployment changed: %s then %s", a, b)
		}
	})
}

func TestAccountsAndCollaborators(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h")
		s.CreateHost(ctx, h)
		a, err := s.EnsureAccount(ctx, "bob")
		if err != nil || a.Admin {
			t.Fatalf("%v %+v", err, a)
		}
		s.SetAdmin(ctx, "bob", true)
		if a, _ := s.EnsureAccount(ctx, "bob"); !a.Admin {
			t.Fatal("admin flag lost")
		}
		s.AddCollaborator(ctx, h.ID, "carol")
		s.AddCollaborator(ctx, h.ID, "carol")
		s.AddCollaborator(ctx, h.ID, "bob")
		got, _ := s.ListCollaborators(ctx, h.ID)
		if fmt.Sprint(got) != "[bob carol]" {
			t.Fatalf("collaborators %v", got)
		}
		if err := s.RemoveCollaborator(ctx, h.ID, "dave"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("remove unknown: %v", err)
		}
	})
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := context.Background()
	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.CreateHost(ctx, newHost("keep"))
	s.Close()
	s, err = store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetHost(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.SchemaVersion(ctx); v < 1 {
		t.Fatalf("schema version %d", v)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, want 0600", st.Mode().Perm())
	}
}

func TestBadDatabases(t *testing.T) {
	ctx := context.Background()
	corrupt := filepath.Join(t.TempDir(), "corrupt.db")
	os.WriteFile(corrupt, []byte("this is not an sqlite database, just some text that is long enough to matter..............."), 0o600)
	if _, err := store.Open(ctx, corrupt, store.Options{}); !errkind.Is(err, errkind.Unavailable) {
		t.Fatalf("corrupt file: %v", err)
	}
	_, err := store.Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable", store.Options{ConnectTimeout: 2 * time.Second})
	if !errkind.Is(err, errkind.Unavailable) {
		t.Fatalf("unreachable postgres: %v", err)
	}
	_, err = store.Open(ctx, "postgres://postgres:hunter2@127.0.0.1:1/x", store.Options{})
	if err == nil || errkind.Is(err, errkind.Unavailable) {
		t.Fatalf("a password in the URL must be refused before connecting: %v", err)
	}
}

// claimOne claims at most one job.
func claimOne(t *testing.T, s *store.SQLStore, c store.Claim) *model.Job {
	t.Helper()
	jobs, err := s.ClaimJobs(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) > 1 {
		t.Fatalf("asked for one job, got %d", len(jobs))
	}
	if len(jobs) == 0 {
		return nil
	}
	return &jobs[0]
}

func finishOne(s *store.SQLStore, f store.Finish) error {
	return s.FinishJobs(context.Background(), []store.Finish{f})[0]
}
