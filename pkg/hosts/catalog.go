package hosts

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// ConfiguredProviders is implemented by provider sets that know which
// providers are set up here. Create without a provider searches them all.
type ConfiguredProviders interface {
	Configured(ctx context.Context) (map[string]provider.Provider, error)
}

// MaxCapacityFallbacks bounds how many other machines one create attempt
// tries after the chosen one has no capacity; the queue retries the
// action later if all of them are full.
var MaxCapacityFallbacks = 8

// Plan is the machine a create request resolves to.
type Plan struct {
	Choice   catalog.Entry    `json:"choice"`
	Estimate catalog.Estimate `json:"estimate"`
	// Alternatives counts the other machines that meet the request; they
	// are tried in price order when the choice has no capacity.
	Alternatives int           `json:"alternatives"`
	Query        catalog.Query `json:"query"`
	// OtherClouds are the other clouds searched, which a create may move
	// to when the chosen one has no capacity.
	OtherClouds []string `json:"other_clouds,omitempty"`
	// Warnings are catalogs that could not be refreshed (stale ones were
	// used) or could not be read at all. (Clouds left out because they
	// cannot serve the request are named only when nothing fits.)
	Warnings []string `json:"warnings,omitempty"`
}

// Plan resolves req to the machine Create would make, writing nothing but
// the catalog cache: what `create --dry-run` shows.
func (s *Service) Plan(ctx context.Context, req CreateRequest) (Plan, error) {
	if err := req.validate(); err != nil {
		return Plan{}, err
	}
	return s.plan(ctx, &req)
}

// CatalogCache is the catalog cache the service selects machines from:
// s.Catalog, or one with default settings on s.Store. (Not stored: jobs
// run concurrently on one service.)
func (s *Service) CatalogCache() *catalog.Cache {
	if s.Catalog != nil {
		return s.Catalog
	}
	c := catalog.New(s.Store)
	c.Now = s.Now
	return c
}

// plan picks the cheapest machine meeting every minimum of req — of
// req.Provider, or of every configured provider able to serve the request
// when req.Provider is empty — and fills in req's provider, machine
// type, region and zone.
func (s *Service) plan(ctx context.Context, req *CreateRequest) (Plan, error) {
	req.Spec.GPUModel = catalog.NormalizeGPU(req.Spec.GPUModel)
	if req.Spec.GPUModel != "" && req.Spec.GPUCount == 0 {
		req.Spec.GPUCount = 1
	}
	ps, skipped, err := s.candidateProviders(ctx, req)
	if err != nil {
		return Plan{}, err
	}
	cache := s.CatalogCache()
	cats, errs := cache.GetAll(ctx, ps)
	if len(cats) == 0 {
		return Plan{}, errors.Join(errs...)
	}
	var warnings []string
	for _, c := range cats {
		if c.Warning != "" {
			warnings = append(warnings, c.Warning)
		}
	}
	for _, err := range errs {
		warnings = append(warnings, "left out: "+err.Error())
	}
	q := catalog.Query{
		Region: req.Region, Zone: req.Zone, MachineType: req.Spec.MachineType,
		GPUModel: req.Spec.GPUModel, GPUCount: req.Spec.GPUCount, CPUs: req.Spec.CPUs,
		MemoryGiB: float64(req.Spec.MemoryGiB), Spot: req.Spec.Spot,
	}
	for _, p := range ps {
		q.Providers = append(q.Providers, p.Name())
	}
	choice, rest, err := catalog.Select(catalog.Entries(cats), q)
	if err != nil {
		var iq *catalog.InvalidQueryError
		var nm *catalog.NoMatchError
		if errors.As(err, &iq) || errors.As(err, &nm) {
			if len(skipped) > 0 {
				// Clouds left out matter only when nothing fits.
				err = fmt.Errorf("%w (%s)", err, strings.Join(skipped, "; "))
			}
			return Plan{}, errkind.Wrap(errkind.Invalid, err)
		}
		return Plan{}, err
	}
	req.Provider = choice.Provider
	req.Region, req.Zone = choice.Region, choice.Zone
	// The spec records the machine as chosen: its GPUs are exactly what
	// the provider attaches (the request's minimums stay in q).
	req.Spec.MachineType, req.Spec.GPUModel, req.Spec.GPUCount = choice.InstanceType, choice.GPUModel, choice.GPUCount
	// The query keeps the chosen cloud; the other clouds searched (only
	// when the user named none) are where a create that finds no
	// capacity on the chosen one may go next.
	var others []string
	for _, name := range q.Providers {
		if name != choice.Provider {
			others = append(others, name)
		}
	}
	q.Providers = []string{choice.Provider}
	diskGB := req.Spec.DiskGB
	for _, p := range ps {
		if d, ok := p.(provider.DiskSizer); ok && p.Name() == choice.Provider {
			diskGB = d.DataDiskGB(diskGB)
		}
	}
	return Plan{Choice: choice, Estimate: cache.Disk.Estimate(choice, req.Spec.Spot, diskGB),
		Alternatives: len(rest), Query: q, OtherClouds: others, Warnings: warnings}, nil
}

// candidateProviders returns the providers to search: the named one (its
// capabilities must allow the request), or every configured one whose
// capabilities do, with a note for each left out.
func (s *Service) candidateProviders(ctx context.Context, req *CreateRequest) ([]provider.Provider, []string, error) {
	if req.Provider == "" && s.DefaultProvider != "" {
		req.Provider = s.DefaultProvider
	}
	if req.Provider == "" && !req.statesNeeds() {
		// Nothing to search by: a create must not land anywhere by itself
		// (on this machine, say, where hosts cost nothing).
		return nil, nil, invalid("no cloud given: pass --cloud NAME (see `cocalc-hosts providers`), set default_cloud with `cocalc-hosts config set default_cloud NAME`, or say what the host needs (--gpu, --cpu, --ram, --machine-type) to get the cheapest configured cloud that has it")
	}
	if req.Provider != "" {
		if _, err := provider.Lookup(req.Provider); err != nil {
			return nil, nil, invalid("%v", err)
		}
		p, err := s.Providers.Get(ctx, req.Provider)
		if err != nil {
			return nil, nil, err
		}
		if err := capable(p, req); err != nil {
			return nil, nil, err
		}
		return []provider.Provider{p}, nil, nil
	}
	cp, ok := s.Providers.(ConfiguredProviders)
	if !ok {
		return nil, nil, invalid("no provider given; pass --cloud (see `cocalc-hosts providers`)")
	}
	m, err := cp.Configured(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(m) == 0 {
		return nil, nil, invalid("no cloud is configured; pass --cloud NAME, or add one with `cocalc-hosts providers add NAME --credentials FILE`")
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	var ps []provider.Provider
	var skipped, reasons []string
	for _, n := range names {
		if c := m[n].Capabilities(); c.Adopt || c.ThisMachine {
			continue // adopts the machine given by --address, or is this machine: never picked by price
		}
		if err := capable(m[n], req); err != nil {
			skipped = append(skipped, fmt.Sprintf("left out %s: %v", n, err))
			reasons = append(reasons, err.Error())
			continue
		}
		ps = append(ps, m[n])
	}
	if len(ps) == 0 {
		return nil, nil, invalid("no configured cloud can serve this request: %s", strings.Join(reasons, "; "))
	}
	return ps, skipped, nil
}

// statesNeeds reports whether req says what its host needs, which a
// search across clouds can go by.
func (req *CreateRequest) statesNeeds() bool {
	sp := req.Spec
	return sp.GPUModel != "" || sp.GPUCount > 0 || sp.CPUs > 0 || sp.MemoryGiB > 0 || sp.MachineType != ""
}

// capable checks the request against what the provider can do at all.
func capable(p provider.Provider, req *CreateRequest) error {
	caps := p.Capabilities()
	switch {
	case req.Spec.GPUModel != "" && !caps.GPU:
		return invalid("provider %s has no GPUs; choose a provider with GPUs (see `cocalc-hosts providers`)", p.Name())
	case req.Spec.Spot && !caps.Spot:
		return invalid("provider %s has no spot instances", p.Name())
	case req.Zone != "" && !caps.Zones:
		return invalid("provider %s has no zones; drop --zone", p.Name())
	}
	return nil
}

// createWithFallback creates the host's instance; when the provider has
// no capacity for the chosen machine and the request allowed others
// (other zones, regions or types meeting the same minimums, and other
// clouds when the user named none), it tries them cheapest first. Each
// new choice is written to the host before its create is attempted, so a
// worker that takes the job over after a crash resumes with the machine
// that may already exist. Before a host moves to another cloud, what the
// failed attempts made on the one it leaves (a data disk made before the
// VM was refused) is deleted. It returns the provider the host ended on.
func (s *Service) createWithFallback(ctx context.Context, p provider.Provider, h *model.Host, pl *createPayload, progress func(string)) (provider.Provider, provider.Instance, error) {
	inst, err := s.createInstance(ctx, p, *h)
	if err == nil || errkind.Of(err) != errkind.Capacity || pl.Query == nil {
		return p, inst, err // done, another failure, or an exact request: nothing else to try
	}
	q := *pl.Query
	clouds := map[string]provider.Provider{p.Name(): p}
	for _, name := range pl.Clouds {
		if c, gerr := s.Providers.Get(ctx, name); gerr == nil && name != p.Name() {
			clouds[name] = c
		}
	}
	var ps []provider.Provider
	for _, c := range clouds {
		ps = append(ps, c)
	}
	cats, _ := s.CatalogCache().GetAll(ctx, ps)
	q.Providers = slices.Sorted(maps.Keys(clouds))
	tried := map[string]bool{tryKey(h.Provider, h.Region, h.Zone, h.Spec): true}
	left := map[string]bool{} // clouds this attempt moved away from
	n := 0
	for _, c := range catalog.Matches(catalog.Entries(cats), q) {
		k := tryKey(c.Provider, c.Region, c.Zone, model.HostSpec{MachineType: c.InstanceType, GPUModel: c.GPUModel, GPUCount: c.GPUCount})
		if tried[k] || left[c.Provider] {
			continue
		}
		if n == MaxCapacityFallbacks {
			break
		}
		tried[k] = true
		n++
		progress(fmt.Sprintf("no capacity for %s in %s; trying %s in %s at $%.4f/hour",
			describe(h.Provider, h.Spec.MachineType, p.Name() != c.Provider), where(h.Region, h.Zone),
			describe(c.Provider, c.InstanceType, p.Name() != c.Provider), where(c.Region, c.Zone), q.Price(c)))
		if c.Provider != p.Name() {
			progress(fmt.Sprintf("removing what the attempts left on %s before moving to %s", p.Name(), c.Provider))
			if derr := p.Delete(ctx, refOf(*h), false); derr != nil && !errkind.Is(derr, errkind.NotFound) {
				return p, inst, fmt.Errorf("%w; and cleaning up on %s before trying %s failed: %v", err, p.Name(), c.Provider, derr)
			}
			left[p.Name()] = true
			p = clouds[c.Provider]
			h.Provider, h.Runtime = c.Provider, model.Runtime{}
		}
		dp := s.CatalogCache().Disk.ForEntry(c)
		h.Region, h.Zone, h.HourlyPrice, h.UpdatedAt = c.Region, c.Zone, q.Price(c), s.Now()
		h.Spec.MachineType, h.Spec.GPUModel, h.Spec.GPUCount = c.InstanceType, c.GPUModel, c.GPUCount
		h.Spec.DiskPricePerGBMonth, h.Spec.DiskPriceSource, h.Spec.BootDiskMonthly = dp.PerGBMonth, dp.Source, c.BootDiskMonthly
		pl.PricingVersion = catalog.VersionTag(c)
		if uerr := s.Store.UpdateHost(ctx, *h); uerr != nil {
			return p, inst, uerr
		}
		inst, err = s.createInstance(ctx, p, *h)
		if err == nil || errkind.Of(err) != errkind.Capacity {
			return p, inst, err
		}
	}
	if n > 0 {
		return p, inst, fmt.Errorf("tried %d machines after the first: %w", n, err)
	}
	return p, inst, err
}

// tryKey identifies one machine in one place of one cloud.
func tryKey(providerName, region, zone string, spec model.HostSpec) string {
	return providerName + "\x00" + catalog.Key(catalog.Entry{Region: region, Zone: zone, InstanceType: spec.MachineType,
		GPUModel: spec.GPUModel, GPUCount: spec.GPUCount})
}

// describe names a machine type, with its cloud when clouds differ.
func describe(providerName, machineType string, crossCloud bool) string {
	if crossCloud {
		return providerName + " " + machineType
	}
	return machineType
}

func where(region, zone string) string {
	if zone != "" {
		return zone
	}
	return region
}

// StoppedCost is what a stopped host still costs: its data disk.
type StoppedCost struct {
	Monthly             float64 `json:"monthly"`
	DiskGB              int     `json:"disk_gb"`
	DiskPricePerGBMonth float64 `json:"disk_price_gb_month"`
	Source              string  `json:"source"`
	// BootDiskMonthly is the boot disk's part of Monthly (a stopped VM
	// keeps it; a deprovisioned one does not).
	BootDiskMonthly float64 `json:"boot_disk_monthly,omitempty"`
}

// StoppedCost prices what h still costs once stopped (deprovision: once
// its VM is deleted): its disks, from this service's catalog; nil when
// stopping leaves nothing billed (a deprovision on a provider whose disks
// die with the VM).
func (s *Service) StoppedCost(ctx context.Context, h model.Host, deprovision bool) *StoppedCost {
	if deprovision {
		if p, err := s.Providers.Get(ctx, h.Provider); err != nil || !p.Capabilities().PersistentDisk {
			return nil
		}
	}
	dp := s.CatalogCache().Disk.ForHost(h.Provider, h.Spec.DiskPricePerGBMonth, h.Spec.DiskPriceSource)
	if dp.Included && (deprovision || h.Spec.BootDiskMonthly == 0) {
		return nil // nothing of it is billed while off
	}
	monthly := catalog.StoppedMonthly(dp, h.Spec.DiskGB)
	gb := h.Spec.DiskGB
	if gb <= 0 {
		gb = catalog.DefaultDiskGB
	}
	sc := &StoppedCost{Monthly: monthly, DiskGB: gb, DiskPricePerGBMonth: dp.PerGBMonth, Source: dp.Source}
	if !deprovision {
		sc.BootDiskMonthly = catalog.Cents(h.Spec.BootDiskMonthly)
		sc.Monthly = catalog.Cents(sc.Monthly + sc.BootDiskMonthly)
	}
	return sc
}
