package tui

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/benchcpu"
)

// bigFleet is 10,000 hosts with 50,000 projects, shaped like a real
// fleet: most running, some off, a few changing or failed.
func bigFleet() Fleet {
	const nh, np = 10000, 50000
	f := Fleet{At: t0, Hosts: make([]Host, nh), Projects: make([]model.Project, np)}
	statuses := []model.Status{model.StatusRunning, model.StatusRunning, model.StatusRunning, model.StatusOff, model.StatusStarting, model.StatusError}
	for i := range f.Hosts {
		h := model.Host{ID: fmt.Sprintf("host-%05d", i), Name: fmt.Sprintf("h%05d", i), Owner: fmt.Sprintf("owner%03d", i%500),
			Provider: []string{"gcp", "hyperstack", "lambda", "nebius", "sim"}[i%5], Region: "us-central1", Zone: "us-central1-a",
			Status: statuses[i%len(statuses)], HourlyPrice: 0.1 + float64(i%40)/10, LastAction: "start",
			CreatedAt: t0.Add(-time.Duration(i) * time.Minute),
			Spec:      model.HostSpec{MachineType: "g2-standard-8", GPUModel: "l4", GPUCount: 1 + i%2, DiskGB: 100}}
		if h.Status == model.StatusError {
			h.LastError = "start failed after 5 attempt(s): ZONE_RESOURCE_POOL_EXHAUSTED"
		}
		f.Hosts[i] = Host{Host: h, MonthToDate: float64(i%300) + 0.5, MonthlyNow: 500}
	}
	for i := range f.Projects {
		act := t0.Add(-time.Duration(i%600) * time.Minute)
		f.Projects[i] = model.Project{ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), Title: fmt.Sprintf("project %d", i),
			Owner: fmt.Sprintf("owner%03d", i%500), HostID: f.Hosts[i%len(f.Hosts)].ID, Image: "cocalc-base",
			State:  []model.ProjectState{model.ProjectRunning, model.ProjectStopped}[i%2],
			Limits: model.ProjectLimits{MemoryBytes: 2 << 30, CPUs: 1, DiskBytes: 10 << 30}, LastActivity: &act}
	}
	return f
}

func loadedModel(b *testing.B, f Fleet, w, h int) Model {
	b.Helper()
	m := New(&fleetSource{}, Options{Refresh: time.Hour, Now: func() time.Time { return t0 }})
	next, _ := m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	next, _ = next.(Model).Update(fleetMsg{fleet: f, at: t0})
	return next.(Model)
}

// BenchmarkFrame is one frame after the first load, with the selection
// moving (hosts and projects views) as it does while someone scrolls.
func BenchmarkFrame(b *testing.B) {
	f := bigFleet()
	for _, size := range [][2]int{{80, 24}, {160, 48}} {
		for _, view := range []string{"hosts", "projects", "details"} {
			b.Run(fmt.Sprintf("%s-%dx%d", view, size[0], size[1]), func(b *testing.B) {
				m := loadedModel(b, f, size[0], size[1])
				switch view {
				case "projects":
					next, _ := m.Update(keyMsg("2"))
					m = next.(Model)
				case "details":
					next, _ := m.Update(keyMsg("enter"))
					m = next.(Model)
				}
				down := keyMsg("down")
				i := 0
				defer benchcpu.PerOp(b)()
				for b.Loop() {
					if view != "details" {
						next, _ := m.Update(down)
						m = next.(Model)
					}
					if len(m.View().Content) == 0 {
						b.Fatal("empty frame")
					}
					i++
				}
			})
		}
	}
}

// BenchmarkLoad is taking a new fleet (a poll's answer): counting
// projects per host, filtering and sorting both tables.
func BenchmarkLoad(b *testing.B) {
	f := bigFleet()
	m := loadedModel(b, f, 160, 48)
	defer benchcpu.PerOp(b)()
	for b.Loop() {
		next, _ := m.Update(fleetMsg{fleet: f, at: t0})
		m = next.(Model)
	}
}

// BenchmarkFilterKeystroke is one key typed into the hosts filter.
func BenchmarkFilterKeystroke(b *testing.B) {
	m := loadedModel(b, bigFleet(), 160, 48)
	next, _ := m.Update(keyMsg("/"))
	m = next.(Model)
	keys := []tea.KeyPressMsg{keyMsg("h"), keyMsg("1"), {Code: tea.KeyBackspace}, {Code: tea.KeyBackspace}}
	i := 0
	defer benchcpu.PerOp(b)()
	for b.Loop() {
		next, _ := m.Update(keys[i%len(keys)])
		m = next.(Model)
		_ = m.View()
		i++
	}
}

// BenchmarkFleetMemory reports the heap the dashboard holds for the
// fleet: the data, the tables' indexes and the per-host counts.
func BenchmarkFleetMemory(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m := loadedModel(b, bigFleet(), 160, 48)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-held")
		runtime.KeepAlive(m)
	}
}
