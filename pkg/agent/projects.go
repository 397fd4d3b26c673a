package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
)

// The user every project runs as, and where its home is mounted.
const (
	ProjectUID  = 1000
	ProjectGID  = 1000
	ProjectHome = "/home/user"
	// ContainerPrefix starts every project container's name.
	ContainerPrefix = "cocalc-project-"
)

// initCommand is the container's first process: it reaps the processes
// that exec sessions leave behind and exits promptly on SIGTERM (a bare
// "sleep infinity" as PID 1 ignores SIGTERM, so every stop would wait for
// the kill timeout). Any image with /bin/sh and sleep can run it.
var initCommand = []string{"/bin/sh", "-c", `trap "exit 0" TERM INT HUP; while :; do sleep 86400 & wait $!; done`}

// stopGrace is how long a project's processes get between SIGTERM and
// SIGKILL when it stops.
const stopGrace = 5 * time.Second

// projectError is an error with an API code.
type projectError struct {
	code string
	msg  string
}

func (e *projectError) Error() string { return e.msg }

func perr(code, format string, args ...any) error {
	return &projectError{code: code, msg: fmt.Sprintf(format, args...)}
}

// codeOf maps errors to API codes.
func codeOf(err error) string {
	var pe *projectError
	switch {
	case errors.As(err, &pe):
		return pe.code
	case errors.Is(err, storage.ErrInvalid):
		return agentapi.CodeInvalid
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, podman.ErrNotFound):
		return agentapi.CodeNotFound
	case errors.Is(err, storage.ErrExists):
		return agentapi.CodeConflict
	case errors.Is(err, storage.ErrUnsupported):
		return agentapi.CodeUnsupported
	}
	return agentapi.CodeInternal
}

// specLabel is what a container's LabelSpec holds: what it was started
// with, read back by an agent that restarts.
type specLabel struct {
	Limits             agentapi.Limits `json:"limits"`
	IdleTimeoutSeconds int64           `json:"idle_timeout_seconds"`
	GPUs               bool            `json:"gpus,omitempty"`
}

// activity is what the agent tracks about a project between checks.
type activity struct {
	last          time.Time
	cpu           time.Duration
	cpuValid      bool
	sessions      int
	stoppedReason string
	lastAuto      time.Time // last scheduled snapshot
}

// runtime runs the projects of one host.
type runtime struct {
	hostID string
	log    *slog.Logger
	st     *storage.Manager
	pm     *podman.Podman
	cache  string
	now    func() time.Time

	gpus    bool
	gpuN    int
	gpuNote string
	// podmanRT is how podman runs containers here, probed at start.
	podmanRT podman.Runtime

	// startMu makes a start's memory check and the container's start one
	// step (taken after the project's own lock).
	startMu sync.Mutex
	mu      sync.Mutex
	// running holds the limits of each project container the agent
	// knows to run (promised); nil until podman was first asked.
	running map[string]agentapi.Limits
	// seen is each project's container as podman last described it, for
	// a halt and an ingress that must not wait for podman.
	seen  map[string]seenContainer
	locks map[string]*sync.Mutex
	act   map[string]*activity
	// hostActive is when some project was last active, for the host's
	// own idle stop.
	hostActive time.Time
	idle       agentapi.IdlePolicy
	statePath  string
	dirty      bool
	// netnsLookups asks podman once per project at a time for the
	// ingress (netns_linux.go).
	netnsLookups singleflight.Group
}

// seenContainer is a project's container as podman last described it: its
// id and first process, and that process's network namespace inode, read
// right after (0 when not running). A pid that has gone, or was reused by
// a process elsewhere, no longer shows that inode (nor is in the
// container's cgroup, which podman.KillAll checks), so a stale record can
// never lead into another container.
type seenContainer struct {
	podman.Container
	netns uint64
}

func newRuntime(ctx context.Context, cfg agentapi.Config, log *slog.Logger) (*runtime, error) {
	kind := storage.KindDirectory
	if cfg.StorageKind == agentapi.StorageBtrfs {
		kind = storage.KindBtrfs
	}
	st, err := storage.New(cfg.PoolPath, kind, storage.Owner{UID: ProjectUID, GID: ProjectGID})
	if err != nil {
		return nil, err
	}
	pm, err := podman.New(cfg.Podman)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	r := &runtime{
		hostID: cfg.HostID, log: log, st: st, pm: pm, cache: cfg.ImageCacheDir, now: time.Now,
		locks: map[string]*sync.Mutex{}, act: map[string]*activity{},
		statePath: filepath.Join(cfg.PoolPath, ".cocalc-agent", "state.json"),
	}
	// Once per start: what runs a container depends on the machine
	// (its hard rlimits, its cgroups, the runtimes installed), not on
	// the project. Projects fail to start without it; status says why.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	r.podmanRT = pm.Probe(pctx)
	cancel()
	pm.Use(r.podmanRT)
	if r.podmanRT.Error != "" {
		log.Warn("no podman settings run a container", "err", r.podmanRT.Error)
	} else {
		log.Info("podman settings", "source", r.podmanRT.Source, "runtime", r.podmanRT.Runtime, "cgroup_manager", r.podmanRT.CgroupManager, "ulimits", strings.Join(r.podmanRT.Ulimits, " "))
	}
	r.gpus, r.gpuN, err = podman.GPUPassthrough("/dev", podman.CDIDirs)
	if err != nil {
		// Projects still run, without GPUs; status says why.
		r.gpuNote = err.Error()
		log.Warn("GPUs not passed to projects", "err", err)
	}
	return r, nil
}

func containerName(id string) string { return ContainerPrefix + id }

// lock serializes actions on one project inside this agent (the control
// plane serializes them too, but exec and the idle loop come from here).
func (r *runtime) lock(id string) func() {
	r.mu.Lock()
	l := r.locks[id]
	if l == nil {
		l = &sync.Mutex{}
		r.locks[id] = l
	}
	r.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (r *runtime) activityOf(id string) *activity {
	a := r.act[id]
	if a == nil {
		a = &activity{}
		r.act[id] = a
	}
	return a
}

// touch records activity of project id now.
func (r *runtime) touch(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.activityOf(id).last = now
	r.hostActive = now
	r.dirty = true
}

// containers returns this host's project containers by project id.
func (r *runtime) containers(ctx context.Context) (map[string]podman.Container, error) {
	cs, err := r.pm.List(ctx, podman.LabelHost+"="+r.hostID)
	if err != nil {
		return nil, err
	}
	out := map[string]podman.Container{}
	for _, c := range cs {
		id := c.Labels[podman.LabelProject]
		if storage.ValidID(id) && c.Name == containerName(id) {
			out[id] = c
		}
	}
	return out, nil
}

// container returns project id's container, or ErrNotFound.
func (r *runtime) container(ctx context.Context, id string) (podman.Container, error) {
	s, err := r.describe(ctx, id)
	return s.Container, err
}

// describe asks podman for project id's container and records it as seen.
func (r *runtime) describe(ctx context.Context, id string) (seenContainer, error) {
	c, err := r.pm.Get(ctx, containerName(id))
	if err != nil {
		return seenContainer{Container: c}, err
	}
	if c.Labels[podman.LabelHost] != r.hostID {
		return seenContainer{Container: c}, perr(agentapi.CodeConflict, "container %s belongs to host %s, not this host (%s); remove it with podman rm", c.Name, c.Labels[podman.LabelHost], r.hostID)
	}
	s := seenContainer{Container: c}
	if c.Running() && c.PID > 0 {
		s.netns, _ = netnsInode(c.PID) // 0: it stopped just now
	}
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[string]seenContainer{}
	}
	r.seen[id] = s
	r.mu.Unlock()
	return s, nil
}

// lastSeen is project id's container as podman last described it.
func (r *runtime) lastSeen(id string) (seenContainer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.seen[id]
	return s, ok
}

// rediscover adopts the project containers that run on this host, so that
// an agent that was killed and restarted knows them again.
func (r *runtime) rediscover(ctx context.Context) error {
	r.loadState()
	cs, err := r.containers(ctx)
	if err != nil {
		return fmt.Errorf("find project containers: %w", err)
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	// A host that (re)starts counts as active: its idle clock starts now,
	// or a host started again after an idle stop would stop at once.
	r.hostActive = now
	// What runs is known from here on (the first start need not ask).
	r.running = runningOf(cs)
	for id, c := range cs {
		a := r.activityOf(id)
		if c.Running() && a.last.IsZero() {
			// No record of its activity: count from now rather than stop
			// it at once.
			a.last = now
		}
		r.log.Info("found project container", "project", id, "container", c.ID[:12], "state", c.State)
	}
	return nil
}

// status describes project id; withDisk adds its disk usage (slower).
func (r *runtime) status(ctx context.Context, id string, c *podman.Container, withDisk bool) (agentapi.ProjectStatus, error) {
	ps := agentapi.ProjectStatus{ID: id, State: agentapi.ProjectAbsent}
	onDisk, err := r.st.Exists(id)
	if err != nil {
		return ps, err
	}
	if onDisk {
		ps.State = agentapi.ProjectStopped
	}
	if c != nil {
		ps.ContainerID, ps.Image = c.ID, c.Image
		var sl specLabel
		if json.Unmarshal([]byte(c.Labels[podman.LabelSpec]), &sl) == nil {
			ps.Limits, ps.IdleTimeoutSeconds, ps.GPUs = sl.Limits, sl.IdleTimeoutSeconds, sl.GPUs
		}
		if c.Running() {
			ps.State = agentapi.ProjectRunning
			t := c.StartedAt
			ps.StartedAt = &t
			if cpu, err := podman.CPUUsage(c.PID); err == nil {
				ps.CPUSeconds = cpu.Seconds()
			}
			if mem, err := podman.MemoryUsage(c.PID); err == nil {
				ps.MemoryBytes = mem
			}
			if n, err := podman.OOMKills(c.PID); err == nil {
				ps.OOMKills = n
			}
		}
	}
	r.mu.Lock()
	if a := r.act[id]; a != nil {
		if !a.last.IsZero() {
			t := a.last
			ps.LastActivity = &t
		}
		ps.Sessions = a.sessions
		if ps.State != agentapi.ProjectRunning {
			ps.StoppedReason = a.stoppedReason
		}
	}
	r.mu.Unlock()
	if withDisk && onDisk {
		u, err := r.st.Usage(ctx, id)
		if err != nil {
			return ps, err
		}
		ps.Disk = &agentapi.DiskUsage{UsedBytes: u.UsedBytes, QuotaBytes: u.QuotaBytes, ScratchBytes: u.ScratchBytes,
			ScratchQuotaBytes: u.ScratchQuotaBytes, Snapshots: u.Snapshots, Note: u.Note}
	}
	return ps, nil
}

// Status of one project, with disk usage.
func (r *runtime) Status(ctx context.Context, id string) (agentapi.ProjectStatus, error) {
	if err := storage.CheckID(id); err != nil {
		return agentapi.ProjectStatus{}, err
	}
	c, err := r.container(ctx, id)
	if errors.Is(err, podman.ErrNotFound) {
		return r.status(ctx, id, nil, true)
	}
	if err != nil {
		return agentapi.ProjectStatus{}, err
	}
	return r.status(ctx, id, &c, true)
}

// List every project on this host: on disk or with a container.
func (r *runtime) List(ctx context.Context) ([]agentapi.ProjectStatus, error) {
	cs, err := r.containers(ctx)
	if err != nil {
		return nil, err
	}
	ids, err := r.st.List()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := []agentapi.ProjectStatus{}
	add := func(id string) error {
		if seen[id] {
			return nil
		}
		seen[id] = true
		var cp *podman.Container
		if c, ok := cs[id]; ok {
			cp = &c
		}
		ps, err := r.status(ctx, id, cp, false)
		if err != nil {
			return err
		}
		out = append(out, ps)
		return nil
	}
	for _, id := range ids {
		if err := add(id); err != nil {
			return nil, err
		}
	}
	for id := range cs {
		if err := add(id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Create makes project id's storage (idempotent).
func (r *runtime) Create(ctx context.Context, id string, req agentapi.CreateProjectRequest) (agentapi.ProjectStatus, error) {
	if err := storage.CheckID(id); err != nil {
		return agentapi.ProjectStatus{}, err
	}
	if req.DiskBytes < 0 {
		return agentapi.ProjectStatus{}, perr(agentapi.CodeInvalid, "disk quota %d is negative", req.DiskBytes)
	}
	defer r.lock(id)()
	if err := r.st.Create(ctx, id, req.DiskBytes); err != nil {
		return agentapi.ProjectStatus{}, err
	}
	r.log.Info("project created", "project", id, "disk_bytes", req.DiskBytes)
	return r.status(ctx, id, nil, true)
}

// Delete stops project id and deletes its storage.
func (r *runtime) Delete(ctx context.Context, id string) error {
	if err := storage.CheckID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	// Hosts that share one podman (local hosts on one machine) each have
	// their own copy of a moved project: remove only this host's container.
	if _, err := r.container(ctx, id); err == nil || errors.Is(err, podman.ErrNotFound) {
		if err := r.pm.Remove(ctx, containerName(id), 0); err != nil {
			return fmt.Errorf("delete project %s: %w", id, err)
		}
	} else if codeOf(err) != agentapi.CodeConflict {
		return fmt.Errorf("delete project %s: %w", id, err)
	}
	if err := r.st.Delete(ctx, id); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.act, id)
	delete(r.running, id)
	delete(r.seen, id)
	r.dirty = true
	r.mu.Unlock()
	r.log.Info("project deleted", "project", id)
	return nil
}

// CheckImage refuses image names that could be taken for podman options.
func CheckImage(image string) error {
	if !agentapi.ValidImageName(image) {
		return perr(agentapi.CodeInvalid, "image name %q is not valid (letters, digits and ._/:@+- only, such as docker.io/library/debian:bookworm)", image)
	}
	return nil
}

// Start runs project id's container, or returns the one that runs.
//
// A start is on the path users wait on, so it asks podman nothing it can
// learn otherwise: `podman run` itself says whether the image is missing
// or the name is taken (then, and only then, the container is looked up),
// the quota is set only when it changed, and the memory promised to the
// running projects is what the agent knows (looked up again only before
// it refuses).
func (r *runtime) Start(ctx context.Context, id string, req agentapi.StartProjectRequest) (agentapi.ProjectStatus, error) {
	if err := storage.CheckID(id); err != nil {
		return agentapi.ProjectStatus{}, err
	}
	if err := CheckImage(req.Image); err != nil {
		return agentapi.ProjectStatus{}, err
	}
	l := req.Limits
	if l.MemoryBytes < 0 || l.CPUs < 0 || l.PidsLimit < 0 || l.DiskBytes < 0 || req.IdleTimeoutSeconds < 0 || req.MemoryOvercommit < 0 {
		return agentapi.ProjectStatus{}, perr(agentapi.CodeInvalid, "limits, idle timeout and memory overcommit must not be negative")
	}
	if l.MemoryBytes > 0 && l.MemoryBytes < 6<<20 {
		return agentapi.ProjectStatus{}, perr(agentapi.CodeInvalid, "memory limit %d bytes is below podman's minimum of 6 MiB", l.MemoryBytes)
	}
	defer r.lock(id)()
	if ok, err := r.st.Exists(id); err != nil {
		return agentapi.ProjectStatus{}, err
	} else if !ok {
		return agentapi.ProjectStatus{}, perr(agentapi.CodeNotFound, "project %s has no storage on this host; create it first", id)
	}
	if l.DiskBytes > 0 && r.st.Capabilities().Quotas {
		if err := r.st.SetQuota(ctx, id, l.DiskBytes); err != nil {
			return agentapi.ProjectStatus{}, err
		}
	}
	mounts := []podman.Mount{
		{Source: r.st.HomePath(id), Target: ProjectHome},
		{Source: r.st.ScratchPath(id), Target: "/scratch"},
	}
	if r.st.Capabilities().Snapshots {
		if err := r.prepareSnapshotsMount(id); err != nil {
			return agentapi.ProjectStatus{}, err
		}
		mounts = append(mounts, podman.Mount{Source: r.st.SnapshotDir(id), Target: ProjectHome + "/" + storage.SnapshotsDirName, ReadOnly: true})
	}
	hostname := req.Hostname
	if hostname == "" {
		hostname = "project-" + id[:8]
	}
	spec, _ := json.Marshal(specLabel{Limits: l, IdleTimeoutSeconds: req.IdleTimeoutSeconds, GPUs: r.gpus})
	rs := podman.RunSpec{
		Name: containerName(id), Image: req.Image, Hostname: hostname,
		Labels:      map[string]string{podman.LabelProject: id, podman.LabelHost: r.hostID, podman.LabelSpec: string(spec)},
		MemoryBytes: l.MemoryBytes, CPUs: l.CPUs, PidsLimit: l.PidsLimit,
		Mounts: mounts, User: fmt.Sprintf("%d:%d", ProjectUID, ProjectGID), Workdir: ProjectHome,
		Env:     []string{"HOME=" + ProjectHome, "COCALC_PROJECT_ID=" + id},
		GPUs:    r.gpus,
		Command: initCommand,
	}
	if req.Pull {
		// Before the start's lock: a pull may take minutes.
		if err := r.ensureImage(ctx, req.Image, true); err != nil {
			return agentapi.ProjectStatus{}, err
		}
	}
	// The memory check and the container's start are one step.
	r.startMu.Lock()
	defer r.startMu.Unlock()
	if err := r.checkMemory(ctx, id, l.MemoryBytes, req); err != nil {
		return agentapi.ProjectStatus{}, err
	}
	cid, running, err := r.run(ctx, id, rs)
	if err != nil {
		return agentapi.ProjectStatus{}, err
	}
	if running != nil {
		return r.status(ctx, id, running, false)
	}
	r.mu.Lock()
	a := r.activityOf(id)
	a.last, a.cpuValid, a.stoppedReason = r.now(), false, ""
	r.hostActive, r.dirty = a.last, true
	if r.running != nil {
		r.running[id] = l
	}
	r.mu.Unlock()
	r.log.Info("project started", "project", id, "image", req.Image, "memory", l.MemoryBytes, "cpus", l.CPUs)
	// What was just started, without asking podman again.
	started := r.now().UTC()
	ps := agentapi.ProjectStatus{ID: id, State: agentapi.ProjectRunning, ContainerID: cid, Image: req.Image, Limits: l,
		StartedAt: &started, LastActivity: &started, IdleTimeoutSeconds: req.IdleTimeoutSeconds, GPUs: r.gpus}
	return ps, nil
}

// prepareSnapshotsMount makes sure the mount point of ~/.snapshots is a
// real directory; the project may have replaced it with anything.
func (r *runtime) prepareSnapshotsMount(id string) error {
	root, err := os.OpenRoot(r.st.HomePath(id))
	if err != nil {
		return err
	}
	defer root.Close()
	st, err := root.Lstat(storage.SnapshotsDirName)
	if err == nil && st.IsDir() {
		return nil
	}
	if err == nil {
		if err := root.Remove(storage.SnapshotsDirName); err != nil {
			return fmt.Errorf("project %s: ~/.snapshots is not a directory and cannot be removed: %w", id, err)
		}
	}
	return root.Mkdir(storage.SnapshotsDirName, 0o755)
}

// run starts rs, project id's container. When the project's container
// runs already it returns that one instead, whatever its image.
func (r *runtime) run(ctx context.Context, id string, rs podman.RunSpec) (string, *podman.Container, error) {
	for tries := 0; ; tries++ {
		cid, err := r.pm.Start(ctx, rs)
		if err == nil {
			return cid, nil, nil
		}
		inUse, noImage := errors.Is(err, podman.ErrNameInUse), errors.Is(err, podman.ErrNoImage)
		if tries < 2 && (inUse || noImage) {
			c, lerr := r.container(ctx, id)
			switch {
			case lerr == nil && c.Running():
				return "", &c, nil
			case lerr == nil:
				// Exited by itself (its first process died, the host
				// rebooted): start afresh; the home is what persists.
				if err := r.pm.Remove(ctx, c.Name, 0); err != nil {
					return "", nil, err
				}
			case !errors.Is(lerr, podman.ErrNotFound):
				return "", nil, lerr
			}
			if noImage {
				return "", nil, r.pullImage(ctx, rs.Image, false)
			}
			continue
		}
		if !inUse {
			// A container that was created but did not start would block
			// the next start under the same name.
			r.pm.Remove(ctx, rs.Name, 0) //nolint:errcheck // runs to its end
		}
		// What fails the same way every time is not worth a retry: say
		// so, with the fix.
		if d, ok := podman.Diagnose(err); ok {
			code := agentapi.CodeInvalid
			if d.Problem == podman.ProblemPermission {
				code = agentapi.CodeUnsupported
			}
			return "", nil, perr(code, "start project %s: %v; %s", id, err, d.Fix)
		}
		return "", nil, fmt.Errorf("start project %s: %w", id, err)
	}
}

// ensureImage checks that image is on the host, pulling it if asked.
func (r *runtime) ensureImage(ctx context.Context, image string, pull bool) error {
	ok, err := r.pm.ImageExists(ctx, image)
	if err != nil || ok {
		return err
	}
	return r.pullImage(ctx, image, pull)
}

// pullImage fetches image, which is not on the host, if asked to.
func (r *runtime) pullImage(ctx context.Context, image string, pull bool) error {
	if !pull {
		return perr(agentapi.CodeNotFound, "image %s is not on this host; build one with `cocalc-hosts image build NAME --host HOST` or choose another --image", image)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := r.pm.Pull(pctx, image); err != nil {
		return perr(agentapi.CodeNotFound, "image %s is not on this host and cannot be pulled (%v); build one with `cocalc-hosts image build NAME --host HOST` or choose another --image", image, err)
	}
	return nil
}

// checkMemory refuses to start project id, whose limit is need, when
// the limits of the running projects (other than id) and need add up to
// more than the request's cap. Called under startMu.
func (r *runtime) checkMemory(ctx context.Context, id string, need int64, req agentapi.StartProjectRequest) error {
	limit := req.MemoryCapBytes
	if limit == 0 && req.MemoryOvercommit > 0 {
		total, _, err := meminfo()
		if err != nil {
			return err
		}
		limit = int64(float64(total) * req.MemoryOvercommit)
	}
	if limit == 0 {
		return nil
	}
	for fresh := false; ; fresh = true {
		running, err := r.promised(ctx, fresh)
		if err != nil {
			return err
		}
		delete(running, id)
		var promised int64
		for _, l := range running {
			promised += l.MemoryBytes
		}
		if promised+need <= limit {
			return nil
		}
		// What the agent knows may count a container that exited by
		// itself since: refuse only on what podman says now.
		if fresh {
			return perr(agentapi.CodeNoRoom,
				"no memory headroom: %d MiB of %d MiB is promised to %d running project(s) and this one needs %d MiB; stop a project, ask for less --memory, or use another host",
				promised>>20, limit>>20, len(running), need>>20)
		}
	}
}

// promised returns the limits of each running project: what the agent
// knows (podman's last answer, with the agent's starts and stops since),
// or with fresh podman's answer now. What the agent knows may count a
// container that exited by itself since, but never misses one that runs
// (only the agent starts its host's containers). Called under startMu,
// so no start changes it meanwhile.
func (r *runtime) promised(ctx context.Context, fresh bool) (map[string]agentapi.Limits, error) {
	r.mu.Lock()
	known := maps.Clone(r.running)
	r.mu.Unlock()
	if known != nil && !fresh {
		return known, nil
	}
	running, err := r.listRunning(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.running = maps.Clone(running)
	r.mu.Unlock()
	return running, nil
}

// runningNow is promised for callers outside a start.
func (r *runtime) runningNow(ctx context.Context, fresh bool) (map[string]agentapi.Limits, error) {
	if !fresh {
		r.mu.Lock()
		known := maps.Clone(r.running)
		r.mu.Unlock()
		if known != nil {
			return known, nil
		}
	}
	r.startMu.Lock()
	defer r.startMu.Unlock()
	return r.promised(ctx, true)
}

// Stop stops project id's container; reason is recorded ("" for a request).
func (r *runtime) Stop(ctx context.Context, id, reason string) (agentapi.ProjectStatus, error) {
	if err := storage.CheckID(id); err != nil {
		return agentapi.ProjectStatus{}, err
	}
	defer r.lock(id)()
	return r.stopLocked(ctx, id, reason)
}

func (r *runtime) stopLocked(ctx context.Context, id, reason string) (agentapi.ProjectStatus, error) {
	return r.ended(ctx, id, reason, func() error {
		if err := r.pm.Remove(ctx, containerName(id), stopGrace); err != nil {
			return fmt.Errorf("stop project %s: %w", id, err)
		}
		return nil
	})
}

// Halt ends every process of project id at once and returns when none is
// left, so that nothing in the project writes to its home any more; its
// container stays, exited, until a stop removes it. The processes fare
// as in a stop (there the container's first process exits on SIGTERM and
// the kernel kills the rest), but a halt takes milliseconds through the
// container's cgroup where podman takes most of a second: a move's
// cut-over halts the project, and removes the container while the last
// changes are sent. Where the cgroup cannot do it (no cgroup v2
// cgroup.kill), a halt is a stop.
func (r *runtime) Halt(ctx context.Context, id string) (agentapi.ProjectStatus, error) {
	if err := storage.CheckID(id); err != nil {
		return agentapi.ProjectStatus{}, err
	}
	defer r.lock(id)()
	halted := func(err error) (agentapi.ProjectStatus, error) {
		return r.ended(ctx, id, "", func() error {
			if err != nil {
				return fmt.Errorf("halt project %s: %w", id, err)
			}
			return nil
		})
	}
	// First with the container as podman last described it (a move asks
	// for the project's status just before), which KillAll checks
	// against its process's cgroup.
	if s, ok := r.lastSeen(id); ok && s.Running() {
		if err := podman.KillAll(ctx, s.Container); !errors.Is(err, podman.ErrNoCgroupKill) {
			return halted(err)
		}
	}
	// Then as podman describes it now.
	c, err := r.container(ctx, id)
	switch {
	case errors.Is(err, podman.ErrNotFound):
		return r.status(ctx, id, nil, false)
	case err != nil:
		return agentapi.ProjectStatus{}, err
	case !c.Running():
		return r.status(ctx, id, &c, false)
	}
	err = podman.KillAll(ctx, c)
	if !errors.Is(err, podman.ErrNoCgroupKill) {
		return halted(err)
	}
	r.log.Info("halting the project with a stop", "project", id, "why", err)
	return r.stopLocked(ctx, id, "")
}

// ended records that project id's processes ended by end (a stop or a
// halt), for reason ("" for a request).
func (r *runtime) ended(ctx context.Context, id, reason string, end func() error) (agentapi.ProjectStatus, error) {
	// The reason is recorded first: while its container goes, the project
	// already shows as not running, and whoever asks then must learn why.
	r.mu.Lock()
	a := r.activityOf(id)
	prev := a.stoppedReason
	a.stoppedReason = reason
	r.mu.Unlock()
	if err := end(); err != nil {
		r.mu.Lock()
		a.stoppedReason = prev
		r.mu.Unlock()
		return agentapi.ProjectStatus{}, err
	}
	r.mu.Lock()
	a.sessions = 0
	r.dirty = true
	delete(r.running, id)
	delete(r.seen, id)
	r.mu.Unlock()
	r.log.Info("project stopped", "project", id, "reason", orString(reason, "request"))
	return r.status(ctx, id, nil, false)
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// StopAll stops every project container of this host.
func (r *runtime) StopAll(ctx context.Context, reason string) error {
	cs, err := r.containers(ctx)
	if err != nil {
		return err
	}
	// In parallel: a host stops within its agent's stop timeout only if
	// its projects do not stop one after another.
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
	)
	for id := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := r.Stop(ctx, id, reason); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// SetQuota changes project id's disk quota.
func (r *runtime) SetQuota(ctx context.Context, id string, bytes int64) error {
	if err := storage.CheckID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	return r.st.SetQuota(ctx, id, bytes)
}

// Snapshot snapshots project id; an empty name gets a time-based one.
func (r *runtime) Snapshot(ctx context.Context, id, name string) (agentapi.Snapshot, error) {
	if name == "" {
		name = "snap-" + r.now().UTC().Format("20060102T150405Z")
	}
	if strings.HasPrefix(name, storage.AutoPrefix) {
		return agentapi.Snapshot{}, perr(agentapi.CodeInvalid, "snapshot names starting with %q are reserved for scheduled snapshots", storage.AutoPrefix)
	}
	if err := storage.CheckID(id); err != nil {
		return agentapi.Snapshot{}, err
	}
	defer r.lock(id)()
	s, err := r.st.Snapshot(ctx, id, name)
	if err != nil {
		return agentapi.Snapshot{}, err
	}
	return agentapi.Snapshot(s), nil
}

// Snapshots lists project id's snapshots.
func (r *runtime) Snapshots(ctx context.Context, id string) ([]agentapi.Snapshot, error) {
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	// Under the project's lock: a scheduled snapshot and its pruning are
	// one step to whoever lists.
	defer r.lock(id)()
	ss, err := r.st.Snapshots(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]agentapi.Snapshot, len(ss))
	for i, s := range ss {
		out[i] = agentapi.Snapshot(s)
	}
	return out, nil
}

// DeleteSnapshot deletes one snapshot of project id.
func (r *runtime) DeleteSnapshot(ctx context.Context, id, name string) error {
	if err := storage.CheckID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	return r.st.DeleteSnapshot(ctx, id, name)
}

// Restore restores a path of project id from a snapshot.
func (r *runtime) Restore(ctx context.Context, id string, req agentapi.RestoreRequest) (agentapi.RestoreResult, error) {
	if err := storage.CheckID(id); err != nil {
		return agentapi.RestoreResult{}, err
	}
	defer r.lock(id)()
	safety, err := r.st.Restore(ctx, id, req.Snapshot, req.Path)
	res := agentapi.RestoreResult{SafetySnapshot: safety.Name}
	if err != nil {
		return res, err
	}
	r.log.Info("project restored", "project", id, "snapshot", req.Snapshot, "path", req.Path, "safety", safety.Name)
	return res, nil
}
