package projects

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agent"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// hostAgents reaches each host's agent on its own unix socket.
type hostAgents map[string]string

func (a hostAgents) AgentClient(_ context.Context, h model.Host) (*agentapi.Client, error) {
	return agentapi.NewClient(a[h.ID]), nil
}

// startAgent runs a real agent keeping projects at pool (kind: a plain
// directory or btrfs), on a socket of its own, until the test ends.
func startAgent(t *testing.T, hostID, pool, kind string) string {
	t.Helper()
	dir := t.TempDir()
	c := agentapi.Config{HostID: hostID, SocketPath: filepath.Join(dir, "agent.sock"), PoolPath: pool,
		StorageKind: kind, LogPath: filepath.Join(dir, "agent.log")}
	path := filepath.Join(dir, "agent.json")
	if err := agentapi.WriteConfig(path, c); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Main(ctx, path) }()
	t.Cleanup(func() { cancel(); <-done })
	cl := agentapi.NewClient(c.SocketPath)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		_, err := cl.Status(sctx)
		scancel()
		if err == nil {
			return c.SocketPath
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s did not answer: %v", hostID, err)
		}
	}
}

// moveHosts makes hosts, each with a real agent, in a fresh store.
type moveHosts struct {
	t      *testing.T
	st     store.Store
	agents hostAgents
	t0     time.Time
}

func newMoveHosts(t *testing.T) *moveHosts {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &moveHosts{t: t, st: st, agents: hostAgents{}, t0: time.Now().UTC().Truncate(time.Millisecond)}
}

// add makes a running local host of alice's whose agent keeps projects
// at pool (kind: agentapi.StorageDirectory or StorageBtrfs).
func (hs *moveHosts) add(name, pool, kind string) model.Host {
	h := model.Host{ID: uuid.NewString(), Name: name, Owner: "alice", Provider: "local", Region: "local",
		Status: model.StatusRunning, Spec: model.HostSpec{MachineType: "local", DiskGB: 10}, CreatedAt: hs.t0, UpdatedAt: hs.t0}
	if err := hs.st.CreateHost(context.Background(), h); err != nil {
		hs.t.Fatal(err)
	}
	hs.agents[h.ID] = startAgent(hs.t, h.ID, pool, kind)
	return h
}

// project records a stopped project of alice's on h and creates it there.
func (hs *moveHosts) project(h model.Host, image string, disk int64) model.Project {
	ctx := context.Background()
	p := model.Project{ID: uuid.NewString(), Title: "p", Owner: "alice", HostID: h.ID, Image: image,
		Limits: model.ProjectLimits{MemoryBytes: 256 << 20, CPUs: 1, PidsLimit: 64, DiskBytes: disk}, State: model.ProjectStopped, CreatedAt: hs.t0, UpdatedAt: hs.t0}
	if err := hs.st.CreateProject(ctx, p); err != nil {
		hs.t.Fatal(err)
	}
	if _, err := agentapi.NewClient(hs.agents[h.ID]).CreateProject(ctx, p.ID, agentapi.CreateProjectRequest{}); err != nil {
		hs.t.Fatal(err)
	}
	return p
}

// mountTmpfs mounts a tmpfs of size (e.g. "8m") on a fresh directory
// until the test ends.
func mountTmpfs(t *testing.T, size string) string {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// A move to a host without room for the project (its usage with
// snapshots) is refused in one line that names both sizes and what to do,
// and nothing is started: no move recorded, no job queued, the project
// where it was.
func TestMoveRefusedWithoutHeadroom(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the destination's pool is a small tmpfs")
	}
	ctx := context.Background()
	hs := newMoveHosts(t)
	st := hs.st
	// The destination's pool: 8 MiB in all.
	small := mountTmpfs(t, "8m")
	poolA := t.TempDir()
	a, b := hs.add("a", poolA, agentapi.StorageDirectory), hs.add("b", small, agentapi.StorageDirectory)
	s := New(st, hs.agents)
	alice := Caller{Account: "alice"}
	if _, err := s.who(ctx, alice); err != nil {
		t.Fatal(err)
	}
	p := hs.project(a, "cocalc-base", 4<<20)
	// 16 MiB of files: more than b has.
	if err := os.WriteFile(filepath.Join(poolA, "projects", p.ID, "data"), make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	before := tree(t, small)
	_, _, err := s.Move(ctx, alice, MoveRequest{Project: p.ID, To: b.Name})
	if err == nil {
		t.Fatal("the move was accepted")
	}
	msg := err.Error()
	if !errkind.Is(err, errkind.Refused) || strings.Contains(msg, "\n") {
		t.Errorf("got %q (kind %s), want one line of kind refused", msg, errkind.Of(err))
	}
	for _, want := range []string{"host b has no disk headroom", p.ID, "16 MiB", "free space there or choose another host"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal %q does not say %q", msg, want)
		}
	}
	// Nothing started.
	if moves, err := st.ListMoves(ctx, p.ID); err != nil || len(moves) != 0 {
		t.Errorf("moves recorded: %v %v", moves, err)
	}
	jobs, err := st.ListJobs(ctx, store.JobFilter{})
	if err != nil || len(jobs) != 0 {
		t.Errorf("jobs queued: %v %v", jobs, err)
	}
	if got, err := st.GetProject(ctx, p.ID); err != nil || got.HostID != a.ID {
		t.Errorf("project after the refusal: on %s (%v), want still on a", got.HostID, err)
	}
	if after := tree(t, small); after != before {
		t.Errorf("the destination's pool changed:\n%s\nwas:\n%s", after, before)
	}
}

// tree lists the paths under dir, one a line.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		paths = append(paths, path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(paths, "\n")
}
