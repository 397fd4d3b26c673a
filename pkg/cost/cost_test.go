package cost_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	_ "github.com/sagemathinc/cocalc-hosts/providers/lambda"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func at(h float64) time.Time { return t0.Add(time.Duration(h * float64(time.Hour))) }

func spec(diskGB int) json.RawMessage {
	b, _ := json.Marshal(model.HostSpec{MachineType: "sim-gpu-l4", DiskGB: diskGB})
	return b
}

// history is a host's life as the queue logs it: created, stopped,
// started, a stop that failed (the VM kept running), stopped across
// midnight, the disk grown while off, then deleted.
func history(hostID string) []model.LogEntry {
	e := func(h float64, action, status string, hs model.Status, disk int) model.LogEntry {
		return model.LogEntry{HostID: hostID, TS: at(h), Action: action, Status: status, Provider: "sim",
			Spec: spec(disk), HostStatus: hs, PricingVersion: map[bool]string{true: "simulated@sha256:abc"}[action == "create"]}
	}
	return []model.LogEntry{
		e(-0.1, "create", "retry", model.StatusProvisioning, 20), // a failed attempt: no VM yet
		e(0, "create", "done", model.StatusRunning, 20),
		e(2, "stop", "done", model.StatusOff, 20),
		e(5, "start", "done", model.StatusRunning, 20),
		e(5.5, "stop", "retry", model.StatusStopping, 20),
		e(6, "stop", "failed", model.StatusError, 20), // still running
		e(7, "refresh", "done", model.StatusRunning, 20),
		e(20, "stop", "done", model.StatusOff, 20), // 2026-11-02 06:00
		e(22, "resize", "done", model.StatusOff, 30),
		e(26, "delete", "done", model.StatusDeprovisioned, 30),
	}
}

const (
	hourly   = 0.85
	diskRate = 0.10 // USD per GB-month
)

// The hand calculation:
//
//	compute: running 0–2 h and 5–20 h = 17 h × $0.85 = $14.45
//	disk:    20 GB × 22 h + 30 GB × 4 h = 560 GB-h × $0.10 / 730 h = $0.0767123…
//	total:   $14.5267123…
var (
	wantComputeHours = 17.0
	wantComputeCost  = 17 * 0.85
	wantGBHours      = 20.0*22 + 30*4
	wantStorageCost  = 560 * 0.10 / 730
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSegmentsMatchHandCalculation(t *testing.T) {
	h := model.Host{ID: "h1", Name: "gpu1", Owner: "alice", Provider: "sim", HourlyPrice: hourly}
	rows := cost.Segments(h, history("h1"), cost.Rates{HourlyPrice: hourly, DiskPricePerGBMonth: diskRate}, at(30))
	// [0,2) running, [2,5) off, [5,14) running to midnight, [14,20)
	// running, [20,22) off at 20 GB, [22,26) off at 30 GB.
	want := []struct {
		from, to float64
		state    string
		gb       int
	}{{0, 2, "running", 20}, {2, 5, "off", 20}, {5, 14, "running", 20}, {14, 20, "running", 20}, {20, 22, "off", 20}, {22, 26, "off", 30}}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		if !r.PeriodStart.Equal(at(w.from)) || !r.PeriodEnd.Equal(at(w.to)) || r.State != w.state || r.DiskGB != w.gb {
			t.Fatalf("row %d: %s–%s %s %d GB, want %v", i, r.PeriodStart, r.PeriodEnd, r.State, r.DiskGB, w)
		}
		if r.PricingVersion != "simulated@sha256:abc" || r.Source != cost.Source || r.Owner != "alice" {
			t.Fatalf("row %d: %+v", i, r)
		}
	}
	tot := cost.Window(rows, time.Time{}, time.Time{})
	if !near(tot.ComputeHours, wantComputeHours) || !near(tot.ComputeCost, wantComputeCost) ||
		!near(tot.StorageGBHours, wantGBHours) || !near(tot.StorageCost, wantStorageCost) ||
		!near(tot.Total, wantComputeCost+wantStorageCost) {
		t.Fatalf("totals %+v, want compute %vh $%v, storage %v GB-h $%v", tot, wantComputeHours, wantComputeCost, wantGBHours, wantStorageCost)
	}
	// A window inside the history counts pro rata: 4–10 h is 5 h running
	// (5–10) and 6 h of a 20 GB disk.
	w := cost.Window(rows, at(4), at(10))
	if !near(w.ComputeHours, 5) || !near(w.ComputeCost, 5*hourly) || !near(w.StorageGBHours, 120) || !near(w.StorageCost, 120*diskRate/730) {
		t.Fatalf("window 4–10 h: %+v", w)
	}
}

// The boot disk is billed while the VM exists — running or stopped — and
// no longer once the VM is deleted keeping its data disk.
func TestBootDiskIsBilledWhileTheVMExists(t *testing.T) {
	e := func(h float64, action string, hs model.Status) model.LogEntry {
		return model.LogEntry{HostID: "h1", TS: at(h), Action: action, Status: "done", Provider: "gcp", Spec: spec(20), HostStatus: hs}
	}
	log := []model.LogEntry{
		e(0, "create", model.StatusRunning),
		e(2, "stop", model.StatusOff),
		e(5, "start", model.StatusRunning),
		e(8, "delete", model.StatusOff), // --keep-disk
		e(10, "delete", model.StatusDeprovisioned),
	}
	// $7.30 a month is $0.01 an hour; the data disk $0.73/GB-month.
	rows := cost.Segments(model.Host{ID: "h1", Provider: "gcp"}, log, cost.Rates{HourlyPrice: 1, DiskPricePerGBMonth: 0.73, BootDiskMonthly: 7.30}, at(12))
	var boot float64
	for _, r := range rows {
		boot += r.BootDiskCost
	}
	tot := cost.Window(rows, time.Time{}, time.Time{})
	// boot: 0–8 h × $0.01 = $0.08; data: 20 GB × 10 h × $0.73/730 = $0.20;
	// compute: (2 + 3) h × $1.
	if !near(boot, 0.08) || !near(tot.StorageCost, 0.28) || !near(tot.ComputeCost, 5) || !near(tot.Total, 5.28) {
		t.Fatalf("boot %v, totals %+v", boot, tot)
	}
	if last := rows[len(rows)-1]; !last.PeriodStart.Equal(at(8)) || last.BootDiskCost != 0 {
		t.Fatalf("after the delete keeping the data disk: %+v", last)
	}
}

func TestRunningHostIsBilledUntilNow(t *testing.T) {
	h := model.Host{ID: "h1", Provider: "sim", HourlyPrice: 2}
	log := history("h1")[:4] // created, stopped, started: running since 5 h
	rows := cost.Segments(h, log, cost.Rates{HourlyPrice: 2, DiskPricePerGBMonth: 0.73}, at(8))
	tot := cost.Window(rows, time.Time{}, time.Time{})
	// compute (2 + 3) h × $2; disk 20 GB × 8 h × $0.73/730 = $0.16
	if !near(tot.ComputeCost, 10) || !near(tot.StorageCost, 0.16) {
		t.Fatalf("%+v", tot)
	}
	if last := rows[len(rows)-1]; !last.PeriodEnd.Equal(at(8)) || last.State != cost.StateRunning {
		t.Fatalf("last row %+v", last)
	}
}

// A host's disk is billed at the price recorded when it was launched
// (from its cloud's pricing source), unless the config sets one; hosts
// launched before prices were recorded get the provider's default.
func TestDiskIsBilledAtItsLaunchPrice(t *testing.T) {
	launched := model.Host{ID: "h1", Provider: "gcp", HourlyPrice: 2,
		Spec: model.HostSpec{DiskGB: 20, DiskPricePerGBMonth: 0.11, DiskPriceSource: "gcp-billing-catalog (europe-west4)"}}
	old := launched
	old.Spec.DiskPricePerGBMonth, old.Spec.DiskPriceSource = 0, ""
	for _, tc := range []struct {
		name string
		disk catalog.DiskPricing
		h    model.Host
		want float64
	}{
		{"launch price", nil, launched, 0.11},
		{"configured price wins", catalog.DiskPricing{"gcp": {PerGBMonth: 0.2, Source: "config"}}, launched, 0.2},
		{"no launch price: the default", nil, old, catalog.DefaultDiskPrices["gcp"].PerGBMonth},
	} {
		svc := &cost.Service{Disk: tc.disk}
		if r := svc.RatesFor(context.Background(), tc.h); r.DiskPricePerGBMonth != tc.want || r.HourlyPrice != 2 {
			t.Errorf("%s: rates %+v, want disk $%v/GB-month", tc.name, r, tc.want)
		}
	}
	// And a catalog row carries its cloud's price into an estimate.
	e := catalog.Entry{Provider: "gcp", Region: "europe-west4", HourlyPrice: 1, DiskPricePerGBMonth: 0.11, PricingSource: "gcp-billing-catalog"}
	est := catalog.DiskPricing(nil).Estimate(e, false, 100)
	if est.DiskMonthly != 11 || est.DiskPriceSource != "gcp-billing-catalog (europe-west4)" || est.Monthly != 741 {
		t.Fatalf("estimate %+v", est)
	}
}

// Lambda bills no data disk (the instance's own disk is in its price)
// and cannot stop a host: its capabilities, through catalog.DiskIncluded,
// keep a disk out of the estimate, the stopped price and the cost, even
// for a host launched when a disk price was recorded (issue 8 item 7).
func TestLambdaIsBilledOnlyItsMachine(t *testing.T) {
	e := catalog.Entry{Provider: "lambda", Region: "us-east-1", HourlyPrice: 1.29, PricingSource: "lambda-api"}
	est := catalog.DiskPricing(nil).Estimate(e, false, 0)
	if !est.DiskIncluded || est.DiskGB != 0 || est.DiskMonthly != 0 || est.StoppedMonthly != 0 ||
		est.Stop != provider.StopNone || est.Monthly != catalog.Cents(1.29*catalog.HoursPerMonth) {
		t.Fatalf("estimate %+v, want the machine alone and no stopped price", est)
	}
	h := model.Host{ID: "h1", Provider: "lambda", HourlyPrice: 1.29,
		Spec: model.HostSpec{DiskGB: 10, DiskPricePerGBMonth: 0.2, DiskPriceSource: "list price of Lambda filesystems"}}
	svc := &cost.Service{Disk: catalog.DiskPricing{"lambda": {PerGBMonth: 0.3, Source: "config"}}}
	r := svc.RatesFor(context.Background(), h)
	if r.DiskPricePerGBMonth != 0 {
		t.Fatalf("rates %+v, want no disk price", r)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := cost.Segments(h, []model.LogEntry{{TS: t0, HostStatus: model.StatusRunning}}, r, t0.Add(10*time.Hour))
	if tot := cost.Window(rows, time.Time{}, time.Time{}); tot.StorageCost != 0 || math.Abs(tot.ComputeCost-12.9) > 1e-9 {
		t.Fatalf("totals %+v, want $12.90 compute and no storage", tot)
	}
}

// The report from the store matches the hand calculation, per host, per
// owner and in total, and stores the usage rows in cloud_vm_usage.
func TestReportFromStore(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		deleted := at(26)
		hosts := []model.Host{
			{ID: "h1", Name: "gpu1", Owner: "alice", Provider: "sim", Status: model.StatusDeprovisioned, HourlyPrice: hourly,
				CreatedAt: at(-0.2), UpdatedAt: at(26), DeletedAt: &deleted, Spec: model.HostSpec{DiskGB: 30}},
			{ID: "h2", Name: "cpu1", Owner: "alice", Provider: "sim", Status: model.StatusRunning, HourlyPrice: 0.10,
				CreatedAt: at(0), UpdatedAt: at(0), Spec: model.HostSpec{DiskGB: 10}},
			{ID: "h3", Name: "bobs", Owner: "bob", Provider: "sim", Status: model.StatusOff, HourlyPrice: 0.40,
				CreatedAt: at(0), UpdatedAt: at(0), Spec: model.HostSpec{DiskGB: 100}},
		}
		for _, h := range hosts {
			if err := s.CreateHost(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		entries := history("h1")
		mk := func(host string, h float64, hs model.Status, disk int) model.LogEntry {
			return model.LogEntry{HostID: host, TS: at(h), Action: "x", Status: "done", Provider: "sim", Spec: spec(disk), HostStatus: hs}
		}
		entries = append(entries, mk("h2", 10, model.StatusRunning, 10), mk("h3", 0, model.StatusRunning, 100), mk("h3", 1, model.StatusOff, 100))
		for _, e := range entries {
			if _, err := s.AppendLog(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		svc := &cost.Service{Store: s, Disk: catalog.DiskPricing{"sim": {PerGBMonth: diskRate}}, Now: func() time.Time { return at(30) }}
		rep, err := svc.Report(ctx, cost.ReportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]cost.HostCost{}
		for _, h := range rep.Hosts {
			byName[h.Name] = h
		}
		const eps = 1e-5 // the report rounds to millionths
		within := func(a, b float64) bool { return math.Abs(a-b) < eps }
		g := byName["gpu1"]
		if !within(g.ComputeCost, wantComputeCost) || !within(g.StorageCost, wantStorageCost) || !g.Deleted || g.MonthlyNow != 0 {
			t.Fatalf("gpu1: %+v", g)
		}
		// cpu1 runs 20 h at $0.10 with 10 GB; it still costs compute and disk per month.
		c := byName["cpu1"]
		if !within(c.ComputeCost, 2) || !within(c.StorageCost, 10*20*diskRate/730) || c.MonthlyNow != catalog.Cents(0.10*730+10*diskRate) {
			t.Fatalf("cpu1: %+v", c)
		}
		// bobs ran 1 h at $0.40 and is off: its 100 GB disk costs $10/month.
		b := byName["bobs"]
		if !within(b.ComputeCost, 0.40) || !within(b.StorageCost, 100*30*diskRate/730) || b.MonthlyNow != 10 {
			t.Fatalf("bobs: %+v", b)
		}
		var alice, bob cost.OwnerCost
		for _, o := range rep.Owners {
			switch o.Owner {
			case "alice":
				alice = o
			case "bob":
				bob = o
			}
		}
		if alice.Hosts != 2 || !within(alice.Total, g.Total+c.Total) || bob.Hosts != 1 || !within(bob.Total, b.Total) {
			t.Fatalf("owners: %+v", rep.Owners)
		}
		if !within(rep.Total.Total, g.Total+c.Total+b.Total) {
			t.Fatalf("total %v", rep.Total)
		}
		stored, err := s.ListUsage(ctx, store.UsageFilter{HostID: "h1"})
		if err != nil || len(stored) != 6 {
			t.Fatalf("stored usage of h1: %d rows, %v", len(stored), err)
		}
		// A window: since 4 h, gpu1 costs 15 h of compute (5–20 h).
		rep, err = svc.Report(ctx, cost.ReportOptions{Host: "h1", From: at(4)})
		if err != nil || len(rep.Hosts) != 1 || !within(rep.Hosts[0].ComputeCost, 15*hourly) {
			t.Fatalf("window report: %v %+v", err, rep.Hosts)
		}
	})
}
