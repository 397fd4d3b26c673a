package tui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/progress"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
)

// job is an action this dashboard runs, with its latest progress.
type job struct {
	id      int
	action  Action
	started time.Time
	last    Progress
	// firstBytes/firstAt are the first transfer figure seen, for the rate.
	firstBytes int64
	firstAt    time.Time
	lastAt     time.Time
	ch         chan tea.Msg
}

type (
	previewMsg struct {
		action  Action
		preview Preview
		err     error
	}
	progressMsg struct {
		job int
		p   Progress
		at  time.Time
	}
	doneMsg struct {
		job     int
		outcome Outcome
		err     error
	}
)

// needsConfirm says whether an action costs or destroys something, and
// so is confirmed with what the source previews.
func needsConfirm(k ActionKind) bool {
	switch k {
	case ProjectCreate, ProjectStart, ProjectSnapshot, ProjectBackup:
		return false
	}
	return true
}

// act starts an action: through its confirmation when it needs one.
func (m *Model) act(a Action) tea.Cmd {
	if !m.src.Supports(a.Kind) {
		return nil
	}
	if _, busy := m.jobFor(a); busy {
		m.setStatus(fmt.Sprintf("%s is busy: an action on it is running", a.Name), true)
		return nil
	}
	if needsConfirm(a.Kind) {
		return m.confirm(a)
	}
	return m.startJob(a)
}

// confirm asks the source what a costs or destroys and opens the
// confirmation, which shows it once it is known.
func (m *Model) confirm(a Action) tea.Cmd {
	c := &confirmModal{action: a}
	m.modal = c
	src := m.src
	ctx, cancel := m.fetchCtx()
	return func() tea.Msg {
		defer cancel()
		p, err := src.Preview(ctx, a)
		return previewMsg{action: a, preview: p, err: err}
	}
}

func (m *Model) jobFor(a Action) (*job, bool) {
	for _, j := range m.jobs {
		if (a.HostID != "" && j.action.HostID == a.HostID && j.action.ProjectID == "" && a.ProjectID == "") ||
			(a.ProjectID != "" && j.action.ProjectID == a.ProjectID) {
			return j, true
		}
	}
	return nil, false
}

// startJob runs a through the source: the source's progress arrives as
// messages until the action ends.
func (m *Model) startJob(a Action) tea.Cmd {
	m.nextJob++
	j := &job{id: m.nextJob, action: a, started: m.opt.Now(), ch: make(chan tea.Msg, 64)}
	m.jobs[j.id] = j
	m.setStatus("", false)
	src, ctx, now := m.src, m.opt.Context, m.opt.Now
	run := func() tea.Msg {
		defer close(j.ch)
		out, err := src.Do(ctx, a, func(p Progress) {
			select {
			case j.ch <- progressMsg{job: j.id, p: p, at: now()}:
			default: // the screen is behind; a newer step follows
			}
		})
		return doneMsg{job: j.id, outcome: out, err: err}
	}
	return tea.Batch(run, next(j.ch))
}

// next waits for a job's next progress message.
func next(ch chan tea.Msg) tea.Cmd {
	return func() tea.Msg {
		msg, ok := <-ch
		if !ok {
			return nil
		}
		return msg
	}
}

func (m *Model) updateAction(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case previewMsg:
		c, ok := m.modal.(*confirmModal)
		if !ok || c.action.Kind != msg.action.Kind || c.action.Name != msg.action.Name {
			return nil
		}
		if msg.err != nil {
			m.modal = errorModal{title: fmt.Sprintf("Cannot %s %s", strings.TrimPrefix(string(msg.action.Kind), "project."), msg.action.Name), text: msg.err.Error()}
			return nil
		}
		p := msg.preview
		c.preview = &p
		if p.TypeName != "" {
			c.input = textinput.New()
			c.input.Prompt = "> "
			c.input.SetWidth(40)
			return c.input.Focus()
		}
	case progressMsg:
		j, ok := m.jobs[msg.job]
		if !ok {
			return nil
		}
		if msg.p.Total > 0 && j.firstAt.IsZero() {
			j.firstBytes, j.firstAt = msg.p.Bytes, msg.at
		}
		j.last, j.lastAt = msg.p, msg.at
		return next(j.ch)
	case doneMsg:
		j, ok := m.jobs[msg.job]
		if !ok {
			return nil
		}
		delete(m.jobs, msg.job)
		verb := strings.TrimPrefix(string(j.action.Kind), "project.")
		if msg.err != nil {
			m.setStatus(fmt.Sprintf("%s %s failed", verb, j.action.Name), true)
			if m.modal == nil {
				m.modal = errorModal{title: fmt.Sprintf("%s %s failed", actionVerb(j.action.Kind), j.action.Name), text: msg.err.Error()}
			}
		} else {
			m.setStatus(msg.outcome.Message, false)
			m.notes = msg.outcome.Notes
		}
		m.layout()
		if m.quitting && len(m.jobs) == 0 {
			return tea.Quit
		}
		return tea.Batch(m.loadFleet(), m.loadHostInfo())
	case shellReadyMsg:
		if msg.err != nil {
			m.modal = errorModal{title: "Cannot open a shell in " + msg.project, text: msg.err.Error()}
			return nil
		}
		return tea.Exec(msg.cmd, func(err error) tea.Msg { return shellDoneMsg{project: msg.project, err: err} })
	case shellDoneMsg:
		if msg.err != nil {
			m.setStatus("shell in "+msg.project+": "+oneLine(msg.err.Error()), true)
		} else {
			m.setStatus("shell in "+msg.project+" ended", false)
		}
		return m.loadFleet()
	}
	return nil
}

func (m *Model) setStatus(s string, bad bool) {
	m.status, m.statusBad, m.notes = s, bad, nil
	m.layout()
}

func (m Model) jobIDs() []int {
	ids := make([]int, 0, len(m.jobs))
	for id := range m.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (m Model) jobOn(hostID string) (*job, bool) {
	for _, id := range m.jobIDs() {
		if j := m.jobs[id]; j.action.HostID == hostID && j.action.ProjectID == "" && j.action.Kind != ProjectCreate {
			return j, true
		}
	}
	return nil, false
}

func (m Model) jobOnProject(id string) (*job, bool) {
	for _, jid := range m.jobIDs() {
		if j := m.jobs[jid]; j.action.ProjectID == id {
			return j, true
		}
	}
	return nil, false
}

// jobLine is one running action: for transfers first a bar with bytes,
// rate and time left (they fit in 80 columns), then what it is doing now.
func (m Model) jobLine(j *job) string {
	t := m.opt.Theme
	verb := strings.TrimPrefix(string(j.action.Kind), "project.")
	s := t.Busy.Render(m.spinner.View()) + " " + t.Title.Render(verb+" "+j.action.Name) + ":"
	if p := j.last; p.Total > 0 {
		full, empty := '█', '░'
		if t.Mono {
			full, empty = '#', '.'
		}
		bar := progress.New(progress.WithWidth(20), progress.WithoutPercentage(), progress.WithFillCharacters(full, empty))
		frac := float64(p.Bytes) / float64(p.Total)
		s += " " + bar.ViewAs(min(frac, 1)) + fmt.Sprintf(" %s of %s", bytesShort(p.Bytes), bytesShort(p.Total))
		if el := j.lastAt.Sub(j.firstAt).Seconds(); el > 0 && p.Bytes > j.firstBytes {
			rate := float64(p.Bytes-j.firstBytes) / el
			left := time.Duration(float64(p.Total-p.Bytes) / rate * float64(time.Second)).Round(time.Second)
			s += fmt.Sprintf(" · %s/s · %s left", bytesShort(int64(rate)), left)
		}
		s += " ·"
	}
	msg := j.last.Message
	if msg == "" {
		msg = "queued"
	}
	s += " " + oneLine(msg)
	if j.last.Attempt > 1 {
		s += fmt.Sprintf(" (attempt %d)", j.last.Attempt)
	}
	return s + t.Dim.Render(" · "+ago(m.opt.Now(), j.started))
}

// supported disables a key whose action the source cannot run.
func (m Model) supported(b keyBinding, k ActionKind) keyBinding {
	if !m.src.Supports(k) {
		b.SetEnabled(false)
	}
	return b
}

func compact(bs []keyBinding) []keyBinding {
	out := bs[:0]
	for _, b := range bs {
		if b.Enabled() {
			out = append(out, b)
		}
	}
	return out
}

// Running is the number of actions started from the dashboard that have
// not finished.
func (m Model) Running() int { return len(m.jobs) }
