package hosts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
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
	// Warnings are catalogs that could not be refreshed (stale ones were
	// used) or clouds left out of the search.
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
	warnings = append(warnings, skipped...)
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
			return Plan{}, &InvalidError{Msg: err.Error()}
		}
		return Plan{}, err
	}
	req.Provider = choice.Provider
	req.Region, req.Zone = choice.Region, choice.Zone
	// The spec records the machine as chosen: its GPUs are exactly what
	// the provider attaches (the request's minimums stay in q).
	req.Spec.MachineType, req.Spec.GPUModel, req.Spec.GPUCount = choice.InstanceType, choice.GPUModel, choice.GPUCount
	// Fallbacks stay on the chosen cloud: a host does not change clouds
	// while it is being created.
	q.Providers = []string{choice.Provider}
	alternatives := 0
	for _, e := range rest {
		if e.Provider == choice.Provider {
			alternatives++
		}
	}
	return Plan{Choice: choice, Estimate: cache.Disk.Estimate(choice, req.Spec.Spot, req.Spec.DiskGB),
		Alternatives: alternatives, Query: q, Warnings: warnings}, nil
}

// candidateProviders returns the providers to search: the named one (its
// capabilities must allow the request), or every configured one whose
// capabilities do, with a note for each left out.
func (s *Service) candidateProviders(ctx context.Context, req *CreateRequest) ([]provider.Provider, []string, error) {
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
		if a, ok := m[n].(Adopter); ok && a.AdoptsMachines() {
			continue // adopts the machine given by --address; never picked by price
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
// (other zones, regions or types meeting the same minimums), it tries
// them cheapest first. Each new choice is written to the host before its
// create is attempted, so a worker that takes the job over after a crash
// resumes with the machine that may already exist.
func (s *Service) createWithFallback(ctx context.Context, p provider.Provider, h *model.Host, payload json.RawMessage, progress func(string)) (provider.Instance, error) {
	inst, err := s.createInstance(ctx, p, *h)
	if err == nil || provider.KindOf(err) != provider.KindCapacity {
		return inst, err
	}
	var pl createPayload
	if json.Unmarshal(payload, &pl) != nil || pl.Query == nil {
		return inst, err // an exact request: nothing else to try
	}
	cat, cerr := s.CatalogCache().Get(ctx, p)
	if cerr != nil {
		return inst, err
	}
	q := *pl.Query
	q.Providers = []string{p.Name()}
	tried := map[string]bool{catalog.Key(catalog.Entry{Region: h.Region, Zone: h.Zone, InstanceType: h.Spec.MachineType,
		GPUModel: h.Spec.GPUModel, GPUCount: h.Spec.GPUCount}): true}
	n := 0
	for _, c := range catalog.Matches(cat.Entries, q) {
		k := catalog.Key(c)
		if tried[k] {
			continue
		}
		if n == MaxCapacityFallbacks {
			break
		}
		tried[k] = true
		n++
		progress(fmt.Sprintf("no capacity for %s in %s; trying %s in %s at $%.4f/hour",
			h.Spec.MachineType, where(h.Region, h.Zone), c.InstanceType, where(c.Region, c.Zone), q.Price(c)))
		h.Region, h.Zone, h.HourlyPrice, h.UpdatedAt = c.Region, c.Zone, q.Price(c), s.Now()
		h.Spec.MachineType, h.Spec.GPUModel, h.Spec.GPUCount = c.InstanceType, c.GPUModel, c.GPUCount
		if uerr := s.Store.UpdateHost(ctx, *h); uerr != nil {
			return inst, uerr
		}
		inst, err = s.createInstance(ctx, p, *h)
		if err == nil || provider.KindOf(err) != provider.KindCapacity {
			return inst, err
		}
	}
	if n > 0 {
		return inst, fmt.Errorf("tried %d machines after the first: %w", n, err)
	}
	return inst, err
}

func where(region, zone string) string {
	if zone != "" {
		return zone
	}
	return region
}
