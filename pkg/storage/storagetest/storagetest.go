// Package storagetest makes real btrfs pools on loop files for tests.
package storagetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/btrfs"
)

// PoolSize is the size of test pools: btrfs cannot reclaim metadata chunks
// on smaller ones, which then fill up long before their data does.
const PoolSize = int64(4) << 30

// BtrfsPool makes a 4 GiB btrfs pool with quotas enabled, mounted in a
// temporary directory, and returns its mount point. The pool is unmounted
// and its loop device detached when the test ends, also when it fails.
// Without root or btrfs the test is skipped (or fails when require is set,
// so CI on a capable machine cannot silently skip).
func BtrfsPool(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount loop devices")
	}
	if !btrfs.Available() {
		t.Fatal("running as root but btrfs is not available; run scripts/install-deps.sh")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "pool.img")
	mnt := filepath.Join(dir, "pool")
	t.Cleanup(func() { Release(t, img, mnt) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := btrfs.CreateLoopPool(ctx, img, mnt, PoolSize); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// Release unmounts a pool made by BtrfsPool and detaches its loop device.
func Release(t testing.TB, img, mnt string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Unmount waits for what holds the mount for a moment (a container
	// that was just removed).
	err := btrfs.Unmount(ctx, mnt)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	// The filesystem lives on while a mount namespace of a container that
	// is just going away still holds it; its loop device detaches when
	// the last one is gone.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err = btrfs.DetachLoops(ctx, img); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// TreeSum is a digest of the tree at dir: every path under it with its
// type, mode, owner, size and content (a symlink's target), in order. Two
// trees with the same sum hold the same files.
func TreeSum(t testing.TB, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%s\x00%v\x00%d:%d\x00", rel, st.Mode(), sys.Uid, sys.Gid)
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00", target)
		case st.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			fmt.Fprintf(h, "%d\x00", st.Size())
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("checksum of %s: %v", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
