package storage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
)

// sendOne streams one step from src to dst through a pipe, as two agents
// do over a connection, and returns the bytes that crossed.
func sendOne(t *testing.T, c context.Context, src, dst *storage.Manager, id string, step storage.Step, want storage.Volume) (int64, error) {
	t.Helper()
	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		_, err := src.Send(c, id, step, pw)
		pw.CloseWithError(err)
		sent <- err
	}()
	n, rerr := dst.Receive(c, id, want, pr)
	pr.CloseWithError(errors.New("receiver finished"))
	serr := <-sent
	if rerr != nil {
		return n, rerr
	}
	return n, serr
}

// transfer brings dst up to src for project id the way a move does: the
// missing snapshots, then a transfer snapshot of the live home, then a
// commit. It returns the bytes sent.
func transfer(t *testing.T, c context.Context, src, dst *storage.Manager, id, tag string, quota int64) int64 {
	t.Helper()
	vols, err := src.Volumes(c, id)
	if err != nil {
		t.Fatal(err)
	}
	held, err := dst.Volumes(c, id)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]storage.Volume{}
	var names []string
	for _, v := range vols {
		byName[v.Name] = v
		names = append(names, v.Name)
	}
	var total int64
	for _, s := range storage.PlanSend(vols, held) {
		n, err := sendOne(t, c, src, dst, id, s, byName[s.Name])
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	live, err := src.TransferSnapshot(c, id, tag)
	if err != nil {
		t.Fatal(err)
	}
	step := storage.Step{Name: live.Name}
	if len(vols) > 0 {
		step.Parent = vols[len(vols)-1].Name
	}
	n, err := sendOne(t, c, src, dst, id, step, live)
	if err != nil {
		t.Fatal(err)
	}
	total += n
	req := storage.CommitRequest{Home: live.Name, Snapshots: names, QuotaBytes: quota}
	if err := dst.Commit(c, id, req); err != nil {
		t.Fatal(err)
	}
	// What the commit was made from is set aside (removing it would
	// lengthen a move's downtime); a repeated commit is done already.
	if _, err := os.Stat(filepath.Join(dst.Pool(), "transfer", id, "committed", live.Name)); err != nil {
		t.Fatalf("staging after the commit: %v", err)
	}
	if err := dst.Commit(c, id, req); err != nil {
		t.Fatalf("a repeated commit: %v", err)
	}
	if err := dst.DropTransfer(c, id); err != nil {
		t.Fatal(err)
	}
	if err := src.DropTransfer(c, id); err != nil {
		t.Fatal(err)
	}
	return total
}

func sums(t *testing.T, m *storage.Manager, id string) map[string]string {
	t.Helper()
	out := map[string]string{"home": storagetest.TreeSum(t, m.HomePath(id))}
	entries, err := os.ReadDir(m.SnapshotDir(id))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		out[e.Name()] = storagetest.TreeSum(t, filepath.Join(m.SnapshotDir(id), e.Name()))
	}
	return out
}

func equalSums(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d trees vs %d: %v vs %v", what, len(a), len(b), a, b)
	}
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("%s: %s differs", what, k)
		}
	}
}

// noStray fails if anything of a transfer is left on the pool.
func noStray(t *testing.T, m *storage.Manager) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(m.Pool(), "transfer"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("stray transfer state left: transfer/%s", e.Name())
	}
}

func TestTransferKeepsSnapshotsAndMovesBackIncrementally(t *testing.T) {
	a, b := newManager(t), newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := a.Create(c, id, 512*mib); err != nil {
		t.Fatal(err)
	}
	home := a.HomePath(id)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(writeFile(filepath.Join(home, "big"), 64*mib))
	must(os.WriteFile(filepath.Join(home, "notes.txt"), []byte("one\n"), 0o640))
	must(os.Lchown(filepath.Join(home, "notes.txt"), 1000, 1000))
	_, err := a.Snapshot(c, id, "s1")
	must(err)
	must(os.WriteFile(filepath.Join(home, "notes.txt"), []byte("two\n"), 0o640))
	must(os.Symlink("notes.txt", filepath.Join(home, "link")))
	_, err = a.Snapshot(c, id, "s2")
	must(err)
	must(os.Remove(filepath.Join(home, "big")))
	must(os.WriteFile(filepath.Join(home, "notes.txt"), []byte("three\n"), 0o640))
	must(writeFile(filepath.Join(a.ScratchPath(id), "tmp"), mib))

	before := sums(t, a, id)
	sent := transfer(t, c, a, b, id, "m1-1", 512*mib)
	if sent < 64*mib {
		t.Fatalf("first transfer sent %d bytes; the project holds 64 MiB", sent)
	}
	equalSums(t, "source after the move", before, sums(t, a, id))
	equalSums(t, "destination", before, sums(t, b, id))
	snaps, err := b.Snapshots(c, id)
	must(err)
	if len(snaps) != 2 || snaps[0].Name != "s1" || snaps[1].Name != "s2" {
		t.Fatalf("snapshots on the destination: %+v", snaps)
	}
	// The quota covers the home and the received snapshots; scratch is
	// not moved.
	u, err := b.Usage(c, id)
	must(err)
	if u.QuotaBytes != 512*mib || u.UsedBytes < 64*mib || u.Snapshots != 2 || u.ScratchBytes > mib/2 {
		t.Fatalf("usage on the destination = %+v", u)
	}
	if st, err := os.Stat(b.HomePath(id)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("destination home: %v %v", st, err)
	}
	must(os.WriteFile(filepath.Join(b.HomePath(id), "written-on-b"), []byte("b\n"), 0o600))
	noStray(t, a)
	noStray(t, b)

	// Back to a, which still has its old copy: only the change travels.
	_, err = b.Snapshot(c, id, "s3")
	must(err)
	beforeBack := sums(t, b, id)
	back := transfer(t, c, b, a, id, "m2-1", 512*mib)
	if back > 4*mib {
		t.Fatalf("the move back sent %d bytes; want an incremental of a few KiB", back)
	}
	equalSums(t, "after the move back", beforeBack, sums(t, a, id))
	noStray(t, a)
	noStray(t, b)

	// And once more to b: still incremental, through the received UUIDs.
	must(os.WriteFile(filepath.Join(a.HomePath(id), "written-on-a"), []byte("a\n"), 0o600))
	again := transfer(t, c, a, b, id, "m3-1", 512*mib)
	if again > 4*mib {
		t.Fatalf("the third move sent %d bytes", again)
	}
	t.Logf("sent %d bytes there, %d back, %d there again", sent, back, again)
	equalSums(t, "after the third move", sums(t, a, id), sums(t, b, id))
}

func TestReceiveCutShortLeavesNothing(t *testing.T) {
	a, b := newManager(t), newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := a.Create(c, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(a.HomePath(id), "big"), 32*mib); err != nil {
		t.Fatal(err)
	}
	live, err := a.TransferSnapshot(c, id, "cut")
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		// The connection breaks after 4 MiB.
		_, err := a.Send(c, id, storage.Step{Name: live.Name}, &limitWriter{w: pw, left: 4 * mib})
		pw.CloseWithError(err)
	}()
	if _, err := b.Receive(c, id, live, pr); err == nil {
		t.Fatal("a cut stream was received")
	}
	pr.Close()
	vols, err := b.Volumes(c, id)
	if err != nil || len(vols) != 0 {
		t.Fatalf("after a cut receive the destination holds %+v, %v", vols, err)
	}
	entries, _ := os.ReadDir(filepath.Join(b.Pool(), "transfer", id, "in"))
	if len(entries) != 0 {
		t.Fatalf("half-received volume left: %v", entries)
	}
	if err := a.DropTransfer(c, id); err != nil {
		t.Fatal(err)
	}
	if err := b.DropTransfer(c, id); err != nil {
		t.Fatal(err)
	}
	noStray(t, a)
	noStray(t, b)
	if ok, _ := b.Exists(id); ok {
		t.Fatal("the destination has the project after a failed transfer")
	}
}

type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		n, _ := l.w.Write(p[:l.left])
		l.left = 0
		return n, errors.New("connection reset")
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

func TestTarTransferToPlainDirectory(t *testing.T) {
	a := newManager(t)
	d, err := storage.New(t.TempDir(), storage.KindDirectory, owner)
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	id := uuid.NewString()
	if err := a.Create(c, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.HomePath(id), "f"), []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(a.HomePath(id), "f"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Snapshot(c, id, "s1"); err != nil {
		t.Fatal(err)
	}
	live, err := a.TransferSnapshot(c, id, "t")
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := a.SendTar(c, id, live.Name, pw)
		pw.CloseWithError(err)
	}()
	if _, err := d.ReceiveTar(c, id, pr); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(c, id, storage.CommitRequest{Home: storage.HomeTarName}); err != nil {
		t.Fatal(err)
	}
	if err := d.DropTransfer(c, id); err != nil {
		t.Fatal(err)
	}
	if got, want := storagetest.TreeSum(t, d.HomePath(id)), storagetest.TreeSum(t, a.HomePath(id)); got != want {
		t.Fatal("the home differs after a tar transfer")
	}
	if snaps, err := d.Snapshots(c, id); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots on a plain directory: %v %v", snaps, err)
	}
	if err := a.DropTransfer(c, id); err != nil {
		t.Fatal(err)
	}
	noStray(t, a)
	noStray(t, d)
	// A transfer name that could leave staging is refused.
	if err := d.Commit(c, id, storage.CommitRequest{Home: "../../etc"}); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("commit of ../../etc: %v", err)
	}
}

// Writes made while pre-copy rounds go (files written, rewritten, grown,
// renamed and removed in the live home) all arrive: after the writer
// stops (the cut-over) and the last incremental is committed, the
// destination's home equals the source's.
func TestWritesDuringPrecopyAllArrive(t *testing.T) {
	a, b := newManager(t), newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := a.Create(c, id, 512*mib); err != nil {
		t.Fatal(err)
	}
	home := a.HomePath(id)
	if err := writeFile(filepath.Join(home, "base"), 8*mib); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Snapshot(c, id, "s1"); err != nil {
		t.Fatal(err)
	}

	var writes atomic.Int64
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			name := filepath.Join(home, fmt.Sprintf("f%d", i%40))
			var err error
			switch i % 4 {
			case 0, 1:
				err = os.WriteFile(name, []byte(strings.Repeat(fmt.Sprintf("write %d\n", i), 1+i%300)), 0o644)
			case 2:
				err = os.Rename(name, filepath.Join(home, fmt.Sprintf("r%d", i%7)))
			case 3:
				var f *os.File
				if f, err = os.OpenFile(filepath.Join(home, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
					_, err = fmt.Fprintf(f, "line %d\n", i)
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				os.Remove(filepath.Join(home, fmt.Sprintf("r%d", (i+3)%7))) //nolint:errcheck // may not exist
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				done <- err
				return
			}
			writes.Add(1)
		}
	}()
	// waitWrites waits until the writer has made n more writes.
	waitWrites := func(n int64) {
		t.Helper()
		want := writes.Load() + n
		for deadline := time.Now().Add(time.Minute); writes.Load() < want; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the writer made %d writes in a minute", writes.Load())
			}
		}
	}

	// Pre-copy, as a move does it: the snapshots, then rounds of the live
	// home, each against the one before, with writes in between.
	vols, err := a.Volumes(c, id)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]storage.Volume{}
	for _, v := range vols {
		byName[v.Name] = v
	}
	for _, s := range storage.PlanSend(vols, nil) {
		if _, err := sendOne(t, c, a, b, id, s, byName[s.Name]); err != nil {
			t.Fatal(err)
		}
	}
	send := func(tag, parent string) storage.Volume {
		t.Helper()
		live, err := a.TransferSnapshot(c, id, tag)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sendOne(t, c, a, b, id, storage.Step{Name: live.Name, Parent: parent}, live); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(parent, storage.TransferPrefix) {
			for _, m := range []*storage.Manager{a, b} {
				if err := m.DropTransferVolume(c, id, parent); err != nil {
					t.Fatal(err)
				}
			}
		}
		return live
	}
	parent := "s1"
	for round := 1; round <= 3; round++ {
		waitWrites(200)
		parent = send(fmt.Sprintf("m-%d", round), parent).Name
	}
	waitWrites(200)
	// Cut-over: writes stop, the last change goes, the destination commits.
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	final := send("m-final", parent)
	if err := b.Commit(c, id, storage.CommitRequest{Home: final.Name, Snapshots: []string{"s1"}, QuotaBytes: 512 * mib}); err != nil {
		t.Fatal(err)
	}
	if err := b.DropTransfer(c, id); err != nil {
		t.Fatal(err)
	}
	if err := a.DropTransfer(c, id); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes during pre-copy", writes.Load())
	equalSums(t, "after the cut-over", sums(t, a, id), sums(t, b, id))
	noStray(t, a)
	noStray(t, b)
}
