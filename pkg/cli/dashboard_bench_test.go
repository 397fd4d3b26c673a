package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/benchcpu"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/pkg/tui"
)

// dashboardFleet makes a throwaway Postgres database with 10,000 hosts
// (BENCH_HOSTS, if set; sim, running) and five projects on each, and a
// factory on it.
func dashboardFleet(b *testing.B) (*Factory, store.Store, []model.Host) {
	b.Helper()
	hosts := testutil.BenchSize(10000)
	projects := 5 * hosts
	c, err := pgtest.Start()
	if err != nil {
		b.Skipf("throwaway Postgres: %v", err)
	}
	b.Cleanup(c.Stop)
	url := c.NewDatabase(b)
	dir := b.TempDir()
	b.Setenv("HOME", dir)
	b.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	b.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("db: "+url+"\naccount: bench\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: io.Discard, ErrOut: io.Discard})
	f.ConfigPath = cfg
	b.Cleanup(f.Close)
	ctx := context.Background()
	st, err := f.Store(ctx)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	hs := make([]model.Host, hosts)
	for i := range hs {
		hs[i] = model.Host{ID: uuid.NewString(), Name: fmt.Sprintf("h%05d", i), Owner: "bench", Provider: "sim",
			Region: "sim-east1", Status: model.StatusRunning, HourlyPrice: 0.05, LastAction: "create", CreatedAt: now, UpdatedAt: now,
			Spec: model.HostSpec{MachineType: "sim-small", DiskGB: 10}}
		if err := st.CreateHost(ctx, hs[i]); err != nil {
			b.Fatal(err)
		}
	}
	for i := range projects {
		p := model.Project{ID: uuid.NewString(), Title: fmt.Sprintf("p%d", i), Owner: "bench", HostID: hs[i%hosts].ID,
			Image: "cocalc-base", State: model.ProjectStopped, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateProject(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	return f, st, hs
}

// BenchmarkDashboardFleetPostgres is one full read of the dashboard's
// source (its first, then one every --refresh): every host with its
// month-to-date cost, every project, the active jobs.
func BenchmarkDashboardFleetPostgres(b *testing.B) {
	f, _, hs := dashboardFleet(b)
	src, err := newDashboardSource(context.Background(), f)
	if err != nil {
		b.Fatal(err)
	}
	defer benchcpu.PerOp(b)()
	for b.Loop() {
		fl, err := src.Fleet(context.Background())
		if err != nil || len(fl.Hosts) != len(hs) || len(fl.Projects) != 5*len(hs) {
			b.Fatalf("fleet: %d hosts, %d projects, %v", len(fl.Hosts), len(fl.Projects), err)
		}
	}
}

// watcher is the dashboard as the program runs it, telling when its
// frame first shows the first host's row in the wanted status.
type watcher struct {
	tui.Model
	want *atomic.Value // model.Status
	seen chan struct{}
}

func (w watcher) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if _, ok := msg.(tea.WindowSizeMsg); ok {
		// Off a terminal the program says 0x0: a row on a screen that
		// narrow has no status column.
		msg = tea.WindowSizeMsg{Width: 160, Height: 48}
	}
	next, cmd := w.Model.Update(msg)
	w.Model = next.(tui.Model)
	want, _ := w.want.Load().(model.Status)
	for _, line := range strings.Split(ansi.Strip(w.View().Content), "\n") {
		if strings.HasPrefix(line, "h00000 ") && strings.Contains(line, " "+string(want)+" ") {
			select {
			case w.seen <- struct{}{}:
			default:
			}
		}
	}
	return w, cmd
}

// BenchmarkCommitToScreenPostgres is the time from a job's commit (its
// finish, which writes the host's new status) to the dashboard's frame
// showing the row with that status, over 10,000 hosts and 50,000
// projects (BENCH_HOSTS and five times as many): the program runs as on a terminal and follows the database's
// change events (LISTEN/NOTIFY); its poll, every default --refresh, only
// backs them up.
//
//	go test -run '^$' -bench CommitToScreenPostgres -benchtime 50x ./pkg/cli/
func BenchmarkCommitToScreenPostgres(b *testing.B) {
	f, st, hs := dashboardFleet(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, err := newDashboardSource(ctx, f)
	if err != nil {
		b.Fatal(err)
	}
	want := &atomic.Value{}
	want.Store(model.StatusRunning)
	w := watcher{Model: tui.New(src, tui.Options{Timeout: time.Minute, Context: ctx}),
		want: want, seen: make(chan struct{}, 1)}
	p := tea.NewProgram(w, tea.WithContext(ctx), tea.WithInput(nil), tea.WithOutput(io.Discard), tea.WithoutSignalHandler())
	go p.Run() //nolint:errcheck // ended by cancel
	<-w.seen   // the first load
	h := hs[0]
	status := []model.Status{model.StatusOff, model.StatusRunning}
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		// Commit at any moment, as jobs do.
		b.StopTimer()
		time.Sleep(time.Duration(rand.Int64N(int64(250 * time.Millisecond))))
		b.StartTimer()
		h.Status, h.UpdatedAt = status[i%2], time.Now()
		want.Store(h.Status)
		select {
		case <-w.seen:
		default:
		}
		job, _, err := st.EnqueueJob(ctx, model.Job{ID: uuid.NewString(), Subject: model.HostSubject(h.ID), Action: model.ActionStop, MaxAttempts: 1,
			RunAfter: time.Now(), CreatedAt: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.ClaimJobs(ctx, store.Claim{Owner: "bench", Lease: time.Minute, JobID: job.ID, Now: time.Now()}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := st.FinishJobs(ctx, []store.Finish{{JobID: job.ID, Owner: "bench", State: model.JobDone, Now: time.Now(), Writes: []store.Write{
			store.HostWrite{Host: h},
			store.LogWrite{Entry: model.LogEntry{HostID: h.ID, JobID: job.ID, TS: time.Now(), Action: "stop", Status: "ok", Provider: "sim", HostStatus: h.Status}}}}})[0]; err != nil {
			b.Fatal(err)
		}
		select {
		case <-w.seen:
		case <-time.After(30 * time.Second):
			b.Fatalf("the screen never showed %s as %s", h.Name, h.Status)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	p.Quit()
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
