package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/app"
	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	_ "github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// newApp is the application on a fresh state directory with cfg as its
// config file, its clock at now.
func newApp(t *testing.T, cfgFile string, now time.Time) *app.App {
	t.Helper()
	cfg, err := config.Load(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := app.New(cfg, func() time.Time { return now })
	t.Cleanup(a.Close)
	return a
}

// simConfig is a config file with the sim cloud configured, in a home of
// the test's own.
func simConfig(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("providers:\n  sim:\n    credentials: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile
}

// The catalog duty refreshes expired catalogs (and only those) and
// recomputes usage into cloud_vm_usage; a failing cloud is reported,
// naming it, and changes nothing.
func TestCatalogDutyRefreshesExpiredCatalogsAndUsage(t *testing.T) {
	cfgFile := simConfig(t)
	ctx := context.Background()
	start := time.Now().Truncate(time.Millisecond)
	a := newApp(t, cfgFile, start)
	svc, err := a.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	set, err := a.Providers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := set.Get(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CatalogCache().Refresh(ctx, sim); err != nil {
		t.Fatal(err)
	}
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "h1", Owner: "a", Provider: "sim", Spec: model.HostSpec{CPUs: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if job, err := a.RunJob(ctx, *sub.Job, nil); err != nil || job.State != model.JobDone {
		t.Fatalf("create: %v %s %s", err, job.State, job.LastError)
	}
	st, err := a.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, err := st.GetCatalog(ctx, "sim", catalog.KindCapacity, "all")
	if err != nil {
		t.Fatal(err)
	}
	if rows, _ := st.ListUsage(ctx, store.UsageFilter{HostID: sub.Host.ID}); len(rows) != 0 {
		t.Fatalf("usage before any run: %d rows", len(rows))
	}

	// run is one catalog duty at time at, in a process of its own; it
	// returns the errors reported.
	run := func(at time.Time) string {
		var errs []string
		w := &Worker{app: newApp(t, cfgFile, at), o: Options{OnDuty: func(e Event) {
			if e.Err != nil {
				errs = append(errs, string(e.Duty)+": "+e.Err.Error())
			}
		}}}
		w.catalog(ctx)
		return strings.Join(errs, "\n")
	}
	// Five minutes on, capacity (TTL 15m) is still fresh: nothing fetched.
	if msg := run(before.FetchedAt.Add(5 * time.Minute)); msg != "" {
		t.Fatalf("duty: %s", msg)
	}
	if c, _ := st.GetCatalog(ctx, "sim", catalog.KindCapacity, "all"); !c.FetchedAt.Equal(before.FetchedAt) {
		t.Fatal("a fresh catalog was refreshed")
	}
	rows, _ := st.ListUsage(ctx, store.UsageFilter{HostID: sub.Host.ID})
	if len(rows) != 1 || rows[0].State != "running" || rows[0].HourlyPrice != 0.05 {
		t.Fatalf("usage after a run: %+v", rows)
	}
	// An hour on, it has expired and is fetched again.
	later := before.FetchedAt.Add(time.Hour)
	if msg := run(later); msg != "" {
		t.Fatalf("duty: %s", msg)
	}
	if c, _ := st.GetCatalog(ctx, "sim", catalog.KindCapacity, "all"); !c.FetchedAt.Equal(later) {
		t.Fatalf("expired catalog not refreshed: fetched %s", c.FetchedAt)
	}
	// A failing cloud is reported, naming it, and changes nothing.
	if err := config.Set(cfgFile, "providers.sim.error_rate", "1"); err != nil {
		t.Fatal(err)
	}
	if msg := run(later.Add(time.Hour)); !strings.Contains(msg, "catalog refresh: catalog of sim: ") {
		t.Fatalf("duty with a failing cloud: %q", msg)
	}
	if c, _ := st.GetCatalog(ctx, "sim", catalog.KindCapacity, "all"); !c.FetchedAt.Equal(later) {
		t.Fatal("a failed refresh changed the cache")
	}
}

// Of two workers on one database, one leads (runs the duties) and the
// other only runs jobs; when the leader stops, the other takes over.
func TestOneWorkerLeads(t *testing.T) {
	cfgFile := simConfig(t)
	ctx := context.Background()
	type run struct {
		w      *Worker
		stop   context.CancelFunc
		ended  chan struct{} // closed when Run returned
		events chan bool     // Leadership events' Leading
	}
	start := func() run {
		r := run{ended: make(chan struct{}), events: make(chan bool, 10)}
		w, err := New(ctx, newApp(t, cfgFile, time.Now()), Options{LeaderRetry: 5 * time.Millisecond, OnDuty: func(e Event) {
			if e.Duty == Leadership && e.Err == nil {
				r.events <- e.Leading
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		r.w, r.stop = w, stop
		go func() {
			defer close(r.ended)
			if err := w.Run(rctx); err != context.Canceled {
				t.Errorf("Run: %v", err)
			}
		}()
		t.Cleanup(func() { stop(); <-r.ended })
		return r
	}
	first := start()
	if leads := <-first.events; !leads || !first.w.Leading() {
		t.Fatal("the only worker does not lead")
	}
	second := start()
	if leads := <-second.events; leads || second.w.Leading() || !first.w.Leading() {
		t.Fatalf("the second worker leads %v (event %v), the first %v; want only the first", second.w.Leading(), leads, first.w.Leading())
	}
	first.stop()
	<-first.ended
	if first.w.Leading() {
		t.Fatal("a stopped worker still leads")
	}
	if leads := <-second.events; !leads || !second.w.Leading() {
		t.Fatal("the leader stopped, but the other worker did not take over")
	}
}
