package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
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

// startAgent makes sure the host's agent runs and answers.
func (p *Provider) startAgent(ctx context.Context, r record, ps paths) error {
	// Rewritten every time so that a host made by an older version gets
	// the current settings.
	if err := agentapi.WriteConfig(ps.config, p.proj.apply(agentConfig(r, ps))); err != nil {
		return fmt.Errorf("start agent for %s: %w", r.Name, err)
	}
	// An agent that answers is adopted even when the pid file is lost or
	// stale (a crash between starting it and writing the file).
	if st, err := p.ping(ctx, r, ps); err == nil {
		if err := adopt(ps, st.PID); err != nil {
			return fmt.Errorf("start agent for %s: %w", r.Name, err)
		}
		return nil
	}
	if _, alive := agentProcess(ps); !alive {
		if err := p.launch(r, ps); err != nil {
			return fmt.Errorf("start agent for %s: %w", r.Name, err)
		}
	}
	if err := p.waitReady(ctx, r, ps); err != nil {
		return fmt.Errorf("start agent for %s: %w", r.Name, err)
	}
	return nil
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
	fmt.Fprintf(logf, "%s local provider: starting agent: %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(argv, " "))
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
	if _, alive := agentProcess(ps); alive || len(p.cfg.AgentCommand) == 0 {
		return nil
	}
	if r.Storage == agentapi.StorageBtrfs && !btrfs.IsMounted(ps.pool) {
		return nil // stopped already: nothing runs from a pool not mounted
	}
	if err := p.startAgent(ctx, r, ps); err != nil {
		return fmt.Errorf("stop the projects its killed agent left running: %w", err)
	}
	return nil
}

// stopAgent stops the host's agent, if it runs: SIGTERM, then SIGKILL if
// it has not exited after the stop timeout.
func (p *Provider) stopAgent(ctx context.Context, ps paths) error {
	pid, alive := agentProcess(ps)
	if !alive {
		// An agent whose pid file was lost still answers on the socket
		// and says who it is; stop it too rather than orphan it.
		if pid, alive = answeringAgent(ctx, ps); alive {
			if err := adopt(ps, pid); err != nil {
				return err
			}
			pid, alive = agentProcess(ps)
		}
	}
	if alive {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal agent %d: %w", pid, err)
		}
		if !waitGone(ctx, ps, p.stopTimeout) {
			// Still the same process (waitGone checks the start time), so
			// the kill cannot hit a newcomer with a reused pid.
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill agent %d: %w", pid, err)
			}
			if !waitGone(ctx, ps, 5*time.Second) {
				return fmt.Errorf("agent %d did not exit after SIGKILL", pid)
			}
		}
	}
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

// answeringAgent returns the pid of the agent answering on the host's
// socket if that process runs with this host's config.
func answeringAgent(ctx context.Context, ps paths) (int, bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := agentapi.NewClient(ps.socket).Status(ctx)
	if err != nil || st.PID <= 0 {
		return 0, false
	}
	return st.PID, hasConfigArg(st.PID, ps.config)
}

// waitGone polls until the agent of the pid file is gone or wait passes.
func waitGone(ctx context.Context, ps paths, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	interval := 10 * time.Millisecond
	for {
		if !agentExists(ps) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return !agentExists(ps)
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
	return pid, hasConfigArg(pid, ps.config)
}

// hasConfigArg reports whether process pid runs with "--config config".
func hasConfigArg(pid int, config string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--config" && args[i+1] == config {
			return true
		}
	}
	return false
}

// agentExists reports whether the process in the pid file still exists
// (and is not a zombie). A zombie that is our own child (we started it and
// never wait) is reaped here, so a long-running caller does not collect
// them.
func agentExists(ps paths) bool {
	pid, start, err := readPidFile(ps.pid)
	if err != nil {
		return false
	}
	st, err := readProcStat(pid)
	if err != nil || st.startTime != start {
		return false
	}
	if st.state == "Z" || st.state == "X" {
		if st.ppid == os.Getpid() {
			// The zombie holds the pid, so this cannot reap anything else.
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
		return false
	}
	return true
}

type procStat struct {
	state     string
	ppid      int
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
	start, err := strconv.ParseUint(f[19], 10, 64) // field 22, starttime
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return procStat{state: f[0], ppid: ppid, startTime: start}, nil
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
