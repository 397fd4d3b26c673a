package catalog

import (
	"math"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// HoursPerMonth converts between hourly and monthly prices, the way GCP
// and Nebius quote them (730 hours = 365 days / 12 months).
const HoursPerMonth = 730

// DefaultDiskGB is the data disk size of a host created without --disk:
// providers make a 10 GB disk then (the provider contract suite checks it).
const DefaultDiskGB = 10

// DiskPrice is the price of a provider's data disk.
type DiskPrice struct {
	PerGBMonth float64 `json:"per_gb_month"`
	Source     string  `json:"source"`
	// Included: the provider bills no data disk of its own (see
	// DiskIncluded); PerGBMonth is 0.
	Included bool `json:"included,omitempty"`
}

// DiskIncluded reports whether a provider's hosts keep their data on the
// machine itself, so that no data disk is billed apart from the machine:
// a provider without a disk that outlives the VM (Capabilities
// .PersistentDisk) — Lambda's instance disk is in its hourly price, an
// adopted machine is the user's own. This is the one place that decides
// whether estimates, stop's line, show and cost bill a data disk.
func DiskIncluded(providerName string) bool {
	r, err := provider.Lookup(providerName)
	return err == nil && !r.Capabilities.PersistentDisk
}

// includedDisk is the price of a disk that is part of the machine.
func includedDisk(providerName string) DiskPrice {
	return DiskPrice{Included: true, Source: "none: " + providerName + " keeps the data on the machine, in its price"}
}

// DiskPricing holds the disk prices set in the config
// (pricing.disk_gb_month.NAME), per provider. A configured price wins —
// it is the operator's word for a contract or region; then comes the
// price the cloud's own pricing source gives for the region (carried on
// catalog rows, and recorded on a host at launch); then a list-price
// default.
type DiskPricing map[string]DiskPrice

// DefaultDiskPrices are USD list prices per GB-month of the data disk
// each provider creates, for clouds whose pricing source does not price
// disks (Lambda's API publishes no storage price) and rows fetched
// before it did.
var DefaultDiskPrices = DiskPricing{
	"gcp":        {PerGBMonth: 0.10, Source: "list price of GCP pd-balanced (us regions)"},
	"hyperstack": {PerGBMonth: 0.07, Source: "estimate for Hyperstack volumes"},
	"nebius":     {PerGBMonth: 0.10, Source: "estimate for Nebius network SSD disks"},
	"sim":        {PerGBMonth: 0.10, Source: "simulated"},
	"local":      {PerGBMonth: 0, Source: "this machine's own disk"},
}

// For returns the disk price of a provider when nothing more specific is
// known: its configured or default price, else zero with a source saying
// how to set one.
func (d DiskPricing) For(providerName string) DiskPrice {
	if DiskIncluded(providerName) {
		return includedDisk(providerName)
	}
	if p, ok := d[providerName]; ok {
		return p
	}
	if p, ok := DefaultDiskPrices[providerName]; ok {
		return p
	}
	return DiskPrice{Source: "unknown; set pricing.disk_gb_month." + providerName}
}

// ForEntry is the disk price of a host made from catalog row e.
func (d DiskPricing) ForEntry(e Entry) DiskPrice {
	return d.ForHost(e.Provider, e.DiskPricePerGBMonth, e.PricingSource+" ("+e.Region+")")
}

// ForHost is the disk price of a host whose disk was priced at launchPrice
// (0: not recorded) by source.
func (d DiskPricing) ForHost(providerName string, launchPrice float64, source string) DiskPrice {
	if DiskIncluded(providerName) {
		return includedDisk(providerName)
	}
	if p, ok := d[providerName]; ok {
		return p
	}
	if launchPrice > 0 {
		return DiskPrice{PerGBMonth: launchPrice, Source: source}
	}
	return d.For(providerName)
}

// Estimate is what a machine with a data disk costs.
type Estimate struct {
	Provider            string  `json:"provider"`
	HourlyPrice         float64 `json:"hourly_price"`
	DiskGB              int     `json:"disk_gb"`
	DiskPricePerGBMonth float64 `json:"disk_price_gb_month"`
	DiskPriceSource     string  `json:"disk_price_source"`
	// Monthly figures assume HoursPerMonth hours running.
	ComputeMonthly float64 `json:"compute_monthly"`
	DiskMonthly    float64 `json:"disk_monthly"`
	// BootDiskMonthly is the boot disk's price, where the machine price
	// does not include it; it is billed while the VM exists.
	BootDiskMonthly float64 `json:"boot_disk_monthly"`
	Monthly         float64 `json:"monthly"`
	// StoppedMonthly is what the host costs while stopped: its disks.
	StoppedMonthly float64 `json:"stopped_monthly"`
	// DiskIncluded: the data is on the machine, in its price; DiskGB is 0.
	DiskIncluded bool `json:"disk_included,omitempty"`
	// Stop is what stopping means on the provider; with StopNone the
	// host cannot be stopped, so StoppedMonthly is 0.
	Stop           provider.StopKind `json:"stop,omitempty"`
	PricingVersion string            `json:"pricing_version,omitempty"`
	Simulated      bool              `json:"simulated,omitempty"`
}

// Estimate prices e running all month with a diskGB data disk (0: the
// default size), at its spot price if spot. Only what the provider bills
// is counted: no data disk where it is part of the machine, nothing
// while stopped where a host cannot be stopped.
func (d DiskPricing) Estimate(e Entry, spot bool, diskGB int) Estimate {
	if diskGB <= 0 {
		diskGB = DefaultDiskGB
	}
	hourly := e.HourlyPrice
	if spot {
		hourly = e.SpotPrice
	}
	dp := d.ForEntry(e)
	if dp.Included {
		diskGB = 0
	}
	est := Estimate{
		Provider: e.Provider, HourlyPrice: hourly, DiskGB: diskGB,
		DiskPricePerGBMonth: dp.PerGBMonth, DiskPriceSource: dp.Source, DiskIncluded: dp.Included,
		ComputeMonthly: Cents(hourly * HoursPerMonth), DiskMonthly: Cents(float64(diskGB) * dp.PerGBMonth),
		BootDiskMonthly: Cents(e.BootDiskMonthly), PricingVersion: VersionTag(e), Simulated: e.Simulated,
	}
	if r, err := provider.Lookup(e.Provider); err == nil {
		est.Stop = r.Capabilities.Stop
	}
	est.Monthly = Cents(est.ComputeMonthly + est.DiskMonthly + est.BootDiskMonthly)
	if est.Stop != provider.StopNone {
		est.StoppedMonthly = Cents(est.DiskMonthly + est.BootDiskMonthly)
	}
	return est
}

// StoppedMonthly is what a stopped host still costs per month: its disk,
// at price dp.
func StoppedMonthly(dp DiskPrice, diskGB int) float64 {
	if dp.Included {
		return 0
	}
	if diskGB <= 0 {
		diskGB = DefaultDiskGB
	}
	return Cents(float64(diskGB) * dp.PerGBMonth)
}

// Cents rounds an amount of dollars to whole cents, for display.
func Cents(f float64) float64 { return math.Round(f*100) / 100 }
