package tui

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// detailsView is one host in detail, scrollable.
type detailsView struct {
	id      string
	info    *HostInfo
	err     error
	loading bool
	vp      viewport.Model
}

func newViewport() viewport.Model {
	vp := viewport.New(viewport.WithWidth(80), viewport.WithHeight(10))
	vp.KeyMap.Left.SetEnabled(false)
	vp.KeyMap.Right.SetEnabled(false)
	return vp
}

type hostInfoMsg struct {
	id   string
	info HostInfo
	err  error
}

func (m *Model) loadHostInfo() tea.Cmd {
	if m.details.loading || m.details.id == "" {
		return nil
	}
	m.details.loading = true
	src, id := m.src, m.details.id
	ctx, cancel := m.fetchCtx()
	return func() tea.Msg {
		defer cancel()
		info, err := src.Host(ctx, id)
		return hostInfoMsg{id: id, info: info, err: err}
	}
}

func (m Model) detailsSubtitle() string {
	t := m.opt.Theme
	h, ok := m.host(m.details.id)
	if !ok {
		return t.Bad.Render("host " + m.details.id + " is gone")
	}
	s := t.Title.Render(h.Name) + " · " + t.status(h.Status).Render(string(h.Status))
	switch {
	case m.details.err != nil:
		s += " · " + t.Bad.Render("details: "+clip(oneLine(m.details.err.Error()), m.width/2))
	case m.details.info == nil:
		s += " · " + t.Dim.Render("reading details…")
	default:
		s += " · " + t.Dim.Render("details as of "+m.details.info.At.Local().Format("15:04:05"))
	}
	return s
}

// detailsContent renders the host details for the viewport.
func (m Model) detailsContent() string {
	t := m.opt.Theme
	h, ok := m.host(m.details.id)
	if !ok {
		return ""
	}
	info := m.details.info
	var b strings.Builder
	// Values wrap under themselves, so nothing is cut at 80 columns.
	indent := strings.Repeat(" ", 13)
	kv := func(k, v string) {
		if v != "" {
			v = strings.ReplaceAll(wrap(v, max(m.width-14, 20)), "\n", "\n"+indent)
			fmt.Fprintf(&b, "%s %s\n", t.Title.Render(fmt.Sprintf("%-12s", k)), v)
		}
	}
	kv("name", h.Name+"  "+t.Dim.Render(h.ID))
	kv("cloud", h.Provider+" · "+orDash(h.Region)+zoneOf(h.Host))
	spec := []string{orDash(h.Spec.MachineType)}
	if h.Spec.CPUs > 0 {
		spec = append(spec, fmt.Sprintf("%d vCPU", h.Spec.CPUs))
	}
	if h.Spec.MemoryGiB > 0 {
		spec = append(spec, fmt.Sprintf("%d GiB", h.Spec.MemoryGiB))
	}
	if h.Spec.GPUCount > 0 {
		spec = append(spec, fmt.Sprintf("%d x %s", h.Spec.GPUCount, h.Spec.GPUModel))
	}
	if h.Spec.DiskGB > 0 {
		spec = append(spec, fmt.Sprintf("data disk %d GB", h.Spec.DiskGB))
	}
	if h.Spec.Spot {
		spec = append(spec, "spot")
	}
	kv("spec", strings.Join(spec, " · "))
	kv("cost", fmt.Sprintf("$%.4f/hour · $%.2f this month · $%.2f/month in its current state", h.HourlyPrice, h.MonthToDate, h.MonthlyNow))
	if info != nil && info.Stopped != nil {
		kv("stopped", StoppedLine(*info.Stopped, h.Status == model.StatusOff))
	}
	addr := h.Runtime.DNSName
	if addr != "" && h.Runtime.PublicIP != "" {
		addr += " (" + h.Runtime.PublicIP + ")"
	} else if addr == "" {
		addr = h.Runtime.PublicIP
	}
	if h.Runtime.PrivateIP != "" {
		addr = strings.TrimSpace(addr + " private " + h.Runtime.PrivateIP)
	}
	kv("address", addr)
	kv("instance", h.Runtime.InstanceID)
	switch {
	case info == nil:
		kv("agent", t.Dim.Render("asking…"))
	case info.Agent == nil:
		kv("agent", t.Dim.Render("not asked: host is "+string(h.Status)))
	default:
		kv("agent", m.agentLine(*info.Agent))
		if a := info.Agent; a.Reachable {
			kv("headroom", headroom(*a))
		}
	}
	owner := h.Owner
	if info != nil && len(info.Collaborators) > 0 {
		owner += " · collaborators " + strings.Join(info.Collaborators, ", ")
	}
	if h.Shared {
		owner += " · shared pool"
	}
	kv("owner", owner)
	kv("created", h.CreatedAt.Local().Format("2006-01-02 15:04")+" ("+ago(m.opt.Now(), h.CreatedAt)+" ago)")
	c := m.counts[h.ID]
	kv("projects", fmt.Sprintf("%d running of %d", c[0], c[1]))
	kv("last action", orDash(h.LastAction))
	if h.LastError != "" {
		kv("last error", t.Bad.Render(oneLine(h.LastError)))
	}
	if h.Job != nil {
		kv("pending", fmt.Sprintf("%s (%s, attempt %d)", h.Job.Action, h.Job.State, h.Job.Attempts))
	}
	if info != nil && len(info.RecentLog) > 0 {
		b.WriteString("\n" + t.Header.Render("recent cloud_vm_log") + "\n")
		for _, e := range info.RecentLog {
			b.WriteString(vmLogText(t, e) + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func zoneOf(h model.Host) string {
	if h.Zone == "" || h.Zone == h.Region {
		return ""
	}
	return " / " + h.Zone
}

func (m Model) agentLine(a Agent) string {
	t := m.opt.Theme
	if !a.Reachable {
		s := "not answering: " + oneLine(a.Error)
		if a.LastContact != nil {
			s += " (last contact " + ago(m.opt.Now(), *a.LastContact) + " ago)"
		}
		return t.Bad.Render(s)
	}
	up := time.Duration(a.Uptime * float64(time.Second)).Round(time.Second)
	return t.Good.Render("answering") + fmt.Sprintf(" · version %s · up %s", orDash(a.Version), up)
}

func headroom(a Agent) string {
	var parts []string
	if a.DiskTotal > 0 {
		parts = append(parts, fmt.Sprintf("disk %s free of %s (%s)", bytesShort(int64(a.DiskFree)), bytesShort(int64(a.DiskTotal)), orDash(a.StorageKind)))
	}
	if a.MemTotal > 0 {
		parts = append(parts, fmt.Sprintf("memory %s of %s promised", bytesShort(a.MemCommit), bytesShort(a.MemTotal)))
	}
	if a.CPUs > 0 {
		parts = append(parts, fmt.Sprintf("%d CPUs", a.CPUs))
	}
	if a.GPUs > 0 {
		parts = append(parts, fmt.Sprintf("%d GPUs", a.GPUs))
	}
	parts = append(parts, fmt.Sprintf("%d projects running", a.Running))
	return strings.Join(parts, " · ")
}

// StoppedLine says what a stopped host costs per month, in the words
// `cocalc-hosts stop` uses.
func StoppedLine(sc StoppedCost, off bool) string {
	verb := "once off it will still cost"
	if off {
		verb = "while off it still costs"
	}
	boot := ""
	if sc.BootDiskMonthly > 0 {
		boot = fmt.Sprintf(" and its boot disk ($%.2f)", sc.BootDiskMonthly)
	}
	return fmt.Sprintf("%s about $%.2f/month for its %d GB data disk ($%.4f/GB-month, %s)%s",
		verb, sc.Monthly, sc.DiskGB, sc.DiskPricePerGBMonth, sc.Source, boot)
}

// vmLogText is one cloud_vm_log entry on one line.
func vmLogText(t Theme, e model.LogEntry) string {
	s := fmt.Sprintf("%s  %-8s %-8s", e.TS.Local().Format("2006-01-02 15:04:05"), e.Action, e.Status)
	if e.HostStatus != "" {
		s += " → " + string(e.HostStatus)
	}
	if e.Error != "" {
		s += "  " + t.Bad.Render(oneLine(e.Error))
	}
	return s
}
