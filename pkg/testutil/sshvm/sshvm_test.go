package sshvm_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/btrfs"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
)

// A VM booted while another test has a btrfs pool mounted must not keep
// that pool busy: tests run in parallel packages, and a pool whose loop
// device cannot be detached fails the other test's cleanup.
func TestVMKeepsNoHostMountBusy(t *testing.T) {
	sshvm.NeedRoot(t)
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "pool.img"), filepath.Join(dir, "pool")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := btrfs.CreateLoopPool(ctx, img, mnt, storagetest.PoolSize); err != nil {
		t.Fatal(err)
	}
	vm := sshvm.New(t, sshvm.Options{})
	// The VM sees its own root, not this machine's mounts.
	if out := vm.MustExec(t, "cat /proc/self/mountinfo"); strings.Contains(out, mnt) || strings.Contains(out, " btrfs ") {
		t.Fatalf("the VM sees the host's pool:\n%s", out)
	}
	// Released while the VM still runs: Release fails the test if the
	// loop device stays attached.
	storagetest.Release(t, img, mnt)
	if devs, err := btrfs.LoopDevices(ctx, img); err != nil || len(devs) > 0 {
		t.Fatalf("loop devices still attached while the VM runs: %v %v", devs, err)
	}
}
