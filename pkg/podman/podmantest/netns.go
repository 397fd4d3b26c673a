package podmantest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// netnsDir holds the named network namespaces, rootful podman's too.
const netnsDir = "/run/netns"

// NetworkNamespaces returns the names of the named network namespaces.
func NetworkNamespaces() (map[string]bool, error) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	names := map[string]bool{}
	for _, en := range entries {
		names[en.Name()] = true
	}
	return names, nil
}

// podmanNetnsPrefix starts the names podman gives the namespaces it
// makes. Only those are judged: other tests keep namespaces of their own
// empty for a while (a test VM switched off keeps its network).
const podmanNetnsPrefix = "netns-"

// LeftNetworkNamespaces returns podman's namespaces made since before that
// no process is in, once those of containers still starting had up to
// wait to get their first process or go: a namespace podman left behind
// has none and never will.
func LeftNetworkNamespaces(before map[string]bool, wait time.Duration) ([]string, error) {
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		now, err := NetworkNamespaces()
		if err != nil {
			return nil, err
		}
		inUse, err := namespacesInUse()
		if err != nil {
			return nil, err
		}
		var left []string
		for n := range now {
			if before[n] || !strings.HasPrefix(n, podmanNetnsPrefix) {
				continue
			}
			id, err := fileID(filepath.Join(netnsDir, n))
			if errors.Is(err, os.ErrNotExist) {
				continue // removed since it was listed
			}
			if err != nil {
				return nil, err
			}
			if !inUse[id] {
				left = append(left, n)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left, nil
		}
	}
}

// nsID names a namespace: the device and inode of its nsfs file, which a
// named namespace's bind mount and its processes' /proc/PID/ns/net share.
type nsID struct{ dev, ino uint64 }

func fileID(path string) (nsID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nsID{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return nsID{uint64(st.Dev), st.Ino}, nil
}

// namespacesInUse returns the network namespaces some process is in.
func namespacesInUse() (map[nsID]bool, error) {
	procs, err := filepath.Glob("/proc/[0-9]*/ns/net")
	if err != nil {
		return nil, err
	}
	in := map[nsID]bool{}
	for _, p := range procs {
		if id, err := fileID(p); err == nil { // a process gone meanwhile has none
			in[id] = true
		}
	}
	return in, nil
}

// RemoveNetworkNamespaces removes namespaces a check found left behind,
// after they were reported: their mounts go with them.
func RemoveNetworkNamespaces(names []string) {
	for _, n := range names {
		exec.Command("ip", "netns", "delete", n).Run() //nolint:errcheck // reported by the caller
	}
}
