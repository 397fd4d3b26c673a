// Package queue runs actions from the durable jobs table. A job acts on a
// subject (a host, a project); handlers give its meaning.
//
// Guarantees, all provided by the store's claim and finish statements:
//   - a job is claimed by one worker at a time (FOR UPDATE SKIP LOCKED on
//     Postgres, the single writer on SQLite);
//   - at most one job per subject is queued or running (a unique index);
//   - a claimed job carries a lease that the worker extends with
//     heartbeats; when a worker dies its job is taken over once the lease
//     expires, and the dead worker's late writes are rejected (ErrLeaseLost);
//   - each attempt is counted; retryable failures are retried with
//     exponential backoff and jitter, at least the provider's Retry-After
//     later, until MaxAttempts, then recorded as failed with the error.
//
// Handlers must be idempotent, because a job taken over after a crash runs
// again from the start.
//
// Shutdown: when Run's context ends, the jobs claimed ahead are given
// back at once, and the running ones have Grace to finish; those still
// running then are cancelled, and every job that ends in error while the
// worker stops is handed back too: queued again at once with its lease
// cleared and the attempt not counted, so another worker claims it
// without waiting for the lease to expire. A stopping worker leaves no
// lease behind (unless the database is unreachable: then the leases
// expire as a dead worker's do).
//
// How it is fast: a worker claims as many jobs as it has free slots (and,
// while its jobs are short, more ahead) in one statement, reading partial
// indexes only as far as the rows it takes (so a claim costs the same at
// any queue depth); it extends the leases of all its jobs with one
// statement per heartbeat; and the jobs that finish while a commit is in
// flight are recorded together in the next one (group commit). An idle
// worker sleeps until the store reports a change to the jobs table
// (Postgres LISTEN/NOTIFY; on SQLite the same process at once, other
// processes within store.SQLitePollInterval) or the next queued job
// becomes due.
//
// Convergence: a failed attempt is retried after BaseBackoff doubling per
// attempt, capped at MaxBackoff (10 s by default, a third of the default
// lease), ±20 % jitter, or after the provider's Retry-After if that is
// longer. So an action that keeps failing transiently ends, done or
// failed, within MaxAttempts attempts and (MaxAttempts-1)·12 s of waiting
// plus the attempts' own time; a job whose worker died is taken over one
// Lease after its last heartbeat.
package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/telemetry"
)

// Result is what an attempt wrote (its subject's new row, a log entry),
// committed together with the job's new state while the lease holds.
type Result struct {
	Writes []store.Write
}

// Handler executes jobs.
type Handler interface {
	// Run performs the job's action. progress reports human-readable steps.
	Run(ctx context.Context, job model.Job, progress func(string)) (Result, error)
	// Failed describes a failed attempt: final is true when the job will
	// not be retried.
	Failed(ctx context.Context, job model.Job, err error, final bool) Result
}

// EventKind names what happened to a job.
type EventKind string

const (
	EventClaimed  EventKind = "claimed"
	EventProgress EventKind = "progress"
	EventRetry    EventKind = "retry"
	EventDone     EventKind = "done"
	EventFailed   EventKind = "failed"
	EventLost     EventKind = "lease_lost"
	// EventHandedBack: a worker stopping gave the job back unfinished.
	EventHandedBack EventKind = "handed_back"
)

// Event is a progress report for renderers (TTY, JSON lines, TUI).
type Event struct {
	Time    time.Time      `json:"time"`
	Kind    EventKind      `json:"event"`
	JobID   string         `json:"job_id"`
	Subject model.Subject  `json:"subject"`
	Action  model.Action   `json:"action"`
	Attempt int            `json:"attempt"`
	Message string         `json:"message,omitempty"`
	Retry   *time.Time     `json:"retry_at,omitempty"`
	State   model.JobState `json:"state,omitempty"`
	Worker  string         `json:"worker"`
	Err     string         `json:"error,omitempty"`
	// ErrKind is Err's kind (pkg/errkind), for counting failures by kind.
	ErrKind string `json:"error_kind,omitempty"`
}

// Worker claims and runs jobs.
type Worker struct {
	Store   store.Store
	Handler Handler
	// ID names this worker in leases; unique per process and goroutine pool.
	ID string
	// Lease is how long a claim lasts without a heartbeat.
	Lease time.Duration
	// Concurrency is how many jobs run at once.
	Concurrency int
	// Idle is the longest an idle worker waits before it looks for work
	// again without being woken: a safety net, since changes to the jobs
	// table and due times wake it at once.
	Idle time.Duration
	// OnEvent receives progress; it must not block for long.
	OnEvent func(Event)
	// Now is the clock (tests may replace it).
	Now func() time.Time
	// BaseBackoff is the first retry delay; it doubles per attempt.
	BaseBackoff time.Duration
	// MaxBackoff caps retry delays (a provider's Retry-After may be longer).
	MaxBackoff time.Duration
	// Grace is how long the jobs running when Run's context ends may take
	// to finish before they are cancelled and handed back.
	Grace time.Duration

	mu        sync.Mutex
	held      map[string]context.CancelCauseFunc // jobs running here, by id
	heartbeat chan struct{}                      // closed to stop the heartbeat loop; nil when none runs
	finishing bool                               // a goroutine is committing finishes
	pending   []*finishing                       // finishes waiting for the next commit
	recent    [64]string                         // jobs released lately (see own)
	nrecent   int
}

// DefaultGrace is Worker.Grace unless set: well within the time service
// managers give a process to stop (systemd's 90 s, Kubernetes' 30 s).
const DefaultGrace = 20 * time.Second

// NewWorker returns a worker with defaults filled in.
func NewWorker(s store.Store, h Handler) *Worker {
	host, _ := os.Hostname()
	return &Worker{
		Store: s, Handler: h,
		ID:          fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString()[:8]),
		Lease:       30 * time.Second,
		Concurrency: 4,
		Idle:        2 * time.Second,
		Now:         time.Now,
		BaseBackoff: 2 * time.Second,
		MaxBackoff:  10 * time.Second,
		Grace:       DefaultGrace,
	}
}

func (w *Worker) emit(e Event) {
	if w.OnEvent != nil {
		e.Time = w.Now()
		e.Worker = w.ID
		w.OnEvent(e)
	}
}

func (w *Worker) event(kind EventKind, job model.Job) Event {
	return Event{Kind: kind, JobID: job.ID, Subject: job.Subject, Action: job.Action, Attempt: job.Attempts}
}

// Run works jobs until ctx is cancelled. With drain, it returns as soon as
// no job is queued or running anywhere.
//
// It claims jobs for its free slots and as many again ahead, so that
// under load one claim serves several jobs; while jobs are short (a
// claim's jobs all started within fastBatch) it claims up to four times
// as many ahead, and back to as many again once they are not. Jobs
// claimed ahead are
// leased (and heartbeated) like running ones, and given back unstarted,
// without counting an attempt, when the worker stops.
func (w *Worker) Run(ctx context.Context, drain bool) error {
	n := max(w.Concurrency, 1)
	// Subscribe before the first claim, so that no job enqueued after it
	// can go unnoticed.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	changes := w.Store.Subscribe(sctx, store.TopicJobs)
	// Jobs run on in their own context for Grace once ctx ends.
	jobs, cut := context.WithCancel(context.WithoutCancel(ctx))
	defer cut()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(w.Grace, cut) })()
	ended := make(chan error, n)
	running := 0
	var ahead []*claimed
	// Jobs to claim ahead of free slots; when we last claimed; whether a
	// job ended soon after that claim (see fastBatch).
	extra, lastClaim, short := 0, time.Time{}, false
	var failure error
	for failure == nil && ctx.Err() == nil {
		for ; running < n && len(ahead) > 0; ahead = ahead[1:] {
			running++
			c := ahead[0]
			go func() { ended <- w.execute(ctx, c) }()
		}
		wait := w.Idle
		if free := n - running; free > 0 {
			if short {
				extra = min(max(2*extra, n), maxAhead*n)
			} else {
				extra = 0
			}
			short, lastClaim = false, time.Now()
			claimed, err := w.claim(ctx, jobs, "", free+extra)
			switch {
			case errkind.Is(err, errkind.Unavailable):
				// The database went away: keep trying, it may come back.
				w.emit(Event{Kind: EventProgress, Err: err.Error(), Message: "state database unavailable; retrying"})
			case err != nil:
				if ctx.Err() == nil {
					failure = err
				}
				continue
			}
			ahead = claimed
			if len(claimed) == free+extra {
				continue // there may be more
			}
			if len(claimed) > 0 {
				continue // start them; then look again
			}
			if err == nil {
				next, ok, err := w.Store.NextJobAt(ctx)
				switch {
				case err != nil:
				case !ok && running == 0 && drain:
					return nil
				case ok:
					wait = min(wait, max(next.Sub(w.Now()), 0)+time.Millisecond)
				}
			}
		}
		t := time.NewTimer(jitter(wait))
	wake:
		for {
			select {
			case err := <-ended:
				running--
				failure = err
				short = short || time.Since(lastClaim) < fastBatch
			case c, open := <-changes:
				if !open {
					changes = nil // the store closed: poll until ctx ends
					continue
				}
				if w.own(c.ID) {
					// Our own claims and finishes bring no new work.
					continue
				}
			case <-t.C:
			case <-ctx.Done():
			}
			break wake
		}
		t.Stop()
	}
	w.unclaim(ahead)
	for ; running > 0; running-- {
		if err := <-ended; failure == nil {
			failure = err
		}
	}
	if failure != nil || drain {
		return failure
	}
	return ctx.Err()
}

// A worker claims jobs ahead of its free slots only while its jobs are
// short: when one ended within fastBatch of its last claim, the next claim
// takes Concurrency more than the free slots, doubling while that lasts, up
// to maxAhead times Concurrency. Short jobs then cost fewer claims; long
// ones (a real cloud create) are never held by a busy worker while another
// one is idle, and a worker that has not yet seen a job end claims only
// what it can start.
const (
	fastBatch = 100 * time.Millisecond
	maxAhead  = 4
)

// claimed is a job this worker holds the lease of.
type claimed struct {
	job model.Job
	// ctx ends with cause store.ErrLeaseLost if a heartbeat finds the
	// lease taken over.
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// claim takes up to limit runnable jobs (or job id) and holds them; each
// job's context is derived from run.
func (w *Worker) claim(ctx, run context.Context, id string, limit int) ([]*claimed, error) {
	jobs, err := w.Store.ClaimJobs(ctx, store.Claim{Owner: w.ID, Lease: w.Lease, JobID: id, Limit: limit, Now: w.Now()})
	out := make([]*claimed, len(jobs))
	for i, job := range jobs {
		jctx, cancel := context.WithCancelCause(run)
		out[i] = &claimed{job: job, ctx: jctx, cancel: cancel}
		w.hold(job.ID, cancel)
	}
	return out, err
}

// unclaim gives back jobs claimed ahead that never started.
func (w *Worker) unclaim(cs []*claimed) {
	for _, c := range cs {
		c.cancel(nil)
		w.handBack(c.job, c.job.RunAfter) //nolint:errcheck // else the lease expires
		w.release(c.job.ID)
	}
}

// handBack queues job again at runAfter with its lease cleared and its
// attempt not counted (store.Finish.Unclaim).
func (w *Worker) handBack(job model.Job, runAfter time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.finish(ctx, store.Finish{JobID: job.ID, Owner: w.ID, State: model.JobQueued,
		RunAfter: runAfter, Error: job.LastError, Now: w.Now(), Unclaim: true})
}

// RunOne claims one job (jobID, if set, or any runnable one) and runs it
// to the end of this attempt. It reports whether it ran anything.
func (w *Worker) RunOne(ctx context.Context, jobID string) (bool, error) {
	cs, err := w.claim(ctx, ctx, jobID, 1)
	if err != nil || len(cs) == 0 {
		return false, err
	}
	return true, w.execute(ctx, cs[0])
}

// execute runs one attempt of a claimed job and records its outcome.
func (w *Worker) execute(parent context.Context, c *claimed) error {
	job, ctx, cancel := c.job, c.ctx, c.cancel
	defer cancel(nil)
	defer w.release(job.ID)
	if errors.Is(context.Cause(ctx), store.ErrLeaseLost) {
		w.emit(w.event(EventLost, job))
		return nil
	}
	w.emit(w.event(EventClaimed, job))
	progress := func(msg string) {
		ev := w.event(EventProgress, job)
		ev.Message = msg
		w.emit(ev)
	}
	// Each attempt is a trace (when otel.endpoint is set); the
	// handler's steps are its children.
	tctx, end := telemetry.Start(ctx, string(job.Subject.Kind)+" "+string(job.Action), attribute.String("job.id", job.ID),
		attribute.String(string(job.Subject.Kind)+".id", job.Subject.ID), attribute.Int("job.attempt", job.Attempts))
	res, runErr := w.Handler.Run(tctx, job, progress)
	end(runErr)
	lost := errors.Is(context.Cause(ctx), store.ErrLeaseLost)
	cancel(nil)
	if lost {
		w.emit(w.event(EventLost, job))
		return nil
	}
	if parent.Err() != nil && runErr != nil {
		// Stopping: the error is likely the cancellation's, not the job's.
		// Give the job back for another worker to run at once.
		ev := w.event(EventHandedBack, job)
		ev.Err = runErr.Error()
		if err := w.handBack(job, w.Now()); err != nil {
			ev.Err = fmt.Sprintf("%v; handing it back failed (%v): it is taken over when its lease expires", runErr, err)
		}
		w.emit(ev)
		return nil
	}
	// Record the outcome even if we are shutting down.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer fcancel()
	f := store.Finish{JobID: job.ID, Owner: w.ID, Now: w.Now()}
	ev := w.event("", job)
	switch {
	case runErr == nil:
		f.State, f.Writes = model.JobDone, res.Writes
		ev.Kind = EventDone
	case errkind.Retryable(runErr) && job.Attempts < job.MaxAttempts:
		delay := w.backoff(job.Attempts, errkind.RetryAfter(runErr))
		r := w.Handler.Failed(fctx, job, runErr, false)
		f.State, f.RunAfter, f.Error, f.Writes = model.JobQueued, w.Now().Add(delay), runErr.Error(), r.Writes
		ev.Kind, ev.Err, ev.ErrKind = EventRetry, runErr.Error(), string(errkind.Of(runErr))
		at := f.RunAfter
		ev.Retry = &at
	default:
		r := w.Handler.Failed(fctx, job, runErr, true)
		f.State, f.Error, f.Writes = model.JobFailed, runErr.Error(), r.Writes
		ev.Kind, ev.Err, ev.ErrKind = EventFailed, runErr.Error(), string(errkind.Of(runErr))
	}
	ev.State = f.State
	if err := w.finish(fctx, f); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			w.emit(w.event(EventLost, job))
			return nil
		}
		return fmt.Errorf("record %s job %s: %w", job.Action, job.ID, err)
	}
	w.emit(ev)
	return nil
}

// own reports whether job id is one this worker holds or finished lately,
// whose changes it need not look at.
func (w *Worker) own(id string) bool {
	if id == "" {
		return false // some change, unknown which: look
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.held[id]; ok {
		return true
	}
	for _, r := range w.recent {
		if r == id {
			return true
		}
	}
	return false
}

// hold records that job id runs here, so that heartbeats extend its lease
// and cancel it with store.ErrLeaseLost if the lease was lost.
func (w *Worker) hold(id string, cancel context.CancelCauseFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held == nil {
		w.held = map[string]context.CancelCauseFunc{}
	}
	w.held[id] = cancel
	if w.heartbeat == nil {
		w.heartbeat = make(chan struct{})
		go w.heartbeats(w.heartbeat)
	}
}

func (w *Worker) release(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.held, id)
	// Its last change (finished) may arrive after this.
	w.recent[w.nrecent%len(w.recent)] = id
	w.nrecent++
	if len(w.held) == 0 && w.heartbeat != nil {
		close(w.heartbeat)
		w.heartbeat = nil
	}
}

// heartbeats extends the leases of all jobs running here every third of
// the lease, in one statement, and cancels those whose lease was lost
// (another worker took them over) until stop is closed.
func (w *Worker) heartbeats(stop chan struct{}) {
	t := time.NewTicker(w.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		ids := make([]string, 0, len(w.held))
		for id := range w.held {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), w.Lease/3)
		extended, err := w.Store.HeartbeatJobs(ctx, w.ID, w.Now().Add(w.Lease), w.Now())
		cancel()
		if err != nil {
			// The database briefly away: keep trying until the leases run
			// out; the next tick may succeed.
			continue
		}
		alive := make(map[string]bool, len(extended))
		for _, id := range extended {
			alive[id] = true
		}
		w.mu.Lock()
		for _, id := range ids {
			// A job that finished since is no longer held; one still held
			// but not extended belongs to another worker now.
			if lose, still := w.held[id]; still && !alive[id] {
				lose(store.ErrLeaseLost)
			}
		}
		w.mu.Unlock()
	}
}

// finishing is one job's outcome waiting to be committed.
type finishing struct {
	f    store.Finish
	done chan error
}

// finish commits f together with the outcomes of the other jobs of this
// worker that finish meanwhile (group commit): the first caller commits
// batches until none is waiting; the others wait for their batch.
func (w *Worker) finish(ctx context.Context, f store.Finish) error {
	me := &finishing{f: f, done: make(chan error, 1)}
	w.mu.Lock()
	w.pending = append(w.pending, me)
	lead := !w.finishing
	w.finishing = true
	w.mu.Unlock()
	if lead {
		for {
			w.mu.Lock()
			batch := w.pending
			w.pending = nil
			if len(batch) == 0 {
				w.finishing = false
				w.mu.Unlock()
				break
			}
			w.mu.Unlock()
			fs := make([]store.Finish, len(batch))
			for i, b := range batch {
				fs[i] = b.f
			}
			errs := w.Store.FinishJobs(ctx, fs)
			for i, err := range errs {
				if err != nil && len(batch) > 1 && !errors.Is(err, store.ErrLeaseLost) && !errkind.Is(err, errkind.NotFound) {
					// The whole batch was rolled back (a lost lease or a
					// host gone fails only its own job): record each alone,
					// so that one job's bad write fails only that job.
					err = w.Store.FinishJobs(ctx, fs[i:i+1])[0]
				}
				batch[i].done <- err
			}
		}
	}
	return <-me.done
}

// backoff is the delay before attempt+1: BaseBackoff doubling per attempt,
// capped at MaxBackoff, ±20 % jitter; at least retryAfter (plus up to
// 20 % so that clients told the same time do not return together).
func (w *Worker) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := w.BaseBackoff << min(attempt-1, 20)
	if d > w.MaxBackoff || d <= 0 {
		d = w.MaxBackoff
	}
	d = jitter(d)
	if retryAfter > d {
		d = retryAfter + time.Duration(rand.Float64()*0.2*float64(retryAfter))
	}
	return d
}

// jitter spreads d by ±20% so that workers do not move in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Wait runs job id in this process if nobody else has it, else waits for
// whoever does, until the job is done or failed. It returns the final job.
func (w *Worker) Wait(ctx context.Context, id string) (model.Job, error) {
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	changes := w.Store.Subscribe(sctx, store.TopicJobs)
	for {
		job, err := w.Store.GetJob(ctx, id)
		if err != nil {
			return job, err
		}
		if !job.Active() {
			return job, nil
		}
		ran, err := w.RunOne(ctx, id)
		if err != nil {
			return job, err
		}
		if ran {
			continue
		}
		// Someone else runs it, or it waits to be retried: sleep until it
		// changes, is due, or its lease may have expired.
		wait := w.Idle
		if job.State == model.JobQueued {
			wait = min(wait, max(job.RunAfter.Sub(w.Now()), 0)+time.Millisecond)
		}
		if job.LeaseUntil != nil {
			wait = min(wait, max(job.LeaseUntil.Sub(w.Now()), 0)+time.Millisecond)
		}
		if err := waitForChange(ctx, changes, id, wait); err != nil {
			return job, err
		}
	}
}

// waitForChange returns when changes reports job id (or an unknown job),
// after d, or with ctx's error.
func waitForChange(ctx context.Context, changes <-chan store.Change, id string, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case c, open := <-changes:
			if !open {
				changes = nil
			} else if c.ID == "" || c.ID == id {
				return nil
			}
		}
	}
}
