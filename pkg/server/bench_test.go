package server_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil"
)

// BenchmarkAPI compares requests through the server (real HTTP on
// loopback, authenticated, JSON both ways) with the same calls on the
// domain services, on one Postgres: listing 10,000 hosts (BENCH_HOSTS),
// and a cheap authenticated GET (whoami: the key's lookup by hash).
//
//	go test -run '^$' -bench BenchmarkAPI -benchtime 20x ./pkg/server/
func BenchmarkAPI(b *testing.B) {
	e := newEnv(b, "postgres", nil)
	ctx := context.Background()
	n := testutil.BenchSize(10000)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range n {
		h := model.Host{ID: uuid.NewString(), Name: fmt.Sprintf("h%05d", i), Owner: "root", Provider: "sim", Region: "sim-east1",
			Status: model.StatusRunning, Spec: model.HostSpec{MachineType: "sim-small", DiskGB: 10}, CreatedAt: now, UpdatedAt: now}
		if err := e.st.CreateHost(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
	c, err := client.New(e.http.URL, e.keys["root"])
	if err != nil {
		b.Fatal(err)
	}
	check := func(hs []model.Host, err error) {
		if err != nil || len(hs) != n {
			b.Fatalf("listed %d of %d hosts: %v", len(hs), n, err)
		}
	}
	b.Run(fmt.Sprintf("list-%d/direct", n), func(b *testing.B) {
		for b.Loop() {
			check(e.srv.Hosts.List(ctx, store.HostFilter{}))
		}
	})
	b.Run(fmt.Sprintf("list-%d/server", n), func(b *testing.B) {
		for b.Loop() {
			check(client.Hosts{C: c}.List(ctx, store.HostFilter{}))
		}
	})
	b.Run("whoami/direct", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := e.srv.Accounts.Authenticate(ctx, e.keys["root"]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("whoami/server", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Whoami(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQueueThroughput enqueues host creates (the sim provider at
// zero latency) one after the other, through the server's HTTP client or
// on the host service directly, on one Postgres, while the same 4 workers
// run them (as a serve process's do). It reports the creates enqueued per
// second and the actions done per second, from the first enqueue to the
// last create done.
//
//	go test -run '^$' -bench BenchmarkQueueThroughput -benchtime 1000x ./pkg/server/
func BenchmarkQueueThroughput(b *testing.B) {
	e := newEnv(b, "postgres", nil)
	ctx := context.Background()
	handler, err := e.app.Handler(ctx)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.New(e.http.URL, e.keys["alice"])
	if err != nil {
		b.Fatal(err)
	}
	var made atomic.Int64 // host names stay unique over -count runs
	for _, via := range []struct {
		name   string
		create func(hosts.CreateRequest) error
	}{
		{"direct", func(r hosts.CreateRequest) error {
			r.Owner = "alice"
			_, err := e.srv.Hosts.Create(ctx, r)
			return err
		}},
		{"server", func(r hosts.CreateRequest) error { _, err := client.Hosts{C: c}.Create(ctx, r); return err }},
	} {
		b.Run(via.name, func(b *testing.B) {
			var done, failed atomic.Int64
			finished := make(chan struct{}, 1)
			w := queue.NewWorker(e.st, handler)
			w.Concurrency = 4
			w.OnEvent = func(ev queue.Event) {
				switch ev.Kind {
				case queue.EventDone:
					done.Add(1)
				case queue.EventFailed:
					failed.Add(1)
				default:
					return
				}
				select {
				case finished <- struct{}{}:
				default:
				}
			}
			wctx, stop := context.WithCancel(ctx)
			ran := make(chan error, 1)
			go func() { ran <- w.Run(wctx, false) }()
			defer func() {
				stop()
				if err := <-ran; err != nil && !errors.Is(err, context.Canceled) {
					b.Error(err)
				}
			}()

			start := time.Now()
			n := 0
			for b.Loop() {
				if err := via.create(hosts.CreateRequest{Name: fmt.Sprintf("q%07d", made.Add(1)), Provider: "sim", Region: "sim-east1"}); err != nil {
					b.Fatal(err)
				}
				n++
			}
			enqueued := time.Since(start)
			deadline := time.After(5 * time.Minute)
			for done.Load()+failed.Load() < int64(n) {
				select {
				case <-finished:
				case <-deadline:
					b.Fatalf("%d of %d creates done after 5 minutes", done.Load(), n)
				}
			}
			if failed.Load() > 0 {
				b.Fatalf("%d of %d creates failed", failed.Load(), n)
			}
			b.ReportMetric(float64(n)/enqueued.Seconds(), "enqueued/s")
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "actions/s")
		})
	}
}
