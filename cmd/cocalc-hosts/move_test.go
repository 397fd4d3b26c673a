package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
)

// moveCLI runs the CLI with two local hosts, for moves killed at each
// phase. It reuses sshCLI's runner with a config of its own.
type moveCLI struct {
	*sshCLI
	work string
}

func newMoveCLI(t testing.TB) *moveCLI {
	c := newSSHCLI(t, "sqlite")
	dir := c.dir
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte(podmantest.ContainersConf), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "podman")
	// Two attempts: a move whose host stays dead fails (and is rolled
	// back) soon.
	cfg := fmt.Sprintf("account: alice\nworker:\n  max_attempts: 2\nproviders:\n  local:\n    containers_conf: %s\n    podman_store: %s\n    image_cache_dir: %s\n    idle_check_interval: 250ms\n    snapshot_interval: \"0\"\n",
		conf, store, podmantest.CacheDir)
	if err := os.WriteFile(filepath.Join(dir, "config", "cocalc-hosts", "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killAgents(dir)
		cleanupPodmanStore(conf, store)
		cleanupLocalHosts(dir)
	})
	return &moveCLI{sshCLI: c, work: dir}
}

// pool returns the mount point of host's pool and its agent's pid.
func (c *moveCLI) agent(host string) (pool string, pid int) {
	c.t.Helper()
	var h hostJSON
	c.json(&h, "show", host)
	if h.Agent == nil || h.Agent.Status == nil {
		c.t.Fatalf("host %s: no agent status: %+v", host, h)
	}
	return h.Agent.Status.Storage.Path, h.Agent.Status.PID
}

// restartAgent brings back a host whose agent was killed.
func (c *moveCLI) restartAgent(host string) {
	c.t.Helper()
	c.ok("stop", host)
	c.ok("start", host)
}

// sums are checksums of a project's home and each snapshot on a pool.
func poolSums(t *testing.T, pool, id string) map[string]string {
	t.Helper()
	out := map[string]string{"home": storagetest.TreeSum(t, filepath.Join(pool, "projects", id))}
	entries, err := os.ReadDir(filepath.Join(pool, "snapshots", id))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		out[e.Name()] = storagetest.TreeSum(t, filepath.Join(pool, "snapshots", id, e.Name()))
	}
	return out
}

func sameSums(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("%s: checksums differ:\n%v\n%v", what, a, b)
	}
}

// noTransferLeft fails if a pool holds anything of a transfer.
func noTransferLeft(t *testing.T, pool string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(pool, "transfer"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("stray transfer state on %s: transfer/%s", pool, e.Name())
	}
}

// fillDisk takes all but a few MiB of the free space of the filesystem
// holding file, at once: one fallocate (which allocates all or nothing),
// a little smaller after each refusal, as btrfs keeps some of what statfs
// calls free for its metadata. Writing zeros until the disk is full took
// longer than a loaded machine's move, which then succeeded.
func fillDisk(t *testing.T, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const mib = 1 << 20
	for margin := int64(16 * mib); margin < 1<<30; margin *= 2 {
		var st syscall.Statfs_t
		if err := syscall.Fstatfs(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize
		if free <= margin {
			return
		}
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-margin); err == nil {
			t.Logf("filled %s: %d MiB, %d MiB left", file, (free-margin)/mib, margin/mib)
			return
		} else if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("fallocate %s: %v", file, err)
		}
	}
	t.Fatalf("could not fill the disk of %s", file)
}

// waitReceiving polls until the destination is receiving the project.
func waitReceiving(t testing.TB, pool, id string, done <-chan struct{}) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if e, _ := os.ReadDir(filepath.Join(pool, "transfer", id, "in")); len(e) > 0 {
			return true
		}
		select {
		case <-done:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("the destination never began receiving project %s", id)
	return false
}

// startMove runs `project move` in the background; the channel closes when
// it ends.
func (c *sshCLI) startMove(id, to string) (*exec.Cmd, *bytes.Buffer, chan struct{}) {
	cmd := exec.Command("cocalc-hosts", "project", "move", id, "--to", to)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() //nolint:errcheck // the exit code is read from ProcessState
	return cmd, &out, done
}

type projJSON struct {
	HostName string `json:"host_name"`
	State    string `json:"state"`
	LastMove *struct {
		Phase string `json:"phase"`
		Bytes int64  `json:"bytes"`
		Error string `json:"error"`
	} `json:"last_move"`
}

// TestMoveKilledAtEachPhase kills the source agent, the destination agent
// and the control plane while a move streams, and fills the destination's
// disk: each time the source stays as it was (by checksum), nothing of the
// transfer is left on either host once it is retried, and the retry
// completes with the files and snapshots equal.
func TestMoveKilledAtEachPhase(t *testing.T) {
	parallel(t) // with the scripts: most of its time is spent waiting on disks
	c := newMoveCLI(t)
	c.ok("create", "--cloud", "local", "--name", "a")
	c.ok("create", "--cloud", "local", "--name", "b")
	c.ok("image", "build", "cocalc-base", "--host", "a")
	c.ok("image", "build", "cocalc-base", "--host", "b")
	var sub struct {
		Project struct {
			ID string `json:"id"`
		} `json:"project"`
	}
	c.json(&sub, "project", "create", "--host", "a", "--memory", "128M", "--disk", "2G", "--start")
	id := sub.Project.ID
	c.ok("project", "exec", id, "--", "sh", "-c", "head -c 50000000 /dev/urandom > base; echo 1 > n")
	c.ok("project", "snapshot", id, "--name", "s1")
	c.ok("project", "exec", id, "--", "sh", "-c", "echo 2 > n; mkdir d; echo x > d/y")
	c.ok("project", "snapshot", id, "--name", "s2")

	here := "a"
	hosts := map[string]string{"a": "b", "b": "a"}
	// grow adds a big file so that the next move streams long enough to be
	// interrupted (and, kept, leaves the destination's disk fuller for the
	// disk-full case at the end).
	grow := func(n int) {
		c.ok("project", "exec", id, "--", "sh", "-c", fmt.Sprintf("head -c 300000000 /dev/urandom > big%d", n))
	}
	// settle checks a finished move and remembers where the project is.
	settle := func(from, to string) {
		t.Helper()
		var p projJSON
		c.json(&p, "project", "show", id)
		if p.HostName != to || p.State != "running" || p.LastMove == nil || p.LastMove.Phase != "done" {
			t.Fatalf("after the move: %+v", p)
		}
		fromPool, _ := c.agent(from)
		toPool, _ := c.agent(to)
		sameSums(t, "source and destination after the move", poolSums(t, fromPool, id), poolSums(t, toPool, id))
		noTransferLeft(t, fromPool)
		noTransferLeft(t, toPool)
		// The old copy cannot be changed any more.
		if err := os.WriteFile(filepath.Join(fromPool, "projects", id, "late"), []byte("x"), 0o600); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("write into the old copy: %v, want EROFS", err)
		}
		here = to
	}
	// failed checks a move that was rolled back.
	failed := func(from string, before map[string]string) {
		t.Helper()
		var p projJSON
		c.json(&p, "project", "show", id)
		if p.HostName != from || p.LastMove == nil || p.LastMove.Phase != "failed" {
			t.Fatalf("after the failed move: %+v", p)
		}
		fromPool, _ := c.agent(from)
		sameSums(t, "the source after a failed move", before, poolSums(t, fromPool, id))
	}

	kills := []struct {
		name string
		kill func(from, to string, move *exec.Cmd)
		// restart brings back what was killed; resumes says the move
		// goes on by itself (a worker resumes it) rather than failing.
		restart func(from, to string)
		resumes bool
	}{
		{"source agent", func(from, _ string, _ *exec.Cmd) {
			_, pid := c.agent(from)
			syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
		}, func(from, _ string) { c.restartAgent(from) }, false},
		{"destination agent", func(_, to string, _ *exec.Cmd) {
			_, pid := c.agent(to)
			syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
		}, func(_, to string) { c.restartAgent(to) }, false},
		{"control plane", func(_, _ string, move *exec.Cmd) {
			move.Process.Kill() //nolint:errcheck
		}, nil, true},
	}
	for i, k := range kills {
		from, to := here, hosts[here]
		grow(i)
		fromPool, _ := c.agent(from)
		toPool, _ := c.agent(to)
		// The agents' pids are read before the move: killing one must not
		// wait for a `show` that asks it.
		before := poolSums(t, fromPool, id)
		move, out, done := c.startMove(id, to)
		if !waitReceiving(t, toPool, id, done) {
			t.Fatalf("%s: the move ended before it could be interrupted:\n%s", k.name, out)
		}
		k.kill(from, to, move)
		<-done
		if k.resumes {
			// The job is still claimed by the dead process; a worker takes
			// it over when its lease runs out and finishes the move.
			sameSums(t, k.name+": the source after the kill", before, poolSums(t, fromPool, id))
			c.ok("config", "set", "worker.lease", "2s")
			c.ok("worker", "--drain")
			c.ok("config", "set", "worker.lease", "30s")
			settle(from, to)
			continue
		}
		if move.ProcessState.ExitCode() == 0 {
			t.Fatalf("%s killed: the move succeeded?\n%s", k.name, out)
		}
		k.restart(from, to)
		failed(from, before)
		// Restarting the killed host (stop, start) stopped its projects
		// too: the retry moves a running project, as the first attempt.
		c.ok("project", "start", id)
		c.ok("project", "move", id, "--to", to)
		settle(from, to)
	}

	// The destination's disk fills while it receives: the move fails and
	// leaves nothing there; with room again it completes.
	from, to := here, hosts[here]
	grow(9)
	fromPool, _ := c.agent(from)
	toPool, _ := c.agent(to)
	before := poolSums(t, fromPool, id)
	move, out, done := c.startMove(id, to)
	if !waitReceiving(t, toPool, id, done) {
		t.Fatalf("disk full: the move ended before the disk could fill:\n%s", out)
	}
	filler := filepath.Join(toPool, "filler")
	fillDisk(t, filler)
	<-done
	if move.ProcessState.ExitCode() == 0 {
		t.Fatalf("disk full: the move succeeded?\n%s", out)
	}
	failed(from, before)
	noTransferLeft(t, toPool)
	os.Remove(filler)
	// btrfs frees the space of deleted files in the background.
	for deadline := time.Now().Add(time.Minute); ; {
		exec.Command("btrfs", "filesystem", "sync", toPool).Run() //nolint:errcheck
		var st syscall.Statfs_t
		if err := syscall.Statfs(toPool, &st); err != nil {
			t.Fatal(err)
		}
		if free := int64(st.Bavail) * st.Bsize; free > 2<<30 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the destination's space did not come back: %d bytes free", free)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.ok("project", "move", id, "--to", to)
	settle(from, to)
}
