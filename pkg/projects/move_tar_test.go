package projects

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
)

// Where either host keeps projects in a plain directory, a move copies the
// home with tar: btrfs → plain, plain → plain and plain → btrfs each
// arrive equal by checksum, say when submitted, in the progress and in
// show that snapshots are not carried, and leave no transfer state or old
// copy. A tar move that fails (the destination's disk filled after the
// move was accepted) is rolled back: the source's files and snapshots as
// they were, still writable, nothing staged on either side.
func TestMovePlainDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: btrfs and tmpfs pools")
	}
	ctx := context.Background()
	hs := newMoveHosts(t)
	bpool, ppool, qpool := storagetest.BtrfsPool(t), t.TempDir(), t.TempDir()
	fpool := mountTmpfs(t, "8m")
	b := hs.add("b", bpool, agentapi.StorageBtrfs)
	p1 := hs.add("p1", ppool, agentapi.StorageDirectory)
	p2 := hs.add("p2", qpool, agentapi.StorageDirectory)
	full := hs.add("full", fpool, agentapi.StorageDirectory)
	s := New(hs.st, hs.agents)
	s.KeepSource, s.MaxAttempts = 0, 1 // the old copy goes at once; one attempt
	alice := Caller{Account: "alice"}
	if _, err := s.who(ctx, alice); err != nil {
		t.Fatal(err)
	}
	// A registry image: the destination need not have it for a stopped
	// project.
	p := hs.project(b, "docker.io/library/busybox:latest", 4<<20)
	home := func(pool string) string { return filepath.Join(pool, "projects", p.ID) }
	writeTree(t, home(bpool))
	bc := agentapi.NewClient(hs.agents[b.ID])
	if _, err := bc.CreateSnapshot(ctx, p.ID, "before"); err != nil {
		t.Fatal(err)
	}
	want := storagetest.TreeSum(t, home(bpool))

	var mu sync.Mutex
	var progress []string
	mux := &queue.Mux{}
	mux.Handle("project", Handler{S: s})
	mux.Handle("move", MoveCleanupHandler{S: s})
	drain := func() []string {
		t.Helper()
		mu.Lock()
		progress = nil
		mu.Unlock()
		w := queue.NewWorker(hs.st, mux)
		w.OnEvent = func(e queue.Event) {
			mu.Lock()
			defer mu.Unlock()
			if e.Kind == queue.EventProgress {
				progress = append(progress, e.Message)
			}
		}
		if err := w.Run(ctx, true); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return progress
	}
	noTransfer := func(pools ...string) {
		t.Helper()
		for _, pool := range pools {
			if _, err := os.Stat(filepath.Join(pool, "transfer", p.ID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("transfer state of the project left in %s (%v)", pool, err)
			}
		}
	}

	// Fails: the destination's disk fills after the move was accepted.
	if _, _, err := s.Move(ctx, alice, MoveRequest{Project: p.ID, To: full.Name}); err != nil {
		t.Fatal(err)
	}
	fill(t, filepath.Join(fpool, "filler"))
	drain()
	d, err := s.Show(ctx, alice, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m := d.LastMove; m == nil || m.Phase != model.MoveFailed || !strings.Contains(m.Error, "No space left on device") {
		t.Fatalf("the move to a full disk: %+v, want failed for want of space", m)
	}
	if d.HostID != b.ID {
		t.Errorf("the project is on %s after the failed move, want b", d.HostID)
	}
	if got := storagetest.TreeSum(t, home(bpool)); got != want {
		t.Errorf("the source's home changed in the failed move")
	}
	if snaps, err := bc.Snapshots(ctx, p.ID); err != nil || len(snaps) != 1 || snaps[0].Name != "before" {
		t.Errorf("the source's snapshots after the failed move: %v %v, want [before]", snaps, err)
	}
	// Still writable: the move never froze it.
	if err := os.WriteFile(filepath.Join(home(bpool), "probe"), nil, 0o600); err != nil {
		t.Errorf("the source's home is not writable after the failed move: %v", err)
	}
	os.Remove(filepath.Join(home(bpool), "probe"))
	noTransfer(bpool, fpool)
	if _, err := os.Stat(home(fpool)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the full destination has the project (%v)", err)
	}

	// btrfs → plain, plain → plain, plain → btrfs (relayed: both paths).
	for _, c := range []struct {
		from, to    model.Host
		fromP, toP  string
		plain, path string
		relayed     bool
	}{
		{b, p1, bpool, ppool, "host p1 keeps projects in a plain directory:", PathDirect, false},
		{p1, p2, ppool, qpool, "hosts p1 and p2 keep projects in plain directories:", PathDirect, false},
		{p2, b, qpool, bpool, "host p2 keeps projects in a plain directory:", PathRelayed, true},
	} {
		s.RelayMoves = c.relayed
		note := c.plain + " the home is copied with tar and snapshots are not carried"
		sub, _, err := s.Move(ctx, alice, MoveRequest{Project: p.ID, To: c.to.Name})
		if err != nil {
			t.Fatalf("move %s → %s: %v", c.from.Name, c.to.Name, err)
		}
		if !strings.Contains(strings.Join(sub.Warnings, "\n"), note) {
			t.Errorf("move %s → %s: warnings %q do not say %q", c.from.Name, c.to.Name, sub.Warnings, note)
		}
		msgs := drain()
		if !strings.Contains(strings.Join(msgs, "\n"), "with tar (snapshots are not carried)") {
			t.Errorf("move %s → %s: the progress does not say snapshots are not carried:\n%s", c.from.Name, c.to.Name, strings.Join(msgs, "\n"))
		}
		d, err := s.Show(ctx, alice, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		m := d.LastMove
		if m == nil || m.Phase != model.MoveCleaned || m.Method != agentapi.TransferTar || m.MethodNote != note || m.Path != c.path || m.Bytes == 0 {
			t.Fatalf("move %s → %s: last move %+v, want cleaned, by tar, %s, with the note %q", c.from.Name, c.to.Name, m, c.path, note)
		}
		if d.HostID != c.to.ID {
			t.Errorf("move %s → %s: the project is on %s", c.from.Name, c.to.Name, d.HostID)
		}
		if got := storagetest.TreeSum(t, home(c.toP)); got != want {
			t.Errorf("move %s → %s: the home differs from the source's by checksum", c.from.Name, c.to.Name)
		}
		if _, err := os.Stat(home(c.fromP)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("move %s → %s: the old copy is still there (%v)", c.from.Name, c.to.Name, err)
		}
		entries, err := os.ReadDir(filepath.Join(c.toP, "snapshots", p.ID))
		if err != nil && !errors.Is(err, os.ErrNotExist) || len(entries) != 0 {
			t.Errorf("move %s → %s: snapshots on the destination: %v %v, want none", c.from.Name, c.to.Name, entries, err)
		}
		noTransfer(c.fromP, c.toP)
	}
	// Back on btrfs the home is a subvolume again: a snapshot works.
	if _, err := bc.CreateSnapshot(ctx, p.ID, "after"); err != nil {
		t.Errorf("snapshot after the move back to btrfs: %v", err)
	}
}

// writeTree puts files of several kinds under dir.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	files := map[string][]byte{"a.txt": []byte("hello\n"), "sub/deep/b.bin": big, "sub/empty": nil, ".hidden": []byte("x")}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "sub/deep"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/deep/b.bin", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "a.txt"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
}

// fill writes path until its filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}
