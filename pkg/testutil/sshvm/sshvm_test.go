package sshvm_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
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

// A script run on a powered-off VM (a cloud's startup script) that starts
// a daemon must not leave it running, nor listening on this machine's
// network: a startup script's `service ssh restart` once left an sshd on
// the host's port 22 after the tests.
func TestRunOffLeavesNothingRunning(t *testing.T) {
	sshvm.NeedRoot(t)
	vm := sshvm.New(t, sshvm.Options{})
	vm.PowerOff(t)
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// sshd (no -D) detaches into the background, as `service` does.
	out := vm.RunOff(t, fmt.Sprintf(`/usr/sbin/sshd -f /etc/ssh/sshd_config_test -o ListenAddress=0.0.0.0:%d
ip -o -4 addr show`, port))
	if !strings.Contains(out, vm.Addr+"/30") {
		t.Fatalf("the script did not run in the VM's network namespace:\n%s", out)
	}
	if strings.Contains(out, vm.HostAddr+"/30") {
		t.Fatalf("the script saw this machine's interfaces:\n%s", out)
	}
	marker := fmt.Sprintf("ListenAddress=0.0.0.0:%d", port)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), marker) {
			t.Errorf("the script's sshd survives it: %s %q", p, b)
		}
	}
	// Nothing listens on that port, here or in the VM's namespace.
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Errorf("something listens on this machine's port %d after the script", port)
	}
	ss, err := exec.Command("ip", "netns", "exec", vm.Name, "ss", "-Hltn").CombinedOutput()
	if err != nil {
		t.Fatalf("ss in the VM's namespace: %v\n%s", err, ss)
	}
	if strings.Contains(string(ss), fmt.Sprintf(":%d ", port)) {
		t.Errorf("the script's sshd still listens in the VM's namespace:\n%s", ss)
	}
	// The VM boots again afterwards on the same disk.
	vm.Boot(t)
	vm.MustExec(t, "true")
}
