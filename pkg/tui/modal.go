package tui

import (
	"fmt"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// modal is a box over the current view that takes the keys: help, an
// error, a confirmation or a form.
type modal interface {
	view(m Model) string
	keys() []keyBinding
	// update handles a key (or other input); it may close the modal.
	update(m *Model, msg tea.Msg) tea.Cmd
}

var (
	keyConfirm = key.NewBinding(key.WithKeys("y", "enter"), key.WithHelp("y/enter", "confirm"))
	keyCancel  = key.NewBinding(key.WithKeys("n", "esc"), key.WithHelp("n/esc", "cancel"))
	keyClose   = key.NewBinding(key.WithKeys("esc", "enter", "q"), key.WithHelp("esc", "close"))
	keyField   = key.NewBinding(key.WithKeys("tab", "shift+tab", "up", "down"), key.WithHelp("tab", "next field"))
	keySubmit  = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "continue"))
	keyEsc     = key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel"))
	keyToggle  = key.NewBinding(key.WithKeys("space"), key.WithHelp("space", "toggle"))
)

func (m Model) box(title string, width int, lines ...string) string {
	t := m.opt.Theme
	w := min(width, m.width-4)
	body := t.Title.Render(title) + "\n\n" + strings.Join(lines, "\n")
	return t.Box.Width(w).Render(body)
}

// wrap breaks s into lines of at most w cells.
func wrap(s string, w int) string {
	return lipgloss.NewStyle().Width(w).Render(s)
}

// helpModal lists every key.
type helpModal struct{}

func (helpModal) keys() []keyBinding { return []keyBinding{keyClose} }

func (helpModal) update(m *Model, msg tea.Msg) tea.Cmd {
	if _, ok := msg.(tea.KeyPressMsg); ok {
		m.modal = nil
	}
	return nil
}

func (helpModal) view(m Model) string {
	k := m.keys
	groups := [][]keyBinding{
		{k.Hosts, k.Projects, k.Logs, k.Catalog, k.Next, k.Details, k.Back, k.Help, k.Quit, k.ForceQuit},
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom, k.Filter, k.Sort, k.Reverse, k.Refresh},
		compact([]keyBinding{m.supported(k.Start, HostStart), m.supported(k.Stop, HostStop), m.supported(k.Delete, HostDelete),
			m.supported(k.Upgrade, HostUpgrade), m.supported(k.NewProj, ProjectCreate), k.HostProjects, k.Follow}),
		compact([]keyBinding{m.supported(k.Restart, ProjectRestart), m.supported(k.Snapshot, ProjectSnapshot), k.Shell,
			k.AllProjects, m.supported(k.Move, ProjectMove), m.supported(k.Clone, ProjectClone), m.supported(k.Backup, ProjectBackup)}),
	}
	h := m.help
	h.SetWidth(m.width - 8)
	return m.box("Keys", m.width-4, h.FullHelpView(groups),
		"", m.opt.Theme.Dim.Render("In the catalog, type to filter: gpu:l4 cpu:8 ram:32 region:east cloud:gcp max:2"))
}

// errorModal shows a failure until a key is pressed.
type errorModal struct {
	title, text string
}

func (errorModal) keys() []keyBinding { return []keyBinding{keyClose} }

func (errorModal) update(m *Model, msg tea.Msg) tea.Cmd {
	if _, ok := msg.(tea.KeyPressMsg); ok {
		m.modal = nil
	}
	return nil
}

func (e errorModal) view(m Model) string {
	w := min(72, m.width-4)
	return m.box(m.opt.Theme.Bad.Render(e.title), w, wrap(e.text, w-4))
}

// confirmModal shows what an action costs or destroys and waits for y,
// or for the host's name to be typed.
type confirmModal struct {
	action  Action
	preview *Preview
	input   textinput.Model
}

func (c *confirmModal) keys() []keyBinding {
	if c.preview != nil && c.preview.TypeName != "" {
		return []keyBinding{keySubmit, keyEsc}
	}
	return []keyBinding{keyConfirm, keyCancel}
}

func (c *confirmModal) update(m *Model, msg tea.Msg) tea.Cmd {
	k, isKey := msg.(tea.KeyPressMsg)
	if c.preview == nil {
		if isKey && key.Matches(k, keyCancel) {
			m.modal = nil
		}
		return nil
	}
	if c.preview.TypeName != "" {
		if isKey {
			switch k.String() {
			case "esc":
				m.modal = nil
				m.setStatus(string(c.action.Kind)+" "+c.action.Name+" cancelled", false)
				return nil
			case "enter":
				if strings.TrimSpace(c.input.Value()) != c.preview.TypeName {
					return nil
				}
				m.modal = nil
				return m.startJob(c.action)
			}
		}
		var cmd tea.Cmd
		c.input, cmd = c.input.Update(msg)
		return cmd
	}
	if !isKey {
		return nil
	}
	switch {
	case key.Matches(k, keyConfirm):
		m.modal = nil
		return m.startJob(c.action)
	case key.Matches(k, keyCancel):
		m.modal = nil
		m.setStatus(string(c.action.Kind)+" "+c.action.Name+" cancelled", false)
	}
	return nil
}

func (c *confirmModal) view(m Model) string {
	t := m.opt.Theme
	w := min(76, m.width-4)
	title := fmt.Sprintf("%s %s?", actionVerb(c.action.Kind), c.action.Name)
	if c.preview == nil {
		return m.box(title, w, m.spinner.View()+" working out what it costs…")
	}
	var lines []string
	for _, l := range c.preview.Lines {
		lines = append(lines, wrap("• "+l, w-4))
	}
	if c.preview.Destroys {
		title = t.Bad.Render(title)
	}
	if c.preview.TypeName != "" {
		lines = append(lines, "", fmt.Sprintf("Type %s to confirm:", t.Title.Render(c.preview.TypeName)), c.input.View())
	} else {
		lines = append(lines, "", "Press y to go ahead, n to cancel.")
	}
	return m.box(title, w, lines...)
}

func actionVerb(k ActionKind) string {
	s := strings.TrimPrefix(string(k), "project.")
	return strings.ToUpper(s[:1]) + s[1:]
}

// form is a short form of text fields and yes/no toggles.
type form struct {
	title   string
	labels  []string
	inputs  []textinput.Model
	toggles []toggle
	focus   int
	err     string
	submit  func(m *Model, f *form) tea.Cmd
}

type toggle struct {
	label string
	on    bool
	// off explains why it cannot be turned on ("" : it can).
	off string
}

func newInput(value, placeholder string) textinput.Model {
	in := textinput.New()
	in.Prompt = ""
	in.SetValue(value)
	in.Placeholder = placeholder
	in.SetWidth(30)
	return in
}

func (f *form) fields() int { return len(f.inputs) + len(f.toggles) }

func (f *form) focusField(i int) tea.Cmd {
	f.focus = (i + f.fields()) % f.fields()
	var cmd tea.Cmd
	for k := range f.inputs {
		if k == f.focus {
			cmd = f.inputs[k].Focus()
		} else {
			f.inputs[k].Blur()
		}
	}
	return cmd
}

func (f *form) keys() []keyBinding { return []keyBinding{keyField, keyToggle, keySubmit, keyEsc} }

func (f *form) update(m *Model, msg tea.Msg) tea.Cmd {
	if k, ok := msg.(tea.KeyPressMsg); ok {
		switch k.String() {
		case "esc":
			m.modal = nil
			return nil
		case "tab", "down":
			return f.focusField(f.focus + 1)
		case "shift+tab", "up":
			return f.focusField(f.focus - 1)
		case "enter":
			f.err = ""
			return f.submit(m, f)
		case "space":
			if i := f.focus - len(f.inputs); i >= 0 {
				tg := &f.toggles[i]
				if tg.off != "" {
					f.err = tg.off
				} else {
					tg.on = !tg.on
				}
				return nil
			}
		}
	}
	if f.focus < len(f.inputs) {
		var cmd tea.Cmd
		f.inputs[f.focus], cmd = f.inputs[f.focus].Update(msg)
		return cmd
	}
	return nil
}

func (f *form) view(m Model) string {
	t := m.opt.Theme
	var lines []string
	for i, in := range f.inputs {
		mark := "  "
		if i == f.focus {
			mark = t.Key.Render("> ")
		}
		lines = append(lines, fmt.Sprintf("%s%-10s %s", mark, f.labels[i], in.View()))
	}
	for i, tg := range f.toggles {
		mark := "  "
		if len(f.inputs)+i == f.focus {
			mark = t.Key.Render("> ")
		}
		box := "[ ]"
		if tg.on {
			box = "[x]"
		}
		lines = append(lines, fmt.Sprintf("%s%-10s %s", mark, tg.label, box))
	}
	if f.err != "" {
		lines = append(lines, "", t.Bad.Render(wrap(f.err, min(60, m.width-8))))
	}
	return m.box(f.title, min(64, m.width-4), lines...)
}

func (f *form) value(i int) string { return strings.TrimSpace(f.inputs[i].Value()) }

// hostForm is the create-host form for a catalog machine: name, disk
// and spot; the rest comes from the machine.
func hostForm(e Machine, name string) *form {
	spot := toggle{label: "spot"}
	if e.SpotPrice == 0 {
		spot.off = "this machine has no spot price"
	}
	f := &form{
		title:   fmt.Sprintf("New host: %s %s in %s", e.Provider, e.Type, machineCell(&e, ccRegion)),
		labels:  []string{"name", "disk GB"},
		inputs:  []textinput.Model{newInput(name, "host name"), newInput(strconv.Itoa(e.DefaultDisk), "data disk size")},
		toggles: []toggle{spot},
	}
	f.submit = func(m *Model, f *form) tea.Cmd {
		disk, err := strconv.Atoi(f.value(1))
		if err != nil || disk <= 0 {
			f.err = fmt.Sprintf("disk GB: %q is not a positive whole number", f.value(1))
			return nil
		}
		if f.value(0) == "" {
			f.err = "name: give the host a name"
			return nil
		}
		a := Action{Kind: HostCreate, Name: f.value(0), NewHost: &NewHost{
			Name: f.value(0), Provider: e.Provider, Region: e.Region, Zone: e.Zone, Machine: e.Type,
			GPUModel: e.GPUModel, GPUCount: e.GPUCount, DiskGB: disk, Spot: f.toggles[0].on,
		}}
		return m.confirm(a)
	}
	f.focusField(0)
	return f
}

// projectForm is the create-project form for a host.
func projectForm(h Host) *form {
	f := &form{
		title:   "New project on " + h.Name,
		labels:  []string{"title", "memory", "cpus", "disk"},
		inputs:  []textinput.Model{newInput("", "a title"), newInput("", "default 1G"), newInput("", "default 1"), newInput("", "default 2G")},
		toggles: []toggle{{label: "start", on: true}},
	}
	f.submit = func(m *Model, f *form) tea.Cmd {
		a := Action{Kind: ProjectCreate, HostID: h.ID, Name: orDash(f.value(0)), NewProject: &NewProject{
			Title: f.value(0), Memory: f.value(1), CPUs: f.value(2), Disk: f.value(3), Start: f.toggles[0].on,
		}}
		m.modal = nil
		return m.startJob(a)
	}
	f.focusField(0)
	return f
}

// pickHost chooses where a project moves to.
type pickHost struct {
	action Action
	hosts  []Host
	list   list
}

func (p *pickHost) keys() []keyBinding { return []keyBinding{keySubmit, keyEsc} }

func (p *pickHost) update(m *Model, msg tea.Msg) tea.Cmd {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil
	}
	switch k.String() {
	case "esc":
		m.modal = nil
	case "up", "k":
		p.list.move(-1, len(p.hosts))
	case "down", "j":
		p.list.move(1, len(p.hosts))
	case "enter":
		if len(p.hosts) == 0 {
			m.modal = nil
			return nil
		}
		a := p.action
		a.ToHostID = p.hosts[p.list.cursor].ID
		return m.confirm(a)
	}
	return nil
}

func (p *pickHost) view(m Model) string {
	t := m.opt.Theme
	var lines []string
	verb := "Move"
	if p.action.Kind == ProjectClone {
		verb = "Copy"
	}
	if len(p.hosts) == 0 {
		lines = append(lines, "No other running host to "+strings.ToLower(verb)+" it to.")
	}
	start, end := p.list.window(len(p.hosts), 10)
	for i := start; i < end; i++ {
		h := p.hosts[i]
		c := m.counts[h.ID]
		l := fmt.Sprintf("%-20s %-8s %-16s %d/%d projects", clip(h.Name, 20), h.Provider, clip(where(h.Host), 16), c[0], c[1])
		if i == p.list.cursor {
			l = t.Selected.Render(l)
		}
		lines = append(lines, l)
	}
	return m.box(verb+" "+p.action.Name+" to", min(70, m.width-4), lines...)
}
