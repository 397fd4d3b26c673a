package cli

import (
	"context"
	"fmt"
	"strings"

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
type CatalogResult = catalog.SearchResult

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
	ops, err := f.Ops()
	if err != nil {
		return err
	}
	res, err := ops.SearchCatalog(ctx, catalog.Search{Limit: o.Limit, Query: catalog.Query{Providers: o.Clouds, Region: o.Region,
		Zone: o.Zone, MachineType: o.MachineType, GPUModel: o.GPU, GPUCount: o.GPUs, CPUs: o.CPUs, MemoryGiB: o.RAM,
		MaxPrice: o.MaxPrice, Spot: o.Spot, IncludeUnavailable: o.All}})
	if err != nil {
		return err
	}
	return f.render(res, func(o *Out) error { return printCatalog(f, o, res, res.Disk) })
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

// RefreshResult is `catalog refresh`'s JSON.
type RefreshResult = catalog.RefreshResult

func newCatalogRefreshCmd(f *Factory) *cobra.Command {
	var clouds []string
	cmd := &cobra.Command{
		Use:   "refresh",
		Short: "Fetch catalogs and prices now",
		Long: `Fetch the catalogs (machine types, prices and capacity) of the configured
clouds, or of --cloud, and replace their cache. A fetch that fails, or
returns a malformed catalog, leaves that cloud's cache as it was and is
reported by name; the other clouds are still refreshed. Rows of a cloud's
payload that fail validation (one odd machine type) are left out and
reported (skipped, with the first reasons); the refresh fails only when
the payload's shape is wrong or no valid row remains.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ops, err := f.Ops()
			if err != nil {
				return err
			}
			res, err := ops.RefreshCatalog(cmd.Context(), clouds)
			if err != nil {
				return err
			}
			err = f.render(res, func(o *Out) error {
				for _, r := range res.Refreshed {
					fmt.Fprintf(o, "%s: %d machine types in %d rows (machine type and place; %d with capacity), prices from %s (%s)\n",
						r.Provider, r.MachineTypes, r.Rows, r.Available, orDash(r.PricingSource), r.PricingVersion)
					if r.Skipped > 0 {
						first := ""
						if r.Skipped > len(r.SkipReasons) {
							first = fmt.Sprintf("the first %d: ", len(r.SkipReasons))
						}
						fmt.Fprintf(o, "%s: left out %d invalid rows of its payload (%s%s)\n", r.Provider, r.Skipped, first, strings.Join(r.SkipReasons, "; "))
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			return res.Err()
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
