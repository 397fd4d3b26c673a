package queue_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

// An idle worker that would not look again for an hour still runs a job
// enqueued by this process or by another one (another store on the same
// database) at once, and a job whose retry time comes: change
// notifications and due times wake it, not polling.
func TestIdleWorkerIsWoken(t *testing.T) {
	storetest.DSNs(t, func(tb *testing.T, dsn string) {
		st := storetest.Open(tb, dsn)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		svc := newService(tb, st, nil)
		w := fastWorker(st, svc)
		w.Idle = time.Hour
		done := make(chan queue.Event, 10)
		w.OnEvent = func(e queue.Event) {
			if e.Kind == queue.EventDone || e.Kind == queue.EventRetry {
				done <- e
			}
		}
		ran := make(chan error, 1)
		go func() { ran <- w.Run(ctx, false) }()
		next := func(what string) queue.Event {
			tb.Helper()
			select {
			case e := <-done:
				return e
			case err := <-ran:
				tb.Fatalf("worker stopped: %v", err)
			case <-time.After(30 * time.Second):
				tb.Fatalf("%s: the idle worker was not woken within 30s", what)
			}
			return queue.Event{}
		}
		// This process.
		sub := createHosts(tb, svc, 1)[0]
		if e := next("enqueued here"); e.JobID != sub.Job.ID {
			tb.Fatalf("ran %s, want %s", e.JobID, sub.Job.ID)
		}
		// Another process.
		other := storetest.Open(tb, dsn)
		h2, err := newService(tb, other, nil).Create(ctx, hosts.CreateRequest{Name: "h2", Owner: "alice", Provider: "sim", Region: "sim-east1"})
		if err != nil {
			tb.Fatal(err)
		}
		if e := next("enqueued elsewhere"); e.JobID != h2.Job.ID {
			tb.Fatalf("ran %s, want %s", e.JobID, h2.Job.ID)
		}
		// A job due in a moment.
		h, _ := st.GetHost(ctx, sub.Host.ID)
		later := model.Job{ID: "later-" + h.ID[:8], Subject: model.HostSubject(h.ID), Action: model.ActionRefresh,
			MaxAttempts: 3, RunAfter: time.Now().Add(300 * time.Millisecond), CreatedAt: time.Now()}
		if _, _, err := st.EnqueueJob(ctx, later); err != nil {
			tb.Fatal(err)
		}
		if e := next("due later"); e.JobID != later.ID {
			tb.Fatalf("ran %s, want %s", e.JobID, later.ID)
		}
		cancel()
		<-ran
	})
}

// A worker claims ahead of its free slots once a job ended soon after its
// claim (a short one); when it stops, the jobs it claimed ahead and never
// started are queued again at once, and the job still running after Grace
// is cancelled and queued again too, their attempts not counted, their
// leases cleared: another worker takes them at once rather than after the
// (here hour-long) lease.
func TestStoppingWorkerGivesBackJobsClaimedAhead(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		svc := newService(tb, st, nil)
		subs := createHosts(tb, svc, 5)
		started := make(chan string, 5)
		var quick atomic.Value // the first job, which ends at once
		blocking := handlerFunc{svc: svc, run: func(ctx context.Context, job model.Job) (queue.Result, error) {
			if quick.CompareAndSwap(nil, job.ID) {
				return queue.Result{}, nil
			}
			started <- job.ID
			<-ctx.Done()
			return queue.Result{}, ctx.Err()
		}}
		w := fastWorker(st, blocking)
		w.Concurrency, w.Lease = 1, time.Hour
		var handedBack []string
		w.OnEvent = func(e queue.Event) {
			if e.Kind == queue.EventHandedBack {
				handedBack = append(handedBack, e.JobID)
			}
		}
		ran := make(chan error, 1)
		go func() { ran <- w.Run(ctx, false) }()
		first := <-started
		held := 0
		for _, sub := range subs {
			if j, _ := st.GetJob(ctx, sub.Job.ID); j.State == model.JobRunning && j.LeaseOwner == w.ID {
				held++
			}
		}
		if held != 2 {
			tb.Fatalf("after a short job the worker holds %d jobs, want 2 (one running, one claimed ahead)", held)
		}
		cancel()
		<-ran
		if len(handedBack) != 1 || handedBack[0] != first {
			tb.Errorf("handed_back events for %v; want one, for the running job %s", handedBack, first)
		}
		for _, sub := range subs {
			j, _ := st.GetJob(context.Background(), sub.Job.ID)
			if j.ID == quick.Load() {
				continue
			}
			if j.State != model.JobQueued || j.Attempts != 0 || j.LeaseOwner != "" || j.LeaseUntil != nil {
				tb.Errorf("job %s after the worker stopped: %s, attempts %d, lease %q; want queued, 0, none", j.ID, j.State, j.Attempts, j.LeaseOwner)
			}
		}
		other := fastWorker(st, svc)
		if ran, err := other.RunOne(context.Background(), first); err != nil || !ran {
			tb.Fatalf("another worker could not take the interrupted job at once: ran %v, %v", ran, err)
		}
		if j, _ := st.GetJob(context.Background(), first); j.State != model.JobDone || j.Attempts != 1 {
			tb.Fatalf("the interrupted job after another worker ran it: %s, attempts %d", j.State, j.Attempts)
		}
	})
}

// Long jobs are not claimed ahead: a busy worker holds only the jobs it
// runs, and a second worker started later runs the rest at once, while
// the first one's still run.
func TestBusyWorkerLeavesLongJobsToOthers(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		svc := newService(tb, st, nil)
		subs := createHosts(tb, svc, 4)
		started := make(chan string, 4)
		long := handlerFunc{svc: svc, run: func(ctx context.Context, job model.Job) (queue.Result, error) {
			started <- job.ID
			<-ctx.Done()
			return queue.Result{}, ctx.Err()
		}}
		heldBy := func(w *queue.Worker) int {
			n := 0
			for _, sub := range subs {
				if j, _ := st.GetJob(ctx, sub.Job.ID); j.State == model.JobRunning && j.LeaseOwner == w.ID {
					n++
				}
			}
			return n
		}
		// start runs a worker of 2 slots and waits until both run a job.
		start := func(name string) (*queue.Worker, <-chan error) {
			tb.Helper()
			w := fastWorker(st, long)
			w.Concurrency, w.Lease = 2, time.Hour
			ran := make(chan error, 1)
			go func() { ran <- w.Run(ctx, false) }()
			for range 2 {
				select {
				case <-started:
				case <-time.After(30 * time.Second):
					tb.Fatalf("the %s worker did not start 2 jobs within 30s", name)
				}
			}
			return w, ran
		}
		first, ranFirst := start("first")
		if n := heldBy(first); n != 2 {
			tb.Fatalf("the first worker, running 2 long jobs, holds %d; want 2 (none claimed ahead)", n)
		}
		second, ranSecond := start("second")
		if a, b := heldBy(first), heldBy(second); a != 2 || b != 2 {
			tb.Fatalf("the workers hold %d and %d jobs; want 2 each", a, b)
		}
		cancel()
		<-ranFirst
		<-ranSecond
	})
}
