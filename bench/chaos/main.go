// Command chaos is the kill-anywhere harness (issue 15, item 3): real
// `cocalc-hosts worker` processes on a throwaway Postgres drive sim hosts
// through create, stop, start and delete while the sim injects faults
// and a random worker is SIGKILLed (and restarted) at random moments.
// Afterwards it checks that nothing was lost or made twice, prints the
// counts as JSON, and exits 1 when an invariant fails.
//
// Run it through bench/chaos.sh from the repository's root (see README
// "Benchmarks"). The sim runs with duplicate_names, so every Create makes
// a new VM: only the control plane's own idempotency (the instance id it
// saves, the host label it looks up before creating again) prevents
// duplicates.
//
// Each host gets a plan, a prefix of create → stop → start → delete (or
// create → delete), submitted through the host service one action after
// the other as a user would. An action that ends failed after
// worker.max_attempts is asked for again, as a user would after reading
// the error (a failed create by `start`); those are counted.
//
// With --projects N it drives projects on real local hosts instead, while
// workers and hosts' agents are killed (projects.go).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/app"
	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

type options struct {
	runs, hosts, kills, workers, serves, concurrency, maxAttempts int
	lease, killEvery, latency, simTimeout, retryAfter, deadline   time.Duration
	errorRate, rateLimitRate, timeoutRate, ghostRate              float64
	keep                                                          bool
	// Project mode (projects.go): projects > 0 drives projects on local
	// hosts instead of sim hosts.
	projects, localHosts, agentKills int
	agentKillEvery, syncEvery        time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 100, "runs, each on a fresh database")
	flag.IntVar(&o.hosts, "hosts", 200, "sim hosts per run")
	flag.IntVar(&o.kills, "kills", 30, "worker SIGKILLs per run (fewer if the run converges first)")
	flag.IntVar(&o.workers, "workers", 4, "worker processes")
	flag.IntVar(&o.serves, "serves", 1, "how many of the --workers processes are `cocalc-hosts serve` (the API with its in-process worker) instead of `cocalc-hosts worker`; the kills hit both (sim hosts only)")
	flag.IntVar(&o.concurrency, "concurrency", 4, "jobs each worker runs at once")
	flag.IntVar(&o.maxAttempts, "max-attempts", 5, "worker.max_attempts (the product's default is 5)")
	flag.DurationVar(&o.lease, "lease", 10*time.Second, "worker lease: a killed worker's jobs are taken over this long after its last heartbeat")
	flag.DurationVar(&o.killEvery, "kill-every", time.Second, "mean time between kills")
	flag.DurationVar(&o.latency, "latency", 50*time.Millisecond, "added to every cloud call, so that kills land inside calls too")
	flag.DurationVar(&o.simTimeout, "sim-timeout", 2*time.Second, "how long a simulated hanging call hangs")
	flag.DurationVar(&o.retryAfter, "retry-after", time.Second, "the Retry-After of a simulated 429")
	flag.DurationVar(&o.deadline, "deadline", 10*time.Minute, "a run that has not converged by then fails")
	flag.Float64Var(&o.errorRate, "error-rate", 0.20, "share of cloud calls failing with a 5xx")
	flag.Float64Var(&o.rateLimitRate, "rate-limit-rate", 0.10, "share of cloud calls answered 429 with Retry-After")
	flag.Float64Var(&o.timeoutRate, "timeout-rate", 0.05, "share of cloud calls that hang, then time out")
	flag.Float64Var(&o.ghostRate, "ghost-rate", 0.05, "share of creates that make the VM and return an error anyway")
	flag.BoolVar(&o.keep, "keep", false, "keep each run's directory (config, worker logs) for reading")
	flag.IntVar(&o.projects, "projects", 0, "project mode: drive this many projects on real local hosts (btrfs pool, agent, podman) instead of sim hosts; --hosts, the fault rates and --latency do not apply")
	flag.IntVar(&o.localHosts, "local-hosts", 2, "project mode: local hosts the projects are spread over")
	flag.IntVar(&o.agentKills, "agent-kills", 4, "project mode: SIGKILLs of a host's agent per run, each followed by the host's stop and start")
	flag.DurationVar(&o.agentKillEvery, "agent-kill-every", 8*time.Second, "project mode: mean time between agent kills")
	flag.DurationVar(&o.syncEvery, "project-sync", 2*time.Second, "project mode: the workers' --project-sync-interval (the duty that reads projects' states from their hosts)")
	flag.Parse()
	if o.runs < 1 || o.hosts < 1 || o.workers < 1 || o.concurrency < 1 || o.kills < 0 || o.maxAttempts < 1 {
		fmt.Fprintln(os.Stderr, "chaos: --runs, --hosts, --workers, --concurrency and --max-attempts must be at least 1, --kills at least 0")
		os.Exit(2)
	}
	if o.serves < 0 || o.serves > o.workers {
		fmt.Fprintf(os.Stderr, "chaos: --serves %d: want 0 to --workers (%d)\n", o.serves, o.workers)
		os.Exit(2)
	}
	if o.lease < time.Second {
		fmt.Fprintln(os.Stderr, "chaos: --lease must be at least 1s (the worker refuses less)")
		os.Exit(2)
	}
	// A reader of our output that goes away (`| head`) must not kill us
	// before the cleanup: Postgres and the workers would be left running.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var rep any
	ok := false
	var err error
	if o.projects > 0 {
		var r *projReport
		if r, err = runProjects(ctx, o, "./cmd/cocalc-hosts", os.Stderr); r != nil {
			rep, ok = r, r.OK
		}
	} else {
		var r *report
		if r, err = run(ctx, o); r != nil {
			rep, ok = r, r.OK
		}
	}
	stop()
	if rep != nil {
		out, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Println(string(out))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// report is the JSON printed at the end.
type report struct {
	OK       bool              `json:"ok"`
	Machine  map[string]any    `json:"machine"`
	Settings map[string]any    `json:"settings"`
	Totals   counts            `json:"totals"`
	Converge map[string]string `json:"converge_seconds"`
	Runs     []runReport       `json:"runs"`
}

// counts are what a run did and what its checks found; the checks (the
// last group) must all be 0.
type counts struct {
	Hosts           int `json:"hosts"`
	ActionsDone     int `json:"actions_done"`
	Kills           int `json:"kills"`
	TakenOver       int `json:"attempts_cut_by_kills"`
	Retried         int `json:"attempts_retried_after_error"`
	FailedAndAsked  int `json:"actions_failed_then_asked_again"`
	SubmitErrors    int `json:"submit_errors_retried"`
	MaxAttempts     int `json:"max_attempts_of_a_job"`
	VMs             int `json:"vms_at_end"`
	NotConverged    int `json:"hosts_not_converged"`
	LeakedVMs       int `json:"leaked_vms"`
	DuplicateVMs    int `json:"duplicate_vms"`
	MissingVMs      int `json:"missing_vms"`
	VMStateWrong    int `json:"vm_state_mismatches"`
	LeakedDisks     int `json:"leaked_disks"`
	Orphans         int `json:"reconcile_orphans"`
	ReconcileOther  int `json:"reconcile_other_differences"`
	LogMismatches   int `json:"log_mismatches"`
	JobsStillActive int `json:"jobs_still_active"`
}

func (c *counts) add(d counts) {
	c.Hosts += d.Hosts
	c.ActionsDone += d.ActionsDone
	c.Kills += d.Kills
	c.TakenOver += d.TakenOver
	c.Retried += d.Retried
	c.FailedAndAsked += d.FailedAndAsked
	c.SubmitErrors += d.SubmitErrors
	c.MaxAttempts = max(c.MaxAttempts, d.MaxAttempts)
	c.VMs += d.VMs
	c.NotConverged += d.NotConverged
	c.LeakedVMs += d.LeakedVMs
	c.DuplicateVMs += d.DuplicateVMs
	c.MissingVMs += d.MissingVMs
	c.VMStateWrong += d.VMStateWrong
	c.LeakedDisks += d.LeakedDisks
	c.Orphans += d.Orphans
	c.ReconcileOther += d.ReconcileOther
	c.LogMismatches += d.LogMismatches
	c.JobsStillActive += d.JobsStillActive
}

func (c counts) failures() int {
	return c.NotConverged + c.LeakedVMs + c.DuplicateVMs + c.MissingVMs + c.VMStateWrong + c.LeakedDisks +
		c.Orphans + c.ReconcileOther + c.LogMismatches + c.JobsStillActive
}

type runReport struct {
	Run             int      `json:"run"`
	OK              bool     `json:"ok"`
	ConvergeSeconds float64  `json:"converge_seconds"`
	Counts          counts   `json:"counts"`
	Problems        []string `json:"problems,omitempty"`
	Dir             string   `json:"dir,omitempty"`
}

func run(ctx context.Context, o options) (*report, error) {
	tmp, err := os.MkdirTemp("", "cocalc-hosts-chaos-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if !o.keep {
			os.RemoveAll(tmp)
		}
	}()
	bin, err := buildInto(ctx, tmp, "./cmd/cocalc-hosts", os.Stderr)
	if err != nil {
		return nil, err
	}
	pg, err := pgtest.Start()
	if err != nil {
		return nil, fmt.Errorf("throwaway Postgres: %w (scripts/install-deps.sh installs postgresql)", err)
	}
	defer pg.Stop()

	load, _ := os.ReadFile("/proc/loadavg")
	rep := &report{OK: true,
		Machine: map[string]any{"cpus": numCPU(), "load_average_at_start": strings.Join(strings.Fields(string(load))[:3], " ")},
		Settings: map[string]any{"runs": o.runs, "hosts": o.hosts, "kills": o.kills, "workers": o.workers, "of_them_serve": o.serves,
			"concurrency": o.concurrency, "lease": o.lease.String(), "kill_every": o.killEvery.String(),
			"max_attempts": o.maxAttempts, "backoff": backoff(),
			"faults": map[string]any{"latency": o.latency.String(), "5xx": o.errorRate, "429": o.rateLimitRate, "retry_after": o.retryAfter.String(),
				"timeout": o.timeoutRate, "hang": o.simTimeout.String(), "create_ghost": o.ghostRate},
			"sim": "duplicate_names: every Create makes a new VM"},
	}
	var times []float64
	for r := 1; r <= o.runs; r++ {
		dir := filepath.Join(tmp, fmt.Sprintf("run%03d", r))
		rr, err := oneRun(ctx, o, pg, bin, dir, r)
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
		fmt.Fprintf(os.Stderr, "chaos: run %d/%d: ok=%v, %d actions, %d kills, converged in %.1fs%s\n",
			r, o.runs, rr.OK, rr.Counts.ActionsDone, rr.Counts.Kills, rr.ConvergeSeconds, problemsLine(rr.Problems))
	}
	sort.Float64s(times)
	rep.Converge = map[string]string{"p50": fmt.Sprintf("%.1f", times[(len(times)-1)/2]), "max": fmt.Sprintf("%.1f", times[len(times)-1])}
	load, _ = os.ReadFile("/proc/loadavg")
	rep.Machine["load_average_at_end"] = strings.Join(strings.Fields(string(load))[:3], " ")
	return rep, nil
}

// buildInto builds the binary from pkg (a package path relative to the
// working directory) into tmp, then points HOME and the XDG directories
// of this process (and so of the processes it starts) into tmp: nothing of
// the user's is read or written after the build, which needs the Go
// caches.
func buildInto(ctx context.Context, tmp, pkg string, log io.Writer) (string, error) {
	bin := filepath.Join(tmp, "cocalc-hosts")
	fmt.Fprintln(log, "chaos: building cocalc-hosts")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (run bench/chaos.sh from the repository): %v\n%s", pkg, err, out)
	}
	for k, v := range map[string]string{"HOME": tmp, "XDG_CONFIG_HOME": filepath.Join(tmp, "config"),
		"XDG_STATE_HOME": filepath.Join(tmp, "state"), "XDG_CACHE_HOME": filepath.Join(tmp, "cache")} {
		os.Setenv(k, v)
	}
	return bin, nil
}

// backoff describes the worker's retry delays, read from the queue's
// defaults (the worker command does not change them).
func backoff() string {
	w := queue.NewWorker(nil, nil)
	return fmt.Sprintf("%s doubling per attempt to a %s cap, ±20%%, at least a Retry-After", w.BaseBackoff, w.MaxBackoff)
}

func problemsLine(p []string) string {
	if len(p) == 0 {
		return ""
	}
	return "; " + strings.Join(p, "; ")
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	var n int
	fmt.Sscan(string(out), &n) //nolint:errcheck
	return n
}

// simOptions are the sim's settings for the run's workers (faults on) or
// for the checks afterwards (the cloud healthy again).
func simOptions(o options, faults bool) map[string]string {
	m := map[string]string{"duplicate_names": "true"}
	if faults {
		m["latency"] = o.latency.String()
		m["error_rate"] = fmt.Sprint(o.errorRate)
		m["rate_limit_rate"] = fmt.Sprint(o.rateLimitRate)
		m["retry_after"] = o.retryAfter.String()
		m["timeout_rate"] = fmt.Sprint(o.timeoutRate)
		m["timeout"] = o.simTimeout.String()
		m["create_ghost_rate"] = fmt.Sprint(o.ghostRate)
	}
	return m
}

func writeConfig(path, db string, o options, faults bool) error {
	var b strings.Builder
	// `serve` reads its worker's settings from here (`worker` gets flags
	// too); reconcile and project sync are off (see oneRun).
	fmt.Fprintf(&b, "db: %s\nworker:\n  max_attempts: %d\n  lease: %s\n  concurrency: %d\n  reconcile_interval: \"0\"\n  project_sync_interval: \"0\"\nproviders:\n  sim:\n",
		db, o.maxAttempts, o.lease, o.concurrency)
	sim := simOptions(o, faults)
	keys := make([]string, 0, len(sim))
	for k := range sim {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "    %s: %q\n", k, sim[k])
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

func openApp(path string) (*app.App, error) {
	cfg, err := config.Load(path, nil)
	if err != nil {
		return nil, err
	}
	return app.New(cfg, nil), nil
}

// hostPlan is one host's sequence of actions and where it is in it.
type hostPlan struct {
	name  string
	id    string
	steps []model.Action
	step  int
	job   string // the job of the current step, "" before it is submitted
}

func (h *hostPlan) finished() bool { return h.step == len(h.steps) }

// want is the status the plan leaves the host in.
func (h *hostPlan) want() model.Status {
	switch h.steps[len(h.steps)-1] {
	case model.ActionStop:
		return model.StatusOff
	case model.ActionDelete:
		return model.StatusDeprovisioned
	}
	return model.StatusRunning
}

var plans = [][]model.Action{
	{model.ActionCreate},
	{model.ActionCreate, model.ActionStop},
	{model.ActionCreate, model.ActionStop, model.ActionStart},
	{model.ActionCreate, model.ActionStop, model.ActionStart, model.ActionDelete},
	{model.ActionCreate, model.ActionDelete},
}

func oneRun(ctx context.Context, o options, pg *pgtest.Cluster, bin, dir string, r int) (runReport, error) {
	rr := runReport{Run: r}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return rr, err
	}
	db, drop, err := runDatabase(pg, "chaos", r)
	if err != nil {
		return rr, err
	}
	defer drop()
	chaosCfg, checkCfg := filepath.Join(dir, "chaos.yaml"), filepath.Join(dir, "check.yaml")
	if err := writeConfig(chaosCfg, db, o, true); err != nil {
		return rr, err
	}
	if err := writeConfig(checkCfg, db, o, false); err != nil {
		return rr, err
	}
	a, err := openApp(chaosCfg)
	if err != nil {
		return rr, err
	}
	defer a.Close()
	svc, err := a.Hosts(ctx)
	if err != nil {
		return rr, err
	}
	st, err := a.Store(ctx)
	if err != nil {
		return rr, err
	}

	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(r)))
	hs := make([]*hostPlan, o.hosts)
	for i := range hs {
		hs[i] = &hostPlan{name: fmt.Sprintf("c%04d", i), steps: plans[rng.IntN(len(plans))]}
	}

	// Reconcile and project sync are off: the harness's own reconcile at
	// the end must see what the queue left, not what a pass cleaned up.
	ws := &workers{bin: bin, cfg: chaosCfg, dir: dir, lease: o.lease, concurrency: o.concurrency,
		args: []string{"--reconcile-interval", "0", "--project-sync-interval", "0"}}
	defer ws.stopAll()
	if err := ws.startN(o.workers - o.serves); err != nil {
		return rr, err
	}
	for range o.serves {
		if err := ws.start(true); err != nil {
			return rr, err
		}
	}
	start := time.Now()
	killCtx, stopKills := context.WithCancel(ctx)
	killsDone := make(chan int)
	go func() { killsDone <- ws.killLoop(killCtx, st, rng.Uint64(), o.kills, o.killEvery) }()

	derr := drive(ctx, svc, st, hs, start.Add(o.deadline), &rr.Counts)
	stopKills()
	rr.Counts.Kills = <-killsDone
	rr.ConvergeSeconds = time.Since(start).Seconds()
	ws.stopAll()
	if ws.err != nil {
		return rr, ws.err
	}
	if derr != nil {
		rr.Problems = append(rr.Problems, derr.Error())
	}
	if err := check(ctx, checkCfg, hs, &rr); err != nil {
		return rr, err
	}
	rr.OK = rr.Counts.failures() == 0 && derr == nil
	return rr, nil
}

// runDatabase makes run r's own database, named prefix and the run's
// number; drop removes it, connections and all.
func runDatabase(pg *pgtest.Cluster, prefix string, r int) (url string, drop func(), err error) {
	name := fmt.Sprintf("%s%03d", prefix, r)
	if url, err = pg.CreateDatabase(name); err != nil {
		return "", nil, err
	}
	return url, func() { dropDatabase(pg, name) }, nil
}

func dropDatabase(pg *pgtest.Cluster, name string) {
	out, err := exec.Command("psql", "-h", "127.0.0.1", "-p", fmt.Sprint(pg.Port), "-U", "postgres", "-d", "postgres",
		"-c", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: drop database %s: %v: %s\n", name, err, out)
	}
}

// drive submits each host's actions in turn until every plan is done or
// the deadline passes. Progress is read from the jobs table.
func drive(ctx context.Context, svc *hosts.Service, st store.Store, hs []*hostPlan, deadline time.Time, c *counts) error {
	c.Hosts = len(hs)
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
		for _, h := range hs {
			if h.finished() {
				continue
			}
			if h.job != "" {
				switch j := byID[h.job]; j.State {
				case model.JobDone:
					h.step, h.job = h.step+1, ""
					if h.finished() {
						continue
					}
				case model.JobFailed:
					c.FailedAndAsked++
					h.job = ""
				default:
					left++
					continue
				}
			}
			left++
			if err := submit(ctx, svc, h); err != nil {
				c.SubmitErrors++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d hosts had not reached their requested state by the deadline", left, len(hs))
		}
		time.Sleep(100 * time.Millisecond) // a poll of the jobs table, not a wait for something to happen
	}
}

// submit asks for the host's current step as a user would: a failed
// create is recovered by start, anything else by asking again.
func submit(ctx context.Context, svc *hosts.Service, h *hostPlan) error {
	a := h.steps[h.step]
	var sub hosts.Submitted
	var err error
	switch {
	case a == model.ActionCreate && h.id == "":
		sub, err = svc.Create(ctx, hosts.CreateRequest{Name: h.name, Owner: "chaos", Provider: sim.Name,
			Spec: model.HostSpec{MachineType: "sim-small"}})
		if err == nil {
			h.id = sub.Host.ID
		} else if errkind.Is(err, errkind.Conflict) {
			// An earlier try stored the host and then failed: carry on
			// with the host it made.
			if old, gerr := svc.Get(ctx, h.name); gerr == nil {
				h.id = old.ID
			}
			return err
		}
	case a == model.ActionCreate, a == model.ActionStart:
		// A create that failed after storing its host is asked again
		// by start, which makes (or finds) its VM.
		sub, err = svc.Start(ctx, h.id)
	case a == model.ActionStop:
		sub, err = svc.Stop(ctx, h.id, hosts.StopOptions{})
	case a == model.ActionDelete:
		sub, err = svc.Delete(ctx, h.id, hosts.DeleteOptions{})
	}
	if err != nil {
		return err
	}
	if sub.Job == nil {
		h.step++ // nothing to do: "already running", "already off"
		return nil
	}
	h.job = sub.Job.ID
	return nil
}

// check compares the end state with the plans and fills rr's counts.
// It reads the cloud through a sim without faults: the cloud is healthy
// again, and what it holds is what the control plane left.
func check(ctx context.Context, checkCfg string, hs []*hostPlan, rr *runReport) error {
	c := &rr.Counts
	problem := func(format string, args ...any) {
		if len(rr.Problems) < 10 {
			rr.Problems = append(rr.Problems, fmt.Sprintf(format, args...))
		}
	}
	a, err := openApp(checkCfg)
	if err != nil {
		return err
	}
	defer a.Close()
	st, err := a.Store(ctx)
	if err != nil {
		return err
	}
	dep, err := st.Deployment(ctx)
	if err != nil {
		return err
	}

	// Every host in its requested state.
	byID := map[string]model.Host{}
	for _, p := range hs {
		if p.id == "" {
			c.NotConverged++
			problem("host %s was never created", p.name)
			continue
		}
		h, err := st.GetHost(ctx, p.id)
		if err != nil {
			return err
		}
		byID[h.ID] = h
		want := p.want()
		if h.Status != want || (want == model.StatusDeprovisioned) != (h.DeletedAt != nil) {
			c.NotConverged++
			problem("host %s is %s (deleted %v), asked for %s; last error: %s", h.Name, h.Status, h.DeletedAt != nil, want, h.LastError)
		}
	}

	// The cloud: one VM per live host, the one it names, in its state;
	// none for deleted hosts; nothing unlabelled.
	recs, err := sim.Records(ctx, st.ProviderState())
	if err != nil {
		return err
	}
	vms := map[string][]sim.Record{}
	for _, r := range recs {
		if r.Labels[provider.LabelDeployment] != dep {
			continue
		}
		c.VMs++
		hid := r.Labels[provider.LabelHost]
		if _, ok := byID[hid]; !ok {
			c.LeakedVMs++
			problem("VM %s (%s) belongs to no host of the run", r.ID, r.Name)
			continue
		}
		vms[hid] = append(vms[hid], r)
	}
	now := time.Now()
	for id, h := range byID {
		mine := vms[id]
		if h.DeletedAt != nil {
			c.LeakedVMs += len(mine)
			if len(mine) > 0 {
				problem("deleted host %s still has %d VM(s)", h.Name, len(mine))
			}
			continue
		}
		if len(mine) > 1 {
			c.DuplicateVMs += len(mine) - 1
			problem("host %s has %d VMs", h.Name, len(mine))
		}
		if len(mine) == 0 {
			if h.Status == model.StatusRunning || h.Status == model.StatusOff {
				c.MissingVMs++
				problem("host %s is %s but has no VM", h.Name, h.Status)
			}
			continue
		}
		var kept *sim.Record
		for i := range mine {
			if mine[i].ID == h.Runtime.InstanceID {
				kept = &mine[i]
			}
		}
		if kept == nil {
			c.LeakedVMs++
			problem("host %s keeps instance %q, its VM is %s", h.Name, h.Runtime.InstanceID, mine[0].ID)
			continue
		}
		vmState := kept.StateAt(now)
		if (h.Status == model.StatusRunning) != (vmState == provider.StateRunning) ||
			(h.Status == model.StatusOff) != (vmState == provider.StateStopped) {
			c.VMStateWrong++
			problem("host %s is %s, its VM %s", h.Name, h.Status, vmState)
		}
	}
	// What the sim keeps besides its VMs are data disks kept by a delete;
	// no plan keeps one.
	all, err := st.ProviderState().List(ctx, sim.Name)
	if err != nil {
		return err
	}
	if c.LeakedDisks = len(all) - len(recs); c.LeakedDisks > 0 {
		problem("%d data disk(s) left behind", c.LeakedDisks)
	}

	// Reconcile, as `cocalc-hosts reconcile --dry-run` would.
	rec, err := a.Reconcile(ctx, app.ReconcileOptions{DryRun: true})
	if err != nil {
		return err
	}
	for _, p := range rec.Providers {
		if p.Error != "" {
			return fmt.Errorf("reconcile %s: %s", p.Provider, p.Error)
		}
		c.Orphans += len(p.Orphans)
		c.ReconcileOther += len(p.Missing) + len(p.Unexpected) + len(p.Updated)
		for _, x := range p.Orphans {
			problem("reconcile: orphan VM %s (%s)", x.InstanceID, x.Name)
		}
		for _, x := range p.Missing {
			problem("reconcile: host %s missing its VM", x.Name)
		}
		for _, x := range p.Updated {
			problem("reconcile: host %s would change from %s to %s", x.Name, x.From, x.To)
		}
		for _, x := range p.Unexpected {
			problem("reconcile: host %s: VM %s unexpectedly %s", x.Name, x.InstanceID, x.State)
		}
	}

	// The jobs and cloud_vm_log: one "done" entry per done job, none for
	// any other; no job left queued or running.
	jobs, err := st.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		return err
	}
	logs, err := st.ListLog(ctx, store.LogFilter{})
	if err != nil {
		return err
	}
	// Every attempt that ran to its end left one entry (done, retry or
	// failed); the others were cut short by a kill and taken over.
	doneEntries, ended := map[string]int{}, map[string]int{}
	for _, e := range logs {
		ended[e.JobID]++
		switch e.Status {
		case "done":
			doneEntries[e.JobID]++
		case "retry":
			c.Retried++
		}
	}
	for _, j := range jobs {
		c.MaxAttempts = max(c.MaxAttempts, j.Attempts)
		if j.State == model.JobDone {
			c.ActionsDone++
		}
		c.TakenOver += max(j.Attempts-ended[j.ID], 0)
		want := 0
		if j.State == model.JobDone {
			want = 1
		}
		if doneEntries[j.ID] != want {
			c.LogMismatches++
			problem("%s job %s (%s) has %d done entries in cloud_vm_log, want %d", j.Action, j.ID, j.State, doneEntries[j.ID], want)
		}
		if j.State == model.JobQueued || j.State == model.JobRunning {
			c.JobsStillActive++
			problem("%s job %s still %s", j.Action, j.ID, j.State)
		}
	}
	return nil
}

// workers are the run's processes that run jobs: `cocalc-hosts worker`,
// and `cocalc-hosts serve` (the API with its in-process worker), which
// reads its worker settings from the config.
type workers struct {
	bin, cfg, dir string
	lease         time.Duration
	concurrency   int
	args          []string // more flags of `worker`

	mu    sync.Mutex
	procs []worker
	n     int
	err   error
}

type worker struct {
	cmd   *exec.Cmd
	serve bool
}

// startN starts n workers (stop them with stopAll, also after an error).
func (w *workers) startN(n int) error {
	for range n {
		if err := w.start(false); err != nil {
			return err
		}
	}
	return nil
}

// start starts a worker, or with serve a server on a free loopback port.
func (w *workers) start(serve bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	kind := "worker"
	args := append([]string{"--config", w.cfg, "worker", "--lease", w.lease.String(), "--concurrency", fmt.Sprint(w.concurrency)}, w.args...)
	if serve {
		kind, args = "serve", []string{"--config", w.cfg, "serve", "--listen", "127.0.0.1:0"}
	}
	logf, err := os.OpenFile(filepath.Join(w.dir, fmt.Sprintf("%s%03d.log", kind, w.n)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(w.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a kill takes it whole; and it dies with
	// the harness.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", kind, err)
	}
	w.procs = append(w.procs, worker{cmd: cmd, serve: serve})
	return nil
}

// kill SIGKILLs worker i, waits for it, and starts a new one of its kind
// in its place.
func (w *workers) kill(i int) error {
	w.mu.Lock()
	p := w.procs[i]
	cmd := p.cmd
	w.procs = append(w.procs[:i], w.procs[i+1:]...)
	w.mu.Unlock()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
	err := cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return err
	}
	if err == nil || !exit.Sys().(syscall.WaitStatus).Signaled() {
		return fmt.Errorf("process %d had exited before it was killed (see its log in %s)", cmd.Process.Pid, w.dir)
	}
	return w.start(p.serve)
}

// killLoop kills a worker at random moments (uniform in [0, 2·every],
// so every apart on average) until n kills or ctx ends, and returns how
// many it made. It picks among the workers holding a running job when
// there are any (a worker still starting up has nothing to lose), else
// any worker.
func (w *workers) killLoop(ctx context.Context, st store.Store, seed uint64, n int, every time.Duration) int {
	rng := mrand.New(mrand.NewPCG(seed, seed>>1))
	for k := 0; k < n; k++ {
		t := time.NewTimer(time.Duration(rng.Int64N(int64(2*every) + 1)))
		select {
		case <-ctx.Done():
			t.Stop()
			return k
		case <-t.C:
		}
		busy := map[string]bool{}
		if jobs, err := st.ListJobs(ctx, store.JobFilter{ActiveOnly: true}); err == nil {
			for _, j := range jobs {
				if j.State == model.JobRunning {
					// A worker's id is host/pid/random (pkg/queue).
					if parts := strings.Split(j.LeaseOwner, "/"); len(parts) == 3 {
						busy[parts[1]] = true
					}
				}
			}
		}
		w.mu.Lock()
		var candidates []int
		for i, p := range w.procs {
			if busy[fmt.Sprint(p.cmd.Process.Pid)] {
				candidates = append(candidates, i)
			}
		}
		i := rng.IntN(len(w.procs))
		if len(candidates) > 0 {
			i = candidates[rng.IntN(len(candidates))]
		}
		w.mu.Unlock()
		if err := w.kill(i); err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return k
		}
	}
	return n
}

// stopAll kills every worker and waits for it (the run's jobs are done,
// or the run failed); it can be called again.
func (w *workers) stopAll() {
	w.mu.Lock()
	procs := w.procs
	w.procs = nil
	w.mu.Unlock()
	for _, p := range procs {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
		p.cmd.Wait()                                      //nolint:errcheck
	}
}
