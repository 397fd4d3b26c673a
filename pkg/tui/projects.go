package tui

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// projectsView is the table of projects: all of them, or those of one
// host. Disk use and snapshots come from the agents of the hosts whose
// projects are on screen, each asked with a deadline.
type projectsView struct {
	grid   grid
	list   list
	filter filterBox
	// hostID limits the table to one host ("" : all).
	hostID   string
	index    []int
	projects []model.Project
	hostName map[string]string
	// usage is what agents said, by project; asked remembers when each
	// host was last asked.
	usage map[string]ProjectUsage
	asked map[string]time.Time
	// usageErr says why a host's agent could not say.
	usageErr map[string]string
}

const (
	pcID = iota
	pcTitle
	pcOwner
	pcHost
	pcState
	pcImage
	pcLimits
	pcDisk
	pcActivity
	pcSnapshot
	pcBackup
)

func newProjectsView() projectsView {
	f := newFilterBox()
	f.input.Placeholder = "title, id, owner, host or state"
	return projectsView{
		grid: grid{sortCol: pcHost, cols: []column{
			{title: "ID", width: 8, priority: 0},
			{title: "TITLE", width: 12, priority: 9, flex: true},
			{title: "OWNER", width: 8, priority: 3},
			{title: "HOST", width: 10, priority: 8},
			{title: "STATE", width: 10, priority: 0},
			{title: "IMAGE", width: 12, priority: 2},
			{title: "LIMITS", width: 16, priority: 4},
			{title: "DISK", width: 9, priority: 7, right: true},
			{title: "ACTIVE", width: 6, priority: 6, right: true},
			{title: "SNAPSHOT", width: 8, priority: 5, right: true},
			{title: "BACKUP", width: 6, priority: 1, right: true},
		}},
		filter: f, usage: map[string]ProjectUsage{}, asked: map[string]time.Time{}, usageErr: map[string]string{},
	}
}

func (v *projectsView) rebuild(ps []model.Project, hs []Host, byID map[string]int) {
	selected := ""
	if i, ok := v.selectedIndex(); ok {
		selected = v.projects[i].ID
	}
	v.projects = ps
	v.hostName = make(map[string]string, len(hs))
	for _, h := range hs {
		v.hostName[h.ID] = h.Name
	}
	q := v.filter.value()
	v.index = reindex(v.index, len(ps), &v.list, v.grid,
		func(i int) bool {
			p := &ps[i]
			return (v.hostID == "" || p.HostID == v.hostID) &&
				(q == "" || matchAll(q, p.Title, p.ID, p.Owner, v.hostName[p.HostID], string(p.State)))
		},
		func(a, b int) int {
			return cmp.Or(v.compare(&ps[a], &ps[b], v.grid.sortCol), strings.Compare(ps[a].ID, ps[b].ID))
		},
		func(i int) bool { return ps[i].ID == selected })
}

func (v *projectsView) compare(a, b *model.Project, col int) int {
	switch col {
	case pcTitle:
		return strings.Compare(a.Title, b.Title)
	case pcOwner:
		return strings.Compare(a.Owner, b.Owner)
	case pcHost:
		return strings.Compare(v.hostName[a.HostID], v.hostName[b.HostID])
	case pcState:
		return strings.Compare(string(a.State), string(b.State))
	case pcImage:
		return strings.Compare(a.Image, b.Image)
	case pcLimits:
		return cmp.Compare(a.Limits.MemoryBytes, b.Limits.MemoryBytes)
	case pcDisk:
		return cmp.Compare(v.usage[a.ID].DiskUsed, v.usage[b.ID].DiskUsed)
	case pcActivity:
		return timeCompare(a.LastActivity, b.LastActivity)
	case pcSnapshot:
		return timeCompare(v.usage[a.ID].LastSnapshot, v.usage[b.ID].LastSnapshot)
	case pcBackup:
		return timeCompare(v.usage[a.ID].LastBackup, v.usage[b.ID].LastBackup)
	}
	return strings.Compare(a.ID, b.ID)
}

func timeCompare(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(*b)
}

func (v projectsView) selectedIndex() (int, bool) {
	if v.list.cursor < 0 || v.list.cursor >= len(v.index) {
		return 0, false
	}
	return v.index[v.list.cursor], true
}

func (m Model) selectedProject() (model.Project, bool) {
	if i, ok := m.projects.selectedIndex(); ok {
		return m.fleet.Projects[i], true
	}
	return model.Project{}, false
}

func (m Model) projectsSubtitle() string {
	t := m.opt.Theme
	v := m.projects
	if v.filter.active() {
		return v.filter.view(t, len(v.index), len(m.fleet.Projects), "projects")
	}
	scope := fmt.Sprintf("all %d projects", len(v.index))
	if v.hostID != "" {
		name := v.hostName[v.hostID]
		scope = fmt.Sprintf("%d projects on %s", len(v.index), t.Title.Render(name))
		if h, ok := m.host(v.hostID); ok && h.Status != model.StatusRunning {
			scope += t.Dim.Render(" (host is " + string(h.Status) + ")")
		}
	}
	running := 0
	for _, i := range v.index {
		if m.fleet.Projects[i].State == model.ProjectRunning {
			running++
		}
	}
	s := fmt.Sprintf("%s · %s running", scope, t.Good.Render(fmt.Sprint(running)))
	// An agent that did not answer: its projects' disk and snapshots are
	// as it last said, or unknown.
	for _, hid := range slices.Sorted(maps.Keys(v.usageErr)) {
		if v.hostID == "" || v.hostID == hid {
			s += " · " + t.Bad.Render(clip("disk use on "+v.hostName[hid]+" unknown: "+oneLine(v.usageErr[hid]), max(m.width-ansi.StringWidth(s)-3, 10)))
			break
		}
	}
	return s
}

func (m Model) projectsBody(height int) string {
	v := &m.projects
	if len(v.index) == 0 {
		if v.filter.value() != "" {
			return "\n  No project matches the filter; esc clears it."
		}
		return "\n  No projects here. Select a running host and press n to create one."
	}
	start, end := v.list.window(len(v.index), height-1)
	now := m.opt.Now()
	return v.grid.render(m.opt.Theme, m.width, height, start, end, v.list.cursor, func(r, col, width int, selected bool) string {
		return m.projectCell(&v.projects[v.index[r]], col, width, selected, now)
	})
}

func (m Model) projectCell(p *model.Project, col, width int, selected bool, now time.Time) string {
	t := m.opt.Theme
	v := &m.projects
	u, known := v.usage[p.ID]
	switch col {
	case pcID:
		return clip(p.ID, width)
	case pcTitle:
		return clip(p.Title, width)
	case pcOwner:
		return clip(p.Owner, width)
	case pcHost:
		return clip(v.hostName[p.HostID], width)
	case pcState:
		s := string(p.State)
		if j, ok := m.jobOnProject(p.ID); ok {
			s = m.spinner.View() + s + " (" + strings.TrimPrefix(string(j.action.Kind), "project.") + ")"
		} else if projectTransitional(p.State) {
			s = m.spinner.View() + s
		}
		s = clip(s, width)
		if selected {
			return s
		}
		return t.projectState(p.State).Render(s)
	case pcImage:
		return clip(p.Image, width)
	case pcLimits:
		return clip(fmt.Sprintf("%s %gc %s", bytesShort(p.Limits.MemoryBytes), p.Limits.CPUs, bytesShort(p.Limits.DiskBytes)), width)
	case pcDisk:
		if !known {
			return "-"
		}
		return bytesShort(u.DiskUsed)
	case pcActivity:
		if p.LastActivity == nil {
			return "-"
		}
		return ago(now, *p.LastActivity)
	case pcSnapshot:
		if u.LastSnapshot == nil {
			return "-"
		}
		return ago(now, *u.LastSnapshot)
	case pcBackup:
		if u.LastBackup == nil {
			return "-"
		}
		return ago(now, *u.LastBackup)
	}
	return ""
}

// bytesShort is a size in at most 6 cells: 512M, 1.5G.
func bytesShort(b int64) string {
	switch {
	case b <= 0:
		return "-"
	case b < 1<<20:
		return fmt.Sprintf("%dK", b>>10)
	case b < 1<<30:
		return fmt.Sprintf("%dM", b>>20)
	case b < 10<<30:
		return fmt.Sprintf("%.1fG", float64(b)/(1<<30))
	case b < 1<<40:
		return fmt.Sprintf("%dG", b>>30)
	}
	return fmt.Sprintf("%.1fT", float64(b)/(1<<40))
}

// usageMsg is an agent's answer about some of its projects.
type usageMsg struct {
	hostID string
	usage  []ProjectUsage
	err    error
}

// usageCmds asks the agents of the running hosts whose projects are on
// screen, each at most once per refresh interval.
func (m *Model) usageCmds() []tea.Cmd {
	if m.view != viewProjects {
		return nil
	}
	v := &m.projects
	start, end := v.list.window(len(v.index), m.bodyHeight()-1)
	want := map[string][]string{}
	var order []string
	for _, i := range v.index[start:end] {
		p := m.fleet.Projects[i]
		h, ok := m.host(p.HostID)
		if !ok || h.Status != model.StatusRunning {
			continue
		}
		if _, seen := want[p.HostID]; !seen {
			order = append(order, p.HostID)
		}
		want[p.HostID] = append(want[p.HostID], p.ID)
	}
	now := m.opt.Now()
	var cmds []tea.Cmd
	for _, hid := range order {
		if at, ok := v.asked[hid]; ok && now.Sub(at) < m.opt.Refresh {
			continue
		}
		v.asked[hid] = now
		src, ids := m.src, want[hid]
		ctx, cancel := m.fetchCtx()
		cmds = append(cmds, func() tea.Msg {
			defer cancel()
			u, err := src.Usage(ctx, hid, ids)
			return usageMsg{hostID: hid, usage: u, err: err}
		})
	}
	return cmds
}

func (v *projectsView) takeUsage(msg usageMsg) {
	if msg.err != nil {
		v.usageErr[msg.hostID] = msg.err.Error()
		return
	}
	delete(v.usageErr, msg.hostID)
	for _, u := range msg.usage {
		v.usage[u.ID] = u
	}
}

// shellCmd gets a shell in the project from the source; shellReadyMsg
// then suspends the dashboard and runs it.
func (m Model) shellCmd(p model.Project) tea.Cmd {
	src := m.src
	ctx, cancel := m.fetchCtx()
	return func() tea.Msg {
		defer cancel()
		c, err := src.Shell(ctx, p.ID)
		return shellReadyMsg{project: p.ID, cmd: c, err: err}
	}
}

type shellReadyMsg struct {
	project string
	cmd     Command
	err     error
}

type shellDoneMsg struct {
	project string
	err     error
}
