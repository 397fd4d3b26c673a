package btrfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// loopPool returns the image and mount point of a pool for t, which is
// unmounted and detached when t ends, also when t fails half way: a test
// never leaves a mount or a loop device behind on the machine.
func loopPool(t *testing.T) (img, mnt string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount loop devices")
	}
	if !Available() {
		t.Fatal("running as root but btrfs is not available; install btrfs-progs")
	}
	dir := t.TempDir()
	img, mnt = filepath.Join(dir, "pool.img"), filepath.Join(dir, "pool")
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Unmount(c, mnt); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := DetachLoops(c, img); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return img, mnt
}

func TestLoopPoolLifecycle(t *testing.T) {
	img, mnt := loopPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
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

// A process working in the pool (such as the btrfs commands a killed agent
// leaves running) keeps it busy: Unmount waits for it to end, and when it
// does not end in time, says which process holds the pool.
func TestUnmountWaitsForHolders(t *testing.T) {
	img, mnt := loopPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := CreateLoopPool(ctx, img, mnt, 4*gib); err != nil {
		t.Fatal(err)
	}
	hold := func(seconds string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command("sleep", seconds)
		cmd.Dir = mnt
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck // ended already, or now
		return cmd
	}

	// One that ends by itself: waited for.
	brief := hold("1")
	want := fmt.Sprintf("pid %d (sleep 1)", brief.Process.Pid)
	if hs := Holders(mnt); len(hs) != 1 || hs[0] != want {
		t.Fatalf("Holders = %q, want [%q]", hs, want)
	}
	if err := Unmount(ctx, mnt); err != nil {
		t.Fatalf("Unmount while a process ends by itself: %v", err)
	}
	if IsMounted(mnt) {
		t.Fatal("still mounted")
	}

	// One that does not end in time: named in the error, the pool left
	// mounted.
	if err := Mount(ctx, img, mnt); err != nil {
		t.Fatal(err)
	}
	stuck := hold("600")
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	err := Unmount(short, mnt)
	want = fmt.Sprintf("held by pid %d (sleep 600)", stuck.Process.Pid)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "target is busy") {
		t.Fatalf("Unmount of a pool held for good: %v; want an error saying %q", err, want)
	}
	if !IsMounted(mnt) {
		t.Fatal("unmounted although the error said it was busy")
	}
	stuck.Process.Kill()
	stuck.Wait() //nolint:errcheck // killed
	if hs := Holders(mnt); len(hs) != 0 {
		t.Fatalf("Holders after the holder ended = %q", hs)
	}
	if err := Unmount(ctx, mnt); err != nil {
		t.Fatal(err)
	}
}
