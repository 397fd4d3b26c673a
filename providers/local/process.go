package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/btrfs"
)

// AgentEnvPrefix marks environment variables passed on to agents. Others
// are dropped (see agentEnv).
const AgentEnvPrefix = "COCALC_HOSTS_AGENT_"

// agentEnvKeep are the variables an agent needs to find and run tools.
var agentEnvKeep = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "LANG": true,
	"LC_ALL": true, "TZ": true, "TMPDIR": true, "XDG_RUNTIME_DIR": true,
	// podman reads its engine settings from this file (see machine.md).
	"CONTAINERS_CONF": true,
}

// agentEnv is the environment of a new agent: a short allow-list, because
// the CLI that starts it may have database credentials or cloud keys in its
// environment and the agent must never see them.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if agentEnvKeep[k] || strings.HasPrefix(k, AgentEnvPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

// startAgent makes sure the host's agent runs and answers, and that it is
// the only one: an agent started by an attempt that died before writing
// the pid file is waited for rather than joined by a second one, which
// would orphan the first with its ports.
func (p *Provider) startAgent(ctx context.Context, r record, ps paths) error {
	if err := p.runAgent(ctx, r, ps); err != nil {
		return fmt.Errorf("start agent for %s: %w", r.Name, err)
	}
	return nil
}

func (p *Provider) runAgent(ctx context.Context, r record, ps paths) error {
	// Rewritten every time so that a host made by an older version gets
	// the current settings.
	if err := agentapi.WriteConfig(ps.config, p.proj.apply(agentConfig(r, ps))); err != nil {
		return err
	}
	// An agent that answers is adopted even when the pid file is lost or
	// stale (a crash between starting it and writing the file).
	if st, err := p.ping(ctx, r, ps); err == nil {
		return adopt(ps, st.PID)
	}
	if _, alive := agentProcess(ps); alive {
		return p.waitReady(ctx, r, ps)
	}
	agents, err := findAgents(ps.config)
	if err != nil {
		return err
	}
	if n := len(agents); n > 0 {
		// Agents no pid file names: an attempt killed between launching
		// one and writing the file. The newest, likeliest to hold the
		// socket, is given the start timeout to answer; the others are
		// killed, not stopped: on SIGTERM an agent stops the host's
		// projects, which the one kept serves.
		newest := agents[n-1]
		if err := killAll(ctx, agents[:n-1]); err != nil {
			return err
		}
		awaitLeftovers(ctx, ps, agents[:n-1])
		if err := writePidFile(ps.pid, newest.pid, newest.start); err != nil {
			return err
		}
		err := p.waitReady(ctx, r, ps)
		if err == nil || ctx.Err() != nil {
			return err
		}
		logLine(ps.log, "agent %d, found without a pid file, is replaced: %v", newest.pid, err)
		if err := killAll(ctx, agents[n-1:]); err != nil {
			return err
		}
		awaitLeftovers(ctx, ps, agents[n-1:])
	}
	// The agent the pid file names, if it was killed, may have left
	// commands running.
	if pid, start, err := readPidFile(ps.pid); err == nil && !(proc{pid: pid, start: start}).alive() {
		awaitLeftovers(ctx, ps, []proc{{pid: pid, start: start}})
	}
	if err := p.launch(r, ps); err != nil {
		return err
	}
	return p.waitReady(ctx, r, ps)
}

// leftoverWait bounds how long awaitLeftovers waits: commands of a
// killed agent that still run after it are stuck, and the host goes on
// without them.
const leftoverWait = time.Minute

// awaitLeftovers waits until the commands that agents, now gone, left
// running have ended. An agent that is killed (SIGKILL, a crash) leaves
// its children running on their own: a `podman run` that makes its
// container only after the next agent has listed the containers, so that
// its StopAll misses one and a stopped host runs a project; a btrfs
// command (a subvolume sync, a quota rescan) that keeps the pool busy.
// An agent leads a session of its own (launch), and its commands are the
// processes left in that session: they inherit it, while a container's
// monitor (conmon) starts a session of its own.
func awaitLeftovers(ctx context.Context, ps paths, agents []proc) {
	left := leftInSessions(agents)
	if len(left) == 0 {
		return
	}
	what := commandsOf(left)
	start := time.Now()
	if waitGone(ctx, left, leftoverWait) {
		logLine(ps.log, "waited %v for the commands a stopped agent left running: %s", time.Since(start).Round(time.Millisecond), what)
		return
	}
	logLine(ps.log, "going on while commands a stopped agent left still run after %v: %s", leftoverWait, what)
}

// commandsOf describes processes for the log ("pid 42: btrfs subvolume
// sync /pool 261"), each command line cut at 200 bytes.
func commandsOf(procs []proc) string {
	var out []string
	for _, pr := range procs {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pr.pid))
		cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if len(cmd) > 200 {
			cmd = cmd[:200] + "…"
		}
		out = append(out, fmt.Sprintf("pid %d: %s", pr.pid, cmd))
	}
	return strings.Join(out, "; ")
}

// launch starts the agent detached: in its own session (so the CLI's
// terminal and signals do not reach it), with no stdin and its output in
// agent.log, and not waited for, so it outlives the CLI.
func (p *Provider) launch(r record, ps paths) error {
	// Whatever is left of an agent that died must not confuse the checks.
	os.Remove(ps.pid)
	logf, err := os.OpenFile(ps.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	argv := append(append([]string{}, p.cfg.AgentCommand...), "agent", "--config", ps.config)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = "/" // never keep a pool busy through the working directory
	cmd.Env = agentEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logTo(logf, "starting agent: %s", strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	// Start returns only after the exec succeeded, so the process now is
	// the agent; its start time tells it apart from a later process that
	// reuses the pid.
	st, err := readProcStat(pid)
	cmd.Process.Release()
	if err != nil {
		return fmt.Errorf("agent pid %d: %w", pid, err)
	}
	return writePidFile(ps.pid, pid, st.startTime)
}

// waitReady polls the agent until it answers, it dies, or the start
// timeout (bounded by ctx) passes.
func (p *Provider) waitReady(ctx context.Context, r record, ps paths) error {
	ctx, cancel := context.WithTimeout(ctx, p.startTimeout)
	defer cancel()
	interval := 20 * time.Millisecond
	var lastErr error
	for {
		st, err := p.ping(ctx, r, ps)
		if err == nil {
			return adopt(ps, st.PID)
		}
		lastErr = err
		if !agentExists(ps) {
			return fmt.Errorf("agent exited before answering (%v); last lines of %s:\n%s", lastErr, ps.log, logTail(ps.log))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent did not answer within %v (%v); last lines of %s:\n%s", p.startTimeout, lastErr, ps.log, logTail(ps.log))
		case <-time.After(interval):
		}
		if interval < 250*time.Millisecond {
			interval *= 2
		}
	}
}

// adopt records pid, reported by the agent answering on our socket, as the
// host's agent.
func adopt(ps paths, pid int) error {
	if old, start, err := readPidFile(ps.pid); err == nil && old == pid {
		if st, err := readProcStat(pid); err == nil && st.startTime == start {
			return nil
		}
	}
	st, err := readProcStat(pid)
	if err != nil {
		return fmt.Errorf("agent pid %d: %w", pid, err)
	}
	return writePidFile(ps.pid, pid, st.startTime)
}

// reviveToStop starts an agent for a host that is up (its pool in place)
// but whose agent is gone: killed (SIGKILL, a crash, the OOM killer), it
// could not stop its projects, and the new one stops them when stopAgent
// stops it (StopProjectsOnExit). A stopped local host runs nothing, as a
// stopped VM runs nothing; only the agent knows how to stop its projects.
func (p *Provider) reviveToStop(ctx context.Context, r record, ps paths) error {
	if len(p.cfg.AgentCommand) == 0 {
		return nil
	}
	// Any agent of the host, named by the pid file or not, stops the
	// projects when stopAgent stops it.
	if agents, err := findAgents(ps.config); err != nil || len(agents) > 0 {
		return err
	}
	if r.Storage == agentapi.StorageBtrfs && !btrfs.IsMounted(ps.pool) {
		return nil // stopped already: nothing runs from a pool not mounted
	}
	if err := p.startAgent(ctx, r, ps); err != nil {
		return fmt.Errorf("stop the projects its killed agent left running: %w", err)
	}
	return nil
}

// stopAgent stops every agent of the host, the pid file's and any it lost
// track of: SIGTERM, then SIGKILL for those still running after the stop
// timeout.
func (p *Provider) stopAgent(ctx context.Context, ps paths) error {
	agents, err := findAgents(ps.config)
	if err != nil {
		return err
	}
	if err := signalAll(agents, syscall.SIGTERM); err != nil {
		return err
	}
	if !waitGone(ctx, agents, p.stopTimeout) {
		if err := killAll(ctx, agents); err != nil {
			return err
		}
	}
	awaitLeftovers(ctx, ps, agents)
	if err := os.Remove(ps.pid); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// A killed agent leaves its socket; a new one would replace it anyway,
	// but a stale socket must not look like a host that is up.
	if err := os.Remove(ps.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// killAll SIGKILLs agents and waits until they are gone.
func killAll(ctx context.Context, agents []proc) error {
	if err := signalAll(agents, syscall.SIGKILL); err != nil {
		return err
	}
	if !waitGone(ctx, agents, 5*time.Second) {
		var pids []int
		for _, a := range agents {
			pids = append(pids, a.pid)
		}
		return fmt.Errorf("agents %v did not exit after SIGKILL", pids)
	}
	return nil
}

// signalAll sends sig to the agents still running. alive checks the start
// time first, so that the signal cannot hit a newcomer with a reused pid.
func signalAll(agents []proc, sig syscall.Signal) error {
	for _, a := range agents {
		if !a.alive() {
			continue
		}
		if err := syscall.Kill(a.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal agent %d: %w", a.pid, err)
		}
	}
	return nil
}

// waitGone polls until none of procs runs or wait passes.
func waitGone(ctx context.Context, procs []proc, wait time.Duration) bool {
	gone := func() bool {
		for _, pr := range procs {
			if pr.alive() {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(wait)
	interval := 10 * time.Millisecond
	for {
		if gone() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return gone()
		case <-time.After(interval):
		}
		if interval < 200*time.Millisecond {
			interval *= 2
		}
	}
}

// agentProcess returns the pid from the pid file and whether that process
// is alive and really this host's agent: same start time as recorded (so
// not a reused pid) and running with this host's config.
func agentProcess(ps paths) (int, bool) {
	pid, _, err := readPidFile(ps.pid)
	if err != nil || !agentExists(ps) {
		return pid, false
	}
	return pid, runsAgentOf(pid, ps.config)
}

// agentExists reports whether the process in the pid file still exists
// (and is not a zombie).
func agentExists(ps paths) bool {
	pid, start, err := readPidFile(ps.pid)
	return err == nil && proc{pid: pid, start: start}.alive()
}

// proc is one process, told apart from a later one that reuses its pid by
// its start time.
type proc struct {
	pid   int
	start uint64 // clock ticks after boot
}

// alive reports whether the process still runs (and is not a zombie). A
// zombie that is our own child (we started it and never wait) is reaped
// here, so a long-running caller does not collect them.
func (pr proc) alive() bool {
	st, err := readProcStat(pr.pid)
	if err != nil || st.startTime != pr.start {
		return false
	}
	if st.state == "Z" || st.state == "X" {
		if st.ppid == os.Getpid() {
			// The zombie holds the pid, so this cannot reap anything else.
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pr.pid, &ws, syscall.WNOHANG, nil)
		}
		return false
	}
	return true
}

type procStat struct {
	state     string
	ppid      int
	session   int
	startTime uint64 // clock ticks after boot
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may contain
	// spaces and parentheses; the fields after the last ')' are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	session, err := strconv.Atoi(f[3]) // field 6
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64) // field 22, starttime
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return procStat{state: f[0], ppid: ppid, session: session, startTime: start}, nil
}

func writePidFile(path string, pid int, start uint64) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", pid, start)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readPidFile(path string) (int, uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("pid file %s: want \"PID STARTTIME\"", path)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("pid file %s: bad pid %q", path, f[0])
	}
	start, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("pid file %s: bad start time %q", path, f[1])
	}
	return pid, start, nil
}

// logLine appends a line from the provider to the agent's log.
func logLine(path, format string, args ...any) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return // best effort: the log is for people
	}
	defer f.Close()
	logTo(f, format, args...)
}

func logTo(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "%s local provider: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// logTail returns the last lines of the agent's log for error messages.
func logTail(path string) string {
	const maxBytes, maxLines = 4096, 20
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxBytes {
		f.Seek(st.Size()-maxBytes, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n")
}

// KillAgents SIGKILLs every agent of the local host whose directory is
// dir, named by its pid file or not, and waits until they are gone: for
// harnesses that kill agents as a crash would, or clean up after a run
// whatever state it ended in.
func KillAgents(ctx context.Context, dir string) error {
	agents, err := findAgents(filepath.Join(dir, "agent.json"))
	if err != nil {
		return err
	}
	return killAll(ctx, agents)
}
