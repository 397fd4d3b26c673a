package local

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// findAgents returns every process of ours (same user) that runs an agent
// with config, oldest first, whatever the pid file says: a worker killed
// between launching an agent and writing its pid file leaves one that no
// pid file names.
func findAgents(config string) ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("find agents of %s: %w", config, err)
	}
	var found []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !runsAgentOf(pid, config) {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.state == "Z" || st.state == "X" {
			continue // gone meanwhile
		}
		found = append(found, proc{pid: pid, start: st.startTime})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].start < found[j].start })
	return found, nil
}

// runsAgentOf reports whether process pid is ours (same user) and runs
// "... agent --config config", as launch starts it.
func runsAgentOf(pid int, config string) bool {
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	n := len(args)
	return n >= 3 && args[n-3] == "agent" && args[n-2] == "--config" && args[n-1] == config
}

// leftInSessions returns the live processes in the sessions that the
// agents (gone now) led: those started after an agent, since a process
// started before it cannot be in its session, and not a new session
// leader that reuses an agent's pid.
func leftInSessions(agents []proc) []proc {
	if len(agents) == 0 {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var left []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.state == "Z" || st.state == "X" || st.session == pid {
			continue
		}
		for _, a := range agents {
			if st.session == a.pid && st.startTime >= a.start {
				left = append(left, proc{pid: pid, start: st.startTime})
				break
			}
		}
	}
	return left
}
