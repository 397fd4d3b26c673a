package tui

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

type keyBinding = key.Binding

// hostsView is the table of hosts: sorted on any column, filtered with /.
type hostsView struct {
	grid   grid
	list   list
	filter filterBox
	// index is the hosts shown, in order: positions in Fleet.Hosts.
	index []int
	hosts []Host
	count map[string][2]int
}

// Host table columns.
const (
	hcName = iota
	hcCloud
	hcRegion
	hcMachine
	hcStatus
	hcPrice
	hcMonth
	hcProjects
	hcAge
	hcError
)

func newHostsView() hostsView {
	return hostsView{
		grid: grid{sortCol: hcName, cols: []column{
			{title: "NAME", width: 14, priority: 0},
			{title: "CLOUD", width: 6, priority: 4},
			{title: "REGION", width: 14, priority: 2},
			{title: "MACHINE/GPU", width: 18, priority: 1},
			{title: "STATUS", width: 22, priority: 0},
			{title: "$/H", width: 7, priority: 8, right: true},
			{title: "MTD $", width: 8, priority: 7, right: true},
			{title: "PROJ", width: 5, priority: 6, right: true},
			{title: "AGE", width: 4, priority: 3, right: true},
			{title: "LAST ERROR", width: 10, priority: 5, flex: true},
		}},
		filter: newFilterBox(),
	}
}

// rebuild recomputes the shown hosts after new data, a new filter or a
// new sort, keeping the cursor on the same host.
func (v *hostsView) rebuild(hs []Host, count map[string][2]int) {
	selected := ""
	if i, ok := v.selectedIndex(); ok {
		selected = v.hosts[i].ID
	}
	v.hosts, v.count = hs, count
	q := v.filter.value()
	v.index = reindex(v.index, len(hs), &v.list, v.grid,
		func(i int) bool { return q == "" || matchAll(q, hs[i].Name, hs[i].Provider, string(hs[i].Status)) },
		func(a, b int) int {
			return cmp.Or(compareHosts(&hs[a], &hs[b], v.grid.sortCol, count), strings.Compare(hs[a].Name, hs[b].Name))
		},
		func(i int) bool { return hs[i].ID == selected })
}

func compareHosts(a, b *Host, col int, count map[string][2]int) int {
	switch col {
	case hcCloud:
		return strings.Compare(a.Provider, b.Provider)
	case hcRegion:
		return strings.Compare(where(a.Host), where(b.Host))
	case hcMachine:
		return strings.Compare(machine(a.Host), machine(b.Host))
	case hcStatus:
		return strings.Compare(string(a.Status), string(b.Status))
	case hcPrice:
		return cmp.Compare(a.HourlyPrice, b.HourlyPrice)
	case hcMonth:
		return cmp.Compare(a.MonthToDate, b.MonthToDate)
	case hcProjects:
		return cmp.Compare(count[a.ID][1], count[b.ID][1])
	case hcAge:
		return b.CreatedAt.Compare(a.CreatedAt)
	case hcError:
		return strings.Compare(a.LastError, b.LastError)
	}
	return strings.Compare(a.Name, b.Name)
}

func (v hostsView) selectedIndex() (int, bool) {
	if v.list.cursor < 0 || v.list.cursor >= len(v.index) {
		return 0, false
	}
	return v.index[v.list.cursor], true
}

func (m Model) selectedHost() (Host, bool) {
	if m.view == viewDetails || m.view == viewLogs {
		return m.host(m.details.id)
	}
	if m.view == viewProjects {
		if p, ok := m.selectedProject(); ok {
			return m.host(p.HostID)
		}
		return m.host(m.projects.hostID)
	}
	if i, ok := m.hosts.selectedIndex(); ok {
		return m.fleet.Hosts[i], true
	}
	return Host{}, false
}

func where(h model.Host) string {
	if h.Zone != "" && h.Zone != h.Region {
		return h.Zone
	}
	return h.Region
}

func machine(h model.Host) string {
	s := h.Spec.MachineType
	if s == "" && h.Spec.CPUs > 0 {
		s = fmt.Sprintf("%d vCPU", h.Spec.CPUs)
	}
	if h.Spec.GPUCount > 0 {
		s += fmt.Sprintf(" %dx%s", h.Spec.GPUCount, h.Spec.GPUModel)
	}
	return orDash(s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (m Model) hostsSummary() string {
	t := m.opt.Theme
	if m.hosts.filter.active() {
		return m.hosts.filter.view(t, len(m.hosts.index), len(m.fleet.Hosts), "hosts")
	}
	running, perHour, month := 0, 0.0, 0.0
	for _, h := range m.fleet.Hosts {
		if h.Status == model.StatusRunning {
			running++
			perHour += h.HourlyPrice
		}
		month += h.MonthToDate
	}
	return fmt.Sprintf("%s · %s running · %s now · %s this month",
		plural(len(m.fleet.Hosts), "host"), t.Good.Render(fmt.Sprint(running)), t.Title.Render(fmt.Sprintf("$%.2f/hour", perHour)),
		t.Title.Render(fmt.Sprintf("$%.2f", month)))
}

func (m Model) hostsBody(height int) string {
	v := &m.hosts
	if len(m.fleet.Hosts) == 0 {
		if m.fleet.At.IsZero() {
			return ""
		}
		return "\n  No hosts yet. Press 4 for the catalog and enter on a machine to create one\n  (or `cocalc-hosts create --cloud local --name dev`)."
	}
	if len(v.index) == 0 {
		return "\n  No host matches the filter; esc clears it."
	}
	start, end := v.list.window(len(v.index), height-1)
	now := m.opt.Now()
	return v.grid.render(m.opt.Theme, m.width, height, start, end, v.list.cursor, func(r, col, width int, selected bool) string {
		return m.hostCell(&v.hosts[v.index[r]], col, width, selected, now)
	})
}

func (m Model) hostCell(h *Host, col, width int, selected bool, now time.Time) string {
	t := m.opt.Theme
	switch col {
	case hcName:
		return clip(h.Name, width)
	case hcCloud:
		return clip(h.Provider, width)
	case hcRegion:
		return clip(orDash(where(h.Host)), width)
	case hcMachine:
		return clip(machine(h.Host), width)
	case hcStatus:
		s := string(h.Status)
		busy := transitional(h.Status)
		if j, ok := m.jobOn(h.ID); ok {
			s += " (" + string(j.action.Kind) + ")"
			busy = true
		} else if h.Job != nil {
			s += " (" + string(h.Job.Action) + ")"
			busy = true
		}
		if busy {
			s = m.spinner.View() + s
		}
		s = clip(s, width)
		if selected {
			return s
		}
		return t.status(h.Status).Render(s)
	case hcPrice:
		return fmt.Sprintf("%.3f", h.HourlyPrice)
	case hcMonth:
		return fmt.Sprintf("%.2f", h.MonthToDate)
	case hcProjects:
		c := m.counts[h.ID]
		return fmt.Sprintf("%d/%d", c[0], c[1])
	case hcAge:
		return ago(now, h.CreatedAt)
	case hcError:
		if h.LastError == "" {
			return ""
		}
		if selected {
			return clip(oneLine(h.LastError), width)
		}
		return t.Bad.Render(clip(oneLine(h.LastError), width))
	}
	return ""
}

// ago is a short age: 45s, 12m, 3h, 5d.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(int(d.Seconds()), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// filterBox is the / filter of a table.
type filterBox struct {
	input   textinput.Model
	editing bool
}

func newFilterBox() filterBox {
	in := textinput.New()
	in.Prompt = "/"
	in.Placeholder = "name, cloud or status"
	return filterBox{input: in}
}

func (f filterBox) value() string { return strings.TrimSpace(f.input.Value()) }

func (f filterBox) active() bool { return f.editing || f.value() != "" }

func (f filterBox) view(t Theme, shown, total int, what string) string {
	s := f.input.View()
	if !f.editing {
		s = "filter: " + f.value()
	}
	return fmt.Sprintf("%s  %s", s, t.Dim.Render(fmt.Sprintf("(%d of %d %s; esc clears)", shown, total, what)))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
