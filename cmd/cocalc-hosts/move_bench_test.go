package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkMove moves a project of MOVE_BENCH_MB (default 1024) of random
// data, held in one snapshot and the home, between two local hosts (two
// btrfs loop pools on this machine), and reports per move:
//   - raw_MB/s: `btrfs send | btrfs receive` of that snapshot from the
//     first pool to the second, nothing else;
//   - raw_synced_MB/s: the same until its data is on the second pool's
//     disk (btrfs filesystem sync), as a move's data is before it ends;
//   - direct_MB/s: the project, stopped, moved with every snapshot straight
//     from agent to agent (the move's started_at to finished_at);
//   - relayed_MB/s: moved back through the control plane (moves.path
//     relay), the old copy deleted first so that it is a full send too;
//   - downtime_ms: the project running, MOVE_BENCH_CHANGED_MB (default 50)
//     written into it while pre-copy streams, from stopped on the source
//     to running on the destination (the move's own downtime_ms).
//
// Every figure is MB of the tree per second, so that they compare.
//
//	go test ./cmd/cocalc-hosts -run '^$' -bench Move -benchtime 1x
func BenchmarkMove(b *testing.B) {
	mb, changed := 1024, 50
	if v := os.Getenv("MOVE_BENCH_MB"); v != "" {
		fmt.Sscan(v, &mb) //nolint:errcheck // a bad value keeps the default
	}
	if v := os.Getenv("MOVE_BENCH_CHANGED_MB"); v != "" {
		fmt.Sscan(v, &changed) //nolint:errcheck
	}
	began := time.Now()
	c := newMoveCLI(b)
	for _, h := range []string{"a", "b"} {
		c.ok("create", "--cloud", "local", "--name", h)
		c.ok("image", "build", "cocalc-base", "--host", h)
	}
	poolA, _ := c.agent("a")
	poolB, _ := c.agent("b")
	treeMB := float64(mb) * (1 << 20) / 1e6
	type moveJSON struct {
		Path       string     `json:"path"`
		Phase      string     `json:"phase"`
		Bytes      int64      `json:"bytes"`
		DowntimeMS int64      `json:"downtime_ms"`
		StartedAt  time.Time  `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
		// Steps are the cut-over's steps (what the downtime is made of).
		Steps json.RawMessage `json:"cutover_steps"`
	}
	lastMove := func(id, wantPath string) moveJSON {
		b.Helper()
		var p struct {
			LastMove *moveJSON `json:"last_move"`
		}
		c.json(&p, "project", "show", id)
		if m := p.LastMove; m == nil || m.Phase != "done" || m.Path != wantPath || m.FinishedAt == nil || m.Bytes < int64(mb)<<20 {
			b.Fatalf("project %s: last move %+v, want a %s move done that sent the whole %d MiB", id, m, wantPath, mb)
		}
		return *p.LastMove
	}
	var raw, rawSynced, direct, relayed, downtime float64
	b.Logf("two hosts ready in %s", time.Since(began).Round(time.Second))
	began = time.Now()
	for range b.N {
		c.ok("config", "set", "moves.path", "auto")
		var sub struct {
			Project struct {
				ID string `json:"id"`
			} `json:"project"`
		}
		c.json(&sub, "project", "create", "--host", "a", "--memory", "256M", "--disk", fmt.Sprintf("%dM", 2*mb+4*changed+256), "--start")
		id := sub.Project.ID
		c.ok("project", "exec", id, "--", "sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > base", mb<<20))
		c.ok("project", "snapshot", id, "--name", "s1")
		c.ok("project", "stop", id)

		// The same data, raw, between the same two pools.
		rawDir := filepath.Join(poolB, "bench-raw")
		if err := os.MkdirAll(rawDir, 0o700); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		pipe := fmt.Sprintf("btrfs send -q %s | btrfs receive %s", filepath.Join(poolA, "snapshots", id, "s1"), rawDir)
		if out, err := exec.Command("sh", "-c", pipe).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", pipe, err, out)
		}
		raw += treeMB / time.Since(start).Seconds()
		// The same, with the data on the destination's disk: a move
		// writes it back before its next volume (btrfs receive of an
		// incremental snapshots its parent, which flushes the parent's
		// data), where the pipe alone ends with it in the page cache.
		if out, err := exec.Command("btrfs", "filesystem", "sync", rawDir).CombinedOutput(); err != nil {
			b.Fatalf("btrfs filesystem sync: %v: %s", err, out)
		}
		rawSynced += treeMB / time.Since(start).Seconds()
		if out, err := exec.Command("btrfs", "subvolume", "delete", filepath.Join(rawDir, "s1")).CombinedOutput(); err != nil {
			b.Fatalf("btrfs subvolume delete: %v: %s", err, out)
		}
		os.Remove(rawDir)
		// The move that follows does not pay for freeing what came
		// before it (the raw copy here, the old copy below), as the raw
		// copy did not.
		settle(b, poolB)

		out, errOut := c.ok("project", "move", id, "--to", "b")
		logStreams(b, out+errOut)
		m := lastMove(id, "direct")
		direct += treeMB / m.FinishedAt.Sub(m.StartedAt).Seconds()
		logSteps(b, "direct", m.StartedAt, m.FinishedAt, m.Steps)
		c.ok("project", "move", id, "--cleanup")
		settle(b, poolA)

		c.ok("config", "set", "moves.path", "relay")
		out, errOut = c.ok("project", "move", id, "--to", "a")
		logStreams(b, out+errOut)
		m = lastMove(id, "relayed")
		relayed += treeMB / m.FinishedAt.Sub(m.StartedAt).Seconds()
		logSteps(b, "relayed", m.StartedAt, m.FinishedAt, m.Steps)
		c.ok("project", "move", id, "--cleanup")
		settle(b, poolB)

		// Running, and written to while pre-copy streams.
		c.ok("config", "set", "moves.path", "auto")
		c.ok("project", "start", id)
		move, moveOut, done := c.startMove(id, "b")
		if waitReceiving(b, poolB, id, done) {
			// Written into the home from this machine: the same to btrfs
			// as the project writing, and it does not race the cut-over's
			// stop as an exec would.
			if err := writeRandom(filepath.Join(poolA, "projects", id, "changed"), changed<<20); err != nil {
				b.Logf("writing during pre-copy: %v", err)
			}
		} else {
			b.Logf("the move ended before %d MiB could be written during its pre-copy", changed)
		}
		<-done
		if move.ProcessState.ExitCode() != 0 {
			b.Fatalf("project move: %s", moveOut)
		}
		m = lastMove(id, "direct")
		downtime += float64(m.DowntimeMS)
		steps, _ := json.Marshal(m.Steps) // compact: one line
		b.Logf("cutover_steps %s", steps)
		c.ok("project", "delete", id, "--purge", "--yes")
	}
	n := float64(b.N)
	b.Logf("%d MiB moved in %s", mb, time.Since(began).Round(time.Second))
	b.ReportMetric(raw/n, "raw_MB/s")
	b.ReportMetric(rawSynced/n, "raw_synced_MB/s")
	b.ReportMetric(direct/n, "direct_MB/s")
	b.ReportMetric(relayed/n, "relayed_MB/s")
	b.ReportMetric(downtime/n, "downtime_ms")
}

// settle waits until btrfs has freed what was deleted on pool, and the
// pool's dirty data is on disk.
func settle(b *testing.B, pool string) {
	b.Helper()
	for _, args := range [][]string{{"subvolume", "sync", pool}, {"filesystem", "sync", pool}} {
		if out, err := exec.Command("btrfs", args...).CombinedOutput(); err != nil {
			b.Fatalf("btrfs %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// logSteps logs a stopped project's move: its time, and the cut-over's
// steps (all of it but what came before: checks, the job's start, the
// listing of both pools).
func logSteps(b *testing.B, path string, start time.Time, end *time.Time, steps json.RawMessage) {
	one, _ := json.Marshal(steps) // compact: one line
	b.Logf("%s move %.2fs, cut-over steps %s", path, end.Sub(start).Seconds(), one)
}

// logStreams logs the move's lines that say how long each volume took to
// stream (the rest of a move's time is its steps).
func logStreams(b *testing.B, out string) {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "sent") && strings.Contains(l, " in ") {
			b.Log(strings.TrimSpace(l))
		}
	}
}

// writeRandom writes n random bytes to path.
func writeRandom(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, int64(n)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
