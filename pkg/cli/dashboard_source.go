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
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tui"
)

// dashboardSource is the dashboard's view of the state database, the
// host and project services and the queue (direct mode). Actions are
// queued and worked in this process, as the CLI verbs do.
type dashboardSource struct {
	// ctx is the dashboard's: actions and shells live as long as it.
	ctx  context.Context
	f    *Factory
	svc  *hosts.Service
	ps   *projects.Service
	cost *cost.Service
	ops  OpsService
	as   *asFlag

	mu sync.Mutex
	// logs caches cloud_vm_log by host (read incrementally after
	// logAfter), for month-to-date costs without re-reading the log.
	logs     map[string][]model.LogEntry
	logAfter int64
	rates    map[string]cost.Rates
}

var _ tui.Source = (*dashboardSource)(nil)

func newDashboardSource(ctx context.Context, f *Factory) (*dashboardSource, error) {
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	svc, err := a.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	ps, err := a.Projects(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := a.Cost(ctx)
	if err != nil {
		return nil, err
	}
	return &dashboardSource{ctx: ctx, f: f, svc: svc, ps: ps, cost: cs, ops: a.Ops(), as: &asFlag{},
		logs: map[string][]model.LogEntry{}, rates: map[string]cost.Rates{}}, nil
}

func (s *dashboardSource) st() store.Store { return s.svc.Store }

// Fleet reads every live host and project. In direct mode the database
// is the trust boundary, so, like `list`, it shows everything.
func (s *dashboardSource) Fleet(ctx context.Context) (tui.Fleet, error) {
	hs, err := s.st().ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return tui.Fleet{}, err
	}
	ps, err := s.st().ListProjects(ctx, store.ProjectFilter{})
	if err != nil {
		return tui.Fleet{}, err
	}
	jobs, err := s.st().ListJobs(ctx, store.JobFilter{Subject: model.Subject{Kind: model.SubjectHost}, ActiveOnly: true})
	if err != nil {
		return tui.Fleet{}, err
	}
	if err := s.readLog(ctx); err != nil {
		return tui.Fleet{}, err
	}
	active := make(map[string]*model.Job, len(jobs))
	for i := range jobs {
		active[jobs[i].Subject.ID] = &jobs[i]
	}
	now := s.f.Now()
	out := tui.Fleet{Hosts: make([]tui.Host, len(hs)), Projects: ps, At: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range hs {
		out.Hosts[i] = s.priced(ctx, h, s.logs[h.ID], now)
		out.Hosts[i].Job = active[h.ID]
	}
	if out.Projects == nil {
		out.Projects = []model.Project{}
	}
	return out, nil
}

// readLog appends the log entries written since the last read.
func (s *dashboardSource) readLog(ctx context.Context) error {
	s.mu.Lock()
	after := s.logAfter
	s.mu.Unlock()
	es, err := s.st().ListLog(ctx, store.LogFilter{AfterID: after})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		if e.ID > s.logAfter {
			s.logs[e.HostID] = append(s.logs[e.HostID], e)
			s.logAfter = e.ID
		}
	}
	return nil
}

// priced adds h's month-to-date cost and its current monthly rate, from
// its log (as `cost` computes them). Callers hold s.mu.
func (s *dashboardSource) priced(ctx context.Context, h model.Host, log []model.LogEntry, now time.Time) tui.Host {
	r, ok := s.rates[h.ID]
	if !ok {
		r = s.cost.RatesFor(ctx, h)
		s.rates[h.ID] = r
	}
	rows := cost.Segments(h, log, r, now)
	y, m, _ := now.UTC().Date()
	month := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	return tui.Host{Host: h, MonthToDate: catalog.Cents(cost.Window(rows, month, now).Total),
		MonthlyNow: cost.MonthlyNow(rows, r, now)}
}

func (s *dashboardSource) Host(ctx context.Context, id string) (tui.HostInfo, error) {
	h, err := s.st().GetHost(ctx, id)
	if err != nil {
		return tui.HostInfo{}, err
	}
	log, err := s.st().ListLog(ctx, store.LogFilter{HostID: h.ID})
	if err != nil {
		return tui.HostInfo{}, err
	}
	now := s.f.Now()
	s.mu.Lock()
	info := tui.HostInfo{Host: s.priced(ctx, h, log, now), Collaborators: []string{}, At: now}
	s.mu.Unlock()
	if n := len(log); n > 8 {
		info.RecentLog = log[n-8:]
	} else {
		info.RecentLog = log
	}
	if jobs, err := s.st().ListJobs(ctx, store.JobFilter{Subject: model.HostSubject(h.ID), ActiveOnly: true}); err == nil && len(jobs) > 0 {
		info.Host.Job = &jobs[0]
	}
	if c, err := s.st().ListCollaborators(ctx, h.ID); err == nil && c != nil {
		info.Collaborators = c
	}
	if sc := stoppedCostOn(ctx, s.svc, h, false); sc != nil {
		t := tui.StoppedCost(*sc)
		info.Stopped = &t
	}
	if h.Status == model.StatusRunning {
		info.Agent = s.agent(ctx, h)
	}
	return info, nil
}

// agent asks h's agent for its health and headroom.
func (s *dashboardSource) agent(ctx context.Context, h model.Host) *tui.Agent {
	health := s.f.hostAgentHealth(ctx, h)
	if health == nil {
		return nil
	}
	a := &tui.Agent{Reachable: health.Reachable, Error: health.Error, LastContact: health.LastContact}
	if st := health.Status; st != nil {
		a.Version, a.Uptime, a.StorageKind = st.Version, st.UptimeSeconds, st.Storage.Kind
		a.DiskFree, a.DiskTotal = st.Storage.FreeBytes, st.Storage.TotalBytes
	}
	if !a.Reachable {
		return a
	}
	c, err := s.svc.AgentClient(ctx, h)
	if err != nil {
		return a
	}
	if r, err := c.Resources(ctx); err == nil {
		a.CPUs, a.GPUs, a.MemTotal, a.MemCommit, a.Running = r.CPUs, r.GPUs, r.MemoryTotalBytes, r.MemoryCommittedBytes, r.RunningProjects
	}
	return a
}

func (s *dashboardSource) Usage(ctx context.Context, hostID string, ids []string) ([]tui.ProjectUsage, error) {
	h, err := s.st().GetHost(ctx, hostID)
	if err != nil {
		return nil, err
	}
	c, err := s.svc.AgentClient(ctx, h)
	if err != nil {
		return nil, err
	}
	all, err := c.Projects(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent of %s: %w", h.Name, err)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []tui.ProjectUsage
	for _, p := range all {
		if !want[p.ID] || p.Disk == nil {
			continue
		}
		u := tui.ProjectUsage{ID: p.ID, DiskUsed: p.Disk.UsedBytes, Snapshots: p.Disk.Snapshots}
		if p.Disk.Snapshots > 0 {
			if snaps, err := c.Snapshots(ctx, p.ID); err == nil {
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
	es, err := s.st().ListLog(ctx, store.LogFilter{HostID: hostID, AfterID: after.VMLog, Limit: limit})
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
	bl, err := s.st().ListBootLog(ctx, store.BootLogFilter{HostID: hostID, AfterID: after.Boot, Limit: limit})
	if err != nil {
		return page, err
	}
	for _, l := range bl {
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

// Supports every action but project moves and backups (issue 11): once
// they exist, Preview and Do gain their cases and this says yes.
func (s *dashboardSource) Supports(k tui.ActionKind) bool {
	return k != tui.ProjectMove && k != tui.ProjectBackup
}

func (s *dashboardSource) createRequest(a tui.Action) (hosts.CreateRequest, error) {
	cfg, err := s.f.Config()
	if err != nil {
		return hosts.CreateRequest{}, err
	}
	n := a.NewHost
	return hosts.CreateRequest{Name: n.Name, Owner: cfg.Account, Provider: n.Provider, Region: n.Region, Zone: n.Zone,
		Spec: model.HostSpec{MachineType: n.Machine, GPUModel: n.GPUModel, GPUCount: n.GPUCount, DiskGB: n.DiskGB, Spot: n.Spot}}, nil
}

func (s *dashboardSource) Preview(ctx context.Context, a tui.Action) (tui.Preview, error) {
	switch a.Kind {
	case tui.HostCreate:
		req, err := s.createRequest(a)
		if err != nil {
			return tui.Preview{}, err
		}
		pl, err := s.svc.Plan(ctx, req)
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
		h, err := s.svc.Get(ctx, a.HostID)
		if err != nil {
			return tui.Preview{}, err
		}
		return tui.Preview{Lines: []string{fmt.Sprintf("compute billing resumes: $%.4f/hour (about $%.2f/month while it runs)",
			h.HourlyPrice, catalog.Cents(h.HourlyPrice*catalog.HoursPerMonth))}}, nil
	case tui.HostStop:
		h, err := s.svc.CheckStop(ctx, a.HostID, hosts.StopOptions{})
		if err != nil {
			return tui.Preview{}, err
		}
		lines := []string{fmt.Sprintf("compute billing ($%.4f/hour) ends; projects on it stop", h.HourlyPrice)}
		if sc := stoppedCostOn(ctx, s.svc, h, false); sc != nil {
			lines = append(lines, tui.StoppedLine(tui.StoppedCost(*sc), false))
		}
		return tui.Preview{Lines: lines}, nil
	case tui.HostDelete:
		h, err := s.svc.CheckDelete(ctx, a.HostID, hosts.DeleteOptions{})
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
		h, err := s.svc.CheckUpgrade(ctx, a.HostID)
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
	}
	return tui.Preview{}, fmt.Errorf("%s is not supported here", a.Kind)
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
			sub, err = s.svc.Create(ctx, req)
		}
	case tui.HostStart:
		sub, err = s.svc.Start(ctx, a.HostID)
	case tui.HostStop:
		sub, err = s.svc.Stop(ctx, a.HostID, hosts.StopOptions{})
	case tui.HostDelete:
		sub, err = s.svc.Delete(ctx, a.HostID, hosts.DeleteOptions{})
	case tui.HostUpgrade:
		sub, err = s.svc.Upgrade(ctx, a.HostID)
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
		if h, err = s.st().GetHost(ctx, h.ID); err != nil {
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
		if sc := stoppedCostOn(ctx, s.svc, h, false); sc != nil {
			out.Notes = append(out.Notes, h.Name+": "+tui.StoppedLine(tui.StoppedCost(*sc), true))
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
			sub, err = s.ps.Create(ctx, c, req)
		}
	case tui.ProjectStart:
		sub, err = s.ps.Start(ctx, c, a.ProjectID)
	case tui.ProjectStop:
		sub, err = s.ps.Stop(ctx, c, a.ProjectID)
	case tui.ProjectRestart:
		sub, err = s.ps.Restart(ctx, c, a.ProjectID)
	case tui.ProjectSnapshot:
		var name string
		sub, name, err = s.ps.Snapshot(ctx, c, a.ProjectID, "")
		note = "snapshot " + name
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
		if got, err := s.st().GetProject(ctx, p.ID); err == nil {
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
	if note != "" {
		out.Message += " (" + note + ")"
	}
	return out, nil
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
	d, err := s.ps.Show(ctx, c, id)
	if err != nil {
		return nil, err
	}
	if d.State != model.ProjectRunning {
		return nil, fmt.Errorf("project %s is %s; start it first", id, d.State)
	}
	// The shell lives as long as the user keeps it open: not bound to
	// the lookup's deadline.
	return &dashboardShell{ctx: s.ctx, s: s, project: id}, nil
}

// Changes forwards the store's committed changes to hosts, projects and
// jobs (Postgres LISTEN/NOTIFY; SQLite polls its data version), folded
// into one pending signal: the dashboard re-reads on each.
func (s *dashboardSource) Changes(ctx context.Context) <-chan struct{} {
	in := s.st().Subscribe(ctx)
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for range in {
			select {
			case out <- struct{}{}:
			default: // one re-read is already due
			}
		}
	}()
	return out
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
