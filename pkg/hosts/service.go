package hosts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// Providers opens configured providers by name.
type Providers interface {
	Get(ctx context.Context, name string) (provider.Provider, error)
}

// Service is the host domain: requests become queued jobs, and jobs
// become provider calls, host updates and cloud_vm_log entries.
type Service struct {
	Store     store.Store
	Providers Providers
	// MaxAttempts bounds retries of one action.
	MaxAttempts int
	// ReadyTimeout bounds waiting for a VM to reach the wanted state.
	ReadyTimeout time.Duration
	// PollInterval is how often that wait asks the provider.
	PollInterval time.Duration
	Now          func() time.Time
	// Agents reaches host agents (nil: LocalAgents).
	Agents AgentConnector
	// Catalog is where machines are chosen from (nil: a default cache on
	// Store); DNS publishes host names (nil: no DNS).
	Catalog *catalog.Cache
	DNS     DNSRecords
	// Bootstrap turns the VMs of providers with Capabilities().Bootstrap
	// into project hosts over SSH (nil: such providers cannot be used).
	Bootstrap Bootstrapper
	// DefaultProvider is the provider of a create that names none
	// (the default_cloud setting; empty: see candidateProviders).
	DefaultProvider string
}

var _ queue.Handler = (*Service)(nil)

// New returns a service with defaults.
func New(s store.Store, p Providers) *Service {
	return &Service{Store: s, Providers: p, MaxAttempts: 5, ReadyTimeout: 10 * time.Minute,
		PollInterval: time.Second, Now: time.Now}
}

// invalid is bad input from the caller.
func invalid(format string, args ...any) error {
	return errkind.Errorf(errkind.Invalid, format, args...)
}

// refused is a request the host's state or provider cannot honour.
func refused(format string, args ...any) error {
	return errkind.Errorf(errkind.Refused, format, args...)
}

// nameRE leaves the length (at most 63) to validate: a counted
// repetition compiles into that many copies at start-up.
var nameRE = lazyre.New(`^[a-z]([a-z0-9-]*[a-z0-9])?$`)

// CreateRequest asks for a new host.
type CreateRequest struct {
	Name     string
	Owner    string
	Provider string
	Region   string
	Zone     string
	Spec     model.HostSpec
}

// Submitted is the result of a request: the host, and the job that will
// carry it out (nil when nothing needed doing).
type Submitted struct {
	Host model.Host `json:"host"`
	Job  *model.Job `json:"job,omitempty"`
	// Note explains a request that needed no work.
	Note string `json:"note,omitempty"`
	// StoppedCost is what the host still costs once stopped (Stop only).
	StoppedCost *StoppedCost `json:"stopped_cost,omitempty"`
	// TunnelCredential is a reverse-connected host's credential, given
	// once, when it is created (`join` reads it on the machine).
	TunnelCredential string `json:"tunnel_credential,omitempty"`
}

// Create validates req, stores the host as provisioning and enqueues its
// create job. Nothing is written when validation fails.
func (s *Service) Create(ctx context.Context, req CreateRequest) (Submitted, error) {
	if err := req.validate(); err != nil {
		return Submitted{}, err
	}
	if req.Provider == "" && (req.Spec.Address != "" || req.Spec.DataDiskDevice != "") {
		return Submitted{}, invalid("--address and --data-disk adopt an existing machine: give --cloud ssh too")
	}
	plan, err := s.plan(ctx, &req)
	if err != nil {
		return Submitted{}, err
	}
	if err := s.checkBootstrapSpec(ctx, &req); err != nil {
		return Submitted{}, err
	}
	if _, err := s.Store.EnsureAccount(ctx, req.Owner); err != nil {
		return Submitted{}, err
	}
	now := s.Now()
	h := model.Host{
		ID: uuid.NewString(), Name: req.Name, Owner: req.Owner, Provider: req.Provider,
		Region: req.Region, Zone: req.Zone, Status: model.StatusProvisioning, Spec: req.Spec,
		HourlyPrice: plan.Estimate.HourlyPrice, LastAction: string(model.ActionCreate), CreatedAt: now, UpdatedAt: now,
	}
	h.Spec.DiskPricePerGBMonth, h.Spec.DiskPriceSource = plan.Estimate.DiskPricePerGBMonth, plan.Estimate.DiskPriceSource
	h.Spec.BootDiskMonthly = plan.Choice.BootDiskMonthly
	payload, _ := json.Marshal(createPayload{PricingVersion: catalog.VersionTag(plan.Choice), Query: &plan.Query, Clouds: plan.OtherClouds})
	// The host and its create job commit together: a host without its
	// job would stay provisioning forever.
	job, err := s.Store.CreateHostWithJob(ctx, h, s.newJob(h, model.ActionCreate, payload))
	if err != nil {
		if errkind.Is(err, errkind.Conflict) {
			return Submitted{}, errkind.Errorf(errkind.Conflict, "a host named %q already exists; pick another --name or delete it first", req.Name)
		}
		return Submitted{}, err
	}
	sub := Submitted{Host: h, Job: &job}
	if h.Spec.Reverse {
		// Only its sum is kept: the credential is shown this once.
		cred, sum, err := tunnel.NewCredential(h.ID)
		if err != nil {
			return Submitted{}, err
		}
		if err := s.Store.PutHostTunnel(ctx, h.ID, sum, now); err != nil {
			return Submitted{}, err
		}
		sub.TunnelCredential = cred
	}
	return sub, nil
}

func (req CreateRequest) validate() error {
	if len(req.Name) > 63 || !nameRE().MatchString(req.Name) {
		return invalid("invalid host name %q: use 1-63 lowercase letters, digits and hyphens, starting with a letter", req.Name)
	}
	if req.Spec.DiskGB < 0 || req.Spec.CPUs < 0 || req.Spec.MemoryGiB < 0 || req.Spec.GPUCount < 0 {
		return invalid("disk, cpu, memory and gpu counts must not be negative")
	}
	return nil
}

type createPayload struct {
	PricingVersion string `json:"pricing_version,omitempty"`
	// Query is the request the machine was chosen for; on a capacity
	// error the next cheapest machine meeting it is tried.
	Query *catalog.Query `json:"query,omitempty"`
	// Clouds are other clouds the request allowed (no --cloud given).
	Clouds []string `json:"clouds,omitempty"`
}

type deletePayload struct {
	KeepDisk bool `json:"keep_disk"`
	// Purge erases data the provider would keep; Forget drops the machine
	// without touching it (see bootstrap.go).
	Purge  bool `json:"purge,omitempty"`
	Forget bool `json:"forget,omitempty"`
}

type resizePayload struct {
	DiskGB int `json:"disk_gb"`
}

// newJob is a job of action a on host h, due now.
func (s *Service) newJob(h model.Host, a model.Action, payload json.RawMessage) model.Job {
	now := s.Now()
	return model.Job{
		ID: uuid.NewString(), Subject: model.HostSubject(h.ID), Action: a, Payload: payload,
		MaxAttempts: s.MaxAttempts, RunAfter: now, CreatedAt: now,
	}
}

func (s *Service) enqueue(ctx context.Context, h model.Host, a model.Action, payload json.RawMessage) (model.Job, bool, error) {
	job, created, err := s.Store.EnqueueJob(ctx, s.newJob(h, a, payload))
	var busy *store.BusyError
	if errors.As(err, &busy) {
		return job, false, errkind.Errorf(errkind.Conflict, "host %s has pending work (%s job %s, %s); wait for it to finish (`cocalc-hosts logs %s`) and retry",
			h.Name, busy.Active.Action, busy.Active.ID, busy.Active.State, h.Name)
	}
	return job, created, err
}

// Get returns a host by name or id.
func (s *Service) Get(ctx context.Context, idOrName string) (model.Host, error) {
	return s.Store.GetHost(ctx, idOrName)
}

// Start enqueues starting an off (or failed) host.
func (s *Service) Start(ctx context.Context, idOrName string) (Submitted, error) {
	h, err := s.live(ctx, idOrName)
	if err != nil {
		return Submitted{}, err
	}
	switch h.Status {
	case model.StatusRunning:
		return Submitted{Host: h, Note: "already running"}, nil
	case model.StatusDeprovisioning:
		return Submitted{}, refused("host %s is being deprovisioned; it cannot be started", h.Name)
	}
	return s.submit(ctx, h, model.ActionStart, nil)
}

// StopOptions tune Stop.
type StopOptions struct {
	// Deprovision deletes the VM and keeps the data disk where the
	// provider can; it is how "stop" works on providers without stop.
	Deprovision bool
}

// Stop enqueues stopping a host.
func (s *Service) Stop(ctx context.Context, idOrName string, o StopOptions) (Submitted, error) {
	h, err := s.CheckStop(ctx, idOrName, o)
	if err != nil {
		return Submitted{}, err
	}
	sc := s.StoppedCost(ctx, h, o.Deprovision)
	var sub Submitted
	switch {
	case o.Deprovision:
		payload, _ := json.Marshal(deletePayload{KeepDisk: true})
		sub, err = s.submit(ctx, h, model.ActionDelete, payload)
	case h.Status == model.StatusOff:
		sub = Submitted{Host: h, Note: "already off"}
	default:
		sub, err = s.submit(ctx, h, model.ActionStop, nil)
	}
	if err != nil {
		return Submitted{}, err
	}
	sub.StoppedCost = sc
	return sub, nil
}

// CheckStop refuses what Stop would refuse, queueing nothing (for a
// confirmation shown before the stop).
func (s *Service) CheckStop(ctx context.Context, idOrName string, o StopOptions) (model.Host, error) {
	h, caps, err := s.liveCaps(ctx, idOrName)
	if err != nil {
		return h, err
	}
	if !o.Deprovision && caps.Stop == provider.StopNone {
		return h, refused(
			"provider %s cannot stop a host; to stop paying for it, run `cocalc-hosts stop --deprovision %s` (deletes the VM, keeps the data disk where %s has one) or `cocalc-hosts delete %s`",
			h.Provider, h.Name, h.Provider, h.Name)
	}
	return h, nil
}

// DeleteOptions tune Delete.
type DeleteOptions struct {
	KeepDisk bool
	// Purge also erases the data an adopted machine keeps (its /btrfs).
	Purge bool
	// Forget drops the host without touching its machine (for a machine
	// that is gone or unreachable).
	Forget bool
}

// checkNoProjectData refuses a delete that would destroy projects' files:
// deleting the data disk of a host that still holds projects (deleted
// projects keep their files until purged). Keeping the disk, or deleting
// an adopted machine without --purge, keeps the data and is allowed.
func (s *Service) checkNoProjectData(ctx context.Context, h model.Host, o DeleteOptions) error {
	if o.KeepDisk || o.Forget {
		return nil
	}
	p, err := s.Providers.Get(ctx, h.Provider)
	if err != nil {
		return err
	}
	if p.Capabilities().Purge && !o.Purge {
		return nil
	}
	projects, err := s.Store.ListProjects(ctx, store.ProjectFilter{HostID: h.ID, IncludeDeleted: true})
	if err != nil {
		return err
	}
	if len(projects) == 0 {
		return nil
	}
	names := make([]string, 0, 3)
	for i, pr := range projects {
		if i == 3 {
			names = append(names, "…")
			break
		}
		names = append(names, pr.ID)
	}
	return refused(
		"host %s still holds %d project(s) (%s) whose files the delete would destroy; remove them first with `cocalc-hosts project delete PROJECT --purge`, or keep the data with --keep-disk",
		h.Name, len(projects), strings.Join(names, ", "))
}

// Delete enqueues deprovisioning a host.
func (s *Service) Delete(ctx context.Context, idOrName string, o DeleteOptions) (Submitted, error) {
	h, err := s.CheckDelete(ctx, idOrName, o)
	if err != nil {
		return Submitted{}, err
	}
	payload, _ := json.Marshal(deletePayload{KeepDisk: o.KeepDisk, Purge: o.Purge, Forget: o.Forget})
	return s.submit(ctx, h, model.ActionDelete, payload)
}

// CheckDelete refuses what Delete would refuse, queueing nothing.
func (s *Service) CheckDelete(ctx context.Context, idOrName string, o DeleteOptions) (model.Host, error) {
	h, err := s.live(ctx, idOrName)
	if err != nil {
		return h, err
	}
	if o.KeepDisk {
		caps, err := s.capabilities(ctx, h)
		if err != nil {
			return h, err
		}
		if !caps.PersistentDisk {
			return h, invalid("provider %s has no data disk that outlives its VM; drop --keep-disk", h.Provider)
		}
	}
	if err := s.checkDeleteOptions(ctx, h, o); err != nil {
		return h, err
	}
	return h, s.checkNoProjectData(ctx, h, o)
}

// Resize enqueues growing a host's data disk.
func (s *Service) Resize(ctx context.Context, idOrName string, diskGB int) (Submitted, error) {
	h, err := s.live(ctx, idOrName)
	if err != nil {
		return Submitted{}, err
	}
	caps, err := s.capabilities(ctx, h)
	if err != nil {
		return Submitted{}, err
	}
	if !caps.DiskResize {
		return Submitted{}, refused("provider %s cannot resize disks", h.Provider)
	}
	if diskGB <= h.Spec.DiskGB {
		return Submitted{}, invalid("disk can only grow: %s has %d GB, asked for %d GB", h.Name, h.Spec.DiskGB, diskGB)
	}
	if caps.DiskResizeRequiresStop && h.Status != model.StatusOff {
		return Submitted{}, refused("provider %s resizes disks only while stopped; run `cocalc-hosts stop %s` first", h.Provider, h.Name)
	}
	payload, _ := json.Marshal(resizePayload{DiskGB: diskGB})
	return s.submit(ctx, h, model.ActionResize, payload)
}

// Refresh enqueues asking the provider for the host's real state.
func (s *Service) Refresh(ctx context.Context, idOrName string) (Submitted, error) {
	h, err := s.live(ctx, idOrName)
	if err != nil {
		return Submitted{}, err
	}
	return s.submit(ctx, h, model.ActionRefresh, nil)
}

// capabilities of the host's provider as configured here.
func (s *Service) capabilities(ctx context.Context, h model.Host) (provider.Capabilities, error) {
	p, err := s.Providers.Get(ctx, h.Provider)
	if err != nil {
		return provider.Capabilities{}, err
	}
	return p.Capabilities(), nil
}

// liveCaps is live with the capabilities of the host's provider.
func (s *Service) liveCaps(ctx context.Context, idOrName string) (model.Host, provider.Capabilities, error) {
	h, err := s.live(ctx, idOrName)
	if err != nil {
		return h, provider.Capabilities{}, err
	}
	caps, err := s.capabilities(ctx, h)
	return h, caps, err
}

func (s *Service) live(ctx context.Context, idOrName string) (model.Host, error) {
	h, err := s.Store.GetHost(ctx, idOrName)
	if err != nil {
		return h, err
	}
	if h.DeletedAt != nil {
		return h, errkind.Errorf(errkind.NotFound, "host %s was deleted", idOrName)
	}
	if h.Status == model.StatusDeprovisioned {
		return h, refused("host %s is deprovisioned; create a new host", h.Name)
	}
	return h, nil
}

func (s *Service) submit(ctx context.Context, h model.Host, a model.Action, payload json.RawMessage) (Submitted, error) {
	job, created, err := s.enqueue(ctx, h, a, payload)
	if err != nil {
		return Submitted{}, err
	}
	sub := Submitted{Host: h, Job: &job}
	if !created {
		sub.Note = fmt.Sprintf("%s already pending (job %s)", a, job.ID)
	}
	return sub, nil
}

// List returns the hosts f selects.
func (s *Service) List(ctx context.Context, f store.HostFilter) ([]model.Host, error) {
	return s.Store.ListHosts(ctx, f)
}

// Each calls fn with each host f selects, as it is read (see
// store.Store.EachHost: the host is reused for the next).
func (s *Service) Each(ctx context.Context, f store.HostFilter, fn func(*model.Host) error) error {
	return s.Store.EachHost(ctx, f, fn)
}
