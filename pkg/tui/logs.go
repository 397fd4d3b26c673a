package tui

import (
	"strings"

	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"
)

// maxLogLines bounds what the logs view keeps of a long-running host.
const maxLogLines = 5000

// logsView is a host's cloud_vm_log and boot log, merged by time, read
// again every refresh (like `logs -f`) and scrollable; it follows the
// newest line until scrolled up.
type logsView struct {
	id      string
	lines   []LogLine
	next    LogCursor
	err     error
	loading bool
	follow  bool
	vp      viewport.Model
}

type logsMsg struct {
	id   string
	page LogPage
	err  error
}

func (m *Model) loadLogs() tea.Cmd {
	v := &m.logs
	if v.loading || v.id == "" {
		return nil
	}
	v.loading = true
	src, id, after := m.src, v.id, v.next
	ctx, cancel := m.fetchCtx()
	return func() tea.Msg {
		defer cancel()
		p, err := src.Logs(ctx, id, after)
		return logsMsg{id: id, page: p, err: err}
	}
}

func (m *Model) takeLogs(msg logsMsg) {
	v := &m.logs
	v.loading = false
	if msg.id != v.id {
		return
	}
	v.err = msg.err
	if msg.err != nil {
		return
	}
	v.next = msg.page.Next
	if len(msg.page.Lines) == 0 && len(v.lines) > 0 {
		return
	}
	v.lines = append(v.lines, msg.page.Lines...)
	if n := len(v.lines); n > maxLogLines {
		v.lines = v.lines[n-maxLogLines:]
	}
	m.renderLogs()
}

func (m *Model) renderLogs() {
	t := m.opt.Theme
	v := &m.logs
	out := make([]string, 0, len(v.lines))
	for _, l := range v.lines {
		kind := t.Dim.Render(l.Kind)
		if l.Kind == LogVM {
			kind = t.Key.Render(l.Kind)
		}
		text := l.Text
		if l.Error {
			text = t.Bad.Render(text)
		}
		out = append(out, l.TS.Local().Format("01-02 15:04:05")+" "+kind+strings.Repeat(" ", max(5-len(l.Kind), 1))+text)
	}
	if len(out) == 0 {
		out = []string{"  no log lines yet"}
	}
	v.vp.SetContentLines(out)
	if v.follow {
		v.vp.GotoBottom()
	}
}

func (m Model) logsSubtitle() string {
	t := m.opt.Theme
	name := m.logs.id
	if h, ok := m.host(m.logs.id); ok {
		name = h.Name
	}
	s := "logs of " + t.Title.Render(name) + " · cloud_vm_log and boot log · "
	if m.logs.follow {
		s += t.Good.Render("following")
	} else {
		s += t.Warn.Render("paused") + " (f follows)"
	}
	if m.logs.err != nil {
		s += " · " + t.Bad.Render(clip(oneLine(m.logs.err.Error()), m.width/2))
	}
	return s
}

func (m Model) logsBody() string {
	if m.logs.id == "" {
		return "\n  Select a host (1) and press 3 for its logs."
	}
	return m.logs.vp.View()
}
