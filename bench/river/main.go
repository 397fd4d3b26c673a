// Command river measures the cocalc-hosts queue next to River
// (riverqueue/river) doing the same work, in one run, on SQLite and on a
// throwaway Postgres, and prints one JSON object.
//
// The work of one action is the same for both: a sim create at zero
// latency through hosts.Service.Run (it reads the host, asks the sim
// cloud, whose instances are rows in the same database), then the host's
// new row and its cloud_vm_log entry. The cocalc-hosts queue commits those
// with the job's completion; River's worker writes them itself and River
// completes the job. Both run 4 jobs at once.
//
// It is a module of its own so that River never becomes a dependency of
// the product. bench/run.sh runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	_ "github.com/sagemathinc/cocalc-hosts/providers/sim"
)

const workers = 4

var (
	cpuProfile string
	implList   []string
	warmup     int
	floorTime  time.Duration
)

func main() {
	depths := flag.String("depths", "20000,200", "queue depths to drain, comma-separated")
	samples := flag.Int("latency-samples", 200, "jobs enqueued one at a time for the latency figures")
	backends := flag.String("backends", "sqlite,postgres", "backends to measure")
	impls := flag.String("impls", "cocalc_hosts,river", "queues to measure")
	flag.IntVar(&warmup, "warmup", 100, "jobs each drain runs first, untimed, on its database (0: time the first worker of a new database)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the cocalc-hosts drains to this file")
	flag.DurationVar(&floorTime, "floor", 20*time.Second, "how long pgbench measures the database-only ceiling on Postgres (0: not at all)")
	flag.Parse()
	implList = strings.Split(*impls, ",")
	if err := run(*depths, *samples, strings.Split(*backends, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "bench/river:", err)
		os.Exit(1)
	}
}

// Report is this program's output.
type Report struct {
	Workers int `json:"workers"`
	// WarmupJobs ran before each drain on its database, untimed.
	WarmupJobs int                 `json:"warmup_jobs"`
	Work       string              `json:"work"`
	River      string              `json:"river"`
	Results    map[string]*Backend `json:"results"`
}

// Backend holds one backend's figures.
type Backend struct {
	// Drain has actions/s draining a queue of the given depth.
	Drain map[string]Pair `json:"drain_actions_per_s"`
	// CPU is the CPU time each action of a drain cost, in ms: this
	// process's (the queue or River, the action) and the throwaway
	// Postgres's (its server processes, background ones too). Unlike
	// actions/s it hardly depends on how busy the machine is.
	CPU map[string]CPUPair `json:"cpu_ms_per_action"`
	// Latency is enqueue → claimed (the worker starts the job) on an idle
	// queue, one job at a time, from before the enqueue is sent.
	Latency LatencyPair `json:"enqueue_to_claim_ms"`
	// Floor is the most actions/s the database alone allows here
	// (Postgres only).
	Floor *Floor `json:"database_only_ceiling,omitempty"`
}

// Pair is one figure and its reference measured in the same run.
type Pair struct {
	CocalcHosts float64 `json:"cocalc_hosts"`
	River       float64 `json:"river"`
}

type CPUPair struct {
	CocalcHosts CPU `json:"cocalc_hosts"`
	River       CPU `json:"river"`
}

type CPU struct {
	Process  float64 `json:"process"`
	Postgres float64 `json:"postgres,omitempty"`
}

type LatencyPair struct {
	CocalcHosts Percentiles `json:"cocalc_hosts"`
	River       Percentiles `json:"river"`
}

type Percentiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	N   int     `json:"n"`
}

func run(depths string, samples int, backends []string) error {
	rep := Report{Workers: workers, WarmupJobs: warmup, Results: map[string]*Backend{},
		Work:  "sim create at zero latency through hosts.Service.Run, then the host row update and a cloud_vm_log insert",
		River: "riverqueue/river v0.51.2, MaxWorkers 4, FetchCooldown 1ms, FetchPollInterval 5ms (tuned for throughput; SQLite shares the store's one connection)"}
	var cluster *pgtest.Cluster
	defer func() {
		if cluster != nil {
			cluster.Stop()
		}
	}()
	tmp, err := os.MkdirTemp("", "cocalc-bench-river-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	seq := 0
	newDSN := func(backend string) (string, error) {
		seq++
		if backend == "sqlite" {
			return filepath.Join(tmp, fmt.Sprintf("state%d.db", seq)), nil
		}
		if cluster == nil {
			if cluster, err = pgtest.Start(); err != nil {
				return "", err
			}
		}
		return cluster.CreateDatabase(fmt.Sprintf("bench%d", seq))
	}
	for _, backend := range backends {
		b := &Backend{Drain: map[string]Pair{}, CPU: map[string]CPUPair{}}
		rep.Results[backend] = b
		for _, d := range strings.Split(depths, ",") {
			n, err := strconv.Atoi(d)
			if err != nil {
				return fmt.Errorf("bad depth %q", d)
			}
			var p Pair
			var c CPUPair
			for _, impl := range implList {
				dsn, err := newDSN(backend)
				if err != nil {
					return err
				}
				rate, cpu, err := drain(impl, dsn, n)
				if err != nil {
					return fmt.Errorf("%s on %s, %d jobs: %w", impl, backend, n, err)
				}
				if impl == "river" {
					p.River, c.River = rate, cpu
				} else {
					p.CocalcHosts, c.CocalcHosts = rate, cpu
				}
			}
			b.Drain[d], b.CPU[d] = p, c
		}
		for _, impl := range implList {
			if samples == 0 {
				break
			}
			dsn, err := newDSN(backend)
			if err != nil {
				return err
			}
			lat, err := latency(impl, dsn, samples)
			if err != nil {
				return fmt.Errorf("%s latency on %s: %w", impl, backend, err)
			}
			if impl == "river" {
				b.Latency.River = lat
			} else {
				b.Latency.CocalcHosts = lat
			}
		}
	}
	if b := rep.Results["postgres"]; b != nil && floorTime > 0 {
		dsn, err := newDSN("postgres")
		if err != nil {
			return err
		}
		f, err := measureFloor(cluster, dsn, tmp, floorTime)
		if err != nil {
			return fmt.Errorf("database-only ceiling: %w", err)
		}
		b.Floor = &f
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// env is one fresh database with n hosts to create.
type env struct {
	st    *store.SQLStore
	svc   *hosts.Service
	hosts []model.Host
	pool  *pgxpool.Pool // River's, on Postgres: one per database, shared by its clients
}

func (e *env) close() {
	if e.pool != nil {
		e.pool.Close()
	}
	e.st.Close()
}

func newEnv(ctx context.Context, dsn string) (*env, error) {
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		return nil, err
	}
	dep, err := st.Deployment(ctx)
	if err != nil {
		return nil, err
	}
	p, err := provider.Open("sim", provider.Config{Deployment: dep, State: st.ProviderState()})
	if err != nil {
		return nil, err
	}
	svc := hosts.New(st, oneProvider{p})
	svc.MaxAttempts = 5
	return &env{st: st, svc: svc}, nil
}

type oneProvider struct{ p provider.Provider }

func (o oneProvider) Get(context.Context, string) (provider.Provider, error) { return o.p, nil }

// addHosts stores n hosts as `create` does before it queues the job.
func (e *env) addHosts(ctx context.Context, n int) error {
	now := time.Now()
	for i := range n {
		h := model.Host{ID: uuid.NewString(), Name: fmt.Sprintf("b%06d", len(e.hosts)), Owner: "bench", Provider: "sim",
			Region: "sim-east1", Status: model.StatusProvisioning, Spec: model.HostSpec{MachineType: "sim-small"},
			LastAction: "create", CreatedAt: now, UpdatedAt: now}
		if err := e.st.CreateHost(ctx, h); err != nil {
			return fmt.Errorf("host %d: %w", i, err)
		}
		e.hosts = append(e.hosts, h)
	}
	return nil
}

func (e *env) job(h model.Host, id string, attempt int) model.Job {
	return model.Job{ID: id, Subject: model.HostSubject(h.ID), Action: model.ActionCreate, Payload: json.RawMessage(`{}`),
		State: model.JobRunning, Attempts: attempt, MaxAttempts: 5}
}

func (e *env) enqueue(ctx context.Context, h model.Host) (model.Job, error) {
	j, _, err := e.st.EnqueueJob(ctx, model.Job{ID: uuid.NewString(), Subject: model.HostSubject(h.ID),
		Action: model.ActionCreate, MaxAttempts: 5, RunAfter: time.Now(), CreatedAt: time.Now()})
	return j, err
}

// doneCount counts the "done" cloud_vm_log entries: one per action run.
func (e *env) doneCount(ctx context.Context) (int, error) {
	logs, err := e.st.ListLog(ctx, store.LogFilter{})
	n := 0
	for _, l := range logs {
		if l.Status == "done" {
			n++
		}
	}
	return n, err
}

// drain queues n creates, runs them with impl and returns actions/s. It
// checks that every action ran once. With warm-up jobs, those run first,
// untimed, on the same database and connection pool, through a worker (a
// River client) that is then stopped: the n jobs are then drained by a
// new one, as a long-running process would meet a burst, instead of by
// the first worker of a database just made (new server processes, first
// plans, empty caches).
func drain(impl, dsn string, n int) (float64, CPU, error) {
	ctx := context.Background()
	e, err := newEnv(ctx, dsn)
	if err != nil {
		return 0, CPU{}, err
	}
	defer e.close()
	var run func(hs []model.Host, timed bool) (time.Duration, error)
	switch impl {
	case "cocalc_hosts":
		run = func(hs []model.Host, timed bool) (time.Duration, error) {
			for _, h := range hs {
				if _, err := e.enqueue(ctx, h); err != nil {
					return 0, err
				}
			}
			w := queue.NewWorker(e.st, e.svc)
			w.Concurrency = workers
			stop := func() {}
			if timed {
				if stop, err = profile(); err != nil {
					return 0, err
				}
			}
			start := time.Now()
			err := w.Run(ctx, true)
			elapsed := time.Since(start)
			stop()
			return elapsed, err
		}
	case "river":
		run = func(hs []model.Host, _ bool) (time.Duration, error) {
			r, err := newRiver(ctx, e, dsn)
			if err != nil {
				return 0, err
			}
			if err := r.insert(ctx, hs); err != nil {
				return 0, err
			}
			start := time.Now()
			if err := r.start(ctx); err != nil {
				return 0, err
			}
			r.wait(len(hs))
			elapsed := time.Since(start)
			return elapsed, r.stop(ctx)
		}
	}
	if warmup > 0 {
		if err := e.addHosts(ctx, warmup); err != nil {
			return 0, CPU{}, err
		}
		if _, err := run(e.hosts, false); err != nil {
			return 0, CPU{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	if err := e.addHosts(ctx, n); err != nil {
		return 0, CPU{}, err
	}
	proc0, pg0 := cpuTime()
	elapsed, err := run(e.hosts[len(e.hosts)-n:], true)
	proc1, pg1 := cpuTime()
	if err != nil {
		return 0, CPU{}, err
	}
	cpu := CPU{Process: (proc1 - proc0).Seconds() * 1000 / float64(n), Postgres: (pg1 - pg0).Seconds() * 1000 / float64(n)}
	done, err := e.doneCount(ctx)
	if err != nil {
		return 0, CPU{}, err
	}
	if done != warmup+n {
		return 0, CPU{}, fmt.Errorf("%d actions recorded done for %d jobs", done, warmup+n)
	}
	return float64(n) / elapsed.Seconds(), cpu, nil
}

// profile starts the CPU profile of a drain, if one is asked for: the
// first drain's only, so that the file holds one backend's figures.
func profile() (stop func(), err error) {
	if cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(cpuProfile)
	if err != nil {
		return nil, err
	}
	cpuProfile = ""
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// latency enqueues jobs one at a time on an idle queue and measures the
// time to the worker starting each.
func latency(impl, dsn string, samples int) (Percentiles, error) {
	ctx := context.Background()
	e, err := newEnv(ctx, dsn)
	if err != nil {
		return Percentiles{}, err
	}
	defer e.close()
	if err := e.addHosts(ctx, samples); err != nil {
		return Percentiles{}, err
	}
	var mu sync.Mutex
	enqueued := map[string]time.Time{}
	var lat []time.Duration
	started := make(chan struct{}, 1)
	record := func(id string) {
		now := time.Now()
		mu.Lock()
		lat = append(lat, now.Sub(enqueued[id]))
		mu.Unlock()
		started <- struct{}{}
	}
	var enqueue func(h model.Host) error
	var stop func() error
	switch impl {
	case "cocalc_hosts":
		w := queue.NewWorker(e.st, e.svc)
		w.Concurrency = workers
		w.OnEvent = func(ev queue.Event) {
			if ev.Kind == queue.EventClaimed {
				record(ev.Subject.ID)
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		ran := make(chan error, 1)
		go func() { ran <- w.Run(wctx, false) }()
		enqueue = func(h model.Host) error {
			_, err := e.enqueue(ctx, h)
			return err
		}
		stop = func() error {
			cancel()
			if err := <-ran; err != nil && err != context.Canceled {
				return err
			}
			return nil
		}
	case "river":
		r, err := newRiver(ctx, e, dsn)
		if err != nil {
			return Percentiles{}, err
		}
		r.onStart = record
		if err := r.start(ctx); err != nil {
			return Percentiles{}, err
		}
		enqueue = func(h model.Host) error {
			_, err := r.insertOne(ctx, h)
			return err
		}
		stop = func() error { return r.stop(ctx) }
	}
	// Give the worker a moment to settle into its idle wait.
	time.Sleep(200 * time.Millisecond)
	for _, h := range e.hosts {
		mu.Lock()
		enqueued[h.ID] = time.Now()
		mu.Unlock()
		if err := enqueue(h); err != nil {
			return Percentiles{}, err
		}
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			return Percentiles{}, fmt.Errorf("a job was not started within 30s")
		}
		// Light load: the next job comes after this one is done.
		time.Sleep(5 * time.Millisecond)
	}
	if err := stop(); err != nil {
		return Percentiles{}, err
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		i := min(int(p*float64(len(lat))), len(lat)-1)
		return float64(lat[i].Microseconds()) / 1000
	}
	return Percentiles{P50: pct(0.50), P99: pct(0.99), N: len(lat)}, nil
}

// ---- River

// createArgs is River's job: create one host.
type createArgs struct {
	HostID string `json:"host_id"`
}

func (createArgs) Kind() string { return "host_create" }

type createWorker struct {
	river.WorkerDefaults[createArgs]
	r *riverEnv
}

// Work does what the cocalc-hosts queue does for a create: run the
// action, then write the host row and the log entry.
func (w *createWorker) Work(ctx context.Context, job *river.Job[createArgs]) error {
	id := strconv.FormatInt(job.ID, 10)
	if w.r.onStart != nil {
		w.r.onStart(job.Args.HostID)
	}
	h := model.Host{ID: job.Args.HostID}
	res, err := w.r.e.svc.Run(ctx, w.r.e.job(h, id, job.Attempt), func(string) {})
	if err != nil {
		return err
	}
	for _, wr := range res.Writes {
		switch wr := wr.(type) {
		case store.HostWrite:
			err = w.r.e.st.UpdateHost(ctx, wr.Host)
		case store.LogWrite:
			_, err = w.r.e.st.AppendLog(ctx, wr.Entry)
		}
		if err != nil {
			return err
		}
	}
	w.r.done.Add(1)
	return nil
}

// riverEnv is a River client on env's database, whatever its driver.
type riverEnv struct {
	e       *env
	done    counter
	onStart func(id string)

	start     func(ctx context.Context) error
	stop      func(ctx context.Context) error
	insertAll func(ctx context.Context, args []river.InsertManyParams) error
	insertOne func(ctx context.Context, h model.Host) (string, error)
}

func (r *riverEnv) insert(ctx context.Context, hs []model.Host) error {
	// In batches, as a large fleet-wide action would be queued.
	for i := 0; i < len(hs); i += 1000 {
		var ps []river.InsertManyParams
		for _, h := range hs[i:min(i+1000, len(hs))] {
			ps = append(ps, river.InsertManyParams{Args: createArgs{HostID: h.ID}})
		}
		if err := r.insertAll(ctx, ps); err != nil {
			return err
		}
	}
	return nil
}

type counter struct {
	mu sync.Mutex
	n  int
	c  *sync.Cond
}

func (c *counter) Add(d int) {
	c.mu.Lock()
	c.n += d
	c.c.Broadcast()
	c.mu.Unlock()
}

func (r *riverEnv) wait(n int) {
	r.done.mu.Lock()
	for r.done.n < n {
		r.done.c.Wait()
	}
	r.done.mu.Unlock()
}

func newRiver(ctx context.Context, e *env, dsn string) (*riverEnv, error) {
	r := &riverEnv{e: e}
	r.done.c = sync.NewCond(&r.done.mu)
	ws := river.NewWorkers()
	river.AddWorker(ws, &createWorker{r: r})
	cfg := &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:           ws,
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 5 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if store.IsPostgres(dsn) {
		if e.pool == nil {
			pool, err := pgxpool.New(ctx, dsn)
			if err != nil {
				return nil, err
			}
			e.pool = pool
		}
		return r, setupRiver(ctx, r, riverpgxv5.New(e.pool), cfg)
	}
	// River's SQLite driver wants one connection: share the store's, as a
	// second writer on the file would only wait for it.
	return r, setupRiver(ctx, r, riversqlite.New(e.st.DB()), cfg)
}

func setupRiver[TTx any](ctx context.Context, r *riverEnv, drv riverdriver.Driver[TTx], cfg *river.Config) error {
	m, err := rivermigrate.New(drv, nil)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	client, err := river.NewClient(drv, cfg)
	if err != nil {
		return err
	}
	r.start, r.stop = client.Start, client.Stop
	r.insertAll = func(ctx context.Context, ps []river.InsertManyParams) error {
		_, err := client.InsertMany(ctx, ps)
		return err
	}
	r.insertOne = func(ctx context.Context, h model.Host) (string, error) {
		res, err := client.Insert(ctx, createArgs{HostID: h.ID}, nil)
		if err != nil {
			return "", err
		}
		return strconv.FormatInt(res.Job.ID, 10), nil
	}
	return nil
}

// cpuTime returns the CPU time this process has used, and that of the
// Postgres it started (pgtest runs the server as its child; the server's
// processes are the server's children), as /proc says.
func cpuTime() (self, postgres time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	me := os.Getpid()
	parent, used := map[int]int{}, map[int]time.Duration{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		i := strings.LastIndexByte(string(b), ')')
		if err != nil || i < 0 || i+2 > len(b) {
			continue
		}
		f := strings.Fields(string(b[i+2:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		parent[pid] = ppid
		used[pid] = time.Duration(utime+stime) * time.Second / 100 // clock ticks (USER_HZ)
	}
	for pid, ppid := range parent {
		if pid != me && (ppid == me || parent[ppid] == me) {
			postgres += used[pid]
		}
	}
	return self, postgres
}
