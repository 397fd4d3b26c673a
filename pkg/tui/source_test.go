package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// t0 is the test clock's "now".
var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// fleetSource is a Source over fixed data whose actions change it and
// record what was asked, as the command layer's source does over the
// database. (The real source is tested end to end by the dashboard
// testscript, on the real binary.)
type fleetSource struct {
	mu       sync.Mutex
	fleet    Fleet
	catalog  Catalog
	fleetErr error
	doErr    error
	calls    []string
	// progress is reported by each Do before it ends.
	progress []Progress
	// block, when set, holds Do until closed.
	block chan struct{}
	moves bool
	// changes, when set, are its change events.
	changes chan []Change
	// reads counts the fleet's reads.
	reads    int
	usageErr error
}

func (s *fleetSource) Fleet(context.Context) (Fleet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.fleetErr != nil {
		return Fleet{}, s.fleetErr
	}
	f := s.fleet
	f.Hosts = append([]Host(nil), f.Hosts...)
	f.Projects = append([]model.Project(nil), f.Projects...)
	return f, nil
}

func (s *fleetSource) Host(_ context.Context, id string) (HostInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.fleet.Hosts {
		if h.ID != id {
			continue
		}
		info := HostInfo{Host: h, Collaborators: []string{"bob"}, At: t0,
			Stopped: &StoppedCost{Monthly: 6, DiskGB: 50, DiskPricePerGBMonth: 0.1, Source: "gcp pricing", BootDiskMonthly: 1},
			RecentLog: []model.LogEntry{
				{ID: 1, HostID: id, TS: t0.Add(-72 * time.Hour), Action: "create", Status: "ok", HostStatus: model.StatusRunning},
				{ID: 2, HostID: id, TS: t0.Add(-2 * time.Hour), Action: "stop", Status: "error", Error: "quota exceeded"},
			}}
		if h.Status == model.StatusRunning {
			info.Agent = &Agent{Reachable: true, Version: "v1.4.0", Uptime: 7380, StorageKind: "btrfs",
				DiskFree: 40 << 30, DiskTotal: 50 << 30, CPUs: 4, GPUs: 1, MemTotal: 16 << 30, MemCommit: 3 << 30, Running: 2}
		}
		return info, nil
	}
	return HostInfo{}, fmt.Errorf("host %s: not found", id)
}

func (s *fleetSource) Usage(_ context.Context, hostID string, ids []string) ([]ProjectUsage, error) {
	s.mu.Lock()
	err := s.usageErr
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	snap := t0.Add(-30 * time.Minute)
	var out []ProjectUsage
	for _, id := range ids {
		out = append(out, ProjectUsage{ID: id, DiskUsed: 300 << 20, Snapshots: 2, LastSnapshot: &snap})
	}
	return out, nil
}

func (s *fleetSource) Logs(_ context.Context, hostID string, after LogCursor) (LogPage, error) {
	if after.VMLog > 0 {
		return LogPage{Next: after}, nil
	}
	return LogPage{Next: LogCursor{VMLog: 2, Boot: 3}, Lines: []LogLine{
		{TS: t0.Add(-72 * time.Hour), Kind: LogVM, Text: "create   ok → running"},
		{TS: t0.Add(-72*time.Hour + time.Second), Kind: LogBoot, Text: "installing podman"},
		{TS: t0.Add(-72*time.Hour + 2*time.Second), Kind: LogBoot, Text: "agent v1.4.0 answers"},
		{TS: t0.Add(-2 * time.Hour), Kind: LogVM, Text: "stop     error: quota exceeded", Error: true},
	}}, nil
}

func (s *fleetSource) Catalog(context.Context) (Catalog, error) { return s.catalog, nil }

func (s *fleetSource) Supports(k ActionKind) bool {
	return s.moves || (k != ProjectMove && k != ProjectBackup && k != ProjectClone)
}

func (s *fleetSource) Preview(_ context.Context, a Action) (Preview, error) {
	switch a.Kind {
	case HostStop:
		return Preview{Lines: []string{"compute billing ($0.7000/hour) ends; projects on it stop",
			StoppedLine(StoppedCost{Monthly: 6, DiskGB: 50, DiskPricePerGBMonth: 0.1, Source: "gcp pricing", BootDiskMonthly: 1}, false)}}, nil
	case HostDelete:
		return Preview{Lines: []string{"deletes host " + a.Name + " on gcp: its VM", "and its 50 GB data disk with everything on it"},
			Destroys: true, TypeName: a.Name}, nil
	case HostUpgrade:
		if a.HostID == "h2" {
			return Preview{}, errors.New("host " + a.Name + " (provider local) runs its agent from this program directly")
		}
		return Preview{Lines: []string{"installs agent v1.5.0 on " + a.Name + " (now v1.4.0) and restarts it", "running projects keep running"}}, nil
	case HostCreate:
		return Preview{Lines: []string{fmt.Sprintf("a %s %s: $%.4f/hour while it runs", a.NewHost.Provider, a.NewHost.Machine, 0.7)}}, nil
	case ProjectMove:
		to := a.ToHostID
		s.mu.Lock()
		for _, h := range s.fleet.Hosts {
			if h.ID == a.ToHostID {
				to = h.Name
			}
		}
		s.mu.Unlock()
		return Preview{Lines: []string{"moves project " + a.Name + ": gpu1 → " + to, "about 4.0 GiB to copy (its home and snapshots)",
			"it keeps running while most is copied, stops for the last copy, and starts on " + to}}, nil
	}
	return Preview{Lines: []string{string(a.Kind) + " " + a.Name}}, nil
}

func (s *fleetSource) Do(_ context.Context, a Action, progress func(Progress)) (Outcome, error) {
	s.mu.Lock()
	s.calls = append(s.calls, fmt.Sprintf("%s %s%s", a.Kind, a.HostID, a.ProjectID))
	ps, block, doErr := s.progress, s.block, s.doErr
	s.mu.Unlock()
	for _, p := range ps {
		progress(p)
	}
	if block != nil {
		<-block
	}
	if doErr != nil {
		return Outcome{}, doErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.fleet.Hosts {
		h := &s.fleet.Hosts[i]
		if h.ID != a.HostID || strings.HasPrefix(string(a.Kind), "project.") {
			continue
		}
		switch a.Kind {
		case HostStart:
			h.Status = model.StatusRunning
		case HostUpgrade:
			return Outcome{Message: h.Name + ": " + string(h.Status) + " (agent v1.5.0)"}, nil
		case HostStop:
			h.Status = model.StatusOff
			return Outcome{Message: h.Name + ": off", Notes: []string{h.Name + ": " + StoppedLine(StoppedCost{Monthly: 6, DiskGB: 50,
				DiskPricePerGBMonth: 0.1, Source: "gcp pricing"}, true)}}, nil
		}
		return Outcome{Message: h.Name + ": " + string(h.Status)}, nil
	}
	if a.Kind == HostCreate {
		s.fleet.Hosts = append(s.fleet.Hosts, Host{Host: model.Host{ID: "h-" + a.NewHost.Name, Name: a.NewHost.Name,
			Provider: a.NewHost.Provider, Region: a.NewHost.Region, Status: model.StatusRunning, CreatedAt: t0}})
		return Outcome{Message: a.NewHost.Name + ": running"}, nil
	}
	if a.Kind == ProjectCreate {
		s.fleet.Projects = append(s.fleet.Projects, model.Project{ID: "p-new", Title: a.NewProject.Title, HostID: a.HostID,
			State: model.ProjectRunning, Owner: "alice", Image: "cocalc-base"})
		return Outcome{Message: "project p-new: running"}, nil
	}
	return Outcome{Message: string(a.Kind) + " " + a.Name + ": done"}, nil
}

func (s *fleetSource) Shell(_ context.Context, id string) (Command, error) {
	return &fakeShell{s: s, id: id}, nil
}

func (s *fleetSource) Changes(context.Context) <-chan []Change { return s.changes }

// fakeShell records that it ran, as tea.Exec runs it.
type fakeShell struct {
	s  *fleetSource
	id string
}

func (f *fakeShell) Run() error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.calls = append(f.s.calls, "shell "+f.id)
	return nil
}
func (f *fakeShell) SetStdin(io.Reader)  {}
func (f *fakeShell) SetStdout(io.Writer) {}
func (f *fakeShell) SetStderr(io.Writer) {}

func ptime(t time.Time) *time.Time { return &t }

func testFleet() *fleetSource {
	created := t0.Add(-72 * time.Hour)
	return &fleetSource{
		fleet: Fleet{At: t0, Hosts: []Host{
			{Host: model.Host{ID: "h1", Name: "gpu1", Owner: "alice", Provider: "gcp", Region: "us-central1", Zone: "us-central1-a",
				Status: model.StatusRunning, HourlyPrice: 0.7, LastAction: "create", CreatedAt: created,
				Spec:    model.HostSpec{MachineType: "g2-standard-4", GPUModel: "l4", GPUCount: 1, DiskGB: 50, CPUs: 4, MemoryGiB: 16},
				Runtime: model.Runtime{PublicIP: "203.0.113.7", DNSName: "gpu1.hosts.example.com", InstanceID: "i-123"}},
				MonthToDate: 33.6, MonthlyNow: 517},
			{Host: model.Host{ID: "h2", Name: "cpu1", Owner: "alice", Provider: "local", Region: "local", Status: model.StatusOff,
				LastAction: "stop", LastError: "agent gone", CreatedAt: t0.Add(-10 * 24 * time.Hour)}, MonthToDate: 0.25},
			{Host: model.Host{ID: "h3", Name: "sim-a100", Owner: "bob", Provider: "sim", Region: "sim-east1", Status: model.StatusProvisioning,
				HourlyPrice: 3.2, LastAction: "create", CreatedAt: t0.Add(-3 * time.Minute),
				Spec: model.HostSpec{MachineType: "sim-a100-1", GPUModel: "a100", GPUCount: 1}},
				Job: &model.Job{ID: "j1", Subject: model.HostSubject("h3"), Action: model.ActionCreate, State: model.JobRunning, Attempts: 1}},
		}, Projects: []model.Project{
			{ID: "p1aaaaaa-1111", Title: "thesis", Owner: "alice", HostID: "h1", Image: "cocalc-base", State: model.ProjectRunning,
				Limits:       model.ProjectLimits{MemoryBytes: 2 << 30, CPUs: 1.5, DiskBytes: 10 << 30},
				LastActivity: ptime(t0.Add(-5 * time.Minute))},
			{ID: "p2bbbbbb-2222", Title: "course", Owner: "bob", HostID: "h1", Image: "cocalc-base", State: model.ProjectStopped,
				Limits: model.ProjectLimits{MemoryBytes: 1 << 30, CPUs: 1, DiskBytes: 2 << 30}},
			{ID: "p3cccccc-3333", Title: "gpu-train", Owner: "alice", HostID: "h1", Image: "pytorch", State: model.ProjectRunning,
				Limits: model.ProjectLimits{MemoryBytes: 8 << 30, CPUs: 4, DiskBytes: 50 << 30}, LastActivity: ptime(t0.Add(-40 * time.Second))},
			{ID: "p4dddddd-4444", Title: "old", Owner: "carol", HostID: "h2", Image: "cocalc-base", State: model.ProjectStopped,
				Limits: model.ProjectLimits{MemoryBytes: 1 << 30, CPUs: 1, DiskBytes: 2 << 30}},
		}},
		catalog: Catalog{At: t0, Machines: []Machine{
			{Provider: "gcp", Region: "us-central1", Zone: "us-central1-a", Type: "g2-standard-4", CPUs: 4, MemoryGiB: 16, GPUModel: "l4", GPUCount: 1,
				HourlyPrice: 0.7066, SpotPrice: 0.2826, DiskGBMonth: 0.1, BootMonthly: 1, Available: true, DefaultDisk: 10},
			{Provider: "sim", Region: "sim-east1", Type: "sim-cpu-2", CPUs: 2, MemoryGiB: 8, HourlyPrice: 0.05, DiskGBMonth: 0.04, Available: true, DefaultDisk: 10, Simulated: true},
			{Provider: "sim", Region: "sim-east1", Type: "sim-a100-1", CPUs: 12, MemoryGiB: 85, GPUModel: "a100", GPUCount: 1, HourlyPrice: 3.2, SpotPrice: 1.1, DiskGBMonth: 0.04, Available: true, DefaultDisk: 10, Simulated: true},
			{Provider: "lambda", Region: "us-west-1", Type: "gpu_1x_a10", CPUs: 30, MemoryGiB: 200, GPUModel: "a10", GPUCount: 1, HourlyPrice: 0.75, DiskGBMonth: 0.2, Available: false, DefaultDisk: 10},
			{Provider: "hyperstack", Region: "CANADA-1", Type: "n3-L40x1", CPUs: 28, MemoryGiB: 58, GPUModel: "l40", GPUCount: 1, HourlyPrice: 1.0, DiskGBMonth: 0.1, Available: true, DefaultDisk: 10},
		}},
	}
}
