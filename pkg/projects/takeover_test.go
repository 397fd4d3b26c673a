package projects

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// A snapshot job whose first attempt made the snapshot and was then cut
// short (its worker or the agent killed before the job was recorded done)
// is done when the attempt that takes it over finds the snapshot: the
// name was free when the job was queued, because a taken name is refused
// then, with nothing queued.
func TestSnapshotTakenOverAfterItWasMade(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a btrfs pool")
	}
	ctx := context.Background()
	hs := newMoveHosts(t)
	b := hs.add("b", storagetest.BtrfsPool(t), agentapi.StorageBtrfs)
	s := New(hs.st, hs.agents)
	alice := Caller{Account: "alice"}
	if _, err := s.who(ctx, alice); err != nil {
		t.Fatal(err)
	}
	p := hs.project(b, "docker.io/library/busybox:latest", 64<<20)
	client := agentapi.NewClient(hs.agents[b.ID])

	if _, err := client.CreateSnapshot(ctx, p.ID, "taken"); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Snapshot(ctx, alice, p.ID, "taken")
	if !errkind.Is(err, errkind.Conflict) || !strings.Contains(err.Error(), "already has a snapshot taken") {
		t.Fatalf("snapshot with a taken name: %v, want a conflict naming it", err)
	}
	if jobs, _ := hs.st.ListJobs(ctx, store.JobFilter{ActiveOnly: true}); len(jobs) != 0 {
		t.Fatalf("a refused snapshot queued %d job(s)", len(jobs))
	}

	sub, _, err := s.Snapshot(ctx, alice, p.ID, "s1")
	if err != nil {
		t.Fatal(err)
	}
	// The first attempt: the snapshot made, the attempt cut short.
	if _, err := client.CreateSnapshot(ctx, p.ID, "s1"); err != nil {
		t.Fatal(err)
	}
	job := *sub.Job
	job.Attempts = 1
	if _, err := (Handler{S: s}).Run(ctx, job, func(string) {}); err == nil {
		t.Fatal("a first attempt finding its snapshot's name taken succeeded")
	}
	job.Attempts = 2
	var progress []string
	if _, err := (Handler{S: s}).Run(ctx, job, func(m string) { progress = append(progress, m) }); err != nil {
		t.Fatalf("the attempt that took the job over: %v", err)
	}
	if !strings.Contains(strings.Join(progress, "\n"), "made by an earlier attempt") {
		t.Fatalf("progress does not say the snapshot was made before: %q", progress)
	}
	snaps, err := client.Snapshots(ctx, p.ID)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots: %+v, %v; want taken and s1", snaps, err)
	}
}

// A create that fails for good while its host cannot be asked (stopping,
// its agent down) keeps the project's record, in error, rather than
// dropping it: the host may hold the storage an earlier attempt made, and
// the record is how it is found and removed (`project delete --purge`
// once the host is back). With the host up, the failed create removes its
// storage and its record.
func TestFailedCreateOnUnreachableHostKeepsRecord(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a btrfs pool")
	}
	ctx := context.Background()
	hs := newMoveHosts(t)
	pool := storagetest.BtrfsPool(t)
	b := hs.add("b", pool, agentapi.StorageBtrfs)
	// Agents reached as the product reaches them: refused while their
	// host is not running.
	s := New(hs.st, &hosts.Service{Store: hs.st, Agents: hs.agents})
	alice := Caller{Account: "alice"}
	if _, err := s.who(ctx, alice); err != nil {
		t.Fatal(err)
	}
	mux := &queue.Mux{}
	mux.Handle("project", Handler{S: s})
	drain := func() {
		t.Helper()
		if err := queue.NewWorker(hs.st, mux).Run(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	// creating makes a project being created whose storage an earlier
	// attempt made, and its create job's last attempt.
	creating := func() (model.Project, model.Job) {
		t.Helper()
		p := hs.project(b, "docker.io/library/busybox:latest", 64<<20)
		p.State = model.ProjectCreating
		if err := hs.st.UpdateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p, model.Job{ID: "j-" + p.ID, Subject: model.ProjectSubject(p.ID), Action: model.ActionProjectCreate, Attempts: 2, MaxAttempts: 2}
	}
	home := func(id string) string { return filepath.Join(pool, "projects", id) }
	setStatus := func(st model.Status) {
		t.Helper()
		h, err := hs.st.GetHost(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		h.Status = st
		if err := hs.st.UpdateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}

	p, job := creating()
	setStatus(model.StatusStopping)
	(Handler{S: s}).Failed(ctx, job, errors.New("host b is stopping"), true)
	got, err := hs.st.GetProject(ctx, p.ID)
	if err != nil {
		t.Fatalf("the failed create's record: %v", err)
	}
	if got.State != model.ProjectError || !strings.Contains(got.LastError, "removing what was made also failed") {
		t.Fatalf("after the failed create: state %s, last error %q", got.State, got.LastError)
	}
	if _, err := os.Stat(home(p.ID)); err != nil {
		t.Fatalf("the storage of the failed create: %v", err)
	}
	setStatus(model.StatusRunning)
	if _, err := s.Delete(ctx, alice, p.ID, true); err != nil {
		t.Fatal(err)
	}
	drain()
	if _, err := hs.st.GetProject(ctx, p.ID); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("the record after delete --purge: %v", err)
	}
	if _, err := os.Stat(home(p.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the storage after delete --purge: %v", err)
	}

	q, job := creating()
	(Handler{S: s}).Failed(ctx, job, errors.New("no room"), true)
	if _, err := hs.st.GetProject(ctx, q.ID); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("the record of a failed create on a running host: %v", err)
	}
	if _, err := os.Stat(home(q.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the storage of a failed create on a running host: %v", err)
	}
}
