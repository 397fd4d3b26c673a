package podmantest

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// A namespace named as podman names them, made after the snapshot, is
// left while no process is in it, and not once one is; one named
// otherwise is not podman's to judge.
func TestLeftNetworkNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	before, err := NetworkNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	name, other := fmt.Sprintf("netns-cocalc-test-%d", os.Getpid()), fmt.Sprintf("cocalc-test-%d", os.Getpid())
	for _, n := range []string{name, other} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "delete", n).Run() }) //nolint:errcheck
	}
	if left, err := LeftNetworkNamespaces(before, 0); err != nil || !slices.Contains(left, name) || slices.Contains(left, other) {
		t.Fatalf("empty namespaces %s and %s: left %v, %v", name, other, left, err)
	}
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck
	// It waits for the process to be in it, as for a container starting.
	if left, err := LeftNetworkNamespaces(before, 10*time.Second); err != nil || slices.Contains(left, name) {
		t.Fatalf("namespace %s with a process: left %v, %v", name, left, err)
	}
}
