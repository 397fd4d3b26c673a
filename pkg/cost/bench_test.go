package cost_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// BenchmarkReport1000Hosts: `cost` over 1,000 hosts with 20 start/stop
// log entries each over 30 days, on SQLite: recomputing and storing every
// host's usage rows, then totalling them.
func BenchmarkReport1000Hosts(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "state.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := t0.Add(-30 * 24 * time.Hour)
	for i := range 1000 {
		h := model.Host{ID: fmt.Sprintf("h%04d", i), Name: fmt.Sprintf("h%04d", i), Owner: fmt.Sprintf("u%d", i%50), Provider: "sim",
			Status: model.StatusRunning, HourlyPrice: 0.85, CreatedAt: start, UpdatedAt: start}
		if err := st.CreateHost(ctx, h); err != nil {
			b.Fatal(err)
		}
		for j := range 20 {
			status := model.StatusRunning
			if j%2 == 1 {
				status = model.StatusOff
			}
			if _, err := st.AppendLog(ctx, model.LogEntry{HostID: h.ID, TS: start.Add(time.Duration(j) * 36 * time.Hour),
				Action: "x", Status: "done", Provider: "sim", Spec: spec(50), HostStatus: status}); err != nil {
				b.Fatal(err)
			}
		}
	}
	svc := &cost.Service{Store: st, Disk: catalog.DiskPricing{"sim": {PerGBMonth: 0.1}}, Now: func() time.Time { return t0 }}
	for b.Loop() {
		rep, err := svc.Report(ctx, cost.ReportOptions{From: start})
		if err != nil || len(rep.Hosts) != 1000 {
			b.Fatal(err)
		}
	}
}
