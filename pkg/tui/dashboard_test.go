package tui

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// hostList is a Source over a list of hosts whose actions change their
// status, recording what was asked.
type hostList struct {
	mu    sync.Mutex
	hosts []model.Host
	calls []string
	fail  error
}

func (l *hostList) Hosts(context.Context) ([]model.Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]model.Host(nil), l.hosts...), nil
}

func (l *hostList) set(id string, st model.Status, action string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, action+" "+id)
	if l.fail != nil {
		return "", l.fail
	}
	for i := range l.hosts {
		if l.hosts[i].ID == id {
			l.hosts[i].Status, l.hosts[i].LastAction = st, action
		}
	}
	return string(st), nil
}

func (l *hostList) Start(_ context.Context, id string) (string, error) {
	return l.set(id, model.StatusRunning, "start")
}

func (l *hostList) Stop(_ context.Context, id string) (string, error) {
	return l.set(id, model.StatusOff, "stop")
}

// step feeds msg to m and runs the commands it returns (not the clock),
// feeding their messages back, as the bubbletea runtime would.
func step(t *testing.T, m Model, msg tea.Msg) (Model, bool) {
	t.Helper()
	next, cmd := m.Update(msg)
	m = next.(Model)
	return run(t, m, cmd)
}

func run(t *testing.T, m Model, cmd tea.Cmd) (Model, bool) {
	t.Helper()
	if cmd == nil {
		return m, false
	}
	switch msg := cmd().(type) {
	case tea.BatchMsg:
		quit := false
		for _, c := range msg {
			var q bool
			m, q = run(t, m, c)
			quit = quit || q
		}
		return m, quit
	case tea.QuitMsg:
		return m, true
	case tickMsg:
		return m, false // the clock: tested on its own
	case nil:
		return m, false
	default:
		return step(t, m, msg)
	}
}

func key(s string) tea.Msg {
	switch s {
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	}
	return tea.KeyPressMsg{Code: rune(s[0]), Text: s}
}

func testHosts() *hostList {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	return &hostList{hosts: []model.Host{
		{ID: "h1", Name: "gpu1", Owner: "alice", Provider: "gcp", Region: "us-central1", Zone: "us-central1-a",
			Status: model.StatusRunning, HourlyPrice: 0.7, LastAction: "create", CreatedAt: t0,
			Spec: model.HostSpec{MachineType: "g2-standard-4", GPUModel: "l4", GPUCount: 1, DiskGB: 50}},
		{ID: "h2", Name: "cpu1", Owner: "alice", Provider: "local", Region: "local", Status: model.StatusOff,
			LastAction: "stop", LastError: "agent gone", CreatedAt: t0},
	}}
}

func TestDashboardShowsAndActs(t *testing.T) {
	src := testHosts()
	m := New(src, time.Hour)
	// Init loads the hosts and starts the clock (not run here: it waits
	// an hour).
	init, ok := m.Init()().(tea.BatchMsg)
	if !ok || len(init) != 2 {
		t.Fatalf("Init: want a load and a clock, got %T", m.Init()())
	}
	m, _ = run(t, m, init[0])
	v := m.View().Content
	for _, want := range []string{"cocalc-hosts: 2 host(s), refreshed", "> gpu1", "us-central1-a", "running", "0.7000",
		"  cpu1", "stop: agent gone", "s start · x stop"} {
		if !strings.Contains(v, want) {
			t.Fatalf("view lacks %q:\n%s", want, v)
		}
	}

	// Down to cpu1, details, start it.
	m, _ = step(t, m, key("down"))
	m, _ = step(t, m, key("enter"))
	if v := m.View().Content; !strings.Contains(v, "> cpu1") || !strings.Contains(v, "host:        cpu1 (h2)") || !strings.Contains(v, "last error:  agent gone") {
		t.Fatalf("details of cpu1:\n%s", v)
	}
	m, _ = step(t, m, key("s"))
	if v := m.View().Content; !strings.Contains(v, "start cpu1: running") || !strings.Contains(v, "cpu1                 local") {
		t.Fatalf("after start:\n%s", v)
	}

	// Stop asks first: any key but y cancels; y stops.
	m, _ = step(t, m, key("up"))
	m, _ = step(t, m, key("x"))
	if v := m.View().Content; !strings.Contains(v, "stop gpu1? y to confirm") {
		t.Fatalf("stop should ask:\n%s", v)
	}
	m, _ = step(t, m, key("n"))
	if !strings.Contains(m.View().Content, "stop cancelled") {
		t.Fatal("n should cancel the stop")
	}
	m, _ = step(t, m, key("x"))
	m, _ = step(t, m, key("y"))
	if v := m.View().Content; !strings.Contains(v, "stop gpu1: off") {
		t.Fatalf("after stop:\n%s", v)
	}
	if got := strings.Join(src.calls, ", "); got != "start h2, stop h1" {
		t.Fatalf("actions asked: %s", got)
	}

	// A failed action says so.
	src.fail = errors.New("no capacity")
	m, _ = step(t, m, key("s"))
	if v := m.View().Content; !strings.Contains(v, "start gpu1 failed: no capacity") {
		t.Fatalf("after a failed start:\n%s", v)
	}
	if _, quit := step(t, m, key("q")); !quit {
		t.Fatal("q should quit")
	}
}

// An action in flight blocks a second one on the same host, and the
// clock reloads the hosts.
func TestDashboardBusyAndClock(t *testing.T) {
	src := testHosts()
	m := New(src, time.Millisecond)
	m, _ = run(t, m, m.load())
	next, cmd := m.Update(key("s")) // not run yet: the start is in flight
	m = next.(Model)
	if cmd == nil || !strings.Contains(m.View().Content, "running (start)") {
		t.Fatalf("in flight:\n%s", m.View().Content)
	}
	m, _ = step(t, m, key("s"))
	if !strings.Contains(m.View().Content, "gpu1 is busy with start") {
		t.Fatalf("second action:\n%s", m.View().Content)
	}
	if len(src.calls) != 0 {
		t.Fatalf("calls %v", src.calls)
	}
	// q waits for the action to end, then quits.
	next, qcmd := m.Update(key("q"))
	m = next.(Model)
	if qcmd != nil || !strings.Contains(m.View().Content, "quitting when the 1 running action(s) end") {
		t.Fatalf("q during an action:\n%s", m.View().Content)
	}
	if _, quit := run(t, m, cmd); !quit {
		t.Fatal("the dashboard should quit once the action ended")
	}
	m.quitting = false

	src.hosts = src.hosts[:1]
	next, cmd = m.Update(tickMsg{})
	m = next.(Model)
	batch, ok := cmd().(tea.BatchMsg)
	if !ok || len(batch) != 2 {
		t.Fatalf("the clock should reload and tick again: %T", cmd())
	}
	m, _ = step(t, m, batch[0]())
	if !strings.Contains(m.View().Content, "1 host(s)") {
		t.Fatalf("after the clock:\n%s", m.View().Content)
	}
	if _, ok := batch[1]().(tickMsg); !ok {
		t.Fatal("the clock should tick again")
	}
}
