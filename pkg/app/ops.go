package app

import (
	"context"
	"slices"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
)

// Ops are the operations on the deployment as a whole (cost, the machine
// catalog, the providers, reconcile): what `cost`, `catalog`, `providers`
// and `reconcile` ask in direct mode, and what a server answers its
// clients with.
type Ops struct{ a *App }

// Ops returns the deployment's operations.
func (a *App) Ops() Ops { return Ops{a} }

// Cost reports what hosts cost.
func (o Ops) Cost(ctx context.Context, r cost.ReportOptions) (cost.Report, error) {
	cs, err := o.a.Cost(ctx)
	if err != nil {
		return cost.Report{}, err
	}
	return cs.Report(ctx, r)
}

// SearchCatalog lists the machines of s.Query.Providers (every configured
// provider when empty) that meet s.Query.
func (o Ops) SearchCatalog(ctx context.Context, s catalog.Search) (catalog.SearchResult, error) {
	cache, ps, err := o.catalog(ctx, s.Query.Providers)
	if err != nil {
		return catalog.SearchResult{}, err
	}
	return cache.Search(ctx, ps, s)
}

// RefreshCatalog fetches the catalogs of clouds (every configured provider
// when empty) now.
func (o Ops) RefreshCatalog(ctx context.Context, clouds []string) (catalog.RefreshResult, error) {
	cache, ps, err := o.catalog(ctx, clouds)
	if err != nil {
		return catalog.RefreshResult{}, err
	}
	return cache.RefreshSummary(ctx, ps), nil
}

// catalog is the catalog cache and the providers named (or every
// configured one).
func (o Ops) catalog(ctx context.Context, names []string) (*catalog.Cache, []provider.Provider, error) {
	cache, err := o.a.Catalog(ctx)
	if err != nil {
		return nil, nil, err
	}
	set, err := o.a.Providers(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 {
		m, err := set.Configured(ctx)
		if err != nil {
			return nil, nil, err
		}
		if len(m) == 0 {
			return nil, nil, errkind.New(errkind.Invalid, "no cloud is configured; add one with `cocalc-hosts providers add NAME --credentials FILE`, or name one with --cloud (see `cocalc-hosts providers`)")
		}
		for n := range m {
			names = append(names, n)
		}
	}
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	var ps []provider.Provider
	for _, n := range names {
		if _, err := provider.Lookup(n); err != nil {
			return nil, nil, errkind.Wrap(errkind.Invalid, err)
		}
		p, err := set.Get(ctx, n)
		if err != nil {
			return nil, nil, err
		}
		ps = append(ps, p)
	}
	return cache, ps, nil
}

// Providers lists every registered provider and whether this
// deployment's configuration sets it up.
func (o Ops) Providers(context.Context) ([]provider.Info, error) {
	configured := map[string]bool{}
	for _, n := range o.a.cfg.ConfiguredProviders() {
		configured[n] = true
	}
	out := []provider.Info{}
	for _, r := range provider.Registered() {
		out = append(out, provider.Info{Name: r.Name, Description: r.Description, Capabilities: r.Capabilities,
			Configured: configured[r.Name]})
	}
	return out, nil
}

// Reconcile runs one reconcile pass (see App.Reconcile).
func (o Ops) Reconcile(ctx context.Context, p reconcile.Pass) (reconcile.Report, error) {
	return o.a.Reconcile(ctx, p)
}
