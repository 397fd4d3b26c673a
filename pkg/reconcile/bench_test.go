package reconcile_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// benchHosts is 10,000 unless BENCH_HOSTS says otherwise (bench/run.sh
// --short runs it small, only to check that it runs).
var benchHosts = testutil.BenchSize(10_000)

// BenchmarkReconcile10k measures one steady-state pass (every VM matches
// its host) over 10,000 sim hosts at zero latency: one List, one host
// listing, one job listing, no writes. Run it with -benchtime=1x.
func BenchmarkReconcile10k(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchReconcile(b, filepath.Join(b.TempDir(), "state.db"), 1) })
	b.Run("postgres", func(b *testing.B) { benchReconcile(b, pgtest.Shared(b).NewDatabase(b), 8) })
}

func benchReconcile(b *testing.B, dsn string, seeders int) {
	ctx := context.Background()
	s, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p, err := sim.New(provider.Config{Deployment: deployment, State: s.ProviderState()})
	if err != nil {
		b.Fatal(err)
	}

	// Seed through the public interfaces: a sim Create (two reads and an
	// insert) and a CreateHost per host. SQLite has one connection, so
	// more seeders would only queue behind it.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, seeders)
	per := benchHosts / seeders
	for w := range seeders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := seedHost(ctx, s, p, fmt.Sprintf("h%d-%d", w, i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Logf("seeded %d hosts and VMs on %s in %s", benchHosts, s.Backend(), time.Since(start).Round(time.Millisecond))

	o := reconcile.Options{Store: s, Providers: map[string]provider.Provider{"sim": p}}
	for b.Loop() {
		rep, err := reconcile.Run(ctx, o)
		if err != nil {
			b.Fatal(err)
		}
		r := rep.Providers[0]
		if r.Error != "" || r.Instances != benchHosts || r.HostsChecked != benchHosts ||
			len(r.Updated)+len(r.Missing)+len(r.Orphans) != 0 {
			b.Fatalf("unexpected report: error %q, %d instances, %d checked, %d updated, %d missing, %d orphans",
				r.Error, r.Instances, r.HostsChecked, len(r.Updated), len(r.Missing), len(r.Orphans))
		}
	}
	b.ReportMetric(float64(benchHosts), "hosts/op")
}

func seedHost(ctx context.Context, s store.Store, p *sim.Provider, name string) error {
	id := uuid.NewString()
	in, err := p.Create(ctx, createSpec(id))
	if err != nil {
		return err
	}
	return s.CreateHost(ctx, model.Host{
		ID: id, Name: name, Owner: "bench", Provider: "sim", Region: in.Region, Zone: in.Zone,
		Status: model.StatusRunning, Spec: model.HostSpec{MachineType: "sim-small", DiskGB: 10},
		Runtime:   model.Runtime{InstanceID: in.ID, PublicIP: in.PublicIP, PrivateIP: in.PrivateIP, DataDisk: in.DataDisk, Meta: in.Meta},
		CreatedAt: t0, UpdatedAt: t0,
	})
}
