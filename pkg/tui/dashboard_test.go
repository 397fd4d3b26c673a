package tui

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"charm.land/bubbles/v2/spinner"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) {
	// Goldens show local times: pin them.
	time.Local = time.UTC
	os.Exit(m.Run())
}

// driver feeds a model messages and runs the commands they return, as
// the bubbletea runtime does, except the clocks: a command that has not
// answered within a moment is a timer (or a subscription) and is left.
type driver struct {
	t    *testing.T
	m    Model
	quit bool
	// execs are the programs handed the terminal (tea.Exec).
	execs int
	// late are commands that had not answered when last asked (timers,
	// subscriptions, actions held by a test).
	late []chan tea.Msg
}

func newDriver(t *testing.T, src Source, w, h int, theme Theme) *driver {
	t.Helper()
	d := &driver{t: t, m: New(src, Options{Refresh: time.Hour, Timeout: time.Second, Theme: theme, Now: func() time.Time { return t0 }})}
	d.send(tea.WindowSizeMsg{Width: w, Height: h})
	d.exec(d.m.Init())
	d.settle(func() bool { return !d.m.fleet.At.IsZero() })
	return d
}

func (d *driver) send(msg tea.Msg) {
	d.t.Helper()
	next, cmd := d.m.Update(msg)
	d.m = next.(Model)
	d.exec(cmd)
}

func (d *driver) exec(cmd tea.Cmd) {
	d.t.Helper()
	if cmd == nil {
		return
	}
	ch := make(chan tea.Msg, 1)
	go func() { ch <- cmd() }()
	select {
	case msg := <-ch:
		d.handle(msg)
	case <-time.After(100 * time.Millisecond):
		d.late = append(d.late, ch)
	}
}

// settle handles what commands that were still running answer, until
// cond holds (or fails the test after a while).
func (d *driver) settle(cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("never settled:\n%s", d.screen())
		}
		d.drain()
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *driver) handle(msg tea.Msg) {
	d.t.Helper()
	switch msg := msg.(type) {
	case nil:
	case tea.BatchMsg:
		for _, c := range msg {
			d.exec(c)
		}
	case tea.QuitMsg:
		d.quit = true
	case spinner.TickMsg, tickMsg:
		// Clocks are driven by the tests themselves.
	default:
		if isExec(msg) {
			d.execs++
			return
		}
		d.send(msg)
	}
}

// isExec recognizes tea.Exec's message (unexported in bubbletea).
func isExec(msg tea.Msg) bool {
	return strings.Contains(strings.ToLower(typeName(msg)), "exec")
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }

func (d *driver) keys(keys ...string) {
	d.t.Helper()
	for _, k := range keys {
		d.send(keyMsg(k))
	}
}

func (d *driver) typeText(s string) {
	d.t.Helper()
	for _, r := range s {
		d.send(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
}

func keyMsg(s string) tea.KeyPressMsg {
	switch s {
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	}
	r := []rune(s)[0]
	if r >= 'A' && r <= 'Z' {
		return tea.KeyPressMsg{Code: r + 32, ShiftedCode: r, Mod: tea.ModShift, Text: s}
	}
	return tea.KeyPressMsg{Code: r, Text: s}
}

// screen is what the terminal shows, without styles.
func (d *driver) screen() string { return ansi.Strip(d.m.View().Content) }

// want waits until the screen shows every one of subs (commands that
// answered late are handled meanwhile).
func (d *driver) want(subs ...string) {
	d.t.Helper()
	has := func() bool {
		s := d.screen()
		for _, w := range subs {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(5 * time.Second)
	for !has() {
		if time.Now().After(deadline) {
			s := d.screen()
			for _, w := range subs {
				if !strings.Contains(s, w) {
					d.t.Fatalf("screen lacks %q:\n%s", w, s)
				}
			}
		}
		d.drain()
		time.Sleep(10 * time.Millisecond)
	}
}

// drain handles the late commands that have answered by now.
func (d *driver) drain() {
	d.t.Helper()
	for i := 0; i < len(d.late); i++ {
		select {
		case msg := <-d.late[i]:
			d.late = append(d.late[:i], d.late[i+1:]...)
			d.handle(msg)
			i--
		default:
		}
	}
}

func (d *driver) wantNot(subs ...string) {
	d.t.Helper()
	s := d.screen()
	for _, w := range subs {
		if strings.Contains(s, w) {
			d.t.Fatalf("screen has %q:\n%s", w, s)
		}
	}
}

// golden compares the screen with testdata/NAME.golden, and checks that
// it fills the terminal exactly.
func (d *driver) golden(name string) {
	d.t.Helper()
	got := d.screen()
	lines := strings.Split(got, "\n")
	if len(lines) != d.m.height {
		d.t.Errorf("%s: %d lines on a %d-line terminal", name, len(lines), d.m.height)
	}
	for i, l := range lines {
		if w := ansi.StringWidth(l); w > d.m.width {
			d.t.Errorf("%s: line %d is %d cells wide on a %d-cell terminal: %q", name, i+1, w, d.m.width, l)
		}
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			d.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			d.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		d.t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		d.t.Errorf("%s differs from %s (rerun with -update after checking):\ngot:\n%s\nwant:\n%s", name, path, got, want)
	}
}

var sizes = []struct{ w, h int }{{80, 24}, {160, 48}}

func forSizes(t *testing.T, fn func(t *testing.T, d *driver, size string)) {
	for _, s := range sizes {
		size := fmt.Sprintf("%dx%d", s.w, s.h)
		t.Run(size, func(t *testing.T) {
			fn(t, newDriver(t, testFleet(), s.w, s.h, MonoTheme()), size)
		})
	}
}

func TestGoldenViews(t *testing.T) {
	forSizes(t, func(t *testing.T, d *driver, size string) {
		d.want("gpu1", "3 hosts · 1 running · $0.70/hour now · $33.85 this month")
		d.golden("hosts_" + size)

		d.keys("down", "enter")
		d.want("once off it will still cost", "answering · version v1.4.0", "recent cloud_vm_log")
		d.golden("details_" + size)

		d.keys("2")
		d.want("thesis", "all 4 projects")
		d.golden("projects_" + size)

		d.keys("1", "3")
		d.want("logs of gpu1", "installing podman", "following")
		d.golden("logs_" + size)

		d.keys("4")
		d.want("sim-cpu-2", "g2-standard-4")
		d.golden("catalog_" + size)

		d.keys("esc", "x")
		d.want("Stop gpu1?", "once off it will still cost about $6.00/month for its 50 GB data disk")
		d.golden("confirm_" + size)

		d.keys("n")
		src := d.m.src.(*fleetSource)
		src.fleetErr = errors.New("state database unavailable: connection refused")
		src.doErr = errors.New("start of host gpu1 failed after 5 attempt(s): ZONE_RESOURCE_POOL_EXHAUSTED; see `cocalc-hosts logs gpu1`")
		d.send(tickMsg{})
		d.keys("s")
		d.keys("y")
		d.want("stale", "connection refused", "Start gpu1 failed", "ZONE_RESOURCE_POOL_EXHAUSTED")
		d.golden("error_" + size)
	})
}

// Moving a project: the destination picker (running hosts other than
// its own), the confirmation with source → destination and size, and
// the progress with a bar, rate and time left; then a copy's picker,
// which offers its own host too.
func TestGoldenMoveViews(t *testing.T) {
	forSizes(t, func(t *testing.T, d *driver, size string) {
		src := d.m.src.(*fleetSource)
		src.mu.Lock()
		src.moves = true
		src.fleet.Hosts[1].Status = model.StatusRunning // cpu1
		src.mu.Unlock()
		d.keys("ctrl+r")
		d.settle(func() bool { return d.m.fleet.Hosts[1].Status == model.StatusRunning })

		d.keys("2", "down") // thesis: second by host
		d.keys("m")
		d.want("Move thesis to", "cpu1")
		d.wantNot("gpu1 ")
		d.golden("move_pick_" + size)

		d.keys("enter")
		d.want("Move thesis?", "moves project thesis: gpu1 → cpu1", "about 4.0 GiB to copy")
		d.golden("move_confirm_" + size)

		src.mu.Lock()
		src.block = make(chan struct{})
		src.mu.Unlock()
		d.keys("y")
		d.settle(func() bool { return len(d.m.jobs) == 1 })
		id := d.m.nextJob
		d.send(progressMsg{job: id, at: t0.Add(-10 * time.Second), p: Progress{Message: "snapshot s1: 0 B sent, 0 B/s", Total: 4 << 30}})
		d.send(progressMsg{job: id, at: t0, p: Progress{Message: "snapshot s1: 1.0 GiB sent, 102 MiB/s", Bytes: 1 << 30, Total: 4 << 30}})
		d.want("move thesis: #####............... 1.0G of 4.0G · 102M/s · 30s left · snapshot")
		d.golden("move_progress_" + size)
		close(src.block)
		d.settle(func() bool { return len(d.m.jobs) == 0 })
		d.want("project.move thesis: done")
		if got := src.calls[len(src.calls)-1]; got != "project.move h1p1aaaaaa-1111" {
			t.Fatalf("the move asked for %q", got)
		}

		d.keys("c")
		d.want("Copy thesis to", "gpu1", "cpu1")
		d.keys("esc")
	})
}

func TestHostsSortFilterAndSpinner(t *testing.T) {
	d := newDriver(t, testFleet(), 160, 30, ColorTheme())
	// Names sort first: cpu1, gpu1, sim-a100.
	rows := func() []string {
		var out []string
		for _, i := range d.m.hosts.index {
			out = append(out, d.m.fleet.Hosts[i].Name)
		}
		return out
	}
	if got := strings.Join(rows(), ","); got != "cpu1,gpu1,sim-a100" {
		t.Fatalf("by name: %s", got)
	}
	d.want("NAME▲")
	// o moves the sort along the columns: cloud, region, machine, status, $/h.
	d.keys("o", "o", "o", "o", "o")
	if got := strings.Join(rows(), ","); got != "cpu1,gpu1,sim-a100" {
		t.Fatalf("by $/h: %s", got)
	}
	d.want("$/H▲")
	d.keys("O")
	if got := strings.Join(rows(), ","); got != "sim-a100,gpu1,cpu1" {
		t.Fatalf("by $/h, descending: %s", got)
	}
	d.want("$/H▼")
	// The selection stays on its host when the order changes.
	d.keys("down")
	sel, _ := d.m.selectedHost()
	d.keys("o")
	if now, _ := d.m.selectedHost(); now.ID != sel.ID {
		t.Fatalf("selection moved from %s to %s", sel.Name, now.Name)
	}

	// A transitional host spins, with its job; colours say the state.
	d.want(spinner.MiniDot.Frames[0] + "provisioning (create)")
	if v := d.m.View().Content; !strings.Contains(v, "\x1b[") {
		t.Fatal("the colour theme shows no colour")
	}
	if !d.m.needSpin() {
		t.Fatal("a provisioning host should keep the spinner going")
	}

	// / filters fuzzily on name, cloud and status, as you type.
	d.keys("/")
	d.typeText("gp")
	if got := strings.Join(rows(), ","); got != "gpu1" {
		t.Fatalf("filter gp: %s", got)
	}
	d.want("/gp", "(1 of 3 hosts; esc clears)")
	d.typeText("x")
	d.want("No host matches the filter")
	d.keys("esc")
	if len(d.m.hosts.index) != 3 {
		t.Fatalf("esc should clear the filter: %v", rows())
	}
	d.keys("/")
	d.typeText("off")
	d.keys("enter")
	if got := strings.Join(rows(), ","); got != "cpu1" {
		t.Fatalf("filter on status: %s", got)
	}
	// enter ends typing; the filter stays and keys act again.
	d.keys("enter")
	if d.m.view != viewDetails || d.m.details.id != "h2" {
		t.Fatalf("enter on the filtered host should show it: view %d, %s", d.m.view, d.m.details.id)
	}
}

func TestActionsConfirmAndProgress(t *testing.T) {
	src := testFleet()
	d := newDriver(t, src, 120, 30, MonoTheme())
	// gpu1 is the second row by name.
	d.keys("down")
	// Stop asks first, showing what the stopped host still costs; n cancels.
	d.keys("x")
	d.want("Stop gpu1?", "compute billing ($0.7000/hour) ends", "once off it will still cost about $6.00/month")
	d.keys("n")
	d.want("stop gpu1 cancelled")
	if len(src.calls) != 0 {
		t.Fatalf("a cancelled stop ran: %v", src.calls)
	}
	// y stops it; the outcome and the stopped-cost line show.
	d.keys("x", "y")
	d.want("gpu1: off", "gpu1: while off it still costs about $6.00/month for its 50 GB data disk")
	if got := strings.Join(src.calls, ", "); got != "stop h1" {
		t.Fatalf("calls: %s", got)
	}

	// Delete needs the name typed: anything else does nothing.
	d.keys("D")
	d.want("Delete gpu1?", "Type gpu1 to confirm", "50 GB data disk")
	d.typeText("gpu")
	d.keys("enter")
	d.want("Type gpu1 to confirm")
	d.typeText("1")
	d.keys("enter")
	d.settle(func() bool { return len(d.m.jobs) == 0 && len(src.calls) == 2 })
	if got := strings.Join(src.calls, ", "); got != "stop h1, delete h1" {
		t.Fatalf("calls: %s", got)
	}

	// A preview that refuses shows why, and nothing runs.
	d.keys("up", "U")
	d.want("Cannot upgrade cpu1", "runs its agent from this program directly")
	d.keys("esc", "down")
	if len(src.calls) != 2 {
		t.Fatalf("a refused upgrade ran: %v", src.calls)
	}

	// A running action shows its progress, with a bar for transfers, and
	// the host is busy until it ends.
	src.block = make(chan struct{})
	src.progress = []Progress{{Message: "waiting for the VM", Attempt: 2}}
	d.keys("s", "y") // Do is held by src.block
	d.settle(func() bool { return strings.Contains(d.screen(), "waiting for the VM") })
	d.want("start gpu1: waiting for the VM (attempt 2)", "off (start)")
	d.keys("s")
	d.want("gpu1 is busy")
	// q waits for the action; ctrl+c would not.
	d.keys("q")
	d.want("quitting when the 1 running action(s) end")
	if d.quit {
		t.Fatal("q quit with an action running")
	}
	close(src.block)
	d.settle(func() bool { return d.quit })
}

func TestTransferProgressBar(t *testing.T) {
	src := testFleet()
	src.moves = true
	d := newDriver(t, src, 160, 30, MonoTheme())
	j := &job{id: 1, action: Action{Kind: ProjectMove, ProjectID: "p1", Name: "thesis"}, started: t0.Add(-10 * time.Second),
		firstBytes: 0, firstAt: t0.Add(-10 * time.Second), lastAt: t0,
		last: Progress{Message: "sending", Bytes: 1 << 30, Total: 4 << 30}}
	d.m.jobs[1] = j
	line := ansi.Strip(d.m.jobLine(j))
	for _, w := range []string{"move thesis: #####............... 1.0G of 4.0G · 102M/s · 30s left · sending · 10s"} {
		if !strings.Contains(line, w) {
			t.Fatalf("job line lacks %q: %s", w, line)
		}
	}
	// Move picks a running destination host, then confirms.
	d.keys("2", "down")
	d.keys("m")
	if _, ok := d.m.modal.(*pickHost); !ok {
		t.Fatalf("m should ask where to:\n%s", d.screen())
	}
	d.want("Move thesis to", "No other running host")
}

func TestProjectsView(t *testing.T) {
	src := testFleet()
	d := newDriver(t, src, 160, 30, MonoTheme())
	d.keys("down", "p") // gpu1's projects
	d.want("3 projects on gpu1", "2 running", "300M", "30m")
	d.keys("a")
	d.want("all 4 projects")
	d.keys("a")
	d.want("3 projects on gpu1")
	// Sorted by host then id: thesis first; restart confirms, start does not.
	d.keys("R")
	d.want("Restart thesis?")
	d.keys("y")
	d.settle(func() bool { return len(d.m.jobs) == 0 })
	d.keys("down", "s")
	d.settle(func() bool { return len(d.m.jobs) == 0 })
	d.keys("S")
	d.settle(func() bool { return len(d.m.jobs) == 0 && len(src.calls) == 3 })
	if got := strings.Join(src.calls, ", "); got != "project.restart h1p1aaaaaa-1111, project.start h1p2bbbbbb-2222, project.snapshot h1p2bbbbbb-2222" {
		t.Fatalf("calls: %s", got)
	}
	// A shell needs a running project, and then takes the terminal.
	d.keys("e")
	d.want("project course is stopped: start it (s) before opening a shell")
	d.keys("up", "e")
	d.settle(func() bool { return d.execs > 0 })
	if d.execs != 1 {
		t.Fatalf("the shell should take the terminal (tea.Exec), %d execs", d.execs)
	}
	// New project: a short form, then straight to the queue.
	d.keys("n")
	d.want("New project on gpu1", "title", "memory")
	d.typeText("paper")
	d.keys("enter")
	d.want("project p-new: running")
	d.settle(func() bool { return len(d.m.jobs) == 0 })
	if n := len(src.calls); src.calls[n-1] != "project.create h1" {
		t.Fatalf("calls: %v", src.calls)
	}
	// Projects of a host that is off cannot be created.
	d.keys("1", "up", "n")
	d.want("cpu1 is off: start it (s) before creating projects on it")
}

func TestCatalogCreatesHost(t *testing.T) {
	src := testFleet()
	d := newDriver(t, src, 120, 30, MonoTheme())
	d.keys("4")
	d.settle(func() bool { return len(d.m.catalog.index) == 5 })
	// Cheapest first.
	var order []string
	for _, i := range d.m.catalog.index {
		order = append(order, d.m.catalog.cat.Machines[i].Type)
	}
	if got := strings.Join(order, ","); got != "sim-cpu-2,g2-standard-4,gpu_1x_a10,n3-L40x1,sim-a100-1" {
		t.Fatalf("catalog order: %s", got)
	}
	// Typing filters; keys like q and 1 are text here.
	d.typeText("gpu:a100 max:5")
	d.want("1 of 5", "sim-a100-1")
	d.wantNot("g2-standard-4")
	d.keys("esc")
	d.typeText("cpu:8 ram:64")
	d.want("2 of 5")
	d.typeText(" bogus:1")
	d.want(`unknown filter "bogus:"`)
	d.keys("esc")
	d.typeText("l4")
	d.keys("enter")
	d.want("New host: gcp g2-standard-4 in us-central1-a", "name", "disk GB", "spot")
	// Bad input says what is wrong and keeps the form.
	d.keys("tab")
	d.send(tea.KeyPressMsg{Code: tea.KeyBackspace})
	d.send(tea.KeyPressMsg{Code: tea.KeyBackspace})
	d.typeText("x")
	d.keys("enter")
	d.want(`disk GB: "x" is not a positive whole number`)
	d.send(tea.KeyPressMsg{Code: tea.KeyBackspace})
	d.typeText("20")
	d.keys("tab", "space", "enter")
	d.want("Create l41?", "a gcp g2-standard-4: $0.7000/hour")
	d.keys("y")
	d.want("l41: running")
	d.settle(func() bool { return len(src.calls) == 1 })
	if got := strings.Join(src.calls, ", "); got != "create " {
		t.Fatalf("calls: %s", got)
	}
	var spot bool
	for _, h := range src.fleet.Hosts {
		spot = spot || h.Name == "l41"
	}
	if !spot {
		t.Fatal("the host was not created")
	}
}

func TestLogsFollowAndScroll(t *testing.T) {
	d := newDriver(t, testFleet(), 100, 12, MonoTheme())
	d.keys("down", "3")
	d.want("following", "stop     error: quota exceeded")
	d.keys("up")
	d.want("paused (f follows)")
	d.keys("f")
	d.want("following")
	d.keys("esc")
	if d.m.view != viewDetails {
		t.Fatalf("esc from logs should show the host, view %d", d.m.view)
	}
}

func TestResizeKeepsEveryViewInside(t *testing.T) {
	d := newDriver(t, testFleet(), 160, 48, ColorTheme())
	for _, size := range [][2]int{{80, 24}, {100, 30}, {60, 15}, {200, 60}} {
		d.send(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		for _, k := range []string{"1", "enter", "2", "3", "4"} {
			d.keys(k)
			lines := strings.Split(d.m.View().Content, "\n")
			if len(lines) != d.m.height {
				t.Fatalf("%dx%d view %s: %d lines", size[0], size[1], k, len(lines))
			}
			for _, l := range lines {
				if ansi.StringWidth(l) > d.m.width {
					t.Fatalf("%dx%d view %s: a line of %d cells: %q", size[0], size[1], k, ansi.StringWidth(l), ansi.Strip(l))
				}
			}
			if k == "4" {
				d.keys("esc")
			}
		}
	}
}

func TestHelpAndQuit(t *testing.T) {
	d := newDriver(t, testFleet(), 120, 40, MonoTheme())
	d.keys("?")
	d.want("Keys", "sort column", "snapshot", "upgrade agent")
	d.wantNot("move") // the source cannot move projects yet
	d.keys("esc")
	d.keys("q")
	if !d.quit {
		t.Fatal("q should quit")
	}
}

func TestStaleDataAndRecovery(t *testing.T) {
	src := testFleet()
	d := newDriver(t, src, 120, 30, MonoTheme())
	d.want("updated 0s ago")
	src.fleetErr = errors.New("timeout")
	d.send(tickMsg{})
	d.want("stale 0s", "cannot read hosts and projects: timeout", "gpu1")
	src.fleetErr = nil
	src.fleet.Hosts[0].Status = model.StatusError
	d.send(tickMsg{})
	d.want("updated 0s ago")
	if h, _ := d.m.host("h1"); h.Status != model.StatusError {
		t.Fatalf("new data not taken: %s", h.Status)
	}
	// An agent that does not answer leaves its projects' disk unknown,
	// and the projects view says so.
	src.usageErr = errors.New("agent of gpu1: context deadline exceeded")
	src.fleet.Hosts[0].Status = model.StatusRunning
	d.send(tickMsg{})
	d.settle(func() bool { h, _ := d.m.host("h1"); return h.Status == model.StatusRunning })
	d.keys("2")
	d.want("all 4 projects", "disk use on gpu1 unknown: agent of gpu1: context deadline exceeded")
}

// A source's change events carry the rows: the screen shows them at
// once, without reading the fleet again; and a read that was under way
// when they came does not take them back.
func TestChangesShowWithoutARead(t *testing.T) {
	src := testFleet()
	src.changes = make(chan []Change)
	d := newDriver(t, src, 160, 30, MonoTheme())
	d.want("gpu1", "2/3", "$0.70/hour now")
	reads := src.reads

	gpu1, cpu1 := d.m.fleet.Hosts[0], d.m.fleet.Hosts[1]
	gpu1.Status = model.StatusOff
	start := model.Job{ID: "j2", Subject: model.HostSubject(cpu1.ID), Action: model.ActionStart, State: model.JobRunning, Attempts: 1}
	src.changes <- []Change{
		{Host: &gpu1},
		{Job: &start},
		{Project: &model.Project{ID: "p5eeeeee-5555", Title: "new", Owner: "alice", HostID: cpu1.ID, State: model.ProjectRunning}},
		{GoneProject: "p3cccccc-3333"},
	}
	d.want("0 running · $0.00/hour now", "off (start)")
	row := func(name string) string {
		for _, l := range strings.Split(d.screen(), "\n") {
			if strings.HasPrefix(l, name+" ") {
				return l
			}
		}
		return ""
	}
	if r := row("gpu1"); !strings.Contains(r, " off ") || !strings.Contains(r, "1/2") {
		t.Fatalf("gpu1 after its change: %q", r)
	}
	if r := row("cpu1"); !strings.Contains(r, "1/2") {
		t.Fatalf("cpu1 after a project came: %q", r)
	}
	// A host's change keeps its pending job; the job's end clears it.
	cpu1.Status = model.StatusStarting
	src.changes <- []Change{{Host: &cpu1}}
	d.want("starting (start)")
	start.State = model.JobDone
	src.changes <- []Change{{Job: &start}}
	d.settle(func() bool { return !strings.Contains(row("cpu1"), "(start)") })
	// A host that goes leaves the table.
	src.changes <- []Change{{GoneHost: "h3"}}
	d.want("2 hosts")
	d.wantNot("sim-a100")
	if src.reads != reads {
		t.Fatalf("the changes were read again from the source: %d reads, want %d", src.reads, reads)
	}

	// A read under way took the fleet before a change: its answer comes
	// with the change applied again.
	stale, _ := src.Fleet(context.Background())
	d.m.loading = true
	gpu1.Status = model.StatusError
	d.send(changesMsg{[]Change{{Host: &gpu1}}})
	d.send(fleetMsg{fleet: stale, at: t0})
	if h, _ := d.m.host("h1"); h.Status != model.StatusError {
		t.Fatalf("a read older than a change took it back: gpu1 is %s", h.Status)
	}
}

// While change events are live the fleet is read whole only once after
// they start and then every Resync, not every Refresh; the header says
// "live". When they stop, the dashboard reads and polls again.
func TestLiveChangesReadTheFleetRarely(t *testing.T) {
	src := testFleet()
	src.changes = make(chan []Change)
	d := newDriver(t, src, 160, 30, MonoTheme())
	now := t0
	d.m.opt.Now = func() time.Time { return now }
	tick := func(after time.Duration) {
		t.Helper()
		now = now.Add(after)
		d.send(tickMsg{})
		d.settle(func() bool { return !d.m.loading })
	}
	wantReads := func(n int, when string) {
		t.Helper()
		src.mu.Lock()
		defer src.mu.Unlock()
		if src.reads != n {
			t.Fatalf("%s: %d fleet reads, want %d", when, src.reads, n)
		}
	}
	wantReads(1, "at start")
	tick(2 * time.Second)
	wantReads(2, "polling before the events run")
	d.want("updated ")

	src.changes <- []Change{{Live: true}}
	d.settle(func() bool { return d.m.live && !d.m.loading })
	wantReads(3, "once the events run (the first read may predate them)")
	d.want("live")
	d.wantNot("updated")
	for range 3 {
		tick(2 * time.Second)
	}
	wantReads(3, "ticks within Resync while live")
	gpu1 := d.m.fleet.Hosts[0]
	gpu1.Status = model.StatusStopping
	src.changes <- []Change{{Host: &gpu1}}
	d.want("stopping", "live")
	tick(time.Minute)
	wantReads(4, "a tick after Resync")

	close(src.changes)
	d.settle(func() bool { return d.m.changes == nil && !d.m.loading })
	wantReads(5, "when the events end")
	d.want("updated ")
	tick(2 * time.Second)
	wantReads(6, "polling after the events ended")
}

// An upgrade the source accepts is confirmed with what it installs, shows
// its progress on the status line and the host as busy while it runs,
// then its outcome.
func TestUpgradeShowsProgressAndOutcome(t *testing.T) {
	src := testFleet()
	d := newDriver(t, src, 120, 30, MonoTheme())
	d.keys("down", "U") // gpu1, running
	d.want("Upgrade gpu1?", "installs agent v1.5.0 on gpu1 (now v1.4.0) and restarts it", "running projects keep running")
	src.block = make(chan struct{})
	src.progress = []Progress{{Message: "copying the agent to 203.0.113.7"}}
	d.keys("y")
	d.want("upgrade gpu1: copying the agent to 203.0.113.7", "running (upgrade)")
	d.keys("U")
	d.want("gpu1 is busy")
	close(src.block)
	d.want("gpu1: running (agent v1.5.0)")
	d.wantNot("(upgrade)")
	if got := strings.Join(src.calls, ", "); got != "upgrade h1" {
		t.Fatalf("calls: %s", got)
	}
}
