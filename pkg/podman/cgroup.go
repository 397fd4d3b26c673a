package podman

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CgroupRoot is where cgroup filesystems are mounted.
var CgroupRoot = "/sys/fs/cgroup"

// cgroupPaths maps controller names to the cgroup of process pid; the
// unified (v2) hierarchy is under the key "".
func cgroupPaths(pid int) (map[string]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, sc.Err()
}

// readKey reads "key value" lines of a cgroup file.
func readKey(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

// CPUUsage is the CPU time used by the cgroup of process pid (a
// container's main process), from cgroup v1's cpuacct or v2's cpu.stat.
func CPUUsage(pid int) (time.Duration, error) {
	paths, err := cgroupPaths(pid)
	if err != nil {
		return 0, err
	}
	if p, ok := paths["cpuacct"]; ok {
		b, err := os.ReadFile(filepath.Join(CgroupRoot, "cpuacct", p, "cpuacct.usage"))
		if err == nil {
			ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cpuacct.usage: %w", err)
			}
			return time.Duration(ns), nil
		}
	}
	if p, ok := paths[""]; ok {
		us, err := readKey(filepath.Join(CgroupRoot, p, "cpu.stat"), "usage_usec")
		if err == nil {
			return time.Duration(us) * time.Microsecond, nil
		}
		if _, err2 := os.Stat(filepath.Join(CgroupRoot, "unified", p, "cpu.stat")); err2 == nil {
			us, err := readKey(filepath.Join(CgroupRoot, "unified", p, "cpu.stat"), "usage_usec")
			return time.Duration(us) * time.Microsecond, err
		}
		return 0, err
	}
	return 0, fmt.Errorf("no cpu accounting cgroup for process %d", pid)
}

// OOMKills is how many processes the kernel killed in the memory cgroup
// of process pid because it hit its limit.
func OOMKills(pid int) (int64, error) {
	paths, err := cgroupPaths(pid)
	if err != nil {
		return 0, err
	}
	if p, ok := paths["memory"]; ok {
		return readKey(filepath.Join(CgroupRoot, "memory", p, "memory.oom_control"), "oom_kill")
	}
	if p, ok := paths[""]; ok {
		return readKey(filepath.Join(CgroupRoot, p, "memory.events"), "oom_kill")
	}
	return 0, fmt.Errorf("no memory cgroup for process %d", pid)
}

// MemoryUsage is the memory charged to the cgroup of process pid.
func MemoryUsage(pid int) (int64, error) {
	paths, err := cgroupPaths(pid)
	if err != nil {
		return 0, err
	}
	if p, ok := paths["memory"]; ok {
		b, err := os.ReadFile(filepath.Join(CgroupRoot, "memory", p, "memory.usage_in_bytes"))
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if p, ok := paths[""]; ok {
		b, err := os.ReadFile(filepath.Join(CgroupRoot, p, "memory.current"))
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	return 0, fmt.Errorf("no memory cgroup for process %d", pid)
}

// ErrNoCgroupKill means a container's processes cannot be ended through
// its cgroup here (no cgroup v2 hierarchy with cgroup.kill, Linux < 5.14,
// or the container's process is not the one asked about); the caller
// stops the container with podman instead.
var ErrNoCgroupKill = errors.New("no cgroup.kill for the container")

// KillAll ends every process of running container c at once — SIGKILL
// through its cgroup v2 cgroup.kill, what podman's stop does to whatever
// outlives the container's first process — and returns when the cgroup
// is empty: nothing of the container can write any more. The container
// itself is left, exited, for a later Remove. It takes milliseconds where
// `podman rm -f` takes most of a second, which is what a move's cut-over
// (the project's downtime) needs.
func KillAll(ctx context.Context, c Container) error {
	if c.PID <= 0 || c.ID == "" {
		return fmt.Errorf("container %s: %w (no process)", c.Name, ErrNoCgroupKill)
	}
	dir, err := unifiedCgroup(c.PID)
	if err != nil {
		return fmt.Errorf("container %s: %w: %v", c.Name, ErrNoCgroupKill, err)
	}
	// The container's own cgroup is the one named for it (its first
	// process may be in one below); and the process must still be this
	// container's: a pid from an older listing may be another's now.
	for !strings.Contains(filepath.Base(dir), c.ID) {
		if dir == CgroupRoot || dir == filepath.Dir(dir) {
			return fmt.Errorf("container %s: %w: process %d is not in the container's cgroup", c.Name, ErrNoCgroupKill, c.PID)
		}
		dir = filepath.Dir(dir)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		return fmt.Errorf("container %s: %w: %v", c.Name, ErrNoCgroupKill, err)
	}
	// The kernel delivers SIGKILL to every member at once; a process in
	// the middle of a system call (a write) finishes it first. Empty is
	// "populated 0" in cgroup.events, or the cgroup gone.
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		n, err := readKey(filepath.Join(dir, "cgroup.events"), "populated")
		if errors.Is(err, fs.ErrNotExist) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("container %s: after cgroup.kill: %w", c.Name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s: processes still running after cgroup.kill: %w", c.Name, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// unifiedCgroup is the cgroup v2 directory of process pid: under
// CgroupRoot on a unified host, under CgroupRoot/unified on a hybrid one.
func unifiedCgroup(pid int) (string, error) {
	paths, err := cgroupPaths(pid)
	if err != nil {
		return "", err
	}
	p, ok := paths[""]
	if !ok || p == "/" {
		return "", fmt.Errorf("process %d has no cgroup v2 of its own", pid)
	}
	for _, root := range []string{CgroupRoot, filepath.Join(CgroupRoot, "unified")} {
		dir := filepath.Join(root, p)
		if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no cgroup.kill in %s", p)
}
