// Package worker runs the daemons of a control plane process: the queue
// worker that runs jobs, and the periodic duties beside it — reconcile
// the database with the providers, refresh expired catalogs and recompute
// usage, record the project states the hosts report, stop hosts idle
// past their policy, refresh the running hosts' access lists, and queue
// scheduled backups. `cocalc-hosts worker` and `serve` run them.
//
// Every worker claims jobs; only the one holding the database's leader
// lock (store.LeaderStore) runs the duties, so that processes sharing a
// database reconcile and refresh once, not once each. A worker that does
// not lead tries to take the lock every LeaderRetry.
//
// Like every package but the command layer, it prints nothing: what the
// duties do arrives as Events.
package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/app"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Options say what the worker runs. A zero interval turns its duty off.
type Options struct {
	Concurrency int
	Lease       time.Duration
	// Drain exits when no job is queued or running, and runs no duty.
	Drain               bool
	ReconcileInterval   time.Duration
	CatalogInterval     time.Duration
	ProjectSyncInterval time.Duration
	// AccessInterval is how often every running host's access list is
	// refreshed (ingress.acl_ttl): a revocation reaches the hosts within
	// it, and hosts never go stale while the control plane runs. The
	// first refresh is at once.
	AccessInterval time.Duration
	// BackupInterval is how often projects due for a scheduled backup
	// (backup.schedule) are looked for; the first look is at once.
	BackupInterval time.Duration
	// OnJob hears the queue's events; OnDuty what the duties did. Either
	// may be nil. They are called from several goroutines at once.
	OnJob  func(queue.Event)
	OnDuty func(Event)
	// LeaderRetry is how often to try to take the leader lock while
	// another process holds it; zero means LeaderRetry.
	LeaderRetry time.Duration
}

// Duty names a periodic duty.
type Duty string

const (
	Reconcile   Duty = "reconcile"
	Catalog     Duty = "catalog refresh"
	Usage       Duty = "usage"
	ProjectSync Duty = "project sync"
	IdleStop    Duty = "idle stop"
	Access      Duty = "access lists"
	Backups     Duty = "backups"
	MoveCleanup Duty = "move cleanup"
	// Leadership reports taking or losing the leader lock (Leading).
	Leadership Duty = "leadership"
)

// LeaderRetry is how often a worker that does not lead tries to take the
// leader lock: the longest the duties pause after a leader dies (on
// Postgres, plus the time the server takes to end a vanished session).
const LeaderRetry = 3 * time.Second

// Event is one outcome of a duty: an error, or a report.
type Event struct {
	Duty        Duty
	Err         error
	Reconcile   *reconcile.Report
	ProjectSync *projects.SyncReport
	IdleStop    *hosts.IdleStop
	Access      *projects.PushReport
	Certs       *projects.CertReport
	Backups     *projects.ScheduleReport
	// MovesCleaned counts the old copies of moves queued for deletion.
	MovesCleaned int
	// Leading, for Leadership events: whether this worker now leads (or,
	// when false, that another process does).
	Leading bool
}

// Worker is a queue worker with its duties.
type Worker struct {
	app     *app.App
	st      store.Store
	o       Options
	q       *queue.Worker
	leading atomic.Bool
}

// New prepares a worker on a's queue.
func New(ctx context.Context, a *app.App, o Options) (*Worker, error) {
	st, err := a.Store(ctx)
	if err != nil {
		return nil, err
	}
	h, err := a.Handler(ctx)
	if err != nil {
		return nil, err
	}
	q := queue.NewWorker(st, h)
	if o.Concurrency > 0 {
		q.Concurrency = o.Concurrency
	}
	if o.Lease > 0 {
		q.Lease = o.Lease
	}
	q.OnEvent = o.OnJob
	return &Worker{app: a, st: st, o: o, q: q}, nil
}

// ID is the queue worker's id (as jobs record it).
func (w *Worker) ID() string { return w.q.ID }

// Concurrency and Lease are what the queue worker runs with.
func (w *Worker) Concurrency() int     { return w.q.Concurrency }
func (w *Worker) Lease() time.Duration { return w.q.Lease }

// Leading reports whether this worker holds the leader lock now.
func (w *Worker) Leading() bool { return w.leading.Load() }

// Run runs jobs, and the duties while it leads unless draining, until ctx
// ends (or, when draining, until the queue is empty).
func (w *Worker) Run(ctx context.Context) error {
	if !w.o.Drain {
		led := make(chan struct{})
		defer func() { <-led }() // the lock is given up before Run returns
		go func() {
			defer close(led)
			w.lead(ctx)
		}()
	}
	return w.q.Run(ctx, w.o.Drain)
}

// lead takes the leader lock whenever it is free and runs the duties
// while it holds it, until ctx ends. It reports each change: leading, or
// finding that another process leads.
func (w *Worker) lead(ctx context.Context) {
	retry := w.o.LeaderRetry
	if retry <= 0 {
		retry = LeaderRetry
	}
	follower := false // reported that another process leads
	for ctx.Err() == nil {
		l, err := w.st.TryLead(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				w.emit(Event{Duty: Leadership, Err: err})
			}
		case l == nil && !follower:
			follower = true
			w.emit(Event{Duty: Leadership, Leading: false})
		case l != nil:
			follower = false
			w.leading.Store(true)
			w.emit(Event{Duty: Leadership, Leading: true})
			dctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			w.duties(dctx, &wg)
			select {
			case <-l.Lost():
			case <-ctx.Done():
			}
			// Stop the duties before letting go, so that the next leader's
			// never overlap ours.
			stop()
			wg.Wait()
			w.leading.Store(false)
			l.Release()
			if ctx.Err() == nil {
				w.emit(Event{Duty: Leadership, Err: errLostLead})
			}
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

var errLostLead = errors.New("lost the leader lock (its database connection failed); the periodic duties run elsewhere until it is taken again")

// duties starts the periodic duties until ctx ends; wg counts them.
func (w *Worker) duties(ctx context.Context, wg *sync.WaitGroup) {
	every(ctx, wg, w.o.ReconcileInterval, w.reconcile)
	every(ctx, wg, w.o.CatalogInterval, w.catalog)
	every(ctx, wg, w.o.ProjectSyncInterval, w.projectSync)
	every(ctx, wg, w.o.ProjectSyncInterval, w.moveCleanup)
	if w.o.AccessInterval > 0 {
		wg.Go(func() { w.access(ctx) }) // hosts learn of changes made while no worker led
		every(ctx, wg, w.o.AccessInterval, w.access)
	}
	if w.o.BackupInterval > 0 {
		wg.Go(func() { w.backups(ctx) })
		every(ctx, wg, w.o.BackupInterval, w.backups)
	}
}

// every runs duty every d in the background until ctx ends.
func every(ctx context.Context, wg *sync.WaitGroup, d time.Duration, duty func(context.Context)) {
	if d <= 0 {
		return
	}
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				duty(ctx)
			}
		}
	})
}

func (w *Worker) emit(e Event) {
	if w.o.OnDuty != nil {
		w.o.OnDuty(e)
	}
}

// moveCleanup queues deleting the old copies moves kept long enough.
func (w *Worker) moveCleanup(ctx context.Context) {
	ps, err := w.app.Projects(ctx)
	if err == nil {
		var n int
		if n, err = ps.CleanupDueMoves(ctx); n == 0 && err == nil {
			return
		}
		w.emit(Event{Duty: MoveCleanup, Err: err, MovesCleaned: n})
		return
	}
	w.emit(Event{Duty: MoveCleanup, Err: err})
}

func (w *Worker) reconcile(ctx context.Context) {
	rep, err := w.app.Reconcile(ctx, app.ReconcileOptions{})
	if err != nil {
		w.emit(Event{Duty: Reconcile, Err: err})
		return
	}
	w.emit(Event{Duty: Reconcile, Reconcile: &rep})
}

// catalog refreshes the expired catalogs of the configured providers,
// then recomputes usage.
func (w *Worker) catalog(ctx context.Context) {
	cache, err := w.app.Catalog(ctx)
	if err != nil {
		w.emit(Event{Duty: Catalog, Err: err})
		return
	}
	set, err := w.app.Providers(ctx)
	if err != nil {
		w.emit(Event{Duty: Catalog, Err: err})
		return
	}
	m, err := set.Configured(ctx)
	if err != nil {
		w.emit(Event{Duty: Catalog, Err: err})
		return
	}
	var ps []provider.Provider
	for _, p := range m {
		ps = append(ps, p)
	}
	_, errs := cache.RefreshStale(ctx, ps)
	for _, err := range errs {
		w.emit(Event{Duty: Catalog, Err: err})
	}
	cs, err := w.app.Cost(ctx)
	if err == nil {
		err = cs.RefreshAll(ctx)
	}
	if err != nil {
		w.emit(Event{Duty: Usage, Err: err})
	}
}

// projectSync stops the hosts the control plane stops when idle, then
// records what the hosts report about their projects, so that a project
// its host stopped for being idle shows as stopped.
func (w *Worker) projectSync(ctx context.Context) {
	w.idleStop(ctx)
	ps, err := w.app.Projects(ctx)
	if err != nil {
		w.emit(Event{Duty: ProjectSync, Err: err})
		return
	}
	rep, err := ps.SyncAll(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.emit(Event{Duty: ProjectSync, Err: err})
		}
		return
	}
	w.emit(Event{Duty: ProjectSync, ProjectSync: &rep})
}

// idleStop stops the hosts idle past their policy that the control plane
// stops (see hosts.StopIdleHosts); the queue then runs the stops.
func (w *Worker) idleStop(ctx context.Context) {
	svc, err := w.app.Hosts(ctx)
	if err != nil {
		w.emit(Event{Duty: IdleStop, Err: err})
		return
	}
	stops, err := svc.StopIdleHosts(ctx)
	if err != nil && ctx.Err() == nil {
		w.emit(Event{Duty: IdleStop, Err: err})
	}
	for i := range stops {
		w.emit(Event{Duty: IdleStop, IdleStop: &stops[i]})
	}
}

// access refreshes every running host's access list.
func (w *Worker) access(ctx context.Context) {
	ps, err := w.app.Projects(ctx)
	if err != nil {
		w.emit(Event{Duty: Access, Err: err})
		return
	}
	rep, err := ps.PushAllAccess(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.emit(Event{Duty: Access, Err: err})
		}
		return
	}
	w.emit(Event{Duty: Access, Access: &rep})
	// Certificates follow the push, which recorded what each host serves.
	certs, err := ps.RenewCertificates(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.emit(Event{Duty: Access, Err: err})
		}
		return
	}
	if len(certs.Issued)+len(certs.Failed) > 0 {
		w.emit(Event{Duty: Access, Certs: &certs})
	}
}

// backups queues the scheduled backups that are due.
func (w *Worker) backups(ctx context.Context) {
	ps, err := w.app.Projects(ctx)
	if err != nil {
		w.emit(Event{Duty: Backups, Err: err})
		return
	}
	rep, err := ps.ScheduleBackups(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.emit(Event{Duty: Backups, Err: err})
		}
		return
	}
	w.emit(Event{Duty: Backups, Backups: &rep})
}
