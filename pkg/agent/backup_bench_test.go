package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// BenchmarkBackup measures backing up and restoring a project's home
// through the agent (a read-only snapshot, restic backup from it, its
// removal; a restore staged in the home with a safety snapshot) next to
// raw `restic backup` and `restic restore` of the same tree, each backup
// into a fresh repository initialized outside the timer, on the same btrfs
// pool. BACKUP_BENCH_MB sets the tree's size (default 200).
//
//	go test ./pkg/agent -run '^$' -bench Backup -benchtime 3x
func BenchmarkBackup(b *testing.B) {
	if _, err := exec.LookPath("restic"); err != nil {
		b.Skip("restic is not installed")
	}
	mb := 200
	if v := os.Getenv("BACKUP_BENCH_MB"); v != "" {
		fmt.Sscan(v, &mb) //nolint:errcheck // a bad value keeps the default
	}
	h := newHost(b, nil)
	ctx := context.Background()
	id := uuid.NewString()
	if _, err := h.client.CreateProject(ctx, id, agentapi.CreateProjectRequest{DiskBytes: 3 << 30}); err != nil {
		b.Fatal(err)
	}
	home := filepath.Join(h.cfg.PoolPath, "projects", id)
	size := writeRandomTree(b, home, mb)
	repos := b.TempDir()
	pw := filepath.Join(repos, "password")
	if err := os.WriteFile(pw, []byte("bench-password\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	restic := func(args ...string) string {
		out, err := exec.Command("restic", append([]string{"--password-file", pw, "--no-cache", "-q"}, args...)...).CombinedOutput()
		if err != nil {
			b.Fatalf("restic %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	n := 0
	fresh := func() string {
		n++
		repo := filepath.Join(repos, fmt.Sprintf("r%d", n))
		restic("-r", repo, "init")
		return repo
	}
	version := int64(0)
	use := func(repo string) int64 {
		version++
		if err := h.client.PutBackupConfig(ctx, id, agentapi.BackupConfig{Repository: repo, Password: "bench-password",
			Version: version, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
		return version
	}
	b.Run("backup/agent", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			b.StopTimer()
			v := use(fresh())
			b.StartTimer()
			if _, err := h.client.CreateBackup(ctx, id, v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("backup/restic", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			b.StopTimer()
			repo := fresh()
			cmd := exec.Command("restic", "-r", repo, "--password-file", pw, "--no-cache", "-q", "backup", ".")
			cmd.Dir = home
			b.StartTimer()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("restic backup: %v: %s", err, out)
			}
		}
	})
	repo := fresh()
	v := use(repo)
	made, err := h.client.CreateBackup(ctx, id, v)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("restore/agent", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			if _, err := h.client.RestoreBackup(ctx, id, v, agentapi.BackupRestoreRequest{Backup: made.ID}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			// Safety snapshots would fill the pool.
			snaps, err := h.client.Snapshots(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range snaps {
				if err := h.client.DeleteSnapshot(ctx, id, s.Name); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
	})
	b.Run("restore/restic", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			b.StopTimer()
			target := filepath.Join(h.cfg.PoolPath, "bench-restore")
			os.RemoveAll(target)
			b.StartTimer()
			restic("-r", repo, "restore", made.ID, "--target", target)
			b.StopTimer()
			os.RemoveAll(target)
			b.StartTimer()
		}
	})
}

// writeRandomTree fills dir with mb MiB of incompressible files of a few
// sizes in a few directories, and returns the bytes written.
func writeRandomTree(b *testing.B, dir string, mb int) int64 {
	b.Helper()
	var total int64
	buf := make([]byte, 1<<20)
	for i := 0; total < int64(mb)<<20; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", i%8))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		n := []int{4 << 10, 64 << 10, 1 << 20}[i%3]
		rand.Read(buf[:n]) //nolint:errcheck // never fails
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", i)), buf[:n], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	return total
}
