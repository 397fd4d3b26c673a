package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

// BenchmarkQueueThroughput runs create actions against the sim provider at
// zero latency with 4 workers and reports jobs per second. Each action
// claims a job, calls the provider, updates the host and appends to
// cloud_vm_log in one transaction.
//
//	go test ./pkg/queue -run '^$' -bench QueueThroughput -benchtime 2000x
func BenchmarkQueueThroughput(b *testing.B) {
	storetest.Each(b, func(b *testing.B, st *store.SQLStore) {
		svc := newService(b, st, nil)
		svc.PollInterval = time.Millisecond
		ctx := context.Background()
		b.StopTimer()
		for i := range b.N {
			if _, err := svc.Create(ctx, hosts.CreateRequest{Name: fmt.Sprintf("b%06d", i), Owner: "bench", Provider: "sim", Region: "sim-east1"}); err != nil {
				b.Fatal(err)
			}
		}
		w := fastWorker(st, svc)
		w.Concurrency = 4
		b.StartTimer()
		start := time.Now()
		if err := w.Run(ctx, true); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	})
}

// writesOnly is a handler whose action does no work of its own: it only
// commits its host's new row and a cloud_vm_log entry with the job, so
// that BenchmarkQueueOverhead measures the queue itself.
type writesOnly struct{ hosts map[string]model.Host }

func (h writesOnly) Run(_ context.Context, job model.Job, _ func(string)) (queue.Result, error) {
	host := h.hosts[job.Subject.ID]
	host.Status, host.UpdatedAt = model.StatusRunning, time.Now()
	return queue.Result{Writes: []store.Write{store.HostWrite{Host: host}, store.LogWrite{Entry: model.LogEntry{
		HostID: host.ID, JobID: job.ID, TS: time.Now(), Action: string(job.Action), Status: "done", Provider: host.Provider,
		Spec: []byte(`{}`), Runtime: []byte(`{}`), HostStatus: host.Status}}}}, nil
}

func (writesOnly) Failed(context.Context, model.Job, error, bool) queue.Result { return queue.Result{} }

// BenchmarkQueueOverhead is BenchmarkQueueThroughput without the action:
// claim, host row update, log insert and completion, 4 workers. It is the
// ceiling the queue puts on any action.
//
//	go test ./pkg/queue -run '^$' -bench QueueOverhead -benchtime 20000x
func BenchmarkQueueOverhead(b *testing.B) {
	storetest.Each(b, func(b *testing.B, st *store.SQLStore) {
		ctx := context.Background()
		b.StopTimer()
		h := writesOnly{hosts: map[string]model.Host{}}
		now := time.Now()
		for i := range b.N {
			host := model.Host{ID: fmt.Sprintf("h%07d", i), Name: fmt.Sprintf("b%07d", i), Owner: "bench", Provider: "sim",
				Region: "sim-east1", Status: model.StatusProvisioning, CreatedAt: now, UpdatedAt: now}
			if err := st.CreateHost(ctx, host); err != nil {
				b.Fatal(err)
			}
			h.hosts[host.ID] = host
			if _, _, err := st.EnqueueJob(ctx, model.Job{ID: fmt.Sprintf("j%07d", i), Subject: model.HostSubject(host.ID),
				Action: model.ActionCreate, MaxAttempts: 5, RunAfter: now, CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
		}
		w := queue.NewWorker(st, h)
		w.Concurrency = 4
		b.StartTimer()
		start := time.Now()
		if err := w.Run(ctx, true); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	})
}
