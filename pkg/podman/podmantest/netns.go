package podmantest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"time"
)

// NetworkNamespaces returns the names of the named network namespaces
// (rootful podman's are in /run/netns too).
func NetworkNamespaces() (map[string]bool, error) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	names := map[string]bool{}
	for _, en := range entries {
		names[en.Name()] = true
	}
	return names, nil
}

// LeftNetworkNamespaces returns the namespaces made since before that no
// process is in, once those of containers still starting had up to wait
// to get their first process or go: a namespace podman left behind has
// none and never will.
func LeftNetworkNamespaces(before map[string]bool, wait time.Duration) ([]string, error) {
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		now, err := NetworkNamespaces()
		if err != nil {
			return nil, err
		}
		var left []string
		for n := range now {
			if !before[n] && netnsEmpty(n) {
				left = append(left, n)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left, nil
		}
	}
}

// netnsEmpty reports whether no process is in network namespace name.
func netnsEmpty(name string) bool {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	return err == nil && len(bytes.TrimSpace(out)) == 0
}
