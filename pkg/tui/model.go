// Package tui is the interactive dashboard (`cocalc-hosts dashboard`):
// hosts with their costs, host details, projects, logs and the catalog,
// with the actions a host owner needs, each run through the queue with
// live progress and a confirmation for anything that costs or destroys.
//
// It renders only: everything it shows and does comes through a Source
// that the command layer wires (the database and queue directly today, a
// server's API later). Updates come from the source's change events when
// it has them, and from polling otherwise; every fetch has a deadline and
// the screen says how old what it shows is.
package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/spinner"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Options tune the dashboard.
type Options struct {
	// Refresh is how often to read the fleet when there are no live
	// change events, and how often to read again what the open view
	// shows besides it (details, logs, disk use).
	Refresh time.Duration
	// Resync is how often to read the whole fleet while change events
	// are live (month-to-date costs grow without a change to any row).
	Resync time.Duration
	// Timeout bounds each fetch.
	Timeout time.Duration
	Theme   Theme
	// Mouse turns on mouse reporting (wheel scrolls, click selects).
	Mouse bool
	// Context is the parent of every fetch and action.
	Context context.Context
	Now     func() time.Time
}

type viewID int

const (
	viewHosts viewID = iota
	viewProjects
	viewLogs
	viewCatalog
	viewDetails
)

var viewNames = []string{"Hosts", "Projects", "Logs", "Catalog"}

// Model is the dashboard (a bubbletea model).
type Model struct {
	src  Source
	opt  Options
	keys keyMap
	help help.Model

	width, height int
	view          viewID

	fleet     Fleet
	fleetErr  error
	triedAt   time.Time
	loading   bool
	reloadDue bool
	byID      map[string]int
	counts    map[string][2]int

	hosts    hostsView
	projects projectsView
	details  detailsView
	logs     logsView
	catalog  catalogView

	modal   modal
	jobs    map[int]*job
	nextJob int
	// status is the last outcome or message, notes the lines under it.
	status    string
	statusBad bool
	notes     []string

	spinner  spinner.Model
	spinning bool
	quitting bool
	changes  <-chan []Change
	// live is set once the change events run (every commit comes
	// through them): the fleet is read whole only every Resync.
	live bool
	// sinceLoad are the changes applied while a fleet read was under
	// way: applied again to its answer, which may predate them.
	sinceLoad []Change
}

// New returns a dashboard over src.
func New(src Source, o Options) Model {
	if o.Refresh <= 0 {
		o.Refresh = 2 * time.Second
	}
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	if o.Theme.Title.String() == "" && !o.Theme.Mono {
		o.Theme = ColorTheme()
	}
	h := help.New()
	h.Styles.ShortKey, h.Styles.FullKey = o.Theme.Key, o.Theme.Key
	h.Styles.ShortDesc, h.Styles.FullDesc = lipgloss.NewStyle(), lipgloss.NewStyle()
	h.Styles.ShortSeparator, h.Styles.FullSeparator = o.Theme.Dim, o.Theme.Dim
	m := Model{
		src: src, opt: o, keys: newKeyMap(), help: h, width: 80, height: 24,
		byID: map[string]int{}, counts: map[string][2]int{}, jobs: map[int]*job{},
		spinner: spinner.New(spinner.WithSpinner(spinner.MiniDot)),
	}
	m.hosts = newHostsView()
	m.projects = newProjectsView()
	m.catalog = newCatalogView(o.Theme)
	m.details.vp = newViewport()
	m.logs.vp = newViewport()
	m.logs.follow = true
	return m
}

type (
	fleetMsg struct {
		fleet Fleet
		err   error
		at    time.Time
	}
	tickMsg    struct{}
	changesMsg struct{ changes []Change }
	// changesEndedMsg: the change events stopped; polling takes over.
	changesEndedMsg struct{}
)

func (m Model) fetchCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.opt.Context, m.opt.Timeout)
}

func (m *Model) loadFleet() tea.Cmd {
	if m.loading {
		m.reloadDue = true
		return nil
	}
	m.loading = true
	src, now := m.src, m.opt.Now
	ctx, cancel := m.fetchCtx()
	return func() tea.Msg {
		defer cancel()
		f, err := src.Fleet(ctx)
		return fleetMsg{fleet: f, err: err, at: now()}
	}
}

func (m Model) tick() tea.Cmd {
	return tea.Tick(m.opt.Refresh, func(time.Time) tea.Msg { return tickMsg{} })
}

func listen(ch <-chan []Change) tea.Cmd {
	return func() tea.Msg {
		cs, ok := <-ch
		if !ok {
			return changesEndedMsg{}
		}
		return changesMsg{cs}
	}
}

// Init loads the fleet, subscribes to changes and starts the clock.
func (m Model) Init() tea.Cmd {
	return tea.Batch(m.loadFleet(), m.tick(), m.subscribe(), tea.RequestWindowSize)
}

// subscribe starts listening to the source's change events; it is a
// command so that the model stays a value until the program runs it.
func (m Model) subscribe() tea.Cmd {
	src, ctx := m.src, m.opt.Context
	return func() tea.Msg {
		if ch := src.Changes(ctx); ch != nil {
			return subscribedMsg{ch}
		}
		return nil
	}
}

type subscribedMsg struct{ ch <-chan []Change }

// Update handles data, the clock, keys and the mouse.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmds []tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = max(msg.Width, 20), max(msg.Height, 8)
		m.layout()
	case fleetMsg:
		m.loading = false
		m.triedAt = msg.at
		m.fleetErr = msg.err
		since := m.sinceLoad
		m.sinceLoad = nil
		if msg.err == nil {
			m.setFleet(msg.fleet)
			if len(since) > 0 {
				m.applyChanges(since)
			}
			cmds = append(cmds, m.usageCmds()...)
		}
		if m.reloadDue {
			m.reloadDue = false
			cmds = append(cmds, m.loadFleet())
		}
	case subscribedMsg:
		m.changes = msg.ch
		cmds = append(cmds, listen(msg.ch))
	case changesMsg:
		touched := m.applyChanges(msg.changes)
		cmds = append(cmds, listen(m.changes))
		if (m.view == viewDetails && touched[m.details.id]) || (m.view == viewLogs && touched[m.logs.id]) {
			cmds = append(cmds, m.viewRefresh(false)...)
		}
		if !m.live && slices.ContainsFunc(msg.changes, func(c Change) bool { return c.Live }) {
			// The first read may predate the watch: one read after it
			// started misses nothing, and from here on the changes come.
			m.live = true
			cmds = append(cmds, m.loadFleet())
		}
	case changesEndedMsg:
		m.changes, m.live = nil, false
		cmds = append(cmds, m.loadFleet())
	case tickMsg:
		cmds = append(cmds, m.tick())
		if !m.live || m.opt.Now().Sub(m.triedAt) >= m.opt.Resync {
			cmds = append(cmds, m.loadFleet())
		}
		cmds = append(cmds, m.viewRefresh(true)...)
	case spinner.TickMsg:
		if !m.needSpin() {
			m.spinning = false
			return m, nil
		}
		var c tea.Cmd
		m.spinner, c = m.spinner.Update(msg)
		cmds = append(cmds, c)
	case hostInfoMsg, usageMsg, logsMsg, catalogMsg:
		cmds = append(cmds, m.updateData(msg))
	case previewMsg, progressMsg, doneMsg, shellReadyMsg, shellDoneMsg:
		cmds = append(cmds, m.updateAction(msg))
	case tea.KeyPressMsg:
		cmds = append(cmds, m.updateKey(msg))
	case tea.MouseWheelMsg:
		if msg.Button == tea.MouseWheelUp {
			m.scroll(-3)
		} else if msg.Button == tea.MouseWheelDown {
			m.scroll(3)
		}
	case tea.MouseClickMsg:
		m.click(msg.Y)
	case tea.PasteMsg:
		cmds = append(cmds, m.updateInput(msg))
	default:
		cmds = append(cmds, m.updateInput(msg))
	}
	if m.needSpin() && !m.spinning {
		m.spinning = true
		cmds = append(cmds, m.spinner.Tick)
	}
	return m, tea.Batch(cmds...)
}

// needSpin says whether anything on screen is in motion.
func (m Model) needSpin() bool {
	if len(m.jobs) > 0 {
		return true
	}
	for _, h := range m.fleet.Hosts {
		if transitional(h.Status) {
			return true
		}
	}
	return false
}

// setFleet takes new data, keeping the selection on the same host and
// project.
func (m *Model) setFleet(f Fleet) {
	m.fleet = f
	m.byID = make(map[string]int, len(f.Hosts))
	for i, h := range f.Hosts {
		m.byID[h.ID] = i
	}
	m.counts = make(map[string][2]int, len(f.Hosts))
	for _, p := range f.Projects {
		c := m.counts[p.HostID]
		c[1]++
		if p.State == model.ProjectRunning {
			c[0]++
		}
		m.counts[p.HostID] = c
	}
	m.hosts.rebuild(f.Hosts, m.counts)
	m.projects.rebuild(f.Projects, f.Hosts, m.byID)
}

// applyChanges puts changed rows into the fleet, so that the screen
// shows a commit without reading the whole fleet again, and returns the
// hosts they concern (whose details and logs may then be read again).
func (m *Model) applyChanges(cs []Change) map[string]bool {
	if m.loading {
		m.sinceLoad = append(m.sinceLoad, cs...)
	}
	f := &m.fleet
	touched := map[string]bool{}
	// Only hosts' states changed: the projects' table and the counts
	// stand, and the hosts' table is all there is to redo.
	hostsOnly, changed := true, false
	for _, c := range cs {
		changed = changed || !c.Live
		switch {
		case c.Host != nil:
			h := *c.Host
			touched[h.ID] = true
			if i, ok := m.byID[h.ID]; ok {
				h.Job = f.Hosts[i].Job
				hostsOnly = hostsOnly && h.Name == f.Hosts[i].Name
				f.Hosts[i] = h
			} else {
				m.byID[h.ID] = len(f.Hosts)
				f.Hosts = append(f.Hosts, h)
				hostsOnly = false
			}
		case c.GoneHost != "":
			touched[c.GoneHost] = true
			if i, ok := m.byID[c.GoneHost]; ok {
				f.Hosts = slices.Delete(f.Hosts, i, i+1)
				m.setFleet(*f) // the positions after it moved
			}
		case c.Project != nil:
			touched[c.Project.HostID] = true
			hostsOnly = false
			if i := slices.IndexFunc(f.Projects, func(p model.Project) bool { return p.ID == c.Project.ID }); i >= 0 {
				f.Projects[i] = *c.Project
			} else {
				f.Projects = append(f.Projects, *c.Project)
			}
		case c.GoneProject != "":
			hostsOnly = false
			f.Projects = slices.DeleteFunc(f.Projects, func(p model.Project) bool { return p.ID == c.GoneProject })
		case c.Job != nil:
			j := *c.Job
			i, ok := m.byID[j.Subject.ID]
			if j.Subject.Kind != model.SubjectHost || !ok {
				continue
			}
			touched[j.Subject.ID] = true
			h := &f.Hosts[i]
			if j.Active() && (h.Job == nil || h.Job.ID == j.ID) {
				h.Job = &j
			} else if !j.Active() && h.Job != nil && h.Job.ID == j.ID {
				h.Job = nil
			}
		case c.GoneJob != "":
			for i := range f.Hosts {
				if h := &f.Hosts[i]; h.Job != nil && h.Job.ID == c.GoneJob {
					touched[h.ID] = true
					h.Job = nil
				}
			}
		}
	}
	switch {
	case !changed:
	case hostsOnly:
		m.hosts.rebuild(f.Hosts, m.counts)
	default:
		m.setFleet(*f)
	}
	return touched
}

func (m Model) host(id string) (Host, bool) {
	if i, ok := m.byID[id]; ok {
		return m.fleet.Hosts[i], true
	}
	return Host{}, false
}

// bodyHeight is the number of lines between the header and the footer.
func (m Model) bodyHeight() int {
	return max(m.height-3-m.bottomLines(), 3)
}

func (m Model) bottomLines() int {
	n := len(m.jobs)
	if m.status != "" {
		n++
	}
	return n + min(len(m.notes), 3)
}

func (m *Model) layout() {
	h := m.bodyHeight()
	m.details.vp.SetWidth(m.width)
	m.details.vp.SetHeight(h)
	m.logs.vp.SetWidth(m.width)
	m.logs.vp.SetHeight(h)
	m.catalog.input.SetWidth(clamp(m.width-20, 10, 60))
	m.help.SetWidth(m.width)
}

// View renders the header, the current view and the footer.
func (m Model) View() tea.View {
	t := m.opt.Theme
	var b strings.Builder
	b.WriteString(clip(m.header(), m.width))
	b.WriteByte('\n')
	b.WriteString(clip(m.subtitle(), m.width))
	b.WriteByte('\n')
	body := ""
	h := m.bodyHeight()
	if m.modal != nil {
		body = lipgloss.Place(m.width, h, lipgloss.Center, lipgloss.Center, m.modal.view(m))
	} else {
		switch m.view {
		case viewHosts:
			body = m.hostsBody(h)
		case viewProjects:
			body = m.projectsBody(h)
		case viewDetails:
			body = m.details.vp.View()
		case viewLogs:
			body = m.logsBody()
		case viewCatalog:
			body = m.catalogBody(h)
		}
	}
	b.WriteString(fitBlock(body, m.width, h))
	for _, id := range m.jobIDs() {
		b.WriteByte('\n')
		b.WriteString(clip(m.jobLine(m.jobs[id]), m.width))
	}
	if m.status != "" {
		st := t.Title
		if m.statusBad {
			st = t.Bad
		}
		b.WriteByte('\n')
		b.WriteString(clip(st.Render(m.status), m.width))
	}
	for _, n := range m.notes[:min(len(m.notes), 3)] {
		b.WriteByte('\n')
		b.WriteString(clip("  "+n, m.width))
	}
	b.WriteByte('\n')
	b.WriteString(clip(m.footer(), m.width))
	v := tea.NewView(b.String())
	v.AltScreen = true
	v.WindowTitle = "cocalc-hosts dashboard"
	if m.opt.Mouse {
		v.MouseMode = tea.MouseModeCellMotion
	}
	return v
}

// fitBlock makes s exactly h lines of at most w cells.
func fitBlock(s string, w, h int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > h {
		lines = lines[:h]
	}
	for i, l := range lines {
		if ansi.StringWidth(l) > w {
			lines[i] = ansi.Truncate(l, w, "")
		}
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}

func (m Model) header() string {
	t := m.opt.Theme
	cur := m.view
	if cur == viewDetails {
		cur = viewHosts
	}
	var tabs []string
	for i, n := range viewNames {
		label := fmt.Sprintf("%d %s", i+1, n)
		if viewID(i) == cur {
			tabs = append(tabs, t.TabOn.Render(label))
		} else {
			tabs = append(tabs, t.Tab.Render(label))
		}
	}
	left := t.Title.Render("cocalc-hosts ") + strings.Join(tabs, "")
	right := m.freshness()
	gap := m.width - ansi.StringWidth(left) - ansi.StringWidth(right)
	if gap < 1 {
		return left + " " + right
	}
	return left + strings.Repeat(" ", gap) + right
}

// freshness says how old the data is; the line under it says why when
// the last read failed.
func (m Model) freshness() string {
	t := m.opt.Theme
	switch {
	case m.fleet.At.IsZero() && m.fleetErr == nil:
		return t.Dim.Render(m.spinner.View() + " loading")
	case m.fleetErr != nil && m.fleet.At.IsZero():
		return t.Bad.Render("not loaded")
	case m.fleetErr != nil:
		return t.Bad.Render("stale " + ago(m.opt.Now(), m.fleet.At))
	case m.live:
		return t.Good.Render("live")
	}
	return t.Dim.Render("updated " + ago(m.opt.Now(), m.fleet.At) + " ago")
}

func (m Model) subtitle() string {
	if m.fleetErr != nil && (m.view == viewHosts || m.view == viewProjects) {
		return m.opt.Theme.Bad.Render("cannot read hosts and projects: " + oneLine(m.fleetErr.Error()))
	}
	switch m.view {
	case viewHosts:
		return m.hostsSummary()
	case viewProjects:
		return m.projectsSubtitle()
	case viewDetails:
		return m.detailsSubtitle()
	case viewLogs:
		return m.logsSubtitle()
	case viewCatalog:
		return m.catalogSubtitle()
	}
	return ""
}

func (m Model) footer() string {
	if m.modal != nil {
		return m.help.ShortHelpView(m.modal.keys())
	}
	return m.help.ShortHelpView(m.viewKeys(true))
}

// viewKeys are the keys of the current view (short: those the footer
// has room for).
func (m Model) viewKeys(short bool) []keyBinding {
	k := m.keys
	var out []keyBinding
	switch m.view {
	case viewHosts:
		out = append(out, k.Details, k.Filter, k.Sort, k.HostProjects)
		out = append(out, m.supported(k.Start, HostStart), m.supported(k.Stop, HostStop),
			m.supported(k.Delete, HostDelete), m.supported(k.Upgrade, HostUpgrade), m.supported(k.NewProj, ProjectCreate))
	case viewDetails:
		out = append(out, k.Back, m.supported(k.Start, HostStart), m.supported(k.Stop, HostStop),
			m.supported(k.Delete, HostDelete), k.Logs, k.HostProjects)
	case viewProjects:
		out = append(out, k.AllProjects, k.Filter, k.Sort, m.supported(k.Start, ProjectStart), m.supported(k.Stop, ProjectStop),
			m.supported(k.Restart, ProjectRestart), m.supported(k.Snapshot, ProjectSnapshot), k.Shell,
			m.supported(k.NewProj, ProjectCreate), m.supported(k.Move, ProjectMove), m.supported(k.Clone, ProjectClone), m.supported(k.Backup, ProjectBackup))
	case viewLogs:
		out = append(out, k.Follow, k.Up, k.Down, k.Back)
	case viewCatalog:
		out = append(out, m.supported(k.Create, HostCreate), k.Back)
		return compact(append(out, k.ForceQuit))
	}
	out = append(out, k.Help, k.Quit)
	return compact(out)
}
