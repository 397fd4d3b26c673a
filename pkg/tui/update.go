package tui

import (
	"fmt"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// show switches to view v and starts what it needs to read.
func (m *Model) show(v viewID) tea.Cmd {
	m.view = v
	switch v {
	case viewDetails:
		m.refreshDetails()
		return m.loadHostInfo()
	case viewLogs:
		return m.loadLogs()
	case viewCatalog:
		return tea.Batch(m.loadCatalog(), m.catalog.input.Focus())
	case viewProjects:
		return tea.Batch(m.usageCmds()...)
	}
	return nil
}

// openHost shows the details of host id.
func (m *Model) openHost(id string) tea.Cmd {
	if m.details.id != id {
		m.details = detailsView{id: id, vp: m.details.vp}
		m.details.vp.GotoTop()
	}
	return m.show(viewDetails)
}

// openLogs shows the logs of host id.
func (m *Model) openLogs(id string) tea.Cmd {
	if id == "" {
		return m.show(viewLogs)
	}
	if m.logs.id != id {
		m.logs = logsView{id: id, vp: m.logs.vp, follow: true}
		m.renderLogs()
	}
	return m.show(viewLogs)
}

// openProjects shows the projects of host id ("": all).
func (m *Model) openProjects(id string) tea.Cmd {
	if m.projects.hostID != id {
		m.projects.hostID = id
		m.projects.list = list{}
		m.projects.rebuild(m.fleet.Projects, m.fleet.Hosts, m.byID)
	}
	return m.show(viewProjects)
}

// viewRefresh re-reads what the current view shows besides the fleet.
func (m *Model) viewRefresh(tick bool) []tea.Cmd {
	switch m.view {
	case viewDetails:
		return []tea.Cmd{m.loadHostInfo()}
	case viewLogs:
		return []tea.Cmd{m.loadLogs()}
	case viewProjects:
		if tick {
			return m.usageCmds()
		}
	}
	return nil
}

func (m *Model) refreshDetails() {
	m.details.vp.SetContent(m.detailsContent())
}

func (m *Model) updateData(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case hostInfoMsg:
		m.details.loading = false
		if msg.id == m.details.id {
			m.details.err = msg.err
			if msg.err == nil {
				info := msg.info
				m.details.info = &info
			}
			m.refreshDetails()
		}
	case usageMsg:
		m.projects.takeUsage(msg)
	case logsMsg:
		m.takeLogs(msg)
	case catalogMsg:
		m.catalog.loading = false
		m.catalog.err = msg.err
		if msg.err == nil {
			m.catalog.cat = msg.cat
			m.catalog.rebuild()
		}
	}
	return nil
}

// editingFilter is the filter being typed into, if any.
func (m *Model) editingFilter() *filterBox {
	switch {
	case m.view == viewHosts && m.hosts.filter.editing:
		return &m.hosts.filter
	case m.view == viewProjects && m.projects.filter.editing:
		return &m.projects.filter
	}
	return nil
}

func (m *Model) rebuildView() {
	switch m.view {
	case viewHosts:
		m.hosts.rebuild(m.fleet.Hosts, m.counts)
	case viewProjects:
		m.projects.rebuild(m.fleet.Projects, m.fleet.Hosts, m.byID)
	case viewCatalog:
		m.catalog.rebuild()
	}
}

func (m *Model) updateInput(msg tea.Msg) tea.Cmd {
	var cmd tea.Cmd
	switch {
	case m.modal != nil:
		return m.modal.update(m, msg)
	case m.editingFilter() != nil:
		f := m.editingFilter()
		f.input, cmd = f.input.Update(msg)
		m.rebuildView()
	case m.view == viewCatalog:
		m.catalog.input, cmd = m.catalog.input.Update(msg)
		m.catalog.rebuild()
	}
	return cmd
}

func (m *Model) updateKey(k tea.KeyPressMsg) tea.Cmd {
	s := k.String()
	if s == "ctrl+c" {
		return tea.Quit
	}
	if m.modal != nil {
		return m.modal.update(m, k)
	}
	if f := m.editingFilter(); f != nil {
		switch s {
		case "esc":
			f.input.SetValue("")
			f.editing = false
			f.input.Blur()
			m.rebuildView()
		case "enter":
			f.editing = false
			f.input.Blur()
		case "up", "down", "pgup", "pgdown":
			m.navigate(s)
		default:
			return m.updateInput(k)
		}
		return nil
	}
	if m.view == viewCatalog {
		return m.catalogKey(k)
	}
	keys := m.keys
	switch {
	case key.Matches(k, keys.Quit):
		if len(m.jobs) == 0 {
			return tea.Quit
		}
		// An action runs in this process: leaving now would cut it short
		// (a worker takes it over only after its lease).
		m.quitting = true
		m.setStatus(fmt.Sprintf("quitting when the %d running action(s) end; ctrl+c quits now", len(m.jobs)), false)
		return nil
	case key.Matches(k, keys.Help):
		m.modal = helpModal{}
		return nil
	case key.Matches(k, keys.Hosts):
		return m.show(viewHosts)
	case key.Matches(k, keys.Projects):
		return m.show(viewProjects)
	case key.Matches(k, keys.Logs):
		h, _ := m.selectedHost()
		return m.openLogs(h.ID)
	case key.Matches(k, keys.Catalog):
		return m.show(viewCatalog)
	case key.Matches(k, keys.Next):
		return m.show([]viewID{viewProjects, viewLogs, viewCatalog, viewHosts, viewLogs}[m.view])
	case key.Matches(k, keys.Refresh):
		return tea.Batch(append(m.viewRefresh(true), m.loadFleet())...)
	case key.Matches(k, keys.Up, keys.Down, keys.PageUp, keys.PageDown, keys.Top, keys.Bottom):
		m.navigate(s)
		if m.view == viewProjects {
			return tea.Batch(m.usageCmds()...)
		}
		return nil
	}
	switch m.view {
	case viewHosts:
		return m.hostsKey(k)
	case viewDetails:
		if key.Matches(k, keys.Back) {
			return m.show(viewHosts)
		}
		return m.hostActionKey(k)
	case viewProjects:
		return m.projectsKey(k)
	case viewLogs:
		switch {
		case key.Matches(k, keys.Follow):
			m.logs.follow = !m.logs.follow
			if m.logs.follow {
				m.logs.vp.GotoBottom()
			}
		case key.Matches(k, keys.Back):
			if m.logs.id != "" {
				return m.openHost(m.logs.id)
			}
			return m.show(viewHosts)
		}
	}
	return nil
}

// navigate moves the cursor of a list view, or scrolls a text view.
func (m *Model) navigate(s string) {
	page := max(m.bodyHeight()-2, 1)
	delta := map[string]int{"up": -1, "k": -1, "down": 1, "j": 1, "pgup": -page, "ctrl+b": -page,
		"pgdown": page, "ctrl+f": page, "space": page, "g": -1 << 30, "home": -1 << 30, "G": 1 << 30, "end": 1 << 30}[s]
	m.scroll(delta)
}

func (m *Model) scroll(delta int) {
	switch m.view {
	case viewHosts:
		m.hosts.list.move(delta, len(m.hosts.index))
	case viewProjects:
		m.projects.list.move(delta, len(m.projects.index))
	case viewCatalog:
		m.catalog.list.move(delta, len(m.catalog.index))
	case viewDetails:
		scrollViewport(&m.details.vp, delta)
	case viewLogs:
		scrollViewport(&m.logs.vp, delta)
		// Scrolling up pauses following; reaching the end again resumes it.
		m.logs.follow = delta > 0 && m.logs.vp.AtBottom()
	}
}

type scroller interface {
	ScrollUp(int)
	ScrollDown(int)
}

func scrollViewport(vp scroller, delta int) {
	if delta < 0 {
		vp.ScrollUp(-delta)
	} else {
		vp.ScrollDown(delta)
	}
}

// click selects the row under the mouse (the table starts on the
// fourth line: header, subtitle, column titles).
func (m *Model) click(y int) {
	row := y - 3
	if row < 0 || m.modal != nil {
		return
	}
	switch m.view {
	case viewHosts:
		m.hosts.list.cursor = clamp(m.hosts.list.offset+row, 0, max(len(m.hosts.index)-1, 0))
	case viewProjects:
		m.projects.list.cursor = clamp(m.projects.list.offset+row, 0, max(len(m.projects.index)-1, 0))
	case viewCatalog:
		m.catalog.list.cursor = clamp(m.catalog.list.offset+row, 0, max(len(m.catalog.index)-1, 0))
	}
}

// sortKey moves the sort to the next column, or reverses it.
func sortKey(g *grid, reverse bool) {
	if reverse {
		g.desc = !g.desc
		return
	}
	g.sortCol = (g.sortCol + 1) % len(g.cols)
	g.desc = false
}

func (m *Model) hostsKey(k tea.KeyPressMsg) tea.Cmd {
	keys := m.keys
	switch {
	case key.Matches(k, keys.Details):
		if h, ok := m.selectedHost(); ok {
			return m.openHost(h.ID)
		}
	case key.Matches(k, keys.Filter):
		m.hosts.filter.editing = true
		return m.hosts.filter.input.Focus()
	case key.Matches(k, keys.Back):
		m.hosts.filter.input.SetValue("")
		m.rebuildView()
	case key.Matches(k, keys.Sort, keys.Reverse):
		sortKey(&m.hosts.grid, key.Matches(k, keys.Reverse))
		m.rebuildView()
	default:
		return m.hostActionKey(k)
	}
	return nil
}

// hostActionKey runs the host actions of the hosts and details views.
func (m *Model) hostActionKey(k tea.KeyPressMsg) tea.Cmd {
	keys := m.keys
	h, ok := m.selectedHost()
	if !ok {
		return nil
	}
	a := Action{HostID: h.ID, Name: h.Name}
	switch {
	case key.Matches(k, keys.Start):
		a.Kind = HostStart
	case key.Matches(k, keys.Stop):
		a.Kind = HostStop
	case key.Matches(k, keys.Delete):
		a.Kind = HostDelete
	case key.Matches(k, keys.Upgrade):
		a.Kind = HostUpgrade
	case key.Matches(k, keys.NewProj):
		return m.newProject(h)
	case key.Matches(k, keys.HostProjects):
		return m.openProjects(h.ID)
	default:
		return nil
	}
	return m.act(a)
}

func (m *Model) newProject(h Host) tea.Cmd {
	if !m.src.Supports(ProjectCreate) {
		return nil
	}
	if h.Status != model.StatusRunning {
		m.setStatus(fmt.Sprintf("%s is %s: start it (s) before creating projects on it", h.Name, h.Status), true)
		return nil
	}
	m.modal = projectForm(h)
	return nil
}

func (m *Model) projectsKey(k tea.KeyPressMsg) tea.Cmd {
	keys := m.keys
	switch {
	case key.Matches(k, keys.Filter):
		m.projects.filter.editing = true
		return m.projects.filter.input.Focus()
	case key.Matches(k, keys.Back):
		m.projects.filter.input.SetValue("")
		m.rebuildView()
		return nil
	case key.Matches(k, keys.Sort, keys.Reverse):
		sortKey(&m.projects.grid, key.Matches(k, keys.Reverse))
		m.rebuildView()
		return nil
	case key.Matches(k, keys.AllProjects):
		if m.projects.hostID != "" {
			return m.openProjects("")
		}
		if p, ok := m.selectedProject(); ok {
			return m.openProjects(p.HostID)
		}
		return nil
	case key.Matches(k, keys.NewProj):
		if h, ok := m.selectedHost(); ok {
			return m.newProject(h)
		}
		return nil
	case key.Matches(k, keys.Details):
		if h, ok := m.selectedHost(); ok {
			return m.openHost(h.ID)
		}
		return nil
	}
	p, ok := m.selectedProject()
	if !ok {
		return nil
	}
	name := p.Title
	if name == "" {
		name = p.ID
	}
	a := Action{HostID: p.HostID, ProjectID: p.ID, Name: name}
	switch {
	case key.Matches(k, keys.Start):
		a.Kind = ProjectStart
	case key.Matches(k, keys.Stop):
		a.Kind = ProjectStop
	case key.Matches(k, keys.Restart):
		a.Kind = ProjectRestart
	case key.Matches(k, keys.Snapshot):
		a.Kind = ProjectSnapshot
	case key.Matches(k, keys.Backup):
		a.Kind = ProjectBackup
	case key.Matches(k, keys.Shell):
		if p.State != model.ProjectRunning {
			m.setStatus(fmt.Sprintf("project %s is %s: start it (s) before opening a shell", name, p.State), true)
			return nil
		}
		return m.shellCmd(p)
	case key.Matches(k, keys.Move), key.Matches(k, keys.Clone):
		a.Kind = ProjectMove
		if key.Matches(k, keys.Clone) {
			a.Kind = ProjectClone
		}
		if !m.src.Supports(a.Kind) {
			return nil
		}
		if _, busy := m.jobFor(a); busy {
			m.setStatus(fmt.Sprintf("%s is busy: an action on it is running", a.Name), true)
			return nil
		}
		// A move goes to another running host; a copy may stay.
		var to []Host
		for _, h := range m.fleet.Hosts {
			if h.Status == model.StatusRunning && (h.ID != p.HostID || a.Kind == ProjectClone) {
				to = append(to, h)
			}
		}
		m.modal = &pickHost{action: a, hosts: to}
		return nil
	default:
		return nil
	}
	return m.act(a)
}

func (m *Model) catalogKey(k tea.KeyPressMsg) tea.Cmd {
	switch k.String() {
	case "esc":
		if m.catalog.input.Value() != "" {
			m.catalog.input.SetValue("")
			m.catalog.rebuild()
			return nil
		}
		return m.show(viewHosts)
	case "tab":
		return m.show(viewHosts)
	case "up", "down", "pgup", "pgdown", "home", "end":
		m.navigate(k.String())
		return nil
	case "enter":
		e, ok := m.catalog.selected()
		if !ok || !m.src.Supports(HostCreate) {
			return nil
		}
		m.modal = hostForm(e, newHostName(e, m.fleet.Hosts))
		return nil
	}
	return m.updateInput(k)
}

// newHostName suggests a free name for a host of machine e.
func newHostName(e Machine, hs []Host) string {
	base := e.Provider
	if e.GPUModel != "" {
		base = e.GPUModel
	}
	taken := map[string]bool{}
	for _, h := range hs {
		taken[h.Name] = true
	}
	for i := 1; ; i++ {
		n := fmt.Sprintf("%s%d", base, i)
		if !taken[n] {
			return n
		}
	}
}
