// Package tui is the interactive host dashboard (`cocalc-hosts dashboard`):
// a table of hosts that refreshes itself, a detail pane, and start/stop
// of the selected host. It renders only; the command layer gives it a
// Source that reads the store and runs actions through the queue.
package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Source is what the dashboard shows and does.
type Source interface {
	// Hosts lists the hosts to show (deleted ones left out).
	Hosts(ctx context.Context) ([]model.Host, error)
	// Start and Stop run the action to its end (or failure) and say how
	// it ended, in one line.
	Start(ctx context.Context, hostID string) (string, error)
	Stop(ctx context.Context, hostID string) (string, error)
}

// Model is the dashboard's state (a bubbletea model).
type Model struct {
	src      Source
	interval time.Duration
	now      func() time.Time

	hosts    []model.Host
	loadedAt time.Time
	loadErr  error
	cursor   int
	detail   bool
	// confirm is the id of the host a stop waits to be confirmed for.
	confirm string
	// busy holds the hosts with an action running from this dashboard.
	busy map[string]string
	// quitting: q was pressed while actions ran; quit when they end.
	quitting bool
	status   string
	width    int
}

// New returns a dashboard over src that reloads every interval.
func New(src Source, interval time.Duration) Model {
	return Model{src: src, interval: interval, now: time.Now, busy: map[string]string{}, width: 100}
}

type (
	hostsMsg struct {
		hosts []model.Host
		err   error
		at    time.Time
	}
	tickMsg   struct{}
	actionMsg struct {
		hostID, name, action, note string
		err                        error
	}
)

func (m Model) load() tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		hs, err := m.src.Hosts(ctx)
		return hostsMsg{hosts: hs, err: err, at: m.now()}
	}
}

func (m Model) tick() tea.Cmd {
	return tea.Tick(m.interval, func(time.Time) tea.Msg { return tickMsg{} })
}

// Init loads the hosts and starts the refresh clock.
func (m Model) Init() tea.Cmd { return tea.Batch(m.load(), m.tick()) }

// Update handles data, the clock and keys.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case hostsMsg:
		m.loadedAt, m.loadErr = msg.at, msg.err
		if msg.err == nil {
			m.hosts = msg.hosts
		}
		m.cursor = min(m.cursor, max(len(m.hosts)-1, 0))
		return m, nil
	case tickMsg:
		return m, tea.Batch(m.load(), m.tick())
	case actionMsg:
		delete(m.busy, msg.hostID)
		if msg.err != nil {
			m.status = fmt.Sprintf("%s %s failed: %v", msg.action, msg.name, msg.err)
		} else {
			m.status = fmt.Sprintf("%s %s: %s", msg.action, msg.name, msg.note)
		}
		if m.quitting && len(m.busy) == 0 {
			return m, tea.Quit
		}
		return m, m.load()
	case tea.WindowSizeMsg:
		m.width = msg.Width
		return m, nil
	case tea.KeyPressMsg:
		return m.key(msg.String())
	}
	return m, nil
}

func (m Model) selected() (model.Host, bool) {
	if m.cursor < 0 || m.cursor >= len(m.hosts) {
		return model.Host{}, false
	}
	return m.hosts[m.cursor], true
}

func (m Model) key(k string) (tea.Model, tea.Cmd) {
	if m.confirm != "" {
		id := m.confirm
		m.confirm = ""
		if k == "y" {
			if h, ok := m.byID(id); ok {
				return m.act(h, "stop", m.src.Stop)
			}
		}
		m.status = "stop cancelled"
		return m, nil
	}
	switch k {
	case "ctrl+c":
		return m, tea.Quit
	case "q":
		// An action runs in this process: leaving would cut it short
		// (a worker would take it over only after its lease).
		if len(m.busy) == 0 {
			return m, tea.Quit
		}
		m.quitting = true
		m.status = fmt.Sprintf("quitting when the %d running action(s) end; ctrl+c quits now", len(m.busy))
	case "up", "k":
		m.cursor = max(m.cursor-1, 0)
	case "down", "j":
		m.cursor = min(m.cursor+1, max(len(m.hosts)-1, 0))
	case "enter":
		m.detail = !m.detail
	case "r":
		m.status = ""
		return m, m.load()
	case "s":
		if h, ok := m.selected(); ok {
			return m.act(h, "start", m.src.Start)
		}
	case "x":
		if h, ok := m.selected(); ok {
			m.confirm = h.ID
			m.status = fmt.Sprintf("stop %s? y to confirm, any other key to cancel", h.Name)
		}
	}
	return m, nil
}

func (m Model) byID(id string) (model.Host, bool) {
	for _, h := range m.hosts {
		if h.ID == id {
			return h, true
		}
	}
	return model.Host{}, false
}

// act runs an action on h in the background; one at a time per host.
func (m Model) act(h model.Host, action string, run func(context.Context, string) (string, error)) (tea.Model, tea.Cmd) {
	if a, ok := m.busy[h.ID]; ok {
		m.status = fmt.Sprintf("%s is busy with %s", h.Name, a)
		return m, nil
	}
	m.busy[h.ID] = action
	m.status = fmt.Sprintf("%s %s…", action, h.Name)
	return m, func() tea.Msg {
		note, err := run(context.Background(), h.ID)
		return actionMsg{hostID: h.ID, name: h.Name, action: action, note: note, err: err}
	}
}

// View renders the table, the detail pane, the status and the keys.
func (m Model) View() tea.View {
	var b strings.Builder
	fmt.Fprintf(&b, "cocalc-hosts: %d host(s)", len(m.hosts))
	if !m.loadedAt.IsZero() {
		fmt.Fprintf(&b, ", refreshed %s", m.loadedAt.Local().Format("15:04:05"))
	}
	b.WriteString("\n")
	if m.loadErr != nil {
		fmt.Fprintf(&b, "cannot read hosts: %v\n", m.loadErr)
	}
	b.WriteString("\n")
	if len(m.hosts) == 0 && m.loadErr == nil {
		b.WriteString("  no hosts yet: `cocalc-hosts create --cloud local --name dev` makes one\n")
	} else {
		fmt.Fprintf(&b, "  %-20s %-10s %-22s %-14s %9s  %s\n", "NAME", "CLOUD", "REGION", "STATUS", "$/HOUR", "LAST")
		for i, h := range m.hosts {
			mark := " "
			if i == m.cursor {
				mark = ">"
			}
			status := string(h.Status)
			if a, ok := m.busy[h.ID]; ok {
				status += " (" + a + ")"
			}
			last := h.LastAction
			if h.LastError != "" {
				last += ": " + h.LastError
			}
			line := fmt.Sprintf("%s %-20s %-10s %-22s %-14s %9.4f  %s", mark, clip(h.Name, 20), h.Provider, clip(where(h), 22), status, h.HourlyPrice, last)
			b.WriteString(clip(line, max(m.width, 40)) + "\n")
		}
	}
	if h, ok := m.selected(); ok && m.detail {
		b.WriteString("\n" + detail(h))
	}
	b.WriteString("\n")
	if m.status != "" {
		b.WriteString(m.status + "\n")
	}
	b.WriteString("↑/↓ select · enter details · s start · x stop · r refresh · q quit\n")
	v := tea.NewView(b.String())
	v.AltScreen = true
	return v
}

func where(h model.Host) string {
	if h.Zone != "" && h.Zone != h.Region {
		return h.Zone
	}
	return h.Region
}

func detail(h model.Host) string {
	var b strings.Builder
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "  %-12s %s\n", k+":", v)
		}
	}
	kv("host", h.Name+" ("+h.ID+")")
	kv("owner", h.Owner)
	kv("machine", h.Spec.MachineType)
	if h.Spec.GPUCount > 0 {
		kv("gpu", fmt.Sprintf("%d x %s", h.Spec.GPUCount, h.Spec.GPUModel))
	}
	if h.Spec.DiskGB > 0 {
		kv("data disk", fmt.Sprintf("%d GB", h.Spec.DiskGB))
	}
	addr := h.Runtime.DNSName
	if addr == "" {
		addr = h.Runtime.PublicIP
	}
	kv("address", addr)
	kv("created", h.CreatedAt.Local().Format("2006-01-02 15:04"))
	kv("last error", h.LastError)
	return b.String()
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
