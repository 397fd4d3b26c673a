package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tui"
)

// dashboardSource is the dashboard's view of the deployment, read and
// acted on only through the services the Factory gives: the domain
// services directly, or a server's clients with server.url set. Actions
// are queued and worked as the CLI verbs work them (in this process, or
// by the server's workers).
type dashboardSource struct {
	// ctx is the dashboard's: actions and shells live as long as it.
	ctx      context.Context
	f        *Factory
	hosts    HostService
	projects ProjectService
	backups  BackupService
	ops      OpsService
	as       *asFlag
	// local is the host service of this process in direct mode (nil
	// through a server): what only it gives — the agents' resources, the
	// early checks of stop, delete and upgrade, the database's change
	// events — the dashboard takes from it when it is there.
	local *hosts.Service

	mu sync.Mutex
	// costs are this month's costs by host, read at costAt for the hosts
	// costKey names: read again when a host comes or goes, or after
	// costTTL (a report totals every host's log).
	costs   map[string]cost.HostCost
	costAt  time.Time
	costKey string
}

// costTTL is how long month-to-date costs are shown before they are read
// again: they grow by cents an hour, and a host that changed state since
// is priced at its new state's rate (priced).
const costTTL = time.Minute

var _ tui.Source = (*dashboardSource)(nil)

func newDashboardSource(ctx context.Context, f *Factory) (*dashboardSource, error) {
	hs, err := f.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	ps, err := f.Projects(ctx)
	if err != nil {
		return nil, err
	}
	bs, err := f.Backups(ctx)
	if err != nil {
		return nil, err
	}
	ops, err := f.Ops()
	if err != nil {
		return nil, err
	}
	local, _ := hs.(*hosts.Service)
	return &dashboardSource{ctx: ctx, f: f, hosts: hs, projects: ps, backups: bs, ops: ops, as: &asFlag{}, local: local}, nil
}

// Fleet reads the live hosts and projects the caller may see (through a
// server, the hosts it may use), with their costs and pending jobs.
func (s *dashboardSource) Fleet(ctx context.Context) (tui.Fleet, error) {
	hs, err := s.hosts.List(ctx, store.HostFilter{})
	if err != nil {
		return tui.Fleet{}, err
	}
	ps, err := s.listProjects(ctx)
	if err != nil {
		return tui.Fleet{}, err
	}
	jobs, err := s.hosts.ActiveJobs(ctx)
	if err != nil {
		return tui.Fleet{}, err
	}
	costs, err := s.monthCosts(ctx, hs)
	if err != nil {
		return tui.Fleet{}, err
	}
	active := make(map[string]*model.Job, len(jobs))
	for i := range jobs {
		if _, seen := active[jobs[i].Subject.ID]; !seen {
			active[jobs[i].Subject.ID] = &jobs[i]
		}
	}
	out := tui.Fleet{Hosts: make([]tui.Host, len(hs)), Projects: ps, At: s.f.Now()}
	for i, h := range hs {
		out.Hosts[i] = priced(h, costs)
		out.Hosts[i].Job = active[h.ID]
	}
	return out, nil
}

// listProjects lists every project for an admin, else the caller's own.
func (s *dashboardSource) listProjects(ctx context.Context) ([]model.Project, error) {
	c, err := caller(s.f, s.as)
	if err != nil {
		return nil, err
	}
	ps, err := s.projects.List(ctx, c, projects.ListRequest{All: true})
	if errkind.Is(err, errkind.Refused) || errkind.Is(err, errkind.Forbidden) {
		ps, err = s.projects.List(ctx, c, projects.ListRequest{})
	}
	if ps == nil {
		ps = []model.Project{}
	}
	return ps, err
}

// monthCosts returns this month's costs by host, read again when hs are
// not the hosts of the last read or it is costTTL old.
func (s *dashboardSource) monthCosts(ctx context.Context, hs []model.Host) (map[string]cost.HostCost, error) {
	var key strings.Builder
	for _, h := range hs {
		key.WriteString(h.ID + ",")
	}
	now := s.f.Now()
	s.mu.Lock()
	fresh := s.costs != nil && s.costKey == key.String() && now.Sub(s.costAt) < costTTL
	costs := s.costs
	s.mu.Unlock()
	if fresh {
		return costs, nil
	}
	y, m, _ := now.UTC().Date()
	rep, err := s.ops.Cost(ctx, cost.ReportOptions{From: time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		return nil, fmt.Errorf("this month's costs: %w", err)
	}
	costs = make(map[string]cost.HostCost, len(rep.Hosts))
	for _, hc := range rep.Hosts {
		costs[hc.HostID] = hc
	}
	s.mu.Lock()
	s.costs, s.costAt, s.costKey = costs, now, key.String()
	s.mu.Unlock()
	return costs, nil
}

// priced is h with its month-to-date cost and current monthly rate; a
// host whose state changed since the costs were read is priced at its
// new state's rate, as cost.MonthlyNow prices it.
func priced(h model.Host, costs map[string]cost.HostCost) tui.Host {
	hc := costs[h.ID]
	out := tui.Host{Host: h, MonthToDate: catalog.Cents(hc.Total), MonthlyNow: hc.MonthlyNow}
	if hc.HostID != "" && hc.Status != h.Status {
		monthly := float64(hc.DiskGB)*hc.DiskPricePerGBMonth + hc.BootDiskMonthly
		if h.Status == model.StatusRunning {
			monthly += hc.HourlyPrice * catalog.HoursPerMonth
		}
		out.MonthlyNow = catalog.Cents(monthly)
	}
	return out
}

func (s *dashboardSource) Host(ctx context.Context, id string) (tui.HostInfo, error) {
	d, err := s.hosts.Detail(ctx, id)
	if err != nil {
		return tui.HostInfo{}, err
	}
	s.mu.Lock()
	costs := s.costs
	s.mu.Unlock()
	if _, ok := costs[d.ID]; !ok {
		if costs, err = s.monthCosts(ctx, []model.Host{d.Host}); err != nil {
			return tui.HostInfo{}, err
		}
	}
	info := tui.HostInfo{Host: priced(d.Host, costs), Collaborators: d.Collaborators, RecentLog: d.RecentLog, At: s.f.Now()}
	info.Host.Job = d.PendingJob
	if sc := s.stoppedCost(ctx, d.Host, costs[d.ID]); sc != nil {
		info.Stopped = sc
	}
	if d.Agent != nil {
		info.Agent = s.agent(ctx, d.Host, d.Agent)
	}
	return info, nil
}

// stoppedCost is what h costs once off: priced from this process's
// catalog in direct mode, from the server's cost report through one.
func (s *dashboardSource) stoppedCost(ctx context.Context, h model.Host, hc cost.HostCost) *tui.StoppedCost {
	if s.local != nil {
		if sc := s.local.StoppedCost(ctx, h, false); sc != nil {
			t := tui.StoppedCost(*sc)
			return &t
		}
		return nil
	}
	if hc.HostID == "" || (hc.DiskPricePerGBMonth == 0 && hc.BootDiskMonthly == 0) {
		return nil
	}
	src := h.Spec.DiskPriceSource
	if src == "" {
		src = "the server's catalog"
	}
	gb := hc.DiskGB
	if gb <= 0 {
		gb = catalog.DefaultDiskGB
	}
	return &tui.StoppedCost{Monthly: catalog.Cents(float64(gb)*hc.DiskPricePerGBMonth + hc.BootDiskMonthly), DiskGB: gb,
		DiskPricePerGBMonth: hc.DiskPricePerGBMonth, Source: src, BootDiskMonthly: catalog.Cents(hc.BootDiskMonthly)}
}

// agent is what h's agent said of its health (the host service asked
// it); in direct mode this process also asks it for its resources.
func (s *dashboardSource) agent(ctx context.Context, h model.Host, health *hosts.AgentHealth) *tui.Agent {
	a := &tui.Agent{Reachable: health.Reachable, Error: health.Error, LastContact: health.LastContact}
	if st := health.Status; st != nil {
		a.Version, a.Uptime, a.StorageKind = st.Version, st.UptimeSeconds, st.Storage.Kind
		a.DiskFree, a.DiskTotal = st.Storage.FreeBytes, st.Storage.TotalBytes
	}
	if !a.Reachable || s.local == nil {
		return a
	}
	c, err := s.local.AgentClient(ctx, h)
	if err != nil {
		return a
	}
	if r, err := c.Resources(ctx); err == nil {
		a.CPUs, a.GPUs, a.MemTotal, a.MemCommit, a.Running = r.CPUs, r.GPUs, r.MemoryTotalBytes, r.MemoryCommittedBytes, r.RunningProjects
	}
	return a
}

// Usage asks the project service about each project (its host's agent
// answers for its disk; the store for its newest backup).
func (s *dashboardSource) Usage(ctx context.Context, hostID string, ids []string) ([]tui.ProjectUsage, error) {
	c, err := caller(s.f, s.as)
	if err != nil {
		return nil, err
	}
	var out []tui.ProjectUsage
	for _, id := range ids {
		d, err := s.projects.Show(ctx, c, id)
		if err != nil {
			if ctx.Err() != nil {
				return out, err
			}
			continue // one project that cannot be read leaves the others
		}
		if d.Agent == nil && d.AgentError != "" {
			// The projects share a host that does not answer: asking
			// for each would only wait as long again.
			return nil, fmt.Errorf("host of project %s: %s", id, d.AgentError)
		}
		u := tui.ProjectUsage{ID: id, LastBackup: d.Backups.LastBackup}
		if d.Agent != nil && d.Agent.Disk != nil {
			u.DiskUsed, u.Snapshots = d.Agent.Disk.UsedBytes, d.Agent.Disk.Snapshots
		}
		if u.Snapshots > 0 {
			if snaps, err := s.projects.Snapshots(ctx, c, id); err == nil {
				for _, sn := range snaps {
					if u.LastSnapshot == nil || sn.CreatedAt.After(*u.LastSnapshot) {
						t := sn.CreatedAt
						u.LastSnapshot = &t
					}
				}
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// logPage is how many lines of each log the logs view starts with.
const logPage = 200

func (s *dashboardSource) Logs(ctx context.Context, hostID string, after tui.LogCursor) (tui.LogPage, error) {
	page := tui.LogPage{Lines: []tui.LogLine{}, Next: after}
	limit := 0
	if after == (tui.LogCursor{}) {
		limit = logPage
	}
	_, es, err := s.hosts.Log(ctx, hostID, after.VMLog, limit)
	if err != nil {
		return page, err
	}
	for _, e := range es {
		text := fmt.Sprintf("%-8s %s", e.Action, e.Status)
		if e.HostStatus != "" {
			text += " → " + string(e.HostStatus)
		}
		if e.Error != "" {
			text += ": " + e.Error
		}
		page.Lines = append(page.Lines, tui.LogLine{TS: e.TS, Kind: tui.LogVM, Text: text, Error: e.Error != ""})
		page.Next.VMLog = e.ID
	}
	_, bl, err := s.hosts.BootLog(ctx, hostID, after.Boot, limit)
	if err != nil {
		return page, err
	}
	for _, l := range bl.Lines {
		page.Lines = append(page.Lines, tui.LogLine{TS: l.TS, Kind: tui.LogBoot, Text: l.Line})
		page.Next.Boot = max(page.Next.Boot, l.ID)
	}
	slices.SortStableFunc(page.Lines, func(a, b tui.LogLine) int { return a.TS.Compare(b.TS) })
	return page, nil
}

func (s *dashboardSource) Catalog(ctx context.Context) (tui.Catalog, error) {
	res, err := s.ops.SearchCatalog(ctx, catalog.Search{Query: catalog.Query{IncludeUnavailable: true}})
	if err != nil {
		return tui.Catalog{}, err
	}
	out := tui.Catalog{Warnings: res.Warnings, At: s.f.Now()}
	for _, e := range res.Entries {
		out.Machines = append(out.Machines, tui.Machine{
			Provider: e.Provider, Region: e.Region, Zone: e.Zone, Type: e.InstanceType, CPUs: e.VCPUs,
			MemoryGiB: e.MemoryGiB, GPUModel: e.GPUModel, GPUCount: e.GPUCount, HourlyPrice: e.HourlyPrice,
			SpotPrice: e.SpotPrice, DiskGBMonth: res.Disk.ForEntry(e).PerGBMonth, BootMonthly: e.BootDiskMonthly,
			Available: e.Available, Simulated: e.Simulated, DefaultDisk: catalog.DefaultDiskGB, PricingLabel: e.PricingSource,
		})
	}
	return out, nil
}

// Supports every action the dashboard knows.
func (s *dashboardSource) Supports(tui.ActionKind) bool { return true }

func (s *dashboardSource) createRequest(a tui.Action) (hosts.CreateRequest, error) {
	owner, err := s.f.owner()
	if err != nil {
		return hosts.CreateRequest{}, err
	}
	n := a.NewHost
	return hosts.CreateRequest{Name: n.Name, Owner: owner, Provider: n.Provider, Region: n.Region, Zone: n.Zone,
		Spec: model.HostSpec{MachineType: n.Machine, GPUModel: n.GPUModel, GPUCount: n.GPUCount, DiskGB: n.DiskGB, Spot: n.Spot}}, nil
}

func (s *dashboardSource) Preview(ctx context.Context, a tui.Action) (tui.Preview, error) {
	switch a.Kind {
	case tui.HostCreate:
		req, err := s.createRequest(a)
		if err != nil {
			return tui.Preview{}, err
		}
		pl, err := s.hosts.Plan(ctx, req)
		if err != nil {
			return tui.Preview{}, err
		}
		e, c := pl.Estimate, pl.Choice
		lines := []string{
			fmt.Sprintf("a %s %s in %s: %d vCPU, %s GiB%s", c.Provider, c.InstanceType, orDash(where(c.Region, c.Zone)), c.VCPUs, model.FormatGiB(c.MemoryGiB), gpuText(c.GPUCount, c.GPUModel)),
			fmt.Sprintf("$%.4f/hour while it runs: about %s", e.HourlyPrice, estimateText(e)),
			"stopped: " + stoppedText(e),
		}
		if e.Simulated {
			lines = append(lines, "simulated cloud: nothing is billed")
		}
		return tui.Preview{Lines: lines}, nil
	case tui.HostStart:
		h, err := s.hosts.Get(ctx, a.HostID)
		if err != nil {
			return tui.Preview{}, err
		}
		return tui.Preview{Lines: []string{fmt.Sprintf("compute billing resumes: $%.4f/hour (about $%.2f/month while it runs)",
			h.HourlyPrice, catalog.Cents(h.HourlyPrice*catalog.HoursPerMonth))}}, nil
	case tui.HostStop:
		h, err := s.checked(ctx, a.HostID, func(l *hosts.Service) (model.Host, error) { return l.CheckStop(ctx, a.HostID, hosts.StopOptions{}) })
		if err != nil {
			return tui.Preview{}, err
		}
		lines := []string{fmt.Sprintf("compute billing ($%.4f/hour) ends; projects on it stop", h.HourlyPrice)}
		if sc := s.stoppedCost(ctx, h, s.hostCost(ctx, h)); sc != nil {
			lines = append(lines, tui.StoppedLine(*sc, false))
		}
		return tui.Preview{Lines: lines}, nil
	case tui.HostDelete:
		h, err := s.checked(ctx, a.HostID, func(l *hosts.Service) (model.Host, error) { return l.CheckDelete(ctx, a.HostID, hosts.DeleteOptions{}) })
		if err != nil {
			return tui.Preview{}, err
		}
		lines := []string{fmt.Sprintf("deletes host %s on %s: its VM%s", h.Name, h.Provider, instanceText(h))}
		if gb := h.Spec.DiskGB; gb > 0 {
			lines = append(lines, fmt.Sprintf("and its %d GB data disk with everything on it", gb))
		} else {
			lines = append(lines, "and its data disk with everything on it")
		}
		lines = append(lines, fmt.Sprintf("billing for it ends (it costs $%.4f/hour running)", h.HourlyPrice))
		return tui.Preview{Lines: lines, Destroys: true, TypeName: h.Name}, nil
	case tui.HostUpgrade:
		h, err := s.checked(ctx, a.HostID, func(l *hosts.Service) (model.Host, error) { return l.CheckUpgrade(ctx, a.HostID) })
		if err != nil {
			return tui.Preview{}, err
		}
		return tui.Preview{Lines: []string{
			fmt.Sprintf("installs agent %s on %s (now %s) and restarts it", Version, h.Name, orDash(h.Runtime.Meta["agent_version"])),
			"running projects keep running",
		}}, nil
	case tui.ProjectStop, tui.ProjectRestart:
		verb := strings.TrimPrefix(string(a.Kind), "project.")
		return tui.Preview{Lines: []string{
			fmt.Sprintf("%ss the container of project %s: processes running in it end; its files stay", verb, a.ProjectID),
		}}, nil
	case tui.ProjectMove, tui.ProjectClone:
		return s.previewTransfer(ctx, a)
	}
	return tui.Preview{}, fmt.Errorf("%s is not supported here", a.Kind)
}

// checked is host id after check, which refuses early what the action
// would refuse in direct mode; through a server the host is read and the
// server refuses, if it does, when the action is submitted.
func (s *dashboardSource) checked(ctx context.Context, id string, check func(*hosts.Service) (model.Host, error)) (model.Host, error) {
	if s.local != nil {
		return check(s.local)
	}
	return s.hosts.Get(ctx, id)
}

// hostCost is h's row of this month's costs (zero when unknown).
func (s *dashboardSource) hostCost(ctx context.Context, h model.Host) cost.HostCost {
	s.mu.Lock()
	hc, ok := s.costs[h.ID]
	s.mu.Unlock()
	if !ok {
		if costs, err := s.monthCosts(ctx, []model.Host{h}); err == nil {
			hc = costs[h.ID]
		}
	}
	return hc
}

// previewTransfer says where a move or clone goes and how much it copies.
func (s *dashboardSource) previewTransfer(ctx context.Context, a tui.Action) (tui.Preview, error) {
	c, err := caller(s.f, s.as)
	if err != nil {
		return tui.Preview{}, err
	}
	// The destination first: Show asks the project's host for its size,
	// which may take most of the time a slow host is given.
	to, err := s.hosts.Get(ctx, a.ToHostID)
	if err != nil {
		return tui.Preview{}, err
	}
	d, err := s.projects.Show(ctx, c, a.ProjectID)
	if err != nil {
		return tui.Preview{}, err
	}
	size := "its size is unknown (" + orDash(d.AgentError) + ")"
	if used := projectSize(d); used > 0 {
		size = "about " + projects.FormatBytes(used) + " to copy (its home and snapshots)"
	}
	var lines []string
	if a.Kind == tui.ProjectMove {
		lines = []string{fmt.Sprintf("moves project %s: %s → %s", a.Name, d.HostName, to.Name), size}
		if d.State == model.ProjectRunning {
			lines = append(lines, "it keeps running while most is copied, stops for the last copy, and starts on "+to.Name)
		}
		lines = append(lines, "the old copy on "+d.HostName+" is kept frozen for a while, then deleted")
	} else {
		lines = []string{fmt.Sprintf("copies project %s (on %s) to a new project on %s", a.Name, d.HostName, to.Name), size,
			"the new project is yours, with the same image and limits; the original is untouched"}
	}
	return tui.Preview{Lines: lines}, nil
}

// projectSize is the disk a project uses, as its host said (0: unknown).
func projectSize(d projects.Detail) int64 {
	if d.Agent != nil && d.Agent.Disk != nil {
		return d.Agent.Disk.UsedBytes
	}
	return 0
}

// moveSent reads a move's or clone's bytes so far and its planned size
// from its progress message ("…; the move has sent 1.2 GiB of 4.0 GiB,
// about 30s left", or "… (planned 4.0 GiB), finishing").
var moveSent = lazyre.New(`the move has sent ([0-9.]+ [KMGTPE]?i?B)(?: of| \(planned) ([0-9.]+ [KMGTPE]?i?B)`)

// transferProgress adds to the progress of a move or clone the bytes
// sent so far out of its planned size (none said: no bar). Steps without
// bytes (the cut-over) keep the bar where it was.
func transferProgress(progress func(tui.Progress)) func(tui.Progress) {
	var sent, total int64
	return func(p tui.Progress) {
		if m := moveSent().FindStringSubmatch(p.Message); m != nil {
			n, err1 := projects.ParseBytes(m[1])
			t, err2 := projects.ParseBytes(m[2])
			if err1 == nil && err2 == nil {
				sent, total = n, max(t, n)
			}
		}
		if total > 0 {
			p.Bytes, p.Total = sent, total
		}
		progress(p)
	}
}

func where(region, zone string) string {
	if zone != "" && zone != region {
		return zone
	}
	return region
}

func gpuText(n int, m string) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d x %s", n, m)
}

func instanceText(h model.Host) string {
	if h.Runtime.InstanceID == "" {
		return ""
	}
	return " (" + h.Runtime.InstanceID + ")"
}

func (s *dashboardSource) Do(ctx context.Context, a tui.Action, progress func(tui.Progress)) (tui.Outcome, error) {
	if a.Kind == tui.ProjectMove || a.Kind == tui.ProjectClone {
		progress = transferProgress(progress)
	}
	onEvent := func(e queue.Event) {
		p := tui.Progress{Attempt: e.Attempt, Message: e.Message}
		switch e.Kind {
		case queue.EventClaimed:
			p.Message = "started"
		case queue.EventRetry:
			p.Message = fmt.Sprintf("attempt %d failed (%s); retrying at %s", e.Attempt, e.Err, e.Retry.Local().Format("15:04:05"))
		case queue.EventFailed:
			p.Message = "failed: " + e.Err
		case queue.EventLost:
			p.Message = "another worker took the job over"
		case queue.EventDone:
			p.Message = "done"
		}
		if p.Message != "" {
			progress(p)
		}
	}
	if strings.HasPrefix(string(a.Kind), "project.") {
		return s.doProject(ctx, a, onEvent)
	}
	var sub hosts.Submitted
	var err error
	switch a.Kind {
	case tui.HostCreate:
		var req hosts.CreateRequest
		if req, err = s.createRequest(a); err == nil {
			sub, err = s.hosts.Create(ctx, req)
		}
	case tui.HostStart:
		sub, err = s.hosts.Start(ctx, a.HostID)
	case tui.HostStop:
		sub, err = s.hosts.Stop(ctx, a.HostID, hosts.StopOptions{})
	case tui.HostDelete:
		sub, err = s.hosts.Delete(ctx, a.HostID, hosts.DeleteOptions{})
	case tui.HostUpgrade:
		sub, err = s.hosts.Upgrade(ctx, a.HostID)
	default:
		return tui.Outcome{}, fmt.Errorf("%s is not supported here", a.Kind)
	}
	if err != nil {
		return tui.Outcome{}, err
	}
	h := sub.Host
	if sub.Job != nil {
		job, err := runJob(ctx, s.f, *sub.Job, onEvent)
		if err != nil {
			return tui.Outcome{}, err
		}
		if h, err = s.hosts.Get(ctx, h.ID); err != nil {
			return tui.Outcome{}, err
		}
		if job.State == model.JobFailed {
			return tui.Outcome{}, fmt.Errorf("%s of host %s failed after %d attempt(s): %s; see `cocalc-hosts logs %s`",
				job.Action, h.Name, job.Attempts, job.LastError, h.Name)
		}
	}
	out := tui.Outcome{Message: fmt.Sprintf("%s: %s", h.Name, h.Status)}
	if sub.Note != "" {
		out.Message += " (" + sub.Note + ")"
	}
	if a.Kind == tui.HostStop && h.Status == model.StatusOff {
		if sc := s.stoppedCost(ctx, h, s.hostCost(ctx, h)); sc != nil {
			out.Notes = append(out.Notes, h.Name+": "+tui.StoppedLine(*sc, true))
		}
	}
	return out, nil
}

func (s *dashboardSource) doProject(ctx context.Context, a tui.Action, onEvent func(queue.Event)) (tui.Outcome, error) {
	c, err := caller(s.f, s.as)
	if err != nil {
		return tui.Outcome{}, err
	}
	var sub projects.Submitted
	note := ""
	switch a.Kind {
	case tui.ProjectCreate:
		var req projects.CreateRequest
		if req, err = newProjectRequest(a); err == nil {
			sub, err = s.projects.Create(ctx, c, req)
		}
	case tui.ProjectStart:
		sub, err = s.projects.Start(ctx, c, a.ProjectID)
	case tui.ProjectStop:
		sub, err = s.projects.Stop(ctx, c, a.ProjectID)
	case tui.ProjectRestart:
		sub, err = s.projects.Restart(ctx, c, a.ProjectID)
	case tui.ProjectSnapshot:
		var name string
		sub, name, err = s.projects.Snapshot(ctx, c, a.ProjectID, "")
		note = "snapshot " + name
	case tui.ProjectMove:
		sub, _, err = s.projects.Move(ctx, c, projects.MoveRequest{Project: a.ProjectID, To: a.ToHostID})
	case tui.ProjectClone:
		var mv model.Move
		sub, mv, err = s.projects.Clone(ctx, c, projects.CloneRequest{Project: a.ProjectID, To: a.ToHostID})
		note = "a copy of " + mv.ProjectID
	case tui.ProjectBackup:
		sub, err = s.backups.StartBackup(ctx, c, a.ProjectID)
	default:
		return tui.Outcome{}, fmt.Errorf("%s is not supported here", a.Kind)
	}
	if err != nil {
		return tui.Outcome{}, err
	}
	p := sub.Project
	if sub.Job != nil {
		job, err := runJob(ctx, s.f, *sub.Job, onEvent)
		if err != nil {
			return tui.Outcome{}, err
		}
		if got, err := s.projects.Get(ctx, c, p.ID); err == nil {
			p = got
		} else if errkind.Is(err, errkind.NotFound) {
			p.State = model.ProjectDeleted
		}
		if job.State == model.JobFailed {
			return tui.Outcome{}, fmt.Errorf("%s of project %s failed after %d attempt(s): %s",
				strings.TrimPrefix(string(job.Action), "project."), p.ID, job.Attempts, job.LastError)
		}
	}
	name := p.ID
	if p.Title != "" {
		name = p.Title + " (" + p.ID + ")"
	}
	out := tui.Outcome{Message: fmt.Sprintf("project %s: %s", name, p.State), Notes: sub.Warnings}
	switch a.Kind {
	case tui.ProjectMove, tui.ProjectClone:
		if h, err := s.hosts.Get(ctx, p.HostID); err == nil {
			out.Message += " on " + h.Name
		}
	case tui.ProjectBackup:
		note = s.newestBackup(ctx, c, p.ID)
	}
	if note != "" {
		out.Message += " (" + note + ")"
	}
	return out, nil
}

// newestBackup describes project id's newest backup: what a backup made
// from the dashboard shows when it ends.
func (s *dashboardSource) newestBackup(ctx context.Context, c projects.Caller, id string) string {
	bs, err := s.backups.Backups(ctx, c, id)
	if err != nil || len(bs) == 0 {
		return "backed up"
	}
	b := bs[len(bs)-1]
	return fmt.Sprintf("backup %s: %d files, %s, %s added", b.ShortID, b.Files, projects.FormatBytes(b.Bytes), projects.FormatBytes(b.BytesAdded))
}

// newProjectRequest checks the create-project form as `project create`
// checks its flags.
func newProjectRequest(a tui.Action) (projects.CreateRequest, error) {
	n := a.NewProject
	req := projects.CreateRequest{Host: a.HostID, Title: n.Title, Start: n.Start}
	var err error
	if n.Memory != "" {
		if req.Limits.MemoryBytes, err = projects.ParseBytes(n.Memory); err != nil || req.Limits.MemoryBytes == 0 {
			return req, usagef("memory %q: give a size such as 512M or 2G", n.Memory)
		}
	}
	if n.Disk != "" {
		if req.Limits.DiskBytes, err = projects.ParseBytes(n.Disk); err != nil || req.Limits.DiskBytes == 0 {
			return req, usagef("disk %q: give a size such as 2G or 10G", n.Disk)
		}
	}
	if n.CPUs != "" {
		if req.Limits.CPUs, err = strconv.ParseFloat(n.CPUs, 64); err != nil || req.Limits.CPUs <= 0 {
			return req, usagef("cpus %q: give a number of cores such as 1 or 1.5", n.CPUs)
		}
	}
	return req, nil
}

func (s *dashboardSource) Shell(ctx context.Context, id string) (tui.Command, error) {
	c, err := caller(s.f, s.as)
	if err != nil {
		return nil, err
	}
	// The stored record (what the screen shows), not the host's live
	// state: a slow host must not keep the shell from opening; if the
	// project is not running there after all, the shell says so.
	p, err := s.projects.Get(ctx, c, id)
	if err != nil {
		return nil, err
	}
	if p.State != model.ProjectRunning {
		return nil, fmt.Errorf("project %s is %s; start it first", id, p.State)
	}
	// The shell lives as long as the user keeps it open: not bound to
	// the lookup's deadline.
	return &dashboardShell{ctx: s.ctx, s: s, project: id}, nil
}

// Changes forwards the committed changes to the hosts, projects and
// jobs the caller may see (the Watcher: the database's notifications
// directly, the server's event stream through one) with their rows, in
// batches: the changes that came while the dashboard was busy go in its
// next one, so the watch never waits for the screen. The rows a watch
// starts with are not changes; a Live change follows them. The watch
// itself catches up after missed notifications or a broken stream (it
// reads the topics again and sends what differs), so the dashboard need
// not. Should the watch end, the channel closes and the dashboard polls
// every --refresh.
func (s *dashboardSource) Changes(ctx context.Context) <-chan []tui.Change {
	w, err := s.f.Watcher()
	if err != nil {
		return nil
	}
	c, err := caller(s.f, s.as)
	if err != nil {
		return nil
	}
	topics := store.Topics
	var mu sync.Mutex
	var pending []tui.Change
	kick := make(chan struct{}, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		synced := 0
		w.Watch(ctx, c, topics, func(e store.Event) error { //nolint:errcheck // polling goes on without it
			if e.Sync {
				synced++
			}
			var c tui.Change
			switch {
			case synced < len(topics):
				return nil // the rows the watch starts with
			case e.Sync:
				c = tui.Change{Live: true} // it has them all: changes from here on
			default:
				c = s.change(e)
			}
			mu.Lock()
			pending = append(pending, c)
			mu.Unlock()
			select {
			case kick <- struct{}{}:
			default: // a batch is already due
			}
			return nil
		})
	}()
	out := make(chan []tui.Change)
	go func() {
		defer close(out)
		for {
			select {
			case <-kick:
			case <-ended:
				return
			}
			mu.Lock()
			batch := pending
			pending = nil
			mu.Unlock()
			select {
			case out <- batch:
			case <-ended:
				return
			}
		}
	}()
	return out
}

// change is a watch's event as the dashboard takes it: a host priced
// with the costs of the last read.
func (s *dashboardSource) change(e store.Event) tui.Change {
	switch {
	case e.Host != nil:
		s.mu.Lock()
		h := priced(*e.Host, s.costs)
		s.mu.Unlock()
		return tui.Change{Host: &h}
	case e.Project != nil:
		return tui.Change{Project: e.Project}
	case e.Job != nil:
		return tui.Change{Job: e.Job}
	case e.Topic == store.TopicHosts:
		return tui.Change{GoneHost: e.ID}
	case e.Topic == store.TopicProjects:
		return tui.Change{GoneProject: e.ID}
	}
	return tui.Change{GoneJob: e.ID}
}

// dashboardShell is `project shell` run by the dashboard on its terminal.
type dashboardShell struct {
	ctx     context.Context
	s       *dashboardSource
	project string
	in      io.Reader
	out     io.Writer
}

func (c *dashboardShell) SetStdin(r io.Reader)  { c.in = r }
func (c *dashboardShell) SetStdout(w io.Writer) { c.out = w }
func (c *dashboardShell) SetStderr(io.Writer)   {}

func (c *dashboardShell) Run() error {
	in, ok1 := c.in.(*os.File)
	out, ok2 := c.out.(*os.File)
	if !ok1 || !ok2 {
		return errors.New("a project shell needs the terminal")
	}
	code, err := projectShell(c.ctx, c.s.f, c.s.as, c.project, in, out)
	if err == nil && code != 0 {
		return fmt.Errorf("shell exited with status %d", code)
	}
	return err
}
