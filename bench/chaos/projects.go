package main

// Project mode (--projects N): the same kill-anywhere loop for project
// actions on real local hosts. Each host is the local provider's: a btrfs
// pool on a loop device, an agent process, podman containers. Projects go
// through the project service (create, start, snapshot, stop, start,
// delete --purge, or a prefix of that; with two hosts, moves too) while a random worker holding a job
// is SIGKILLed and, separately, a host's agent is SIGKILLed and brought
// back the way the product brings it back (`stop HOST`, `start HOST`).
// Then, with the kills off, it waits until every check passes (or the
// deadline): each project in its requested state on both sides (database
// and agent), none in a transitional state, no container without a live
// running project, no subvolume or qgroup on a pool without a live
// project, no job queued or running.

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/providers/local"
)

// projReport is the JSON printed at the end of a project-mode run.
type projReport struct {
	OK       bool              `json:"ok"`
	Machine  map[string]any    `json:"machine"`
	Settings map[string]any    `json:"settings"`
	Totals   projCounts        `json:"totals"`
	Converge map[string]string `json:"converge_seconds"`
	Runs     []projRunReport   `json:"runs"`
}

type projRunReport struct {
	Run int  `json:"run"`
	OK  bool `json:"ok"`
	// DriveSeconds is how long the plans took with the kills on;
	// ConvergeSeconds how long after that every check passed.
	DriveSeconds    float64    `json:"drive_seconds"`
	ConvergeSeconds float64    `json:"converge_seconds"`
	Counts          projCounts `json:"counts"`
	Problems        []string   `json:"problems,omitempty"`
	Dir             string     `json:"dir,omitempty"`
}

// projCounts are what a run did and what its checks found; the checks
// (from NotConverged on) must all be 0.
type projCounts struct {
	Projects    int `json:"projects"`
	ActionsDone int `json:"actions_done"`
	WorkerKills int `json:"worker_kills"`
	AgentKills  int `json:"agent_kills"`
	// RestartedAfterHostStop: projects asked to start again after their
	// host's stop (following an agent kill) stopped them, as a user would.
	RestartedAfterHostStop int `json:"restarted_after_host_stop"`
	FailedAndAsked         int `json:"actions_failed_then_asked_again"`
	SubmitErrors           int `json:"submit_errors_retried"`
	MaxAttempts            int `json:"max_attempts_of_a_job"`
	Containers             int `json:"containers_at_end"`
	Subvolumes             int `json:"subvolumes_at_end"`
	Qgroups                int `json:"qgroups_at_end"`

	NotConverged      int `json:"projects_not_converged"`
	Transitional      int `json:"projects_in_transitional_state"`
	LeakedContainers  int `json:"leaked_containers"`
	MissingContainers int `json:"missing_containers"`
	LeakedSubvolumes  int `json:"leaked_subvolumes"`
	MissingSubvolumes int `json:"missing_subvolumes"`
	LeakedQgroups     int `json:"leaked_qgroups"`
	// LeakedNetns: network namespaces made during the run that no
	// process is in (podman's of containers gone).
	LeakedNetns      int `json:"leaked_network_namespaces"`
	MissingSnapshots int `json:"missing_snapshots"`
	JobsStillActive  int `json:"jobs_still_active"`
}

func (c *projCounts) add(d projCounts) {
	c.Projects += d.Projects
	c.ActionsDone += d.ActionsDone
	c.WorkerKills += d.WorkerKills
	c.AgentKills += d.AgentKills
	c.RestartedAfterHostStop += d.RestartedAfterHostStop
	c.FailedAndAsked += d.FailedAndAsked
	c.SubmitErrors += d.SubmitErrors
	c.MaxAttempts = max(c.MaxAttempts, d.MaxAttempts)
	c.Containers += d.Containers
	c.Subvolumes += d.Subvolumes
	c.Qgroups += d.Qgroups
	c.NotConverged += d.NotConverged
	c.Transitional += d.Transitional
	c.LeakedContainers += d.LeakedContainers
	c.MissingContainers += d.MissingContainers
	c.LeakedSubvolumes += d.LeakedSubvolumes
	c.MissingSubvolumes += d.MissingSubvolumes
	c.LeakedQgroups += d.LeakedQgroups
	c.LeakedNetns += d.LeakedNetns
	c.MissingSnapshots += d.MissingSnapshots
	c.JobsStillActive += d.JobsStillActive
}

func (c projCounts) failures() int {
	return c.NotConverged + c.Transitional + c.LeakedContainers + c.MissingContainers + c.LeakedSubvolumes +
		c.MissingSubvolumes + c.LeakedQgroups + c.LeakedNetns + c.MissingSnapshots + c.JobsStillActive
}

// snapshotName is the snapshot a plan's snapshot step asks for.
const snapshotName = "chaos"

// projectPlans are the sequences a project goes through; each is a prefix
// of create → start → snapshot → stop → start → delete, or create →
// delete.
var projectPlans = [][]model.Action{
	{model.ActionProjectCreate},
	{model.ActionProjectCreate, model.ActionProjectStart},
	{model.ActionProjectCreate, model.ActionProjectStart, model.ActionProjectSnapshot},
	{model.ActionProjectCreate, model.ActionProjectStart, model.ActionProjectSnapshot, model.ActionProjectStop},
	{model.ActionProjectCreate, model.ActionProjectStart, model.ActionProjectSnapshot, model.ActionProjectStop, model.ActionProjectStart},
	{model.ActionProjectCreate, model.ActionProjectStart, model.ActionProjectSnapshot, model.ActionProjectStop, model.ActionProjectStart, model.ActionProjectDelete},
	{model.ActionProjectCreate, model.ActionProjectDelete},
}

// movePlans are added with two hosts or more: a move to another host
// (with the snapshot, running or stopped).
var movePlans = [][]model.Action{
	{model.ActionProjectCreate, model.ActionProjectStart, model.ActionProjectSnapshot, model.ActionProjectMove, model.ActionProjectStop},
	{model.ActionProjectCreate, model.ActionProjectMove, model.ActionProjectStart},
}

// projPlan is one project's sequence of actions and where it is in it.
type projPlan struct {
	host  string // the host's name
	id    string // "" until created (again, after a create failed for good)
	steps []model.Action
	step  int
	job   string
	// purging: a failed create left its record (in error); it is being
	// deleted with --purge before the create is asked again.
	purging bool
}

func (p *projPlan) finished() bool { return p.step == len(p.steps) }

// want is the state the plan leaves the project in ("" when deleted).
func (p *projPlan) want() model.ProjectState {
	s := model.ProjectStopped
	for _, a := range p.steps {
		switch a {
		case model.ActionProjectStart:
			s = model.ProjectRunning
		case model.ActionProjectStop:
			s = model.ProjectStopped
		case model.ActionProjectDelete:
			s = ""
		}
	}
	return s
}

func (p *projPlan) snapshots() bool {
	for _, a := range p.steps {
		if a == model.ActionProjectSnapshot {
			return true
		}
	}
	return false
}

// runProjects runs project mode; pkg is the package path of the binary
// (relative to the working directory); progress lines go to log.
func runProjects(ctx context.Context, o options, pkg string, log io.Writer) (*projReport, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("project mode needs root: local hosts mount btrfs pools and run podman with cgroup limits")
	}
	tmp, err := os.MkdirTemp("", "cocalc-hosts-chaos-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if !o.keep {
			os.RemoveAll(tmp)
		}
	}()
	bin, err := buildInto(ctx, tmp, pkg, log)
	if err != nil {
		return nil, err
	}
	pg, err := pgtest.Start()
	if err != nil {
		return nil, fmt.Errorf("throwaway Postgres: %w (scripts/install-deps.sh installs postgresql)", err)
	}
	defer pg.Stop()
	// One podman store for every run and host: the project image is
	// built into it once.
	pm, err := newPodmanStore(tmp)
	if err != nil {
		return nil, err
	}
	defer pm.remove()

	load, _ := os.ReadFile("/proc/loadavg")
	rep := &projReport{OK: true,
		Machine: map[string]any{"cpus": numCPU(), "load_average_at_start": strings.Join(strings.Fields(string(load))[:3], " ")},
		Settings: map[string]any{"runs": o.runs, "projects": o.projects, "local_hosts": o.localHosts, "worker_kills": o.kills,
			"agent_kills": o.agentKills, "workers": o.workers, "concurrency": o.concurrency, "lease": o.lease.String(),
			"kill_every": o.killEvery.String(), "agent_kill_every": o.agentKillEvery.String(), "project_sync": o.syncEvery.String(),
			"max_attempts": o.maxAttempts, "backoff": backoff()},
	}
	var times []float64
	for r := 1; r <= o.runs; r++ {
		dir := filepath.Join(tmp, fmt.Sprintf("run%03d", r))
		rr, err := oneProjectRun(ctx, o, pg, pm, bin, dir, r, log)
		if err != nil {
			return rep, fmt.Errorf("run %d: %w", r, err)
		}
		if !rr.OK {
			rep.OK = false
			if o.keep {
				rr.Dir = dir
			}
		}
		rep.Totals.add(rr.Counts)
		rep.Runs = append(rep.Runs, rr)
		times = append(times, rr.ConvergeSeconds)
		fmt.Fprintf(log, "chaos: run %d/%d: ok=%v, %d actions, %d worker and %d agent kills, driven in %.1fs, converged %.1fs later%s\n",
			r, o.runs, rr.OK, rr.Counts.ActionsDone, rr.Counts.WorkerKills, rr.Counts.AgentKills, rr.DriveSeconds, rr.ConvergeSeconds, problemsLine(rr.Problems))
	}
	sort.Float64s(times)
	rep.Converge = map[string]string{"p50": fmt.Sprintf("%.1f", times[(len(times)-1)/2]), "max": fmt.Sprintf("%.1f", times[len(times)-1])}
	load, _ = os.ReadFile("/proc/loadavg")
	rep.Machine["load_average_at_end"] = strings.Join(strings.Fields(string(load))[:3], " ")
	return rep, nil
}

// podmanStore is the local hosts' podman store (providers.local.podman_store).
type podmanStore struct {
	conf, dir string
	pm        *podman.Podman
	runRoot   string
}

func newPodmanStore(tmp string) (*podmanStore, error) {
	conf := filepath.Join(tmp, "containers.conf")
	if err := os.WriteFile(conf, []byte(podmantest.ContainersConf), 0o644); err != nil {
		return nil, err
	}
	rt, err := config.RuntimeDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(tmp, "podman")
	pc := local.PodmanStore(dir, rt)
	pc.ContainersConf = conf
	pm, err := podman.New(pc)
	if err != nil {
		return nil, err
	}
	return &podmanStore{conf: conf, dir: dir, pm: pm, runRoot: pc.RunRoot}, nil
}

// removeContainers removes every container of the store.
func (s *podmanStore) removeContainers() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.pm.Run(ctx, "rm", "-a", "-f", "-t", "0") //nolint:errcheck // best effort at the end
	// conmon finishes a removed container's clean-up (its network
	// namespace among it) a moment after podman rm returns; the store
	// must stay until then.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && s.busy(); {
		time.Sleep(50 * time.Millisecond)
	}
}

// busy reports whether a process (conmon, podman) still uses the store.
func (s *podmanStore) busy() bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && (strings.Contains(string(b), s.runRoot) || strings.Contains(string(b), s.dir+"/")) {
			return true
		}
	}
	return false
}

// remove removes the store: containers, images, mounts, files.
func (s *podmanStore) remove() {
	s.removeContainers()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.pm.Run(ctx, "rmi", "-a", "-f") //nolint:errcheck
	podmantest.UnmountUnder(s.dir)
	podmantest.UnmountUnder(s.runRoot)
	os.RemoveAll(s.dir)
	os.RemoveAll(s.runRoot)
}

func writeProjectConfig(path, db string, o options, pm *podmanStore) error {
	// A moved project's old copy goes at once (a job of its own), so
	// that the pools hold only live projects when the run ends.
	cfg := fmt.Sprintf("db: %s\naccount: chaos\nworker:\n  max_attempts: %d\nmoves:\n  keep_source: 0s\nproviders:\n  local:\n    storage: btrfs\n"+
		"    containers_conf: %s\n    podman_store: %s\n    image_cache_dir: %s\n    snapshot_interval: \"0\"\n",
		db, o.maxAttempts, pm.conf, pm.dir, podmantest.CacheDir)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// cli runs the binary with the run's config and returns its output.
func cli(ctx context.Context, bin, cfg string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, append([]string{"--config", cfg}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cocalc-hosts %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// localHostsDir is where the local provider keeps its hosts (under
// XDG_STATE_HOME, which buildInto set).
func localHostsDir() string {
	return filepath.Join(os.Getenv("XDG_STATE_HOME"), "cocalc-hosts", "providers", "local", "local-hosts")
}

func oneProjectRun(ctx context.Context, o options, pg *pgtest.Cluster, pm *podmanStore, bin, dir string, r int, log io.Writer) (projRunReport, error) {
	rr := projRunReport{Run: r}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return rr, err
	}
	db, drop, err := runDatabase(pg, "projchaos", r)
	if err != nil {
		return rr, err
	}
	defer drop()
	cfg := filepath.Join(dir, "chaos.yaml")
	if err := writeProjectConfig(cfg, db, o, pm); err != nil {
		return rr, err
	}
	// Whatever the run leaves (it may fail anywhere) goes: agents, pools,
	// loop devices, containers.
	defer cleanupLocalHosts(pm)
	netnsBefore, err := podmantest.NetworkNamespaces()
	if err != nil {
		return rr, err
	}

	// The hosts and the image, before any kill (`create` and `image
	// build` run their jobs themselves when no worker runs).
	names := make([]string, o.localHosts)
	for i := range names {
		names[i] = fmt.Sprintf("lh%d", i+1)
		if _, err := cli(ctx, bin, cfg, "create", "--cloud", "local", "--name", names[i]); err != nil {
			return rr, err
		}
	}
	fmt.Fprintln(log, "chaos: building the project image (from the cached root filesystem when there is one)")
	if _, err := cli(ctx, bin, cfg, "image", "build", "cocalc-base", "--host", names[0]); err != nil {
		return rr, err
	}

	a, err := openApp(cfg)
	if err != nil {
		return rr, err
	}
	defer a.Close()
	hsvc, err := a.Hosts(ctx)
	if err != nil {
		return rr, err
	}
	psvc, err := a.Projects(ctx)
	if err != nil {
		return rr, err
	}
	st, err := a.Store(ctx)
	if err != nil {
		return rr, err
	}

	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(r)))
	plans := projectPlans
	if len(names) > 1 {
		plans = append(append([][]model.Action{}, projectPlans...), movePlans...)
	}
	ps := make([]*projPlan, o.projects)
	for i := range ps {
		ps[i] = &projPlan{host: names[i%len(names)], steps: plans[rng.IntN(len(plans))]}
	}

	ws := &workers{bin: bin, cfg: cfg, dir: dir, lease: o.lease, concurrency: o.concurrency,
		args: []string{"--reconcile-interval", "0", "--project-sync-interval", o.syncEvery.String()}}
	defer ws.stopAll()
	if err := ws.startN(o.workers); err != nil {
		return rr, err
	}
	start := time.Now()
	killCtx, stopKills := context.WithCancel(ctx)
	workerKills, agentKills := make(chan int), make(chan int)
	go func() { workerKills <- ws.killLoop(killCtx, st, rng.Uint64(), o.kills, o.killEvery) }()
	ak := &agentKiller{hosts: hsvc, st: st, names: names, rng: mrand.New(mrand.NewPCG(rng.Uint64(), 7))}
	go func() { agentKills <- ak.loop(killCtx, o.agentKills, o.agentKillEvery) }()

	deadline := start.Add(o.deadline)
	derr := driveProjects(ctx, psvc, st, ps, names, deadline, &rr.Counts)
	stopKills()
	rr.Counts.WorkerKills, rr.Counts.AgentKills = <-workerKills, <-agentKills
	if ak.err != nil && derr == nil {
		derr = ak.err
	}
	rr.DriveSeconds = time.Since(start).Seconds()
	if ws.err != nil {
		return rr, ws.err
	}
	if derr != nil {
		rr.Problems = append(rr.Problems, derr.Error())
	}

	// With the kills off (the workers keep running: the project sync is
	// one of their duties), wait until every check passes.
	settled := time.Now()
	for {
		rr.Counts.RestartedAfterHostStop += restartStopped(ctx, psvc, st, ps)
		rr.Problems = rr.Problems[:min(len(rr.Problems), btoi(derr != nil))]
		c := rr.Counts
		if err := checkProjects(ctx, st, pm, ps, &c, func(format string, args ...any) {
			if len(rr.Problems) < 12 {
				rr.Problems = append(rr.Problems, fmt.Sprintf(format, args...))
			}
		}); err != nil {
			return rr, err
		}
		if c.failures() == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			rr.Counts = c
			break
		}
		time.Sleep(500 * time.Millisecond) // a poll of the end state, not a wait for something to happen
	}
	rr.ConvergeSeconds = time.Since(settled).Seconds()
	ws.stopAll()
	// The projects left running have their processes: a namespace with
	// none is one podman left behind. It is reported, then removed.
	left, err := podmantest.LeftNetworkNamespaces(netnsBefore, 15*time.Second)
	if err != nil {
		return rr, err
	}
	rr.Counts.LeakedNetns = len(left)
	for _, n := range left {
		rr.Problems = append(rr.Problems, fmt.Sprintf("network namespace %s left behind with no process (removed now)", n))
	}
	podmantest.RemoveNetworkNamespaces(left)
	rr.OK = rr.Counts.failures() == 0 && derr == nil
	return rr, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// driveProjects submits each project's actions in turn until every plan
// is done or the deadline passes. Progress is read from the jobs table.
func driveProjects(ctx context.Context, svc *projects.Service, st store.Store, ps []*projPlan, hostNames []string, deadline time.Time, c *projCounts) error {
	c.Projects = len(ps)
	caller := projects.Caller{Account: chaosAccount}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		jobs, err := st.ListJobs(ctx, store.JobFilter{})
		if err != nil {
			return err
		}
		byID := make(map[string]model.Job, len(jobs))
		for _, j := range jobs {
			byID[j.ID] = j
		}
		left := 0
		for _, p := range ps {
			if p.finished() {
				continue
			}
			if p.job != "" {
				switch j := byID[p.job]; j.State {
				case model.JobDone:
					p.job = ""
					if p.purging {
						p.purging, p.id = false, ""
					} else {
						p.step++
					}
					if p.finished() {
						continue
					}
				case model.JobFailed:
					c.FailedAndAsked++
					p.job = ""
					if j.Action == model.ActionProjectCreate {
						// A create that fails for good removes its
						// record, or keeps it (in error) when what it
						// made could not be removed: then it is purged
						// before the create is asked again.
						if _, err := st.GetProject(ctx, p.id); errkind.Is(err, errkind.NotFound) {
							p.id = ""
						} else {
							p.purging = true
						}
					}
				default:
					left++
					continue
				}
			}
			left++
			if err := submitProject(ctx, svc, caller, p, hostNames); err != nil {
				c.SubmitErrors++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d projects had not finished their plans by the deadline", left, len(ps))
		}
		time.Sleep(100 * time.Millisecond) // a poll of the jobs table
	}
}

// nextHost is the name of the host after the project's own in hostNames.
func nextHost(ctx context.Context, svc *projects.Service, p *projPlan, hostNames []string) (string, error) {
	rec, err := svc.Store.GetProject(ctx, p.id)
	if err != nil {
		return "", err
	}
	h, err := svc.Store.GetHost(ctx, rec.HostID)
	if err != nil {
		return "", err
	}
	for i, n := range hostNames {
		if n == h.Name {
			return hostNames[(i+1)%len(hostNames)], nil
		}
	}
	return "", fmt.Errorf("project %s is on host %s, not one of the run's", p.id, h.Name)
}

// restartStopped asks to start, as a user would, each project its plan
// left running but which is stopped with nothing pending: a host's stop
// (the harness's after an agent kill) stops its projects, as a VM's stop
// does, and its start does not start them again. It returns how many it
// asked for.
func restartStopped(ctx context.Context, svc *projects.Service, st store.Store, ps []*projPlan) int {
	n := 0
	for _, pl := range ps {
		if pl.id == "" || pl.want() != model.ProjectRunning {
			continue
		}
		p, err := st.GetProject(ctx, pl.id)
		if err != nil || p.State != model.ProjectStopped {
			continue
		}
		if sub, err := svc.Start(ctx, projects.Caller{Account: chaosAccount}, pl.id); err == nil && sub.Job != nil {
			n++
		}
	}
	return n
}

// chaosAccount owns the run's hosts and projects.
const chaosAccount = "chaos"

// submitProject asks for the project's current step as a user would.
func submitProject(ctx context.Context, svc *projects.Service, caller projects.Caller, p *projPlan, hostNames []string) error {
	var sub projects.Submitted
	var err error
	switch a := p.steps[p.step]; {
	case p.purging || (a == model.ActionProjectDelete):
		sub, err = svc.Delete(ctx, caller, p.id, true)
	case a == model.ActionProjectCreate:
		idle := time.Duration(0)
		sub, err = svc.Create(ctx, caller, projects.CreateRequest{Host: p.host, Title: "chaos",
			Limits: model.ProjectLimits{MemoryBytes: 64 << 20, CPUs: 0.5, DiskBytes: 128 << 20}, IdleTimeout: &idle})
		if err == nil {
			p.id = sub.Project.ID
		}
	case a == model.ActionProjectStart:
		sub, err = svc.Start(ctx, caller, p.id)
	case a == model.ActionProjectStop:
		sub, err = svc.Stop(ctx, caller, p.id)
	case a == model.ActionProjectSnapshot:
		sub, _, err = svc.Snapshot(ctx, caller, p.id, snapshotName)
	case a == model.ActionProjectMove:
		// To the next host after the one it is on (a move asked again
		// after a failure starts from where the project is).
		var to string
		if to, err = nextHost(ctx, svc, p, hostNames); err == nil {
			sub, _, err = svc.Move(ctx, caller, projects.MoveRequest{Project: p.id, To: to})
		}
	}
	if err != nil {
		return err
	}
	if sub.Job == nil {
		// Nothing to do ("already deleted").
		if p.purging {
			p.purging, p.id = false, ""
		} else {
			p.step++
		}
		return nil
	}
	p.job = sub.Job.ID
	return nil
}

// agentKiller SIGKILLs a random host's agent at random moments and brings
// the host back as an operator would: `stop HOST`, then `start HOST`.
type agentKiller struct {
	hosts *hosts.Service
	st    store.Store
	names []string
	rng   *mrand.Rand
	err   error
}

func (k *agentKiller) loop(ctx context.Context, n int, every time.Duration) int {
	for i := 0; i < n; i++ {
		t := time.NewTimer(time.Duration(k.rng.Int64N(int64(2*every) + 1)))
		select {
		case <-ctx.Done():
			t.Stop()
			return i
		case <-t.C:
		}
		name := k.names[k.rng.IntN(len(k.names))]
		h, err := k.hosts.Get(ctx, name)
		if err != nil {
			k.err = err
			return i
		}
		if err := local.KillAgents(ctx, filepath.Join(localHostsDir(), provider.InstanceName(h.ID))); err != nil {
			k.err = err
			return i
		}
		// The host comes back even after the kills stop: a host left off
		// would fail the run for the harness's sake, not the product's.
		rctx := context.WithoutCancel(ctx)
		if err := k.until(rctx, func() (hosts.Submitted, error) { return k.hosts.Stop(rctx, h.ID, hosts.StopOptions{}) }); err != nil {
			k.err = err
			return i + 1
		}
		if err := k.until(rctx, func() (hosts.Submitted, error) { return k.hosts.Start(rctx, h.ID) }); err != nil {
			k.err = err
			return i + 1
		}
	}
	return n
}

// until submits a host action until a job of it is done, asking again
// after a refusal (another action pending) or a failed job.
func (k *agentKiller) until(ctx context.Context, submit func() (hosts.Submitted, error)) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		sub, err := submit()
		if err == nil && sub.Job == nil {
			return nil
		}
		if err == nil {
			for time.Now().Before(deadline) {
				j, err := k.st.GetJob(ctx, sub.Job.ID)
				if err != nil {
					return err
				}
				if j.State == model.JobDone {
					return nil
				}
				if j.State == model.JobFailed {
					break
				}
				time.Sleep(100 * time.Millisecond) // a poll of the job
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("a host's stop or start after its agent was killed did not complete within 5 minutes")
}

// checkProjects compares the end state with the plans and fills c.
func checkProjects(ctx context.Context, st store.Store, pm *podmanStore, ps []*projPlan, c *projCounts, problem func(string, ...any)) error {
	// No job left queued or running; the most attempts any job took.
	jobs, err := st.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		return err
	}
	c.ActionsDone, c.MaxAttempts = 0, 0
	for _, j := range jobs {
		c.MaxAttempts = max(c.MaxAttempts, j.Attempts)
		if j.State == model.JobDone && j.Subject.Kind == model.SubjectProject {
			c.ActionsDone++
		}
		if j.State == model.JobQueued || j.State == model.JobRunning {
			c.JobsStillActive++
			problem("%s job %s still %s", j.Action, j.ID, j.State)
		}
	}

	hs, err := st.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return err
	}
	hostByID := map[string]model.Host{}
	for _, h := range hs {
		hostByID[h.ID] = h
	}
	// Every project in its requested state, in the database and on its
	// host; none in a transitional state.
	live := map[string]model.Project{} // every project record, by id
	all, err := st.ListProjects(ctx, store.ProjectFilter{IncludeDeleted: true})
	if err != nil {
		return err
	}
	for _, p := range all {
		live[p.ID] = p
		switch p.State {
		case model.ProjectCreating, model.ProjectStarting, model.ProjectStopping, model.ProjectDeleting:
			c.Transitional++
			problem("project %s is %s (last error: %s)", p.ID, p.State, p.LastError)
		}
	}
	planned := map[string]*projPlan{}
	for _, pl := range ps {
		if pl.id != "" {
			planned[pl.id] = pl
		}
	}
	for id, p := range live {
		if planned[id] == nil {
			c.NotConverged++
			problem("project %s (%s) belongs to no plan", id, p.State)
		}
	}
	for _, pl := range ps {
		want := pl.want()
		p, ok := live[pl.id]
		switch {
		case want == "" && !ok:
			continue
		case want == "":
			c.NotConverged++
			problem("project %s is %s, asked to be deleted", pl.id, p.State)
			continue
		case !ok:
			c.NotConverged++
			problem("a project of host %s asked to be %s does not exist", pl.host, want)
			continue
		}
		if p.State != want || p.DeletedAt != nil {
			c.NotConverged++
			problem("project %s is %s, asked for %s (last error: %s)", p.ID, p.State, want, p.LastError)
			continue
		}
		h := hostByID[p.HostID]
		ast, err := agentapi.NewClient(h.Runtime.Meta["socket"]).Project(ctx, p.ID)
		if err != nil {
			c.NotConverged++
			problem("project %s: its host %s does not answer: %v", p.ID, h.Name, err)
			continue
		}
		if string(want) != ast.State {
			c.NotConverged++
			problem("project %s is %s, its host %s says %s", p.ID, want, h.Name, ast.State)
		}
	}

	// Containers: each of a live running project, on its host; every
	// running project has one.
	cs, err := pm.pm.List(ctx, podman.LabelProject)
	if err != nil {
		return err
	}
	c.Containers = len(cs)
	running := map[string]bool{}
	for _, ct := range cs {
		id := ct.Labels[podman.LabelProject]
		p, ok := live[id]
		if !ok || p.DeletedAt != nil || p.State != model.ProjectRunning || p.HostID != ct.Labels[podman.LabelHost] || !ct.Running() {
			c.LeakedContainers++
			problem("container %s (%s) of project %s: project %s", ct.Name, ct.State, id, describe(p, ok))
			continue
		}
		running[id] = true
	}
	for id, p := range live {
		if p.State == model.ProjectRunning && !running[id] {
			c.MissingContainers++
			problem("project %s is running without a container", id)
		}
	}

	// Pools: subvolumes and qgroups only of live projects on their host.
	for _, h := range hs {
		if h.DeletedAt != nil {
			continue
		}
		pool := filepath.Join(localHostsDir(), provider.InstanceName(h.ID), "pool")
		mine := map[string]*projPlan{}
		for id, p := range live {
			if p.HostID == h.ID && p.DeletedAt == nil {
				mine[id] = planned[id]
			}
		}
		if err := checkPool(ctx, pool, h.Name, mine, c, problem); err != nil {
			return err
		}
	}
	return nil
}

func describe(p model.Project, ok bool) string {
	switch {
	case !ok:
		return "gone"
	case p.DeletedAt != nil:
		return "deleted"
	}
	return string(p.State) + " on host " + p.HostID
}

// checkPool lists a pool's subvolumes and qgroups: a project's home,
// scratch and snapshots (with their level-0 qgroups) and its level-1
// qgroup are expected for each project in mine; anything else is leaked.
func checkPool(ctx context.Context, pool, host string, mine map[string]*projPlan, c *projCounts, problem func(string, ...any)) error {
	// Deleted subvolumes are dropped by the kernel's cleaner in the
	// background; wait for it, as `btrfs qgroup show` lists them until then.
	if out, err := exec.CommandContext(ctx, "btrfs", "subvolume", "sync", pool).CombinedOutput(); err != nil {
		return fmt.Errorf("btrfs subvolume sync %s: %v: %s", pool, err, out)
	}
	out, err := exec.CommandContext(ctx, "btrfs", "subvolume", "list", pool).Output()
	if err != nil {
		return fmt.Errorf("btrfs subvolume list %s: %w", pool, err)
	}
	subs := map[string]string{} // id → path
	for _, line := range strings.Split(string(out), "\n") {
		// ID 257 gen 12 top level 5 path projects/<id>
		f := strings.Fields(line)
		if len(f) >= 9 && f[0] == "ID" && f[len(f)-2] == "path" {
			subs[f[1]] = f[len(f)-1]
		}
	}
	homes := map[string]bool{} // subvolume ids of live homes
	seen := map[string]bool{}
	for sid, path := range subs {
		c.Subvolumes++
		parts := strings.Split(path, "/")
		ok := false
		if len(parts) >= 2 {
			if pl, live := mine[parts[1]]; live {
				switch {
				case len(parts) == 2 && parts[0] == "projects":
					ok = true
					homes[sid] = true
				case len(parts) == 2 && parts[0] == "scratch":
					ok = true
				case len(parts) == 3 && parts[0] == "snapshots":
					ok = pl != nil && pl.snapshots() && parts[2] == snapshotName
				}
				if ok {
					seen[parts[0]+"/"+parts[1]] = true
				}
			}
		}
		if !ok {
			c.LeakedSubvolumes++
			problem("host %s: subvolume %s (id %s) belongs to no live project", host, path, sid)
		}
	}
	for id, pl := range mine {
		for _, what := range []string{"projects", "scratch"} {
			if !seen[what+"/"+id] {
				c.MissingSubvolumes++
				problem("host %s: project %s has no %s subvolume", host, id, what)
			}
		}
		if pl != nil && pl.snapshots() && pl.want() != "" && !seen["snapshots/"+id] {
			c.MissingSnapshots++
			problem("host %s: project %s has no snapshot %s", host, id, snapshotName)
		}
	}
	out, err = exec.CommandContext(ctx, "btrfs", "qgroup", "show", "--raw", pool).Output()
	if err != nil {
		return fmt.Errorf("btrfs qgroup show %s: %w", pool, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		level, id, ok := strings.Cut(f[0], "/")
		if !ok || strings.Trim(level+id, "0123456789") != "" {
			continue // a header
		}
		c.Qgroups++
		_, sub := subs[id]
		switch {
		case level == "0" && (id == "5" || sub): // the top level, or a subvolume's
		case level == "1" && homes[id]: // a live project's group
		default:
			c.LeakedQgroups++
			problem("host %s: qgroup %s belongs to no live subvolume or project", host, f[0])
		}
	}
	return nil
}

// cleanupLocalHosts removes what a run made on this machine, whatever
// state it ended in: containers, agents, pool mounts and loop devices,
// the hosts' directories.
func cleanupLocalHosts(pm *podmanStore) {
	pm.removeContainers()
	dirs, _ := filepath.Glob(filepath.Join(localHostsDir(), "*"))
	for _, d := range dirs {
		local.KillAgents(context.Background(), d) //nolint:errcheck // best effort
		pool, image := filepath.Join(d, "pool"), filepath.Join(d, "pool.img")
		for i := 0; i < 20; i++ {
			if exec.Command("umount", pool).Run() != nil {
				break
			}
		}
		if out, err := exec.Command("losetup", "-j", image).Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if dev, _, ok := strings.Cut(line, ":"); ok {
					exec.Command("losetup", "-d", dev).Run() //nolint:errcheck
				}
			}
		}
		os.RemoveAll(d)
		if rt, err := config.RuntimeDir(); err == nil {
			os.Remove(filepath.Join(rt, filepath.Base(d)+".sock"))
		}
	}
}
