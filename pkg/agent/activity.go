package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
)

// activeCPUShare is the share of one CPU a project must use between two
// checks to count as active: background noise of an idle shell stays far
// below it, a running computation far above.
const activeCPUShare = 0.02

// savedState is what the agent keeps across restarts in the pool.
type savedState struct {
	IdleStopAfterSeconds int64                    `json:"idle_stop_after_seconds"`
	HostActive           time.Time                `json:"host_active"`
	Projects             map[string]savedActivity `json:"projects"`
}

type savedActivity struct {
	LastActivity  time.Time `json:"last_activity"`
	LastAuto      time.Time `json:"last_auto_snapshot"`
	StoppedReason string    `json:"stopped_reason,omitempty"`
}

func (r *runtime) loadState() {
	b, err := os.ReadFile(r.statePath)
	if err != nil {
		return
	}
	var s savedState
	if err := json.Unmarshal(b, &s); err != nil {
		r.log.Warn("ignoring unreadable agent state", "path", r.statePath, "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idle.StopAfterSeconds = s.IdleStopAfterSeconds
	r.hostActive = s.HostActive
	for id, a := range s.Projects {
		if storage.ValidID(id) {
			act := r.activityOf(id)
			act.last, act.lastAuto, act.stoppedReason = a.LastActivity, a.LastAuto, a.StoppedReason
		}
	}
}

// saveState writes the state if it changed, atomically (mode 0600).
func (r *runtime) saveState() error {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	s := savedState{IdleStopAfterSeconds: r.idle.StopAfterSeconds, HostActive: r.hostActive, Projects: map[string]savedActivity{}}
	for id, a := range r.act {
		s.Projects[id] = savedActivity{LastActivity: a.last, LastAuto: a.lastAuto, StoppedReason: a.stoppedReason}
	}
	r.dirty = false
	r.mu.Unlock()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(strings.TrimSuffix(r.statePath, "/state.json"), 0o700); err != nil {
		return err
	}
	tmp := r.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.statePath)
}

// checkActivity samples every running project's CPU use, stops projects
// idle past their timeout, and reports whether the host itself has been
// idle past its policy.
func (r *runtime) checkActivity(ctx context.Context, interval time.Duration) (hostIdle bool, err error) {
	cs, err := r.containers(ctx)
	if err != nil {
		return false, err
	}
	now := r.now()
	var idle []string
	for id, c := range cs {
		if !c.Running() {
			continue
		}
		status, err := r.status(ctx, id, &c, false)
		if err != nil {
			continue
		}
		cpu := time.Duration(status.CPUSeconds * float64(time.Second))
		r.mu.Lock()
		a := r.activityOf(id)
		active := a.sessions > 0 ||
			(a.cpuValid && float64(cpu-a.cpu) > activeCPUShare*float64(interval))
		a.cpu, a.cpuValid = cpu, true
		if a.last.IsZero() {
			a.last = now
		}
		if active {
			a.last, r.hostActive, r.dirty = now, now, true
		}
		timeout := time.Duration(status.IdleTimeoutSeconds) * time.Second
		if timeout > 0 && now.Sub(a.last) > timeout {
			idle = append(idle, id)
		}
		r.mu.Unlock()
	}
	for _, id := range idle {
		unlock := r.lock(id)
		// Activity may have come in (an exec session) while we waited for
		// the lock; check again under it.
		r.mu.Lock()
		a := r.activityOf(id)
		stillIdle := a.sessions == 0
		r.mu.Unlock()
		if stillIdle {
			if _, err := r.stopLocked(ctx, id, "idle"); err != nil {
				r.log.Error("idle stop", "project", id, "err", err)
			}
		}
		unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hostActive.IsZero() {
		r.hostActive = now
	}
	after := time.Duration(r.idle.StopAfterSeconds) * time.Second
	return after > 0 && now.Sub(r.hostActive) > after, nil
}

// snapshotActive takes a scheduled snapshot of every project that was
// active since its last one, and prunes old scheduled snapshots.
func (r *runtime) snapshotActive(ctx context.Context, every time.Duration, keep storage.Retention) {
	if !r.st.Capabilities().Snapshots {
		return
	}
	ids, err := r.st.List()
	if err != nil {
		r.log.Error("scheduled snapshots", "err", err)
		return
	}
	now := r.now()
	for _, id := range ids {
		r.mu.Lock()
		a := r.activityOf(id)
		due := !a.last.IsZero() && a.last.After(a.lastAuto) && now.Sub(a.lastAuto) >= every
		r.mu.Unlock()
		if !due {
			continue
		}
		unlock := r.lock(id)
		_, err := r.st.Snapshot(ctx, id, storage.AutoName(now))
		if err == nil {
			_, err = r.st.Prune(ctx, id, keep, now)
		}
		unlock()
		if err != nil {
			r.log.Error("scheduled snapshot", "project", id, "err", err)
			continue
		}
		r.mu.Lock()
		a.lastAuto, r.dirty = now, true
		r.mu.Unlock()
	}
}

// loop runs the periodic work until ctx ends; it closes selfStop when the
// host's idle policy says the host should stop.
func (r *runtime) loop(ctx context.Context, cfg agentapi.Config, selfStop chan<- struct{}) {
	check, _ := cfg.IdleCheck()
	snapEvery, _ := cfg.Snapshots()
	t := time.NewTicker(check)
	defer t.Stop()
	var lastSnap time.Time
	// idleStopped: the projects were stopped for the host's idle policy,
	// and the control plane is to stop the host.
	idleStopped := false
	for {
		select {
		case <-ctx.Done():
			r.saveState() //nolint:errcheck
			return
		case <-t.C:
		}
		hostIdle, err := r.checkActivity(ctx, check)
		if err != nil && ctx.Err() == nil {
			r.log.Error("activity check", "err", err)
		}
		if snapEvery > 0 && r.now().Sub(lastSnap) >= snapEvery {
			lastSnap = r.now()
			r.snapshotActive(ctx, snapEvery, storage.DefaultRetention)
		}
		if err := r.saveState(); err != nil {
			r.log.Error("save agent state", "err", err)
		}
		switch {
		case !hostIdle:
			idleStopped = false
		case cfg.IdleStopper() == agentapi.IdleStopByControlPlane:
			if !idleStopped {
				r.log.Info("host idle past its policy: stopping projects; the control plane stops the host", "stop_after_seconds", r.idle.StopAfterSeconds)
				err := r.StopAll(ctx, "host idle")
				if err != nil {
					r.log.Error("stop projects for host idle stop (tried again next check)", "err", err)
				}
				idleStopped = err == nil
			}
		case cfg.IdleStopper() == agentapi.IdleStopByHost:
			r.log.Info("host idle past its policy: stopping projects and the host", "stop_after_seconds", r.idle.StopAfterSeconds)
			close(selfStop)
			return
		}
	}
}

// selfStopHost stops every project and then runs the configured command
// (a VM powers itself off); without one the agent simply exits, which for
// a local host is the host stopping.
func (r *runtime) selfStopHost(ctx context.Context, cfg agentapi.Config) error {
	if err := r.StopAll(ctx, "host idle"); err != nil {
		r.log.Error("stop projects before host idle stop", "err", err)
	}
	argv := strings.Fields(cfg.SelfStopCommand)
	if len(argv) == 0 {
		return nil
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("self-stop command %q: %w: %s", cfg.SelfStopCommand, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Idle returns the host idle policy.
func (r *runtime) Idle() agentapi.IdlePolicy {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.idle
	if !r.hostActive.IsZero() {
		t := r.hostActive
		p.LastActivity = &t
		if p.StopAfterSeconds > 0 {
			at := t.Add(time.Duration(p.StopAfterSeconds) * time.Second)
			p.StopsAt = &at
		}
	}
	return p
}

// SetIdle sets the host idle policy; the clock starts again now.
func (r *runtime) SetIdle(p agentapi.IdlePolicy) (agentapi.IdlePolicy, error) {
	if p.StopAfterSeconds < 0 {
		return agentapi.IdlePolicy{}, perr(agentapi.CodeInvalid, "stop_after_seconds %d is negative", p.StopAfterSeconds)
	}
	r.mu.Lock()
	r.idle.StopAfterSeconds = p.StopAfterSeconds
	r.hostActive, r.dirty = r.now(), true
	r.mu.Unlock()
	if err := r.saveState(); err != nil {
		return agentapi.IdlePolicy{}, err
	}
	return r.Idle(), nil
}

// Resources reports the host's capacity and its projects' use of it:
// the running projects as podman lists them now, or with known as the
// agent knows them (see promised: no podman command, but it may count a
// project whose container exited by itself since).
func (r *runtime) Resources(ctx context.Context, storageInfo agentapi.Storage, known bool) (agentapi.Resources, error) {
	res := agentapi.Resources{CPUs: goruntime.NumCPU(), GPUs: r.gpuN, GPUPassthrough: r.gpus, GPUNote: r.gpuNote, Storage: storageInfo}
	caps := r.st.Capabilities()
	res.Snapshots, res.Quotas = caps.Snapshots, caps.Quotas
	total, avail, err := meminfo()
	if err != nil {
		return res, err
	}
	res.MemoryTotalBytes, res.MemoryAvailableBytes = total, avail
	running, err := r.runningNow(ctx, !known)
	if err != nil {
		return res, err
	}
	res.RunningProjects, res.RunningMemory = len(running), map[string]int64{}
	for id, l := range running {
		res.MemoryCommittedBytes += l.MemoryBytes
		res.CPUsCommitted += l.CPUs
		res.RunningMemory[id] = l.MemoryBytes
	}
	ids, err := r.st.List()
	if err != nil {
		return res, err
	}
	res.ProjectsOnDisk = len(ids)
	return res, nil
}

// listRunning asks podman for the limits of each running project.
func (r *runtime) listRunning(ctx context.Context) (map[string]agentapi.Limits, error) {
	cs, err := r.containers(ctx)
	if err != nil {
		return nil, err
	}
	return runningOf(cs), nil
}

// runningOf is the limits of each running container of cs.
func runningOf(cs map[string]podman.Container) map[string]agentapi.Limits {
	running := map[string]agentapi.Limits{}
	for id, c := range cs {
		if c.Running() {
			var sl specLabel
			json.Unmarshal([]byte(c.Labels[podman.LabelSpec]), &sl) //nolint:errcheck // no label: no limits
			running[id] = sl.Limits
		}
	}
	return running
}

// meminfo reads MemTotal and MemAvailable.
func meminfo() (total, avail int64, err error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(fs[1], 10, 64)
		if err != nil {
			continue
		}
		switch fs[0] {
		case "MemTotal:":
			total = kb << 10
		case "MemAvailable:":
			avail = kb << 10
		}
	}
	if total == 0 {
		return 0, 0, errors.New("/proc/meminfo has no MemTotal")
	}
	return total, avail, nil
}

// storageStatus is the pool's space, as in the status API.
func storageStatus(cfg agentapi.Config) (agentapi.Storage, error) {
	s := agentapi.Storage{Kind: cfg.StorageKind, Path: cfg.PoolPath}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(cfg.PoolPath, &fs); err != nil {
		return s, fmt.Errorf("statfs %s: %w", cfg.PoolPath, err)
	}
	s.FreeBytes = fs.Bavail * uint64(fs.Bsize)
	s.TotalBytes = fs.Blocks * uint64(fs.Bsize)
	if cfg.StorageKind == agentapi.StorageDirectory {
		s.Note = agentapi.DirectoryNote
	}
	return s, nil
}
