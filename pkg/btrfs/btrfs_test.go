package btrfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const gib = int64(1) << 30

// requireQuota fails t unless quota groups are on at mnt: `btrfs qgroup
// show` fails ("quotas not enabled") when they are off.
func requireQuota(t *testing.T, mnt string) {
	t.Helper()
	if out, err := exec.Command("btrfs", "qgroup", "show", mnt).CombinedOutput(); err != nil {
		t.Fatalf("quota groups are off at %s: %v: %s", mnt, err, out)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Fatalf("unescape = %q", got)
	}
}

func TestHasFilesystemOnPlainFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(p, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	has, err := HasFilesystem(p)
	if err != nil || has {
		t.Fatalf("HasFilesystem(short file) = %v, %v; want false, nil", has, err)
	}
}

func TestLoopPoolLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount loop devices")
	}
	if !Available() {
		t.Fatal("running as root but btrfs is not available; install btrfs-progs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dir := t.TempDir()
	img := filepath.Join(dir, "pool.img")
	mnt := filepath.Join(dir, "pool")
	t.Cleanup(func() {
		// Runs also when the test fails half way; never leave a mount or
		// a loop device behind on the machine.
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Unmount(c, mnt); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := DetachLoops(c, img); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	if err := CreateLoopPool(ctx, img, mnt, 4*gib); err != nil {
		t.Fatal(err)
	}
	if !IsMounted(mnt) {
		t.Fatalf("%s not mounted after CreateLoopPool", mnt)
	}
	if ok, err := IsBtrfs(mnt); err != nil || !ok {
		t.Fatalf("IsBtrfs(%s) = %v, %v", mnt, ok, err)
	}
	if has, err := HasFilesystem(img); err != nil || !has {
		t.Fatalf("HasFilesystem(%s) = %v, %v", img, has, err)
	}
	requireQuota(t, mnt)
	// The image must be sparse: 4 GiB apparent, far less allocated.
	var st syscall.Stat_t
	if err := syscall.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 4*gib {
		t.Fatalf("image size %d, want %d", st.Size, 4*gib)
	}
	if st.Blocks*512 >= 1*gib {
		t.Fatalf("image is not sparse: %d bytes allocated", st.Blocks*512)
	}
	devs, err := LoopDevices(ctx, img)
	if err != nil || len(devs) != 1 {
		t.Fatalf("LoopDevices = %v, %v; want one", devs, err)
	}

	// Idempotent: a second call on the finished pool changes nothing.
	if err := os.WriteFile(filepath.Join(mnt, "keep"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateLoopPool(ctx, img, mnt, 4*gib); err != nil {
		t.Fatalf("second CreateLoopPool: %v", err)
	}
	if devs, _ := LoopDevices(ctx, img); len(devs) != 1 {
		t.Fatalf("after second CreateLoopPool: loop devices %v; want one", devs)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "keep")); err != nil || string(b) != "data" {
		t.Fatalf("data lost by second CreateLoopPool: %q, %v", b, err)
	}

	before := totalBytes(t, mnt)
	if err := Grow(ctx, img, mnt, 5*gib); err != nil {
		t.Fatal(err)
	}
	after := totalBytes(t, mnt)
	if after <= before {
		t.Fatalf("filesystem did not grow: %d -> %d bytes", before, after)
	}
	if err := Grow(ctx, img, mnt, 4*gib); err == nil {
		t.Fatal("Grow to a smaller size succeeded; want an error")
	}

	if err := Unmount(ctx, mnt); err != nil {
		t.Fatal(err)
	}
	if IsMounted(mnt) {
		t.Fatal("still mounted after Unmount")
	}
	if devs, err := LoopDevices(ctx, img); err != nil || len(devs) != 0 {
		t.Fatalf("loop devices left after Unmount: %v, %v", devs, err)
	}
	if err := Unmount(ctx, mnt); err != nil {
		t.Fatalf("Unmount of an unmounted pool: %v", err)
	}

	// Mounting again (as after a reboot) finds the data, with quotas on.
	if err := Mount(ctx, img, mnt); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "keep")); err != nil || string(b) != "data" {
		t.Fatalf("data after remount: %q, %v", b, err)
	}
	requireQuota(t, mnt)
	if err := Unmount(ctx, mnt); err != nil {
		t.Fatal(err)
	}
}

func totalBytes(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * uint64(st.Bsize)
}
