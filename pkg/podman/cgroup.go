package podman

import (
	"bufio"
	"fmt"
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
