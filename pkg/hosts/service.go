package hosts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
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
}

var _ queue.Handler = (*Service)(nil)

// New returns a service with defaults.
func New(s store.Store, p Providers) *Service {
	return &Service{Store: s, Providers: p, MaxAttempts: 5, ReadyTimeout: 10 * time.Minute,
		PollInterval: time.Second, Now: time.Now}
}

// InvalidError is bad input from the user; the CLI exits with code 2.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// RefusedError is a request the host's state or provider cannot honour.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

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
}

// Create validates req, stores the host as provisioning and enqueues its
// create job. Nothing is written when validation fails.
func (s *Service) Create(ctx context.Context, req CreateRequest) (Submitted, error) {
	if !nameRE.MatchString(req.Name) {
		return Submitted{}, invalid("invalid host name %q: use 1-63 lowercase letters, digits and hyphens, starting with a letter", req.Name)
	}
	if req.Spec.DiskGB < 0 || req.Spec.CPUs < 0 || req.Spec.MemoryGiB < 0 || req.Spec.GPUCount < 0 {
		return Submitted{}, invalid("disk, cpu, memory and gpu counts must not be negative")
	}
	if _, err := provider.Lookup(req.Provider); err != nil {
		return Submitted{}, invalid("%v", err)
	}
	p, err := s.Providers.Get(ctx, req.Provider)
	if err != nil {
		return Submitted{}, err
	}
	caps := p.Capabilities()
	if req.Spec.GPUModel != "" && !caps.GPU {
		return Submitted{}, invalid("provider %s has no GPUs; choose a provider with GPUs (see `cocalc-hosts providers`)", req.Provider)
	}
	if req.Spec.Spot && !caps.Spot {
		return Submitted{}, invalid("provider %s has no spot instances", req.Provider)
	}
	if req.Zone != "" && !caps.Zones {
		return Submitted{}, invalid("provider %s has no zones; drop --zone", req.Provider)
	}
	entry, err := s.pickMachine(ctx, p, &req)
	if err != nil {
		return Submitted{}, err
	}
	if _, err := s.Store.EnsureAccount(ctx, req.Owner); err != nil {
		return Submitted{}, err
	}
	now := s.Now()
	h := model.Host{
		ID: uuid.NewString(), Name: req.Name, Owner: req.Owner, Provider: req.Provider,
		Region: req.Region, Zone: req.Zone, Status: model.StatusProvisioning, Spec: req.Spec,
		HourlyPrice: entry.HourlyPrice, LastAction: string(model.ActionCreate), CreatedAt: now, UpdatedAt: now,
	}
	if err := s.Store.CreateHost(ctx, h); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return Submitted{}, fmt.Errorf("a host named %q already exists; pick another --name or delete it first: %w", req.Name, store.ErrConflict)
		}
		return Submitted{}, err
	}
	payload, _ := json.Marshal(createPayload{PricingVersion: entry.PricingSource})
	job, _, err := s.enqueue(ctx, h, model.ActionCreate, payload)
	if err != nil {
		return Submitted{}, err
	}
	return Submitted{Host: h, Job: &job}, nil
}

type createPayload struct {
	PricingVersion string `json:"pricing_version,omitempty"`
}

type deletePayload struct {
	KeepDisk bool `json:"keep_disk"`
}

type resizePayload struct {
	DiskGB int `json:"disk_gb"`
}

// pickMachine resolves the machine type and region from the provider's
// catalog: the given type, or the cheapest entry that meets the spec.
func (s *Service) pickMachine(ctx context.Context, p provider.Provider, req *CreateRequest) (provider.CatalogEntry, error) {
	cat, err := s.Catalog(ctx, p)
	if err != nil {
		return provider.CatalogEntry{}, err
	}
	var match []provider.CatalogEntry
	regions := map[string]bool{}
	for _, e := range cat {
		regions[e.Region] = true
		if req.Region != "" && e.Region != req.Region {
			continue
		}
		if req.Zone != "" && e.Zone != "" && e.Zone != req.Zone {
			continue
		}
		if req.Spec.MachineType != "" && e.InstanceType != req.Spec.MachineType {
			continue
		}
		if e.VCPUs < req.Spec.CPUs || int(e.MemoryGiB+0.5) < req.Spec.MemoryGiB ||
			(req.Spec.GPUModel != "" && e.GPUModel != req.Spec.GPUModel) || e.GPUCount < req.Spec.GPUCount {
			continue
		}
		match = append(match, e)
	}
	if req.Region != "" && !regions[req.Region] {
		return provider.CatalogEntry{}, invalid("provider %s has no region %q (regions: %v)", p.Name(), req.Region, sortedKeys(regions))
	}
	if len(match) == 0 {
		if req.Spec.MachineType != "" {
			return provider.CatalogEntry{}, invalid("provider %s has no machine type %q in %s; see `cocalc-hosts providers`", p.Name(), req.Spec.MachineType, orAny(req.Region))
		}
		return provider.CatalogEntry{}, invalid("no machine at %s in %s meets the request (cpus>=%d, memory>=%d GiB, gpu %q x%d)",
			p.Name(), orAny(req.Region), req.Spec.CPUs, req.Spec.MemoryGiB, req.Spec.GPUModel, req.Spec.GPUCount)
	}
	sort.SliceStable(match, func(i, j int) bool { return match[i].HourlyPrice < match[j].HourlyPrice })
	best := match[0]
	req.Spec.MachineType = best.InstanceType
	if req.Region == "" {
		req.Region = best.Region
	}
	if req.Zone == "" {
		req.Zone = best.Zone
	}
	return best, nil
}

func orAny(region string) string {
	if region == "" {
		return "any region"
	}
	return "region " + region
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *Service) enqueue(ctx context.Context, h model.Host, a model.Action, payload json.RawMessage) (model.Job, bool, error) {
	now := s.Now()
	job, created, err := s.Store.EnqueueJob(ctx, model.Job{
		ID: uuid.NewString(), HostID: h.ID, Action: a, Payload: payload,
		MaxAttempts: s.MaxAttempts, RunAfter: now, CreatedAt: now,
	})
	var busy *store.BusyError
	if errors.As(err, &busy) {
		return job, false, fmt.Errorf("host %s has pending work (%s job %s, %s); wait for it to finish (`cocalc-hosts logs %s`) and retry: %w",
			h.Name, busy.Active.Action, busy.Active.ID, busy.Active.State, h.Name, store.ErrConflict)
	}
	return job, created, err
}

// Get returns a live host by name or id.
func (s *Service) Get(ctx context.Context, idOrName string) (model.Host, error) {
	h, err := s.Store.GetHost(ctx, idOrName)
	if err != nil {
		return h, err
	}
	return h, nil
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
		return Submitted{}, &RefusedError{Msg: fmt.Sprintf("host %s is being deprovisioned; it cannot be started", h.Name)}
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
	h, err := s.live(ctx, idOrName)
	if err != nil {
		return Submitted{}, err
	}
	caps, err := s.capabilities(ctx, h)
	if err != nil {
		return Submitted{}, err
	}
	if o.Deprovision {
		payload, _ := json.Marshal(deletePayload{KeepDisk: true})
		return s.submit(ctx, h, model.ActionDelete, payload)
	}
	if caps.Stop == provider.StopNone {
		return Submitted{}, &RefusedError{Msg: fmt.Sprintf(
			"provider %s cannot stop a host; to stop paying for it, run `cocalc-hosts stop --deprovision %s` (deletes the VM, keeps the data disk where %s has one) or `cocalc-hosts delete %s`",
			h.Provider, h.Name, h.Provider, h.Name)}
	}
	if h.Status == model.StatusOff {
		return Submitted{Host: h, Note: "already off"}, nil
	}
	return s.submit(ctx, h, model.ActionStop, nil)
}

// DeleteOptions tune Delete.
type DeleteOptions struct{ KeepDisk bool }

// Delete enqueues deprovisioning a host.
func (s *Service) Delete(ctx context.Context, idOrName string, o DeleteOptions) (Submitted, error) {
	h, err := s.live(ctx, idOrName)
	if err != nil {
		return Submitted{}, err
	}
	if o.KeepDisk {
		caps, err := s.capabilities(ctx, h)
		if err != nil {
			return Submitted{}, err
		}
		if !caps.PersistentDisk {
			return Submitted{}, invalid("provider %s has no data disk that outlives its VM; drop --keep-disk", h.Provider)
		}
	}
	payload, _ := json.Marshal(deletePayload{KeepDisk: o.KeepDisk})
	return s.submit(ctx, h, model.ActionDelete, payload)
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
		return Submitted{}, &RefusedError{Msg: fmt.Sprintf("provider %s cannot resize disks", h.Provider)}
	}
	if diskGB <= h.Spec.DiskGB {
		return Submitted{}, invalid("disk can only grow: %s has %d GB, asked for %d GB", h.Name, h.Spec.DiskGB, diskGB)
	}
	if caps.DiskResizeRequiresStop && h.Status != model.StatusOff {
		return Submitted{}, &RefusedError{Msg: fmt.Sprintf("provider %s resizes disks only while stopped; run `cocalc-hosts stop %s` first", h.Provider, h.Name)}
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

func (s *Service) live(ctx context.Context, idOrName string) (model.Host, error) {
	h, err := s.Store.GetHost(ctx, idOrName)
	if err != nil {
		return h, err
	}
	if h.DeletedAt != nil {
		return h, fmt.Errorf("host %s was deleted: %w", idOrName, store.ErrNotFound)
	}
	if h.Status == model.StatusDeprovisioned {
		return h, &RefusedError{Msg: fmt.Sprintf("host %s is deprovisioned; create a new host", h.Name)}
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
