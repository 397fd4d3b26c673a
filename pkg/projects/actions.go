package projects

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Smallest limits a project can run with.
const (
	MinMemoryBytes = 32 << 20
	MinDiskBytes   = 16 << 20
	MinCPUs        = 0.01
	MinPids        = 16
)

// CreateRequest asks for a new project.
type CreateRequest struct {
	Host  string
	Title string
	// Image defaults to DefaultImage.
	Image string
	// Limits: zero fields take Defaults.
	Limits model.ProjectLimits
	// IdleTimeout defaults to DefaultIdleTimeout; 0 never stops it.
	IdleTimeout *time.Duration
	// Start starts the project once it is made.
	Start bool
}

func (s *Service) client(ctx context.Context, h model.Host) (*agentapi.Client, error) {
	return s.Agents.AgentClient(ctx, h)
}

// Create validates req, checks that the caller may place a project on the
// host and that the host has room for it, records the project and queues
// its creation. Nothing is written when a check fails.
func (s *Service) Create(ctx context.Context, c Caller, req CreateRequest) (Submitted, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return Submitted{}, err
	}
	if req.Host == "" {
		return Submitted{}, invalid("a project needs a host: give --host HOST (see `cocalc-hosts list`)")
	}
	if len(req.Title) > 200 || strings.ContainsAny(req.Title, "\n\r\x00") {
		return Submitted{}, invalid("title must be one line of at most 200 characters")
	}
	l := req.Limits
	if l.MemoryBytes == 0 {
		l.MemoryBytes = Defaults.MemoryBytes
	}
	if l.CPUs == 0 {
		l.CPUs = Defaults.CPUs
	}
	if l.PidsLimit == 0 {
		l.PidsLimit = Defaults.PidsLimit
	}
	if l.DiskBytes == 0 {
		l.DiskBytes = Defaults.DiskBytes
	}
	if err := checkLimits(l); err != nil {
		return Submitted{}, err
	}
	idle := DefaultIdleTimeout
	if req.IdleTimeout != nil {
		idle = *req.IdleTimeout
	}
	if idle < 0 || (idle > 0 && idle < time.Second) {
		return Submitted{}, invalid("--idle-timeout %s: use 0 (never) or at least 1s", idle)
	}
	image := req.Image
	if image == "" {
		image = DefaultImage
	}
	if !agentapi.ValidImageName(image) {
		return Submitted{}, invalid("invalid image name %q: use a name such as %s or docker.io/library/debian:bookworm", image, DefaultImage)
	}
	h, err := s.liveHost(ctx, req.Host)
	if err != nil {
		return Submitted{}, err
	}
	ok, err := s.mayPlace(ctx, a, h)
	if err != nil {
		return Submitted{}, err
	}
	if !ok {
		return Submitted{}, refused("%s may not place projects on host %s (owned by %s): ask its owner to run `cocalc-hosts collaborators add %s %s`, or choose a host you own, collaborate on, or from the shared pool",
			a.ID, h.Name, h.Owner, h.Name, a.ID)
	}
	client, err := s.client(ctx, h)
	if err != nil {
		return Submitted{}, err
	}
	p := model.Project{
		ID: uuid.NewString(), Title: req.Title, Owner: a.ID, HostID: h.ID, Image: image, Limits: l,
		IdleTimeoutSeconds: int64(idle / time.Second), State: model.ProjectCreating,
		LastAction: string(model.ActionProjectCreate),
	}
	hc, err := s.checkHeadroom(ctx, client, h, p, true)
	if err != nil {
		return Submitted{}, err
	}
	var warnings []string
	if !suggested(image) {
		names := make([]string, len(SuggestedImages))
		for i, im := range SuggestedImages {
			names[i] = im.Name
		}
		warnings = append(warnings, fmt.Sprintf("image %s is not one of the suggested images (%s): it needs /bin/sh and sleep to run as a project, and may lack what projects need",
			image, strings.Join(names, ", ")))
	}
	info, err := client.Image(ctx, image)
	if err != nil {
		return Submitted{}, hostErr(h, err)
	}
	if !info.Present {
		if localOnly(image) {
			return Submitted{}, errkind.Errorf(errkind.NotFound, "image %s is not on host %s and has no registry to pull it from: build it with `cocalc-hosts image build %s --host %s`, or give a full registry name such as docker.io/library/debian:bookworm",
				image, h.Name, strings.TrimPrefix(image, "localhost/"), h.Name)
		}
		warnings = append(warnings, fmt.Sprintf("image %s is not on host %s yet; it will be pulled from its registry", image, h.Name))
	}
	now := s.Now()
	p.CreatedAt, p.UpdatedAt = now, now
	// The disk check is made again in the insert's transaction, so two
	// creates at once cannot both take the host's last room.
	// The project and its create job commit together: a project without
	// its job would stay creating forever.
	var noRoom *store.NoRoomError
	job, err := s.Store.CreateProjectWithin(ctx, store.NewProject{Project: p, DiskCap: hc.disk,
		Job: s.newJob(p, model.ActionProjectCreate, payload{Start: req.Start, By: a.By})})
	if errors.As(err, &noRoom) {
		return Submitted{}, noDiskRoom(h, noRoom, l.DiskBytes)
	} else if err != nil {
		return Submitted{}, err
	}
	return Submitted{Project: p, Job: &job, Warnings: warnings}, nil
}

func checkLimits(l model.ProjectLimits) error {
	switch {
	case l.MemoryBytes < MinMemoryBytes:
		return invalid("--memory %s is too small: a project needs at least %s", FormatBytes(l.MemoryBytes), FormatBytes(MinMemoryBytes))
	case l.DiskBytes < MinDiskBytes:
		return invalid("--disk %s is too small: a project needs at least %s", FormatBytes(l.DiskBytes), FormatBytes(MinDiskBytes))
	case l.CPUs < MinCPUs:
		return invalid("--cpus %g is too small: use at least %g", l.CPUs, MinCPUs)
	case l.PidsLimit < MinPids:
		return invalid("--pids %d is too small: use at least %d", l.PidsLimit, MinPids)
	}
	return nil
}

// localOnly reports whether image can only come from the host itself (a
// short name or localhost/...): pulling it would ask registries chosen by
// the host's configuration, or none.
func localOnly(image string) bool {
	return !strings.Contains(image, "/") || strings.HasPrefix(image, "localhost/")
}

// caps are what all projects of a host may be promised together.
type caps struct {
	// disk, when creating, is enforced by the store when it inserts the
	// project (math.MaxInt64 without quotas).
	disk int64
	// memory is the cap on running projects' memory limits, which the
	// agent enforces in one step with a start.
	memory int64
}

// checkHeadroom refuses limits the host cannot have at all (bad input) and
// projects the host has no room for now (refused), and returns the host's
// caps (the disk cap only when creating).
func (s *Service) checkHeadroom(ctx context.Context, client *agentapi.Client, h model.Host, p model.Project, creating bool) (caps, error) {
	// What the agent knows of its running projects costs it no podman
	// command (a start waits on this).
	res, err := client.KnownResources(ctx)
	if err != nil {
		return caps{}, hostErr(h, err)
	}
	l := p.Limits
	// Memory: the limits of the running projects plus this one must fit.
	// A project that runs already holds its share.
	memCap := int64(float64(res.MemoryTotalBytes) * s.MemoryOvercommit)
	committed := func() int64 { return res.MemoryCommittedBytes - res.RunningMemory[p.ID] }
	if committed()+l.MemoryBytes > memCap {
		// The agent's knowledge may count a project that exited by
		// itself since: refuse only on what runs now.
		if res, err = client.Resources(ctx); err != nil {
			return caps{}, hostErr(h, err)
		}
	}
	if l.MemoryBytes > res.MemoryTotalBytes {
		return caps{}, invalid("--memory %s is more than host %s has (%s)", FormatBytes(l.MemoryBytes), h.Name, FormatBytes(res.MemoryTotalBytes))
	}
	if l.CPUs > float64(res.CPUs) {
		return caps{}, invalid("--cpus %g is more than host %s has (%d)", l.CPUs, h.Name, res.CPUs)
	}
	if l.DiskBytes > int64(res.Storage.TotalBytes) {
		return caps{}, invalid("--disk %s is more than host %s has (%s); ask for less --disk, or use a host made with a bigger disk (`cocalc-hosts create … --disk GB`)", FormatBytes(l.DiskBytes), h.Name, FormatBytes(int64(res.Storage.TotalBytes)))
	}
	if committed()+l.MemoryBytes > memCap {
		return caps{}, refused("host %s has no memory headroom: %s of %s is promised to %d running project(s) and this one needs %s; stop a project, ask for less --memory, or use another host",
			h.Name, FormatBytes(committed()), FormatBytes(memCap), res.RunningProjects, FormatBytes(l.MemoryBytes))
	}
	if !creating {
		return caps{memory: memCap}, nil
	}
	// Disk: quotas are promises of space, so all of them (also of stopped
	// and deleted-but-not-purged projects, whose data stays) must fit.
	if !res.Quotas {
		if l.DiskBytes > int64(res.Storage.FreeBytes) {
			return caps{}, refused("host %s has %s free and this project asks for %s", h.Name, FormatBytes(int64(res.Storage.FreeBytes)), FormatBytes(l.DiskBytes))
		}
		return caps{disk: math.MaxInt64, memory: memCap}, nil
	}
	return caps{disk: int64(float64(res.Storage.TotalBytes) * s.DiskOvercommit), memory: memCap}, nil
}

// noDiskRoom explains a create refused because the host's disk is promised.
func noDiskRoom(h model.Host, e *store.NoRoomError, asked int64) error {
	return refused("host %s has no disk headroom: %s of %s is promised to %d project(s) and this one asks for %s; ask for less --disk, purge projects (`cocalc-hosts project delete ID --purge`), or use another host",
		h.Name, FormatBytes(e.Promised), FormatBytes(e.Cap), e.Projects, FormatBytes(asked))
}

// hostErr explains an error from host h's agent: one that does not answer
// (the host stopped by itself, or crashed) or an error reply.
func hostErr(h model.Host, err error) error {
	var ae *agentapi.Error
	if !errors.As(err, &ae) && isConnErr(err) {
		return fmt.Errorf("host %s does not answer (%v); see `cocalc-hosts show %s` (`cocalc-hosts reconcile` notices a host that stopped)", h.Name, err, h.Name)
	}
	return agentErr(err)
}

func isConnErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// agentErr turns an agent's error reply into the control plane's errors.
func agentErr(err error) error {
	var ae *agentapi.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case agentapi.CodeInvalid:
		return invalid("%s", ae.Message)
	case agentapi.CodeNotFound:
		return errkind.New(errkind.NotFound, ae.Message)
	case agentapi.CodeNotRunning, agentapi.CodeUnsupported, agentapi.CodeNoRoom:
		return refused("%s", ae.Message)
	case agentapi.CodeConflict:
		return errkind.New(errkind.Conflict, ae.Message)
	}
	return err
}

// hostOf returns a project's host, refusing when it is not running with a
// pointer to starting it.
func (s *Service) hostOf(ctx context.Context, p model.Project, what string) (model.Host, error) {
	h, err := s.Store.GetHost(ctx, p.HostID)
	if err != nil {
		return h, err
	}
	if h.DeletedAt != nil {
		return h, refused("project %s is on host %s, which was deleted", p.ID, h.Name)
	}
	if h.Status != model.StatusRunning {
		return h, refused("cannot %s project %s: its host %s is %s; start the host with `cocalc-hosts start %s`",
			what, p.ID, h.Name, h.Status, h.Name)
	}
	return h, nil
}

// live returns a project that is not deleted.
func (s *Service) live(ctx context.Context, a actor, id string) (model.Project, error) {
	p, err := s.project(ctx, a, id)
	if err != nil {
		return p, err
	}
	if p.DeletedAt != nil {
		return p, errkind.Errorf(errkind.NotFound, "project %s was deleted (purge it with `cocalc-hosts project delete %s --purge`)", id, id)
	}
	return p, nil
}

// Start queues starting a project.
func (s *Service) Start(ctx context.Context, c Caller, id string) (Submitted, error) {
	return s.lifecycle(ctx, c, id, model.ActionProjectStart, "start")
}

// Stop queues stopping a project.
func (s *Service) Stop(ctx context.Context, c Caller, id string) (Submitted, error) {
	return s.lifecycle(ctx, c, id, model.ActionProjectStop, "stop")
}

// Restart queues stopping and starting a project.
func (s *Service) Restart(ctx context.Context, c Caller, id string) (Submitted, error) {
	return s.lifecycle(ctx, c, id, model.ActionProjectRestart, "restart")
}

func (s *Service) lifecycle(ctx context.Context, c Caller, id string, action model.Action, what string) (Submitted, error) {
	a, p, err := s.liveFor(ctx, c, id)
	if err != nil {
		return Submitted{}, err
	}
	if p.State == model.ProjectCreating {
		return Submitted{}, refused("project %s is still being created; wait for it (`cocalc-hosts worker --drain`)", id)
	}
	h, err := s.hostOf(ctx, p, what)
	if err != nil {
		return Submitted{}, err
	}
	if action != model.ActionProjectStop {
		client, err := s.client(ctx, h)
		if err != nil {
			return Submitted{}, err
		}
		if _, err := s.checkHeadroom(ctx, client, h, p, false); err != nil {
			return Submitted{}, err
		}
	}
	return s.enqueue(ctx, p, action, payload{By: a.By})
}

// Delete queues deleting a project: it is stopped and hidden, its data
// kept on the host; with purge its home, snapshots and scratch are
// destroyed and its record removed.
func (s *Service) Delete(ctx context.Context, c Caller, id string, purge bool) (Submitted, error) {
	a, p, err := s.projectFor(ctx, c, id)
	if err != nil {
		return Submitted{}, err
	}
	if p.DeletedAt != nil && !purge {
		return Submitted{Project: p, Note: "already deleted; add --purge to destroy its data"}, nil
	}
	if h, err := s.Store.GetHost(ctx, p.HostID); err == nil && (h.DeletedAt != nil || h.Status == model.StatusDeprovisioned) {
		// The project's files went with its host: only the record is left.
		if !purge {
			return Submitted{}, refused("project %s was on host %s, which was deleted with its files; remove the record with --purge", p.ID, h.Name)
		}
		br, err := s.purgeBackups(ctx, nil, p)
		if err != nil {
			return Submitted{}, err
		}
		if err := s.Store.PurgeProject(ctx, p.ID); err != nil {
			return Submitted{}, err
		}
		p.State = model.ProjectDeleted
		return Submitted{Project: p, Note: "its host " + h.Name + " was deleted with its files; the record is removed; backups: " + br.String()}, nil
	}
	if _, err := s.hostOf(ctx, p, "delete"); err != nil {
		return Submitted{}, err
	}
	return s.enqueue(ctx, p, model.ActionProjectDelete, payload{Purge: purge, By: a.By})
}

// Snapshot queues a snapshot of a project's home; an empty name gets one
// from the time. It returns the name.
func (s *Service) Snapshot(ctx context.Context, c Caller, id, name string) (Submitted, string, error) {
	if name == "" {
		name = "snap-" + s.Now().UTC().Format("20060102T150405Z")
	}
	if err := storage.CheckSnapshotName(name); err != nil {
		return Submitted{}, "", invalid("%v", strings.TrimSuffix(err.Error(), ": "+storage.ErrInvalid.Error()))
	}
	if strings.HasPrefix(name, storage.AutoPrefix) || strings.HasPrefix(name, "pre-restore-") {
		return Submitted{}, "", invalid("snapshot names starting with %q or %q are reserved", storage.AutoPrefix, "pre-restore-")
	}
	a, p, err := s.liveFor(ctx, c, id)
	if err != nil {
		return Submitted{}, "", err
	}
	h, err := s.hostOf(ctx, p, "snapshot")
	if err != nil {
		return Submitted{}, "", err
	}
	if err := s.needSnapshots(ctx, h); err != nil {
		return Submitted{}, "", err
	}
	// A name already taken is refused here, so that the job, finding its
	// snapshot made, knows an earlier attempt of its own made it.
	if taken, err := s.snapshotExists(ctx, h, p.ID, name); err != nil {
		return Submitted{}, "", err
	} else if taken {
		return Submitted{}, "", errkind.Errorf(errkind.Conflict, "project %s already has a snapshot %s; choose another --name (`cocalc-hosts project snapshots %s` lists them)", p.ID, name, p.ID)
	}
	sub, err := s.enqueue(ctx, p, model.ActionProjectSnapshot, payload{Snapshot: name, By: a.By})
	return sub, name, err
}

// snapshotExists reports whether project id has a snapshot named name on h.
func (s *Service) snapshotExists(ctx context.Context, h model.Host, id, name string) (bool, error) {
	client, err := s.client(ctx, h)
	if err != nil {
		return false, err
	}
	snaps, err := client.Snapshots(ctx, id)
	if agentCode(err) == agentapi.CodeNotFound {
		return false, nil // not made yet: the queue says why
	}
	if err != nil {
		return false, hostErr(h, err)
	}
	for _, sn := range snaps {
		if sn.Name == name {
			return true, nil
		}
	}
	return false, nil
}

func (s *Service) needSnapshots(ctx context.Context, h model.Host) error {
	client, err := s.client(ctx, h)
	if err != nil {
		return err
	}
	res, err := client.Resources(ctx)
	if err != nil {
		return hostErr(h, err)
	}
	if !res.Snapshots {
		return refused("host %s keeps projects in a plain directory (%s)", h.Name, agentapi.DirectoryNote)
	}
	return nil
}

// Restore queues restoring path ("" for the whole home) from a snapshot.
func (s *Service) Restore(ctx context.Context, c Caller, id, snapshot, path string) (Submitted, error) {
	if err := storage.CheckSnapshotName(snapshot); err != nil {
		return Submitted{}, invalid("--snapshot %q is not a snapshot name (see `cocalc-hosts project snapshots %s`)", snapshot, id)
	}
	clean, err := storage.CleanRestorePath(path)
	if err != nil {
		return Submitted{}, invalid("--path %s", strings.TrimPrefix(strings.ReplaceAll(err.Error(), ": "+storage.ErrInvalid.Error(), ""), "path "))
	}
	a, p, err := s.liveFor(ctx, c, id)
	if err != nil {
		return Submitted{}, err
	}
	h, err := s.hostOf(ctx, p, "restore")
	if err != nil {
		return Submitted{}, err
	}
	if err := s.needSnapshots(ctx, h); err != nil {
		return Submitted{}, err
	}
	client, err := s.client(ctx, h)
	if err != nil {
		return Submitted{}, err
	}
	snaps, err := client.Snapshots(ctx, p.ID)
	if err != nil {
		return Submitted{}, hostErr(h, err)
	}
	found := false
	for _, sn := range snaps {
		found = found || sn.Name == snapshot
	}
	if !found {
		return Submitted{}, errkind.Errorf(errkind.NotFound, "project %s has no snapshot %q (see `cocalc-hosts project snapshots %s`)", id, snapshot, id)
	}
	return s.enqueue(ctx, p, model.ActionProjectRestore, payload{Snapshot: snapshot, Path: clean, By: a.By})
}

// Snapshots lists a project's snapshots, oldest first.
func (s *Service) Snapshots(ctx context.Context, c Caller, id string) ([]agentapi.Snapshot, error) {
	_, p, err := s.liveFor(ctx, c, id)
	if err != nil {
		return nil, err
	}
	h, err := s.hostOf(ctx, p, "list snapshots of")
	if err != nil {
		return nil, err
	}
	client, err := s.client(ctx, h)
	if err != nil {
		return nil, err
	}
	snaps, err := client.Snapshots(ctx, p.ID)
	if err != nil {
		return nil, hostErr(h, err)
	}
	if snaps == nil {
		snaps = []agentapi.Snapshot{}
	}
	return snaps, nil
}

// Detail is a project with what its host says about it.
type Detail struct {
	model.Project
	HostName string                  `json:"host_name"`
	Agent    *agentapi.ProjectStatus `json:"agent,omitempty"`
	// AgentError says why the host could not be asked.
	AgentError string     `json:"agent_error,omitempty"`
	PendingJob *model.Job `json:"pending_job,omitempty"`
	// LastMove is the project's newest move or clone (move.go).
	LastMove *model.Move `json:"last_move,omitempty"`
	// Backups: the newest backup and copies left on other hosts.
	Backups BackupFreshness `json:"backups"`
}

// Show returns a project and, when its host runs, what the host says
// about it; the record is brought up to date with that (an idle project
// the host stopped shows as stopped).
func (s *Service) Show(ctx context.Context, c Caller, id string) (Detail, error) {
	_, p, err := s.projectFor(ctx, c, id)
	if err != nil {
		return Detail{}, err
	}
	d := Detail{Project: p}
	h, err := s.Store.GetHost(ctx, p.HostID)
	if err != nil {
		return d, err
	}
	d.HostName = h.Name
	if jobs, err := s.Store.ListJobs(ctx, store.JobFilter{Subject: model.ProjectSubject(p.ID), ActiveOnly: true}); err != nil {
		return d, err
	} else if len(jobs) > 0 {
		d.PendingJob = &jobs[0]
	}
	if d.LastMove, err = s.LastMove(ctx, p.ID); err != nil {
		return d, err
	}
	if d.Backups, err = s.Freshness(ctx, p.ID); err != nil {
		return d, err
	}
	if p.DeletedAt != nil {
		return d, nil
	}
	if h.Status != model.StatusRunning {
		d.AgentError = fmt.Sprintf("host %s is %s", h.Name, h.Status)
		return d, nil
	}
	st, err := s.askHost(ctx, h, p.ID)
	if err != nil {
		d.AgentError = err.Error()
		return d, nil
	}
	d.Agent = &st
	d.Project = s.observe(ctx, p, st)
	return d, nil
}

// askHost is what h's agent says about project id. The answer adds to
// what the store knows, so it gets only part of the caller's time: a slow
// or loaded host then still leaves time to show (and act on) the rest.
func (s *Service) askHost(ctx context.Context, h model.Host, id string) (agentapi.ProjectStatus, error) {
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(deadline)*2/3))
		defer cancel()
	}
	var st agentapi.ProjectStatus
	client, err := s.client(ctx, h)
	if err == nil {
		st, err = client.Project(ctx, id)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return st, fmt.Errorf("host %s did not answer in time: %w", h.Name, err)
	}
	return st, err
}

// observe brings p's record in line with what its host reports, unless a
// job is working on it (the job's write wins).
func (s *Service) observe(ctx context.Context, p model.Project, st agentapi.ProjectStatus) model.Project {
	q := p
	switch st.State {
	case agentapi.ProjectRunning:
		if p.State == model.ProjectStopped || p.State == model.ProjectError {
			q.State = model.ProjectRunning
		}
	case agentapi.ProjectStopped:
		if p.State == model.ProjectRunning {
			q.State = model.ProjectStopped
			if st.StoppedReason != "" {
				q.LastAction = "project.stop (" + st.StoppedReason + ")"
			}
		}
	case agentapi.ProjectAbsent:
		if p.State == model.ProjectRunning || p.State == model.ProjectStopped {
			q.State = model.ProjectError
			q.LastError = "the project's files are not on its host"
		}
	}
	if st.LastActivity != nil && (p.LastActivity == nil || st.LastActivity.After(*p.LastActivity)) {
		t := st.LastActivity.UTC().Truncate(time.Millisecond)
		q.LastActivity = &t
	}
	if q.State == p.State && timesEqual(q.LastActivity, p.LastActivity) && q.LastError == p.LastError {
		return p
	}
	q.UpdatedAt = s.Now()
	if ok, err := s.Store.UpdateProjectIfIdle(ctx, q, p.UpdatedAt); err != nil || !ok {
		return p
	}
	return q
}

func timesEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// ListRequest selects projects.
type ListRequest struct {
	// Host limits the list to one host.
	Host string
	// All lists every account's projects (admins only).
	All bool
	// Deleted includes deleted projects.
	Deleted bool
	// Refresh asks the hosts for each project's state first.
	Refresh bool
}

// List returns the caller's projects (or all, for admins with All).
func (s *Service) List(ctx context.Context, c Caller, r ListRequest) ([]model.Project, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return nil, err
	}
	f := store.ProjectFilter{Owner: a.ID, IncludeDeleted: r.Deleted}
	if r.All {
		if !a.Admin {
			return nil, refused("--all lists every account's projects and needs an admin; %s is not one", a.ID)
		}
		f.Owner = ""
	}
	if r.Host != "" {
		h, err := s.Store.GetHost(ctx, r.Host)
		if err != nil {
			return nil, err
		}
		f.HostID = h.ID
	}
	ps, err := s.Store.ListProjects(ctx, f)
	if err != nil {
		return nil, err
	}
	if r.Refresh {
		ps, _ = s.refresh(ctx, ps)
	}
	if ps == nil {
		ps = []model.Project{}
	}
	return ps, nil
}

// maxHostsAskedAtOnce bounds the agents one refresh asks concurrently.
const maxHostsAskedAtOnce = 8

// refresh asks each running host once about its projects. A host whose
// agent cannot be reached changes nothing: a failed call says nothing
// about its projects.
func (s *Service) refresh(ctx context.Context, ps []model.Project) ([]model.Project, SyncReport) {
	rep := SyncReport{Unreachable: []HostError{}, Updated: []string{}}
	byHost := map[string][]int{}
	for i, p := range ps {
		if p.DeletedAt == nil {
			byHost[p.HostID] = append(byHost[p.HostID], i)
		}
	}
	hostIDs := make([]string, 0, len(byHost))
	for id := range byHost {
		hostIDs = append(hostIDs, id)
	}
	sort.Strings(hostIDs)
	// The hosts are asked at once (a few at a time), so one slow agent
	// does not hold up the others; the answers are applied in order.
	type answer struct {
		h   model.Host
		sts []agentapi.ProjectStatus
		err error
	}
	answers := make([]*answer, len(hostIDs))
	sem := make(chan struct{}, maxHostsAskedAtOnce)
	var wg sync.WaitGroup
	for k, hid := range hostIDs {
		h, err := s.Store.GetHost(ctx, hid)
		if err != nil || h.Status != model.StatusRunning {
			continue
		}
		a := &answer{h: h}
		answers[k] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			client, err := s.client(ctx, a.h)
			if err == nil {
				a.sts, err = client.Projects(ctx)
			}
			a.err = err
		}()
	}
	wg.Wait()
	for k, hid := range hostIDs {
		a := answers[k]
		if a == nil {
			continue
		}
		h := a.h
		rep.Hosts++
		if a.err != nil {
			rep.Unreachable = append(rep.Unreachable, HostError{Host: h.ID, Name: h.Name, Error: a.err.Error()})
			continue
		}
		byID := map[string]agentapi.ProjectStatus{}
		for _, st := range a.sts {
			byID[st.ID] = st
		}
		for _, i := range byHost[hid] {
			st, ok := byID[ps[i].ID]
			if !ok {
				st = agentapi.ProjectStatus{ID: ps[i].ID, State: agentapi.ProjectAbsent}
			}
			before := ps[i].UpdatedAt
			ps[i] = s.observe(ctx, ps[i], st)
			rep.Checked++
			if !ps[i].UpdatedAt.Equal(before) {
				rep.Updated = append(rep.Updated, ps[i].ID)
			}
		}
	}
	return ps, rep
}

// liveFor is how most project actions begin: who the caller is, and the
// live project id names as that caller may see it.
func (s *Service) liveFor(ctx context.Context, c Caller, id string) (actor, model.Project, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return actor{}, model.Project{}, err
	}
	p, err := s.live(ctx, a, id)
	return a, p, err
}

// projectFor is liveFor for actions that also see deleted projects.
func (s *Service) projectFor(ctx context.Context, c Caller, id string) (actor, model.Project, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return actor{}, model.Project{}, err
	}
	p, err := s.project(ctx, a, id)
	return a, p, err
}
