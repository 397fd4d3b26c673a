package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
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
