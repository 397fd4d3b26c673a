package storage_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
)

const mib = int64(1) << 20

var owner = storage.Owner{UID: 1000, GID: 1000}

func newManager(t *testing.T) *storage.Manager {
	t.Helper()
	m, err := storage.New(storagetest.BtrfsPool(t), storage.KindBtrfs, owner)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// writeFile writes n random-ish bytes; random so that btrfs cannot
// compress or deduplicate them away.
func writeFile(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	rnd, err := os.Open("/dev/urandom")
	if err != nil {
		f.Close()
		return err
	}
	defer rnd.Close()
	buf := make([]byte, mib)
	for written := int64(0); written < n; written += mib {
		if _, err := rnd.Read(buf); err != nil {
			f.Close()
			return err
		}
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestQuotaCoversHomeAndSnapshots(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := m.Create(c, id, 64*mib); err != nil {
		t.Fatal(err)
	}
	home := m.HomePath(id)
	st, err := os.Stat(home)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 1000 || s.Gid != 1000 || st.Mode().Perm() != 0o700 {
		t.Fatalf("home owner %d:%d mode %v; want 1000:1000 0700", s.Uid, s.Gid, st.Mode().Perm())
	}
	if err := writeFile(filepath.Join(home, "a"), 40*mib); err != nil {
		t.Fatalf("write within quota: %v", err)
	}
	if _, err := m.Snapshot(c, id, "s1"); err != nil {
		t.Fatal(err)
	}
	// The snapshot holds a's 40 MiB, so deleting a frees nothing: another
	// 40 MiB must not fit into the 64 MiB quota.
	if err := os.Remove(filepath.Join(home, "a")); err != nil {
		t.Fatal(err)
	}
	err = writeFile(filepath.Join(home, "b"), 40*mib)
	if !errors.Is(err, syscall.EDQUOT) {
		t.Fatalf("write past the quota: err = %v, want EDQUOT", err)
	}
	if !strings.Contains(err.Error(), "disk quota exceeded") {
		t.Fatalf("error %q does not say disk quota exceeded", err)
	}
	u, err := m.Usage(c, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.QuotaBytes != 64*mib || u.UsedBytes < 40*mib || u.UsedBytes > 64*mib+mib || u.Snapshots != 1 {
		t.Fatalf("usage = %+v; want quota 64 MiB, used 40-64 MiB, 1 snapshot", u)
	}
	// Dropping the snapshot frees its data.
	if err := m.DeleteSnapshot(c, id, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(home, "b")); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(home, "c"), 40*mib); err != nil {
		t.Fatalf("write after freeing the snapshot: %v", err)
	}
	// Raising the quota lets more in.
	if err := m.SetQuota(c, id, 256*mib); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(home, "d"), 100*mib); err != nil {
		t.Fatalf("write after raising the quota: %v", err)
	}
	if u, err := m.Usage(c, id); err != nil || u.QuotaBytes != 256*mib {
		t.Fatalf("usage after SetQuota = %+v, %v", u, err)
	}
}

func TestScratchHasItsOwnLimitAndNoSnapshots(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := m.Create(c, id, 32*mib); err != nil {
		t.Fatal(err)
	}
	scratch := m.ScratchPath(id)
	if err := writeFile(filepath.Join(scratch, "big"), 48*mib); !errors.Is(err, syscall.EDQUOT) {
		t.Fatalf("scratch write past its limit: %v, want EDQUOT", err)
	}
	os.Remove(filepath.Join(scratch, "big"))
	if err := writeFile(filepath.Join(scratch, "x"), 8*mib); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Snapshot(c, id, "s1"); err != nil {
		t.Fatal(err)
	}
	// The snapshot is of the home only.
	if _, err := os.Stat(filepath.Join(m.SnapshotDir(id), "s1", "x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("scratch content in a snapshot: %v", err)
	}
	u, err := m.Usage(c, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.ScratchBytes < 8*mib || u.ScratchQuotaBytes != 32*mib {
		t.Fatalf("usage = %+v; want scratch >= 8 MiB with a 32 MiB limit", u)
	}
}

func TestSnapshotChangeRestore(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := m.Create(c, id, 0); err != nil {
		t.Fatal(err)
	}
	home := m.HomePath(id)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(home, "work", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(home, "notes.txt"), []byte("old notes\n"), 0o640))
	must(os.WriteFile(filepath.Join(home, "work", "sub", "data"), []byte("old data\n"), 0o600))
	must(os.Symlink("sub/data", filepath.Join(home, "work", "link")))
	must(os.Lchown(filepath.Join(home, "notes.txt"), 1000, 1000))
	s1, err := m.Snapshot(c, id, "s1")
	must(err)
	if s1.CreatedAt.IsZero() || time.Since(s1.CreatedAt) > time.Minute || s1.Auto {
		t.Fatalf("snapshot = %+v", s1)
	}
	// The snapshot is read-only.
	if err := os.WriteFile(filepath.Join(m.SnapshotDir(id), "s1", "notes.txt"), []byte("x"), 0o600); err == nil {
		t.Fatal("could write into a read-only snapshot")
	}

	must(os.WriteFile(filepath.Join(home, "notes.txt"), []byte("new notes\n"), 0o640))
	must(os.RemoveAll(filepath.Join(home, "work")))
	must(os.WriteFile(filepath.Join(home, "added"), []byte("added later\n"), 0o600))

	// One file.
	if _, err := m.Restore(c, id, "s1", "notes.txt"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "notes.txt")); string(b) != "old notes\n" {
		t.Fatalf("notes.txt after restore = %q", b)
	}
	st, _ := os.Lstat(filepath.Join(home, "notes.txt"))
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 1000 || st.Mode().Perm() != 0o640 {
		t.Fatalf("restored file owner %d mode %v; want 1000 and 0640", s.Uid, st.Mode().Perm())
	}
	// A directory, with its symlink.
	if _, err := m.Restore(c, id, "s1", "work"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "work", "link")); string(b) != "old data\n" {
		t.Fatalf("work/link after restore reads %q", b)
	}
	if _, err := os.Stat(filepath.Join(home, "added")); err != nil {
		t.Fatal("restoring a path touched other files")
	}
	// The whole home: "added" goes away.
	if _, err := m.Restore(c, id, "s1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, "added")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("whole-home restore kept a file made after the snapshot: %v", err)
	}
	// Every restore first took a safety snapshot.
	snaps, err := m.Snapshots(c, id)
	must(err)
	var pre int
	for _, s := range snaps {
		if strings.HasPrefix(s.Name, "pre-restore-") {
			pre++
		}
	}
	if pre != 3 || len(snaps) != 4 {
		t.Fatalf("snapshots = %+v; want s1 and 3 pre-restore snapshots", snaps)
	}

	// Bad input.
	if _, err := m.Restore(c, id, "nope", ""); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("restore from a missing snapshot: %v", err)
	}
	if _, err := m.Restore(c, id, "s1", "missing.txt"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("restore of a missing path: %v", err)
	}
	for _, p := range []string{"../x", "/etc/passwd", "a/../../x", ".snapshots/s1"} {
		if _, err := m.Restore(c, id, "s1", p); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("restore path %q: err = %v, want ErrInvalid", p, err)
		}
	}
	if _, err := m.Snapshot(c, id, "s1"); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second snapshot s1: %v", err)
	}
	if _, err := m.Snapshot(c, id, "../x"); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("snapshot name ../x: %v", err)
	}
}

// The project owns its home and may plant symlinks anywhere in it; the
// root-run restore must never follow one out of the home or the snapshot.
func TestRestoreNeverLeavesTheHome(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := m.Create(c, id, 0); err != nil {
		t.Fatal(err)
	}
	home := m.HomePath(id)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// In the snapshot: a real directory "dir" with a file, and a symlink
	// "out" pointing outside.
	os.MkdirAll(filepath.Join(home, "dir"), 0o755)
	os.WriteFile(filepath.Join(home, "dir", "victim"), []byte("from snapshot\n"), 0o600)
	os.Symlink(outside, filepath.Join(home, "out"))
	if _, err := m.Snapshot(c, id, "s1"); err != nil {
		t.Fatal(err)
	}
	// Now the project swaps "dir" for a symlink to the outside directory.
	os.RemoveAll(filepath.Join(home, "dir"))
	if err := os.Symlink(outside, filepath.Join(home, "dir")); err != nil {
		t.Fatal(err)
	}
	// Restoring dir/victim must not write through the symlink.
	_, err := m.Restore(c, id, "s1", "dir/victim")
	if err == nil {
		t.Log("restore of dir/victim succeeded; checking it stayed inside the home")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("restore wrote outside the home: victim now %q", b)
	}
	// Reading through a symlink in the snapshot must not reach outside.
	if _, err := m.Restore(c, id, "s1", "out/victim"); err == nil {
		t.Fatal("restore of out/victim (through a symlink leaving the snapshot) succeeded")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("victim changed to %q", b)
	}
	// The symlink itself is restored as a symlink, not followed.
	os.Remove(filepath.Join(home, "out"))
	if _, err := m.Restore(c, id, "s1", "out"); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(home, "out")); err != nil || target != outside {
		t.Fatalf("restored symlink = %q, %v", target, err)
	}
}

var qgroupIDRE = regexp.MustCompile(`^[0-9]+/[0-9]+$`)

func TestDeleteLeavesNothing(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := m.Create(c, id, 64*mib); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(m.HomePath(id), "f"), []byte("x"), 0o600)
	if _, err := m.Snapshot(c, id, "s1"); err != nil {
		t.Fatal(err)
	}
	if ids, err := m.List(); err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("List = %v, %v", ids, err)
	}
	if err := m.Delete(c, id); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{m.HomePath(id), m.ScratchPath(id), m.SnapshotDir(id)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still exists after delete: %v", p, err)
		}
	}
	// Only the top level's qgroup may remain.
	if qs := qgroupIDs(t, m.Pool()); len(qs) != 1 || qs[0] != "0/5" {
		t.Fatalf("qgroups left after delete: %v", qs)
	}
	if err := m.Delete(c, id); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

// qgroupIDs lists a pool's qgroups. (stdout only: btrfs warns on stderr
// that qgroup data is inconsistent after a delete, until a rescan.)
func qgroupIDs(t *testing.T, pool string) []string {
	t.Helper()
	out, err := exec.Command("btrfs", "qgroup", "show", pool).Output()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && qgroupIDRE.MatchString(f[0]) {
			ids = append(ids, f[0])
		}
	}
	sort.Strings(ids)
	return ids
}

// A delete cut short after its subvolumes were deleted but before their
// qgroups were (the agent killed in between) is retried: the retry, which
// finds no subvolume left to name them by, still removes those qgroups,
// and only those: another project keeps its qgroups and its quota.
func TestDeleteCutShortLeavesNoQgroup(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	keep, gone := uuid.NewString(), uuid.NewString()
	for _, id := range []string{keep, gone} {
		if err := m.Create(c, id, 64*mib); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Snapshot(c, id, "s1"); err != nil {
			t.Fatal(err)
		}
	}
	before := qgroupIDs(t, m.Pool())
	// What the first attempt did before it was killed: the subvolumes
	// deleted, their qgroups not.
	for _, p := range []string{filepath.Join(m.SnapshotDir(gone), "s1"), m.HomePath(gone), m.ScratchPath(gone)} {
		if out, err := exec.Command("btrfs", "subvolume", "delete", "--commit-after", p).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	if err := m.Delete(c, gone); err != nil {
		t.Fatal(err)
	}
	after := qgroupIDs(t, m.Pool())
	// Of 0/5, keep's home, scratch, snapshot and group, and gone's four,
	// gone's are removed.
	if len(before) != 9 || len(after) != 5 {
		t.Fatalf("qgroups before the retried delete %v, after %v; want 9 then 5", before, after)
	}
	u, err := m.Usage(c, keep)
	if err != nil || u.QuotaBytes != 64*mib {
		t.Fatalf("the other project's usage after the delete: %+v, %v", u, err)
	}
	if err := writeFile(filepath.Join(m.HomePath(keep), "big"), 80*mib); !errors.Is(err, syscall.EDQUOT) {
		t.Fatalf("the other project's write past its quota after the delete: err = %v, want EDQUOT", err)
	}
}

func TestFailedCreateLeavesNothing(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	// A file where the scratch subvolume must go makes the create fail
	// after the home was made.
	os.MkdirAll(filepath.Join(m.Pool(), "scratch"), 0o711)
	if err := os.WriteFile(m.ScratchPath(id), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := m.Create(c, id, 64*mib)
	if err == nil {
		t.Fatal("create succeeded with a file in the way of its scratch")
	}
	if _, err := os.Lstat(m.HomePath(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed create left the home behind: %v", err)
	}
	if ok, _ := m.Exists(id); ok {
		t.Fatal("Exists after a failed create")
	}
	// The file that was there before is not ours to remove.
	if _, err := os.Stat(m.ScratchPath(id)); err != nil {
		t.Fatalf("failed create removed a file it did not make: %v", err)
	}
}

// A create that fails after it made the project's qgroup (here: a tmpfs
// among its snapshots, which cannot join it) leaves no qgroup.
func TestFailedCreateLeavesNoQgroup(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	odd := filepath.Join(m.SnapshotDir(id), "not-btrfs")
	if err := os.MkdirAll(odd, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", odd).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", odd).Run() }) //nolint:errcheck // before the pool's own cleanup
	if err := m.Create(c, id, 64*mib); err == nil {
		t.Fatal("create succeeded with a tmpfs among its snapshots")
	}
	if _, err := os.Lstat(m.HomePath(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed create left the home behind: %v", err)
	}
	if qs := qgroupIDs(t, m.Pool()); len(qs) != 1 || qs[0] != "0/5" {
		t.Fatalf("qgroups left after a failed create: %v", qs)
	}
}

func TestBadIDs(t *testing.T) {
	m, err := storage.New(t.TempDir(), storage.KindDirectory, owner)
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	for _, id := range []string{"", "..", "../../etc", "x/y", "3F1C9A52-8D0B-4C7E-9A61-2B5D7E4F0C13", "3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c1", "3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13/.."} {
		if err := m.Create(c, id, 0); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", id, err)
		}
		if err := m.Delete(c, id); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Delete(%q) = %v, want ErrInvalid", id, err)
		}
	}
	entries, _ := os.ReadDir(m.Pool())
	if len(entries) != 0 {
		t.Fatalf("bad ids made files: %v", entries)
	}
}

func TestDirectoryFallback(t *testing.T) {
	m, err := storage.New(t.TempDir(), storage.KindDirectory, storage.Owner{UID: os.Getuid(), GID: os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	caps := m.Capabilities()
	if caps.Snapshots || caps.Quotas || caps.Note != storage.DirectoryNote {
		t.Fatalf("capabilities = %+v", caps)
	}
	id := uuid.NewString()
	if err := m.Create(c, id, 64*mib); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.HomePath(id), "f"), make([]byte, 100000), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := m.Usage(c, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.UsedBytes < 100000 || u.QuotaBytes != 0 || u.Note != storage.DirectoryNote {
		t.Fatalf("usage = %+v", u)
	}
	if _, err := m.Snapshot(c, id, "s1"); !errors.Is(err, storage.ErrUnsupported) {
		t.Fatalf("snapshot on a plain directory: %v", err)
	}
	if !strings.Contains(storage.ErrUnsupported.Error(), "no snapshots or quotas") {
		t.Fatalf("unsupported error does not say why: %v", storage.ErrUnsupported)
	}
	if err := m.SetQuota(c, id, mib); !errors.Is(err, storage.ErrUnsupported) {
		t.Fatalf("quota on a plain directory: %v", err)
	}
	if snaps, err := m.Snapshots(c, id); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots = %v, %v", snaps, err)
	}
	if err := m.Delete(c, id); err != nil {
		t.Fatal(err)
	}
	if ok, _ := m.Exists(id); ok {
		t.Fatal("exists after delete")
	}
}

func TestPruneKeepsManualSnapshots(t *testing.T) {
	m := newManager(t)
	c := ctx(t)
	id := uuid.NewString()
	if err := m.Create(c, id, 0); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, name := range []string{storage.AutoName(now.Add(-2 * time.Second)), storage.AutoName(now.Add(-time.Second)), "mine", storage.AutoName(now)} {
		if _, err := m.Snapshot(c, id, name); err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
	}
	// One hourly bucket: only the newest scheduled snapshot survives.
	deleted, err := m.Prune(c, id, storage.Retention{Hourly: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 2 {
		t.Fatalf("pruned %v; want the two older scheduled snapshots", deleted)
	}
	snaps, _ := m.Snapshots(c, id)
	if len(snaps) != 2 {
		t.Fatalf("left %+v; want mine and the newest auto snapshot", snaps)
	}
	for _, s := range snaps {
		if s.Name != "mine" && !s.Auto {
			t.Fatalf("unexpected snapshot left: %+v", s)
		}
	}
}

// Snapshot names are 1-64 characters (the length is checked apart from
// the pattern).
func TestSnapshotNameLength(t *testing.T) {
	if err := storage.CheckSnapshotName("s" + strings.Repeat("x", 63)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", ".x", "a/b", "s" + strings.Repeat("x", 64)} {
		if err := storage.CheckSnapshotName(bad); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("CheckSnapshotName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
