package queue_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// simProviders opens one sim provider on the store.
type simProviders struct{ p provider.Provider }

func (s simProviders) Get(_ context.Context, name string) (provider.Provider, error) {
	if name != "sim" {
		return nil, fmt.Errorf("unknown provider %q", name)
	}
	return s.p, nil
}

func newService(tb testing.TB, st store.Store, opts map[string]string) *hosts.Service {
	dep, err := st.Deployment(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	p, err := provider.Open("sim", provider.Config{Deployment: dep, Options: opts, State: st.ProviderState()})
	if err != nil {
		tb.Fatal(err)
	}
	svc := hosts.New(st, simProviders{p})
	svc.PollInterval = 5 * time.Millisecond
	svc.MaxAttempts = 50
	return svc
}

func createHosts(tb testing.TB, svc *hosts.Service, n int) []hosts.Submitted {
	out := make([]hosts.Submitted, n)
	for i := range n {
		sub, err := svc.Create(context.Background(), hosts.CreateRequest{
			Name: fmt.Sprintf("h%05d", i), Owner: "alice", Provider: "sim", Region: "sim-east1"})
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = sub
	}
	return out
}

func fastWorker(st store.Store, h queue.Handler) *queue.Worker {
	w := queue.NewWorker(st, h)
	w.Idle, w.BaseBackoff, w.MaxBackoff, w.Lease = 2*time.Millisecond, time.Millisecond, 20*time.Millisecond, 5*time.Second
	w.Grace = 10 * time.Millisecond
	return w
}

// With faults injected (5xx, 429 with Retry-After, ghost creates), every
// host converges to running with exactly one VM.
func TestFaultyProviderConverges(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		ctx := context.Background()
		svc := newService(tb, st, map[string]string{
			"error_rate": "0.2", "rate_limit_rate": "0.1", "retry_after": "5ms", "create_ghost_rate": "0.3", "seed": "7",
		})
		subs := createHosts(tb, svc, 60)
		w := fastWorker(st, svc)
		var retries atomic.Int64
		w.OnEvent = func(e queue.Event) {
			if e.Kind == queue.EventRetry {
				retries.Add(1)
			}
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := w.Run(dctx, true); err != nil {
			tb.Fatal(err)
		}
		recs, err := sim.Records(ctx, st.ProviderState())
		if err != nil {
			tb.Fatal(err)
		}
		for _, sub := range subs {
			h, _ := st.GetHost(ctx, sub.Host.ID)
			if h.Status != model.StatusRunning {
				tb.Errorf("host %s is %s (%s)", h.Name, h.Status, h.LastError)
			}
			r, ok := recs[provider.InstanceName(h.ID)]
			if !ok || r.Creations != 1 {
				tb.Errorf("host %s: VM present %v, creations %d; want exactly one VM", h.Name, ok, r.Creations)
			}
			if h.Runtime.InstanceID != r.ID {
				tb.Errorf("host %s records instance %q, sim has %q", h.Name, h.Runtime.InstanceID, r.ID)
			}
		}
		if len(recs) != len(subs) {
			tb.Errorf("%d VMs for %d hosts", len(recs), len(subs))
		}
		if retries.Load() == 0 {
			tb.Error("faults were injected but nothing was retried: the test did not test retries")
		}
		// Each job ends with exactly one done entry in cloud_vm_log.
		logs, _ := st.ListLog(ctx, store.LogFilter{})
		done := map[string]int{}
		for _, e := range logs {
			if e.Status == "done" {
				done[e.JobID]++
			}
		}
		for _, sub := range subs {
			if done[sub.Job.ID] != 1 {
				tb.Errorf("job %s has %d done log entries", sub.Job.ID, done[sub.Job.ID])
			}
		}
	})
}

// A job whose error is not retryable fails at once with the error recorded
// on the job, the host and the log.
func TestTerminalFailureIsRecorded(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		ctx := context.Background()
		svc := newService(tb, st, map[string]string{"capacity_error_regions": ""})
		sub := createHosts(tb, svc, 1)[0]
		w := fastWorker(st, handlerFunc{run: func(context.Context, model.Job) (queue.Result, error) {
			return queue.Result{}, provider.Errorf(errkind.Auth, "sim", "create", "invalid API key")
		}, svc: svc})
		if err := w.Run(ctx, true); err != nil {
			tb.Fatal(err)
		}
		job, _ := st.GetJob(ctx, sub.Job.ID)
		h, _ := st.GetHost(ctx, sub.Host.ID)
		logs, _ := st.ListLog(ctx, store.LogFilter{HostID: h.ID})
		if job.State != model.JobFailed || job.Attempts != 1 || job.LastError == "" {
			tb.Fatalf("job %+v", job)
		}
		if h.Status != model.StatusError || h.LastError == "" || len(logs) != 1 || logs[0].Status != "failed" {
			tb.Fatalf("host %s %q, logs %+v", h.Status, h.LastError, logs)
		}
	})
}

// Retryable errors are retried until MaxAttempts, then recorded as failed.
func TestRetriesStopAtMaxAttempts(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		ctx := context.Background()
		svc := newService(tb, st, nil)
		svc.MaxAttempts = 3
		sub := createHosts(tb, svc, 1)[0]
		var calls atomic.Int64
		w := fastWorker(st, handlerFunc{run: func(context.Context, model.Job) (queue.Result, error) {
			calls.Add(1)
			return queue.Result{}, provider.Errorf(errkind.Transient, "sim", "create", "503")
		}, svc: svc})
		if err := w.Run(ctx, true); err != nil {
			tb.Fatal(err)
		}
		job, _ := st.GetJob(ctx, sub.Job.ID)
		logs, _ := st.ListLog(ctx, store.LogFilter{HostID: sub.Host.ID})
		if calls.Load() != 3 || job.State != model.JobFailed || job.Attempts != 3 {
			tb.Fatalf("calls %d, job %+v", calls.Load(), job)
		}
		statuses := ""
		for _, e := range logs {
			statuses += e.Status + " "
		}
		if statuses != "retry retry failed " {
			tb.Fatalf("log statuses %q", statuses)
		}
	})
}

// A worker that stops heartbeating loses its job to another worker after
// the lease, and its late result is rejected.
func TestLeaseTakeover(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		ctx := context.Background()
		svc := newService(tb, st, nil)
		sub := createHosts(tb, svc, 1)[0]
		release := make(chan struct{})
		var runs atomic.Int64
		stuck := handlerFunc{svc: svc, run: func(ctx context.Context, job model.Job) (queue.Result, error) {
			runs.Add(1)
			<-release // a hung provider call
			return queue.Result{}, nil
		}}
		w1 := fastWorker(st, stuck)
		w1.Lease = 300 * time.Millisecond
		// Freeze w1's clock so its heartbeats never extend the lease
		// past real time: it behaves like a worker that stopped running.
		frozen := time.Now()
		w1.Now = func() time.Time { return frozen }
		done1 := make(chan error)
		go func() {
			_, err := w1.RunOne(ctx, sub.Job.ID)
			done1 <- err
		}()
		waitFor(tb, func() bool { return runs.Load() == 1 })

		w2 := fastWorker(st, svc)
		w2.Lease = time.Minute
		var got model.Job
		waitFor(tb, func() bool {
			ran, err := w2.RunOne(ctx, sub.Job.ID)
			if err != nil {
				tb.Fatal(err)
			}
			got, _ = st.GetJob(ctx, sub.Job.ID)
			return ran
		})
		if got.State != model.JobDone || got.Attempts != 2 {
			tb.Fatalf("after takeover: %+v", got)
		}
		close(release)
		if err := <-done1; err != nil {
			tb.Fatal(err)
		}
		if j, _ := st.GetJob(ctx, sub.Job.ID); j.State != model.JobDone || j.Attempts != 2 {
			tb.Fatalf("the old worker's late finish changed the job: %+v", j)
		}
		h, _ := st.GetHost(ctx, sub.Host.ID)
		if h.Status != model.StatusRunning {
			tb.Fatalf("host %s", h.Status)
		}
	})
}

// Many workers in one process on one database run every job once.
func TestConcurrentWorkersRunEachJobOnce(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		ctx := context.Background()
		svc := newService(tb, st, nil)
		subs := createHosts(tb, svc, 80)
		var mu sync.Mutex
		seen := map[string]int{}
		counting := handlerFunc{svc: svc, run: func(ctx context.Context, job model.Job) (queue.Result, error) {
			mu.Lock()
			seen[job.ID]++
			mu.Unlock()
			return svc.Run(ctx, job, func(string) {})
		}}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := fastWorker(st, counting)
				if err := w.Run(ctx, true); err != nil {
					tb.Error(err)
				}
			}()
		}
		wg.Wait()
		for _, sub := range subs {
			if seen[sub.Job.ID] != 1 {
				tb.Errorf("job %s ran %d times", sub.Job.ID, seen[sub.Job.ID])
			}
		}
	})
}

// Wait works a job in-process, as `create` does.
func TestWaitRunsOwnJob(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		svc := newService(tb, st, map[string]string{"boot_time": "30ms"})
		sub := createHosts(tb, svc, 1)[0]
		var progress []string
		w := fastWorker(st, svc)
		w.OnEvent = func(e queue.Event) {
			if e.Kind == queue.EventProgress {
				progress = append(progress, e.Message)
			}
		}
		job, err := w.Wait(context.Background(), sub.Job.ID)
		if err != nil || job.State != model.JobDone {
			tb.Fatalf("%v %+v", err, job)
		}
		if len(progress) == 0 {
			tb.Fatal("no progress reported")
		}
	})
}

type handlerFunc struct {
	run func(context.Context, model.Job) (queue.Result, error)
	svc *hosts.Service
}

func (h handlerFunc) Run(ctx context.Context, job model.Job, _ func(string)) (queue.Result, error) {
	return h.run(ctx, job)
}

func (h handlerFunc) Failed(ctx context.Context, job model.Job, err error, final bool) queue.Result {
	return h.svc.Failed(ctx, job, err, final)
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
