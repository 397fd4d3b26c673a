// Package queue runs host actions from the durable host_jobs table.
//
// Guarantees, all provided by the store's claim and finish statements:
//   - a job is claimed by one worker at a time (FOR UPDATE SKIP LOCKED on
//     Postgres, the single writer on SQLite);
//   - a claimed job carries a lease that the worker extends with
//     heartbeats; when a worker dies its job is taken over once the lease
//     expires, and the dead worker's late writes are rejected (ErrLeaseLost);
//   - each attempt is counted; retryable failures are retried with
//     exponential backoff (or the provider's Retry-After) until
//     MaxAttempts, then recorded as failed with the error.
//
// Handlers must be idempotent, because a job taken over after a crash runs
// again from the start.
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

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Result is what an attempt wrote: the host's new row and a log entry,
// committed together with the job's new state.
type Result struct {
	Host *model.Host
	Log  *model.LogEntry
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
)

// Event is a progress report for renderers (TTY, JSON lines, TUI).
type Event struct {
	Time    time.Time      `json:"time"`
	Kind    EventKind      `json:"event"`
	JobID   string         `json:"job_id"`
	HostID  string         `json:"host_id"`
	Action  model.Action   `json:"action"`
	Attempt int            `json:"attempt"`
	Message string         `json:"message,omitempty"`
	Retry   *time.Time     `json:"retry_at,omitempty"`
	State   model.JobState `json:"state,omitempty"`
	Worker  string         `json:"worker"`
	Err     string         `json:"error,omitempty"`
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
	// Idle is how long to wait between claims when the queue is empty.
	Idle time.Duration
	// OnEvent receives progress; it must not block for long.
	OnEvent func(Event)
	// Now is the clock (tests may replace it).
	Now func() time.Time
	// BaseBackoff is the first retry delay; it doubles per attempt.
	BaseBackoff time.Duration
	// MaxBackoff caps retry delays.
	MaxBackoff time.Duration
}

// NewWorker returns a worker with defaults filled in.
func NewWorker(s store.Store, h Handler) *Worker {
	host, _ := os.Hostname()
	return &Worker{
		Store: s, Handler: h,
		ID:          fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString()[:8]),
		Lease:       30 * time.Second,
		Concurrency: 4,
		Idle:        500 * time.Millisecond,
		Now:         time.Now,
		BaseBackoff: 2 * time.Second,
		MaxBackoff:  5 * time.Minute,
	}
}

func (w *Worker) emit(e Event) {
	if w.OnEvent != nil {
		e.Time = w.Now()
		e.Worker = w.ID
		w.OnEvent(e)
	}
}

// Run works jobs until ctx is cancelled. With drain, it returns as soon as
// no job is queued or running anywhere.
func (w *Worker) Run(ctx context.Context, drain bool) error {
	n := max(w.Concurrency, 1)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.loop(ctx, drain); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if drain {
		return nil
	}
	return ctx.Err()
}

func (w *Worker) loop(ctx context.Context, drain bool) error {
	for ctx.Err() == nil {
		ran, err := w.RunOne(ctx, "")
		if err != nil {
			if errkind.Is(err, errkind.Unavailable) {
				// The database went away: keep trying, it may come back.
				w.emit(Event{Kind: EventProgress, Err: err.Error(), Message: "state database unavailable; retrying"})
			} else if ctx.Err() == nil {
				return err
			}
		}
		if ran {
			continue
		}
		if drain {
			active, err := w.Store.ListJobs(ctx, store.JobFilter{ActiveOnly: true, Limit: 1})
			if err != nil {
				return err
			}
			if len(active) == 0 {
				return nil
			}
		}
		sleep(ctx, jitter(w.Idle))
	}
	return nil
}

// RunOne claims one job (jobID, if set, or any runnable one) and runs it
// to the end of this attempt. It reports whether it ran anything.
func (w *Worker) RunOne(ctx context.Context, jobID string) (bool, error) {
	job, err := w.Store.ClaimJob(ctx, store.Claim{Owner: w.ID, Lease: w.Lease, JobID: jobID, Now: w.Now()})
	if err != nil || job == nil {
		return false, err
	}
	return true, w.execute(ctx, *job)
}

func (w *Worker) execute(parent context.Context, job model.Job) error {
	w.emit(Event{Kind: EventClaimed, JobID: job.ID, HostID: job.HostID, Action: job.Action, Attempt: job.Attempts})
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeat(ctx, job, cancel)
	}()
	progress := func(msg string) {
		w.emit(Event{Kind: EventProgress, JobID: job.ID, HostID: job.HostID, Action: job.Action, Attempt: job.Attempts, Message: msg})
	}
	res, runErr := w.Handler.Run(ctx, job, progress)
	lost := errors.Is(context.Cause(ctx), store.ErrLeaseLost)
	cancel(nil)
	<-hbDone
	if lost {
		w.emit(Event{Kind: EventLost, JobID: job.ID, HostID: job.HostID, Action: job.Action, Attempt: job.Attempts})
		return nil
	}
	if parent.Err() != nil && runErr != nil {
		// Shutting down: leave the job to be taken over when the lease
		// ends rather than recording a failure that is not the job's.
		return nil
	}
	// Record the outcome even if we are shutting down.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer fcancel()
	f := store.Finish{JobID: job.ID, Owner: w.ID, Now: w.Now()}
	ev := Event{JobID: job.ID, HostID: job.HostID, Action: job.Action, Attempt: job.Attempts}
	switch {
	case runErr == nil:
		f.State, f.Host, f.Log = model.JobDone, res.Host, res.Log
		ev.Kind = EventDone
	case errkind.Retryable(runErr) && job.Attempts < job.MaxAttempts:
		delay := w.backoff(job.Attempts, errkind.RetryAfter(runErr))
		r := w.Handler.Failed(fctx, job, runErr, false)
		f.State, f.RunAfter, f.Error, f.Host, f.Log = model.JobQueued, w.Now().Add(delay), runErr.Error(), r.Host, r.Log
		ev.Kind, ev.Err = EventRetry, runErr.Error()
		at := f.RunAfter
		ev.Retry = &at
	default:
		r := w.Handler.Failed(fctx, job, runErr, true)
		f.State, f.Error, f.Host, f.Log = model.JobFailed, runErr.Error(), r.Host, r.Log
		ev.Kind, ev.Err = EventFailed, runErr.Error()
	}
	ev.State = f.State
	if err := w.Store.FinishJob(fctx, f); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			w.emit(Event{Kind: EventLost, JobID: job.ID, HostID: job.HostID, Action: job.Action, Attempt: job.Attempts})
			return nil
		}
		return fmt.Errorf("record %s job %s: %w", job.Action, job.ID, err)
	}
	w.emit(ev)
	return nil
}

// heartbeat extends the lease every third of its length and cancels the
// job's context if the lease was lost (another worker took it over).
func (w *Worker) heartbeat(ctx context.Context, job model.Job, cancel context.CancelCauseFunc) {
	t := time.NewTicker(w.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := w.Store.HeartbeatJob(ctx, job.ID, w.ID, w.Now().Add(w.Lease))
			if errors.Is(err, store.ErrLeaseLost) {
				cancel(store.ErrLeaseLost)
				return
			}
			// Other errors (database briefly away): keep trying until the
			// lease runs out; the next tick may succeed.
		}
	}
}

func (w *Worker) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := w.BaseBackoff << min(attempt-1, 20)
	if d > w.MaxBackoff || d <= 0 {
		d = w.MaxBackoff
	}
	d = jitter(d)
	return max(d, retryAfter)
}

// jitter spreads d by ±20% so that workers do not move in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Wait runs job id in this process if nobody else has it, else waits for
// whoever does, until the job is done or failed. It returns the final job.
func (w *Worker) Wait(ctx context.Context, id string) (model.Job, error) {
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
		if !ran {
			sleep(ctx, jitter(w.Idle))
		}
		if ctx.Err() != nil {
			return job, ctx.Err()
		}
	}
}
