package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// CatalogOptions are the inputs of `catalog`.
type CatalogOptions struct {
	Clouds      []string
	Region      string
	Zone        string
	MachineType string
	GPU         string
	GPUs        int
	CPUs        int
	RAM         float64
	MaxPrice    float64
	Spot        bool
	All         bool
	Limit       int
}

// CatalogResult is `catalog`'s JSON.
type CatalogResult struct {
	Query    catalog.Query   `json:"query"`
	Total    int             `json:"total"`
	Entries  []catalog.Entry `json:"entries"`
	Warnings []string        `json:"warnings"`
}

func newCatalogCmd(f *Factory) *cobra.Command {
	o := &CatalogOptions{}
	cmd := &cobra.Command{
		Use:   "catalog [flags]",
		Short: "List machines across clouds, cheapest first",
		Long: `List the machine types of the configured clouds (or --cloud) that meet every
given minimum, cheapest first: provider, region, zone, type, vCPUs, memory,
GPUs, hourly on-demand and spot price, and whether the cloud has capacity.

Catalogs are cached in the state database: machine types and prices for
catalog.ttl.machine_types, capacity for catalog.ttl.capacity. An expired
catalog is fetched again when used; if that fails, the expired one is shown
with a warning. ` + "`catalog refresh`" + ` fetches them now; ` + "`worker`" + ` refreshes
expired ones every catalog.refresh_interval.`,
		Example: `  cocalc-hosts catalog --gpu l4
  cocalc-hosts catalog --gpu a100 --gpus 2 --ram 128 --max-price 8
  cocalc-hosts catalog --cloud sim --cpu 8 --region sim-east1 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCatalog(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVarP(&o.Clouds, "cloud", "c", nil, "only these providers (comma-separated; default: every configured one)")
	fl.StringVar(&o.Region, "region", "", "only this region")
	fl.StringVar(&o.Zone, "zone", "", "only this zone")
	fl.StringVar(&o.MachineType, "machine-type", "", "only this machine type")
	fl.StringVar(&o.GPU, "gpu", "", "GPU model, e.g. l4, a100, h100")
	fl.IntVar(&o.GPUs, "gpus", 0, "minimum number of GPUs (default 1 with --gpu)")
	fl.IntVar(&o.CPUs, "cpu", 0, "minimum vCPUs")
	fl.Float64Var(&o.RAM, "ram", 0, "minimum memory in GiB")
	fl.Float64Var(&o.MaxPrice, "max-price", 0, "maximum price in USD per hour")
	fl.BoolVar(&o.Spot, "spot", false, "price by spot price; only machines with one")
	fl.BoolVar(&o.All, "all", false, "include machines the cloud has no capacity for now")
	fl.IntVar(&o.Limit, "limit", 25, "show at most this many (0: all)")
	cmd.RegisterFlagCompletionFunc("cloud", completeProviders) //nolint:errcheck
	cmd.AddCommand(newCatalogRefreshCmd(f))
	return cmd
}

func runCatalog(ctx context.Context, f *Factory, o *CatalogOptions) error {
	if o.GPUs < 0 || o.CPUs < 0 || o.RAM < 0 || o.MaxPrice < 0 || o.Limit < 0 {
		return usagef("--gpus, --cpu, --ram, --max-price and --limit must not be negative")
	}
	cache, err := f.Catalog(ctx)
	if err != nil {
		return err
	}
	ps, err := catalogProviders(ctx, f, o.Clouds)
	if err != nil {
		return err
	}
	cats, errs := cache.GetAll(ctx, ps)
	if len(cats) == 0 {
		return errors.Join(errs...)
	}
	res := CatalogResult{Entries: []catalog.Entry{}, Warnings: catalogWarnings(cats, errs)}
	q := catalog.Query{Providers: o.Clouds, Region: o.Region, Zone: o.Zone, MachineType: o.MachineType,
		GPUModel: o.GPU, GPUCount: o.GPUs, CPUs: o.CPUs, MemoryGiB: o.RAM, MaxPrice: o.MaxPrice, Spot: o.Spot,
		IncludeUnavailable: o.All}
	if len(q.Providers) == 0 {
		for _, c := range cats {
			q.Providers = append(q.Providers, c.Provider)
		}
	}
	res.Query = q
	entries := catalog.Entries(cats)
	if err := catalog.Validate(entries, q); err != nil {
		return usageErr(err)
	}
	match := catalog.Matches(entries, q)
	if len(match) == 0 {
		_, _, err := catalog.Select(entries, q)
		return usageErr(err)
	}
	res.Total = len(match)
	if o.Limit > 0 && len(match) > o.Limit {
		match = match[:o.Limit]
	}
	res.Entries = match
	return f.render(res, func(o *Out) error { return printCatalog(f, o, res, cache.Disk) })
}

func printCatalog(f *Factory, o *Out, res CatalogResult, disk catalog.DiskPricing) error {
	for _, w := range res.Warnings {
		fmt.Fprintln(f.IO.ErrOut, "warning: "+w)
	}
	t := o.table("CLOUD", "REGION", "ZONE", "TYPE", "VCPUS", "RAM GIB", "GPU", "$/HOUR", "SPOT $/HOUR", "DISK $/GB-MO", "CAPACITY", "PRICES")
	for _, e := range res.Entries {
		gpu := "-"
		if e.GPUCount > 0 {
			gpu = fmt.Sprintf("%d x %s", e.GPUCount, e.GPUModel)
			if e.GPUMemoryGiB > 0 {
				gpu += " (" + model.FormatGiB(e.GPUMemoryGiB) + "G)"
			}
		}
		spot := "-"
		if e.SpotPrice > 0 {
			spot = fmt.Sprintf("%.4f", e.SpotPrice)
		}
		capacity := "yes"
		if !e.Available {
			capacity = "no"
		}
		t.row(e.Provider, e.Region, orDash(e.Zone), e.InstanceType, fmt.Sprint(e.VCPUs), model.FormatGiB(e.MemoryGiB),
			gpu, fmt.Sprintf("%.4f", e.HourlyPrice), spot, fmt.Sprintf("%.4f", disk.ForEntry(e).PerGBMonth), capacity, orDash(e.PricingSource))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if res.Total > len(res.Entries) {
		fmt.Fprintf(f.IO.ErrOut, "%d more; --limit 0 shows all\n", res.Total-len(res.Entries))
	}
	return nil
}

func catalogWarnings(cats []catalog.Catalog, errs []error) []string {
	out := []string{}
	for _, c := range cats {
		if c.Warning != "" {
			out = append(out, c.Warning)
		}
	}
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

// catalogProviders opens the named providers, or every configured one.
func catalogProviders(ctx context.Context, f *Factory, names []string) ([]provider.Provider, error) {
	set, err := f.Providers(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		m, err := set.Configured(ctx)
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			return nil, usagef("no cloud is configured; add one with `cocalc-hosts providers add NAME --credentials FILE`, or name one with --cloud (see `cocalc-hosts providers`)")
		}
		for n := range m {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	var ps []provider.Provider
	for _, n := range names {
		if _, err := provider.Lookup(n); err != nil {
			return nil, usageErr(err)
		}
		p, err := set.Get(ctx, n)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// RefreshResult is `catalog refresh`'s JSON.
type RefreshResult struct {
	Refreshed []RefreshedCatalog `json:"refreshed"`
	Failed    []RefreshFailure   `json:"failed"`
}

// RefreshedCatalog is one provider's fresh catalog.
type RefreshedCatalog struct {
	Provider string `json:"provider"`
	// Rows are offers: a machine type in one region or zone.
	Rows         int `json:"rows"`
	MachineTypes int `json:"machine_types"`
	// Available counts rows with capacity.
	Available      int       `json:"available"`
	PricingSource  string    `json:"pricing_source"`
	PricingVersion string    `json:"pricing_version"`
	FetchedAt      time.Time `json:"fetched_at"`
}

// RefreshFailure is a provider whose catalog could not be refreshed.
type RefreshFailure struct {
	Provider string `json:"provider"`
	Error    string `json:"error"`
}

func newCatalogRefreshCmd(f *Factory) *cobra.Command {
	var clouds []string
	cmd := &cobra.Command{
		Use:   "refresh",
		Short: "Fetch catalogs and prices now",
		Long: `Fetch the catalogs (machine types, prices and capacity) of the configured
clouds, or of --cloud, and replace their cache. A fetch that fails, or
returns a malformed catalog, leaves that cloud's cache as it was and is
reported by name; the other clouds are still refreshed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cache, err := f.Catalog(ctx)
			if err != nil {
				return err
			}
			ps, err := catalogProviders(ctx, f, clouds)
			if err != nil {
				return err
			}
			cats, errs := cache.RefreshAll(ctx, ps)
			res := RefreshResult{Refreshed: []RefreshedCatalog{}, Failed: []RefreshFailure{}}
			for _, c := range cats {
				rc := RefreshedCatalog{Provider: c.Provider, Rows: len(c.Entries), FetchedAt: c.FetchedAt}
				types := map[string]bool{}
				for _, e := range c.Entries {
					types[e.InstanceType] = true
					if e.Available {
						rc.Available++
					}
				}
				rc.MachineTypes = len(types)
				if len(c.Entries) > 0 {
					rc.PricingSource, rc.PricingVersion = c.Entries[0].PricingSource, c.Entries[0].PricingVersion
				}
				res.Refreshed = append(res.Refreshed, rc)
			}
			var names []string
			for _, err := range errs {
				name := "?"
				var re *catalog.RefreshError
				if errors.As(err, &re) {
					name = re.Provider
				}
				names = append(names, name)
				res.Failed = append(res.Failed, RefreshFailure{Provider: name, Error: err.Error()})
			}
			err = f.render(res, func(o *Out) error {
				for _, r := range res.Refreshed {
					fmt.Fprintf(o, "%s: %d machine types in %d rows (machine type and place; %d with capacity), prices from %s (%s)\n",
						r.Provider, r.MachineTypes, r.Rows, r.Available, orDash(r.PricingSource), r.PricingVersion)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(errs) > 0 {
				return fmt.Errorf("catalog refresh failed for %s: %w", strings.Join(names, ", "), errors.Join(errs...))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&clouds, "cloud", "c", nil, "only these providers (default: every configured one)")
	cmd.RegisterFlagCompletionFunc("cloud", completeProviders) //nolint:errcheck
	return cmd
}

// DryRunResult is `create --dry-run`'s JSON: the plan, nothing created.
type DryRunResult struct {
	DryRun bool   `json:"dry_run"`
	Name   string `json:"name"`
	hosts.Plan
	// StoppedMonthly is what the host would cost per month while off.
	StoppedMonthly float64 `json:"stopped_monthly"`
}

func runCreateDryRun(ctx context.Context, f *Factory, svc HostService, req hosts.CreateRequest) error {
	plan, err := svc.Plan(ctx, req)
	if err != nil {
		return err
	}
	res := DryRunResult{DryRun: true, Name: req.Name, Plan: plan, StoppedMonthly: plan.Estimate.StoppedMonthly}
	return f.render(res, func(o *Out) error { return printDryRun(f, o, req, plan) })
}

// estimateText is what e costs per month running, part by part: only
// what its provider bills.
func estimateText(e catalog.Estimate) string {
	s := fmt.Sprintf("$%.2f/month running = $%.2f compute (%d h)", e.Monthly, e.ComputeMonthly, catalog.HoursPerMonth)
	if e.DiskIncluded {
		s += " (no data disk is billed apart: " + strings.TrimPrefix(e.DiskPriceSource, "none: ") + ")"
	} else {
		s += fmt.Sprintf(" + $%.2f for a %d GB data disk at $%.4f/GB-month (%s)", e.DiskMonthly, e.DiskGB, e.DiskPricePerGBMonth, e.DiskPriceSource)
	}
	if e.BootDiskMonthly > 0 {
		s += fmt.Sprintf(" + $%.2f for the boot disk", e.BootDiskMonthly)
	}
	return s
}

// stoppedText is what the host of e costs while stopped, or that it
// cannot be stopped.
func stoppedText(e catalog.Estimate) string {
	if e.Stop == provider.StopNone {
		return fmt.Sprintf("%s cannot stop a host; `stop --deprovision` or `delete` ends its billing", e.Provider)
	}
	switch {
	case e.DiskIncluded && e.BootDiskMonthly == 0:
		return fmt.Sprintf("$%.2f/month: nothing is billed while it is off", e.StoppedMonthly)
	case e.BootDiskMonthly > 0:
		return fmt.Sprintf("$%.2f/month for the disks alone", e.StoppedMonthly)
	}
	return fmt.Sprintf("$%.2f/month for the disk alone", e.StoppedMonthly)
}

func printDryRun(f *Factory, w *Out, req hosts.CreateRequest, plan hosts.Plan) error {
	for _, w := range plan.Warnings {
		fmt.Fprintln(f.IO.ErrOut, "warning: "+w)
	}
	c, e := plan.Choice, plan.Estimate
	where := c.Region
	if c.Zone != "" {
		where += " / " + c.Zone
	}
	gpu := ""
	if c.GPUCount > 0 {
		gpu = fmt.Sprintf(", %d x %s", c.GPUCount, c.GPUModel)
	}
	fmt.Fprintf(w, "dry run: would create host %s on %s: %s in %s (%d vCPUs, %s GiB%s)\n",
		req.Name, c.Provider, c.InstanceType, where, c.VCPUs, model.FormatGiB(c.MemoryGiB), gpu)
	prices := orDash(c.PricingSource)
	if c.Simulated && !strings.Contains(prices, "simulated") {
		prices += ", simulated"
	}
	kind := ""
	if req.Spec.Spot {
		kind = " spot"
	}
	fmt.Fprintf(w, "price:    $%.4f/hour%s (prices: %s, version %s)\n", e.HourlyPrice, kind, prices, c.PricingVersion)
	fmt.Fprintln(w, "estimate: "+estimateText(e))
	fmt.Fprintln(w, "stopped:  "+stoppedText(e))
	if plan.Alternatives > 0 {
		clouds := strings.Join(append([]string{c.Provider}, plan.OtherClouds...), ", ")
		fmt.Fprintf(w, "%d other machines on %s meet the request; if this one has no capacity they are tried cheapest first\n",
			plan.Alternatives, clouds)
	}
	fmt.Fprintln(w, "nothing was created")
	return nil
}
