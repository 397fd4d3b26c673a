package gcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// Catalog prices, and where they come from.
const (
	PricingSource = "gcp-billing-catalog"
	// computeServiceID is Compute Engine's service in the billing catalog.
	computeServiceID = "services/6F81-5844-456A"
)

// A machine type's price is not listed as such: GCE bills vCPUs, memory
// and GPUs separately, per family and region. The SKU descriptions name
// them, e.g. "N2 Instance Core running in Americas", "Spot Preemptible N2
// Instance Ram running in Americas", "Nvidia L4 GPU running in Iowa",
// "Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas".
// Commitments, custom shapes, sole tenancy and workstation SKUs do not
// match these patterns on purpose. Which regions a SKU covers comes from
// its serviceRegions, not from the description.
var (
	skuCoreRamRE = lazyre.New(`^(?:Spot Preemptible )?([A-Z][A-Z0-9]*)(?: AMD| Arm| Intel)?(?: Predefined)? Instance (Core|Ram) running in .+$`)
	skuGPURE     = lazyre.New(`(?i)^(?:Spot Preemptible )?Nvidia (?:Tesla )?(.+?) GPU(?: attached to Spot Preemptible VMs)? running in .+$`)
)

// Zonal persistent disks are billed per GiB-month of provisioned
// capacity under SKUs such as "Balanced PD Capacity" or "SSD backed PD
// Capacity in Netherlands". "Regional ..." SKUs price replicated disks,
// which the provider never creates, and are not matched (anchored ^).
var skuDiskRE = lazyre.New(`^(Balanced|SSD backed|Storage|Extreme) PD Capacity(?: in .+)?$`)

// diskTypeOfSKU maps a capacity SKU's first words to the disk type that
// data_disk_type names. Hyperdisk types are absent on purpose: they also
// bill provisioned IOPS and throughput, so a capacity price alone would
// understate them; they get 0 and the default disk price applies.
// pd-extreme also bills provisioned IOPS, which its price here leaves out.
var diskTypeOfSKU = map[string]string{
	"Balanced":   "pd-balanced",
	"SSD backed": "pd-ssd",
	"Storage":    "pd-standard",
	"Extreme":    "pd-extreme",
}

// hoursPerMonth converts an hourly disk rate to a monthly one, the same
// 730 as pkg/catalog.HoursPerMonth (providers sit below pkg/catalog and
// must not import it).
const hoursPerMonth = 730

// Attachable GPUs go on N1 machines; these shapes are offered with them.
// GCE allows at most 12 vCPUs and 78 GB of memory per attached GPU on the
// strictest model (V100), so only shapes within that are listed.
var gpuHostFamilies = []string{"n1-standard-", "n1-highmem-"}

const (
	maxVCPUsPerAttachedGPU  = 12
	maxMemGiBPerAttachedGPU = 78
)

// gpuMemoryGiB is the memory of one GPU when its accelerator name does not
// say (names such as nvidia-a100-80gb do).
var gpuMemoryGiB = map[string]float64{
	"t4": 16, "l4": 24, "p4": 8, "p100": 16, "v100": 16, "k80": 12,
	"a100": 40, "h100": 80, "h200": 141, "b200": 180,
}

// gpu describes an accelerator type name such as nvidia-tesla-a100 or
// nvidia-h100-80gb.
type gpu struct {
	model       string // "a100"
	variant     string // "80gb", or "" for the plain model
	memoryGiB   float64
	workstation bool // "-vws" types are for remote desktops
}

var memTokenRE = lazyre.New(`^([0-9]+)gb$`)

func gpuOf(acceleratorType string) gpu {
	name := strings.ToLower(acceleratorType)
	name = strings.TrimPrefix(name, "nvidia-")
	name = strings.TrimPrefix(name, "tesla-")
	g := gpu{}
	if strings.HasSuffix(name, "-vws") {
		g.workstation = true
		name = strings.TrimSuffix(name, "-vws")
	}
	toks := strings.Split(name, "-")
	g.model = toks[0]
	g.variant, g.memoryGiB = variantOf(toks[1:])
	if g.memoryGiB == 0 {
		g.memoryGiB = gpuMemoryGiB[g.model]
	}
	return g
}

// variantOf normalizes the words after a GPU model ("80GB", "Mega"), so
// an accelerator name and a SKU description of the same GPU agree.
func variantOf(words []string) (string, float64) {
	var mem float64
	var toks []string
	for _, w := range words {
		w = strings.ToLower(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		if m := memTokenRE().FindStringSubmatch(w); m != nil {
			fmt.Sscan(m[1], &mem)
		}
		toks = append(toks, w)
	}
	sort.Strings(toks)
	return strings.Join(toks, "-"), mem
}

type diskKey struct {
	diskType string // "pd-balanced"
	region   string
}

type priceKey struct {
	family string // "n2", or a GPU "model/variant"
	part   string // "core", "ram" or "gpu"
	region string
	spot   bool
}

// prices is what the catalog learned from the billing SKUs.
type prices struct {
	rate    map[priceKey]float64
	skuIDs  map[priceKey]string
	version string
	// disk is USD per GiB-month of a zonal disk type in a region.
	disk       map[diskKey]float64
	diskSKUIDs map[diskKey]string
}

// diskPrice is the USD price per GB-month of diskType in region, or 0
// when the catalog has no capacity SKU for it there. GCP sizes disks in
// GiB and calls them GB (sizeGb); the SKU price is per GiB-month and is
// used as is, since a host's disk size in GB is passed to GCP as sizeGb.
func (ps *prices) diskPrice(diskType, region string) float64 {
	return round(ps.disk[diskKey{diskType: diskType, region: region}], 6)
}

// keepDearer records SKU id's price for k, unless another SKU already
// prices k higher: of two SKUs for the same thing the dearer is kept, so
// a price is never understated.
func keepDearer[K comparable](rate map[K]float64, ids map[K]string, k K, id string, price float64) {
	if prev, dup := ids[k]; dup && prev != id && rate[k] >= price {
		return
	}
	rate[k], ids[k] = price, id
}

func (ps *prices) get(k priceKey) (float64, bool) {
	v, ok := ps.rate[k]
	return v, ok
}

// Catalog lists every machine type the project can use in the catalog's
// zones, priced from the billing catalog. A payload that does not parse
// or does not make sense fails the whole call: a partial catalog would
// make the cheapest-machine choice silently wrong.
func (p *Provider) Catalog(ctx context.Context) ([]provider.CatalogEntry, error) {
	p.catalogMu.Lock()
	defer p.catalogMu.Unlock()
	ps, err := p.fetchPrices(ctx)
	if err != nil {
		return nil, err
	}
	mts, err := p.fetchMachineTypes(ctx)
	if err != nil {
		return nil, err
	}
	accs, err := p.fetchAcceleratorTypes(ctx)
	if err != nil {
		return nil, err
	}
	out, err := buildCatalog(ps, mts, accs)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].DiskPricePerGBMonth = ps.diskPrice(p.opts.dataDiskType, out[i].Region)
		out[i].BootDiskMonthly = round(float64(p.opts.bootDiskGB)*ps.diskPrice(p.opts.bootDiskType, out[i].Region), 6)
	}
	return out, nil
}

func malformed(format string, args ...any) error {
	return provider.Errorf(errkind.Transient, Name, "catalog", "malformed payload: "+format, args...)
}

// fetchPrices reads the Compute Engine SKUs of the billing catalog.
func (p *Provider) fetchPrices(ctx context.Context) (*prices, error) {
	const op = "catalog"
	ctx, cancel := p.listCtx(ctx)
	defer cancel()
	var skus []*sku
	err := listSKUs(ctx, p, op, func(page []*sku) {
		skus = append(skus, page...)
	})
	if err != nil {
		return nil, fmt.Errorf("billing catalog: %w", err)
	}
	return parsePrices(skus)
}

// parsePrices indexes the SKUs that price machine parts and zonal disk
// capacity.
func parsePrices(skus []*sku) (*prices, error) {
	if len(skus) == 0 {
		return nil, malformed("the billing catalog lists no Compute Engine SKUs")
	}
	ps := &prices{rate: map[priceKey]float64{}, skuIDs: map[priceKey]string{},
		disk: map[diskKey]float64{}, diskSKUIDs: map[diskKey]string{}}
	var latest time.Time
	var used []string
	machineSKUs := 0
	for _, s := range skus {
		if s == nil || s.SkuID == "" || s.Description == "" {
			return nil, malformed("a SKU without skuId or description")
		}
		if s.Category == nil {
			return nil, malformed("SKU %s (%s) has no category", s.SkuID, s.Description)
		}
		var spot bool
		switch s.Category.UsageType {
		case "OnDemand":
		case "Preemptible":
			spot = true
		default:
			continue // commitments and the like
		}
		var key priceKey
		var diskType, wantUnit string
		if m := skuDiskRE().FindStringSubmatch(s.Description); m != nil && !spot {
			diskType = diskTypeOfSKU[m[1]]
		} else if m := skuCoreRamRE().FindStringSubmatch(s.Description); m != nil {
			key = priceKey{family: strings.ToLower(m[1]), part: strings.ToLower(m[2]), spot: spot}
			if key.part == "ram" {
				wantUnit = "GiBy.h"
			} else {
				key.part, wantUnit = "core", "h"
			}
		} else if m := skuGPURE().FindStringSubmatch(s.Description); m != nil {
			words := strings.Fields(m[1])
			variant, _ := variantOf(words[1:])
			key = priceKey{family: strings.ToLower(words[0]) + "/" + variant, part: "gpu", spot: spot}
			wantUnit = "h"
		} else {
			continue
		}
		var price float64
		var eff time.Time
		var err error
		if diskType != "" {
			price, eff, err = diskUnitPrice(s)
		} else {
			price, _, eff, err = unitPrice(s, wantUnit)
		}
		if err != nil {
			return nil, err
		}
		regions, err := skuRegions(s)
		if err != nil {
			return nil, err
		}
		for _, r := range regions {
			if diskType != "" {
				keepDearer(ps.disk, ps.diskSKUIDs, diskKey{diskType: diskType, region: r}, s.SkuID, price)
				continue
			}
			k := key
			k.region = r
			keepDearer(ps.rate, ps.skuIDs, k, s.SkuID, price)
		}
		used = append(used, fmt.Sprintf("%s=%.9f", s.SkuID, price))
		if diskType == "" {
			machineSKUs++
		}
		if eff.After(latest) {
			latest = eff
		}
	}
	if machineSKUs == 0 {
		return nil, malformed("no SKU prices a vCPU, memory or GPU (%d SKUs read)", len(skus))
	}
	sort.Strings(used)
	sum := sha256.Sum256([]byte(strings.Join(used, "\n")))
	ps.version = hex.EncodeToString(sum[:6])
	if !latest.IsZero() {
		ps.version = latest.UTC().Format("2006-01-02") + "-" + ps.version
	}
	return ps, nil
}

// skuRegions are the regions a SKU covers.
func skuRegions(s *sku) ([]string, error) {
	regions := s.ServiceRegions
	if len(regions) == 0 && s.GeoTaxonomy != nil {
		regions = s.GeoTaxonomy.Regions
	}
	if len(regions) == 0 {
		return nil, malformed("SKU %s (%s) names no service region", s.SkuID, s.Description)
	}
	return regions, nil
}

// diskUnitPrice is a capacity SKU's USD price per GiB-month. The catalog
// lists disk capacity per "GiBy.mo"; a per-GiB-hour listing is converted
// with hoursPerMonth in case a SKU is ever published that way.
func diskUnitPrice(s *sku) (float64, time.Time, error) {
	price, unit, eff, err := unitPrice(s, "GiBy.mo", "GiBy.h")
	if unit == "GiBy.h" {
		price *= hoursPerMonth
	}
	return price, eff, err
}

// unitPrice is the USD price per unit of a SKU: units + nanos/1e9 of the
// last tier (the rate once any free tier is used up) of its most recent
// pricing.
func unitPrice(s *sku, wantUnits ...string) (price float64, unit string, eff time.Time, err error) {
	if len(s.PricingInfo) == 0 {
		return 0, "", time.Time{}, malformed("SKU %s (%s) has no pricingInfo", s.SkuID, s.Description)
	}
	var info *pricingInfo
	for _, pi := range s.PricingInfo {
		if pi == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, pi.EffectiveTime)
		if pi.EffectiveTime != "" && err != nil {
			return 0, "", time.Time{}, malformed("SKU %s has effectiveTime %q, not an RFC 3339 time", s.SkuID, pi.EffectiveTime)
		}
		if info == nil || t.After(eff) {
			info, eff = pi, t
		}
	}
	if info == nil || info.PricingExpression == nil || len(info.PricingExpression.TieredRates) == 0 {
		return 0, "", time.Time{}, malformed("SKU %s (%s) has no tiered rates", s.SkuID, s.Description)
	}
	unit = info.PricingExpression.UsageUnit
	if !slices.Contains(wantUnits, unit) {
		return 0, "", time.Time{}, malformed("SKU %s (%s) is priced per %q, want \"%s\"", s.SkuID, s.Description, unit, strings.Join(wantUnits, `" or "`))
	}
	var tier *tierRate
	for _, tr := range info.PricingExpression.TieredRates {
		if tr != nil && tr.UnitPrice != nil && (tier == nil || tr.StartUsageAmount >= tier.StartUsageAmount) {
			tier = tr
		}
	}
	if tier == nil {
		return 0, "", time.Time{}, malformed("SKU %s (%s) has a tier without unitPrice", s.SkuID, s.Description)
	}
	m := tier.UnitPrice
	if m.CurrencyCode != "" && m.CurrencyCode != "USD" {
		return 0, "", time.Time{}, malformed("SKU %s is priced in %s, want USD", s.SkuID, m.CurrencyCode)
	}
	if m.Nanos <= -1e9 || m.Nanos >= 1e9 {
		return 0, "", time.Time{}, malformed("SKU %s has nanos %d outside ±999999999", s.SkuID, m.Nanos)
	}
	price = float64(m.Units) + float64(m.Nanos)/1e9
	if price < 0 || math.IsNaN(price) {
		return 0, "", time.Time{}, malformed("SKU %s has a negative price %v", s.SkuID, price)
	}
	return price, unit, eff, nil
}

// listSKUs reads the billing catalog's Compute Engine SKUs, page by page.
func listSKUs(ctx context.Context, p *Provider, op string, each func([]*sku)) error {
	path := "/v1/" + computeServiceID + "/skus"
	q := query("currencyCode", "USD", "pageSize", "5000")
	for {
		var pg struct {
			SKUs          []*sku `json:"skus"`
			NextPageToken string `json:"nextPageToken"`
		}
		if err := p.billing.Do(ctx, op, http.MethodGet, path+"?"+q.Encode(), nil, &pg); err != nil {
			return err
		}
		each(pg.SKUs)
		if pg.NextPageToken == "" {
			return nil
		}
		if pg.NextPageToken == q.Get("pageToken") {
			return malformed("the billing catalog repeated page token %q", pg.NextPageToken)
		}
		q.Set("pageToken", pg.NextPageToken)
	}
}

// machineTypes and acceleratorTypes per zone.
type zoneMachineTypes map[string][]machineType
type zoneAccelerators map[string][]acceleratorType

func (p *Provider) fetchMachineTypes(ctx context.Context) (zoneMachineTypes, error) {
	const op = "catalog"
	ctx, cancel := p.listCtx(ctx)
	defer cancel()
	out := zoneMachineTypes{}
	add := func(zone string, mts []machineType) error {
		for _, mt := range mts {
			if mt.Name == "" || mt.GuestCpus <= 0 || mt.MemoryMb <= 0 {
				return malformed("machine type %q in %s has no name, vCPUs or memory", mt.Name, zone)
			}
			out[zone] = append(out[zone], mt)
		}
		return nil
	}
	if len(p.opts.catalogZones) == 0 {
		var bad error
		err := p.aggregatedByZone(ctx, op, "machineTypes", "", func(zone string, l scopedList) {
			if bad == nil {
				bad = add(zone, l.MachineTypes)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("machine types: %w", err)
		}
		return out, bad
	}
	for _, zone := range p.opts.catalogZones {
		err := listAll(ctx, p.compute, op, p.zonePath(zone, "machineTypes"), query("maxResults", "500"),
			func(mts []machineType) error { return add(zone, mts) })
		if err != nil {
			return nil, fmt.Errorf("machine types in %s: %w", zone, err)
		}
	}
	return out, nil
}

func (p *Provider) fetchAcceleratorTypes(ctx context.Context) (zoneAccelerators, error) {
	const op = "catalog"
	ctx, cancel := p.listCtx(ctx)
	defer cancel()
	out := zoneAccelerators{}
	if len(p.opts.catalogZones) == 0 {
		err := p.aggregatedByZone(ctx, op, "acceleratorTypes", "", func(zone string, l scopedList) {
			out[zone] = append(out[zone], l.AcceleratorTypes...)
		})
		if err != nil {
			return nil, fmt.Errorf("accelerator types: %w", err)
		}
		return out, nil
	}
	for _, zone := range p.opts.catalogZones {
		err := listAll(ctx, p.compute, op, p.zonePath(zone, "acceleratorTypes"), query(), func(ats []acceleratorType) error {
			out[zone] = append(out[zone], ats...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("accelerator types in %s: %w", zone, err)
		}
	}
	return out, nil
}

func deprecated(d *deprecationStatus) bool {
	if d == nil {
		return false
	}
	switch d.State {
	case "DEPRECATED", "OBSOLETE", "DELETED":
		return true
	}
	return false
}

// buildCatalog prices every machine type, and every N1 shape with each
// attachable GPU, in every zone. Shapes whose parts have no price (shared
// cores, custom families, new families the patterns do not know) are
// left out rather than listed at a wrong price.
func buildCatalog(ps *prices, mts zoneMachineTypes, accs zoneAccelerators) ([]provider.CatalogEntry, error) {
	// GPUs that come inside a machine type are not attachable elsewhere.
	bundled := map[string]bool{}
	for _, list := range mts {
		for _, mt := range list {
			for _, a := range mt.Accelerators {
				bundled[a.GuestAcceleratorType] = true
			}
		}
	}
	var out []provider.CatalogEntry
	zones := make([]string, 0, len(mts))
	for z := range mts {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	for _, zone := range zones {
		region := regionOf(zone)
		for _, mt := range mts[zone] {
			if mt.IsSharedCpu || deprecated(mt.Deprecated) {
				continue
			}
			family, _, _ := strings.Cut(mt.Name, "-")
			vcpus := int(mt.GuestCpus)
			memGiB := float64(mt.MemoryMb) / 1024
			e := provider.CatalogEntry{
				Provider: Name, Region: region, Zone: zone, InstanceType: mt.Name,
				VCPUs: vcpus, MemoryGiB: round(memGiB, 3), Available: true,
				PricingSource: PricingSource, PricingVersion: ps.version,
			}
			var g gpu
			if a := mt.Accelerators; len(a) > 0 {
				g = gpuOf(a[0].GuestAcceleratorType)
				e.GPUModel, e.GPUCount, e.GPUMemoryGiB = g.model, int(a[0].GuestAcceleratorCount), g.memoryGiB
			}
			hourly, ok := machinePrice(ps, family, region, false, vcpus, memGiB, g, e.GPUCount)
			if !ok {
				continue
			}
			e.HourlyPrice = hourly
			if spot, ok := machinePrice(ps, family, region, true, vcpus, memGiB, g, e.GPUCount); ok {
				e.SpotPrice = spot
			}
			out = append(out, e)

			if family != "n1" || !hasAnyPrefix(mt.Name, gpuHostFamilies) {
				continue
			}
			for _, at := range accs[zone] {
				ag := gpuOf(at.Name)
				if ag.workstation || bundled[at.Name] || deprecated(at.Deprecated) {
					continue
				}
				for _, n := range []int{1, 2, 4, 8} {
					if n > int(at.MaximumCardsPerInstance) || vcpus > maxVCPUsPerAttachedGPU*n || memGiB > maxMemGiBPerAttachedGPU*float64(n) {
						continue
					}
					ge := e
					ge.GPUModel, ge.GPUCount, ge.GPUMemoryGiB = ag.model, n, ag.memoryGiB
					hourly, ok := machinePrice(ps, family, region, false, vcpus, memGiB, ag, n)
					if !ok {
						break
					}
					ge.HourlyPrice, ge.SpotPrice = hourly, 0
					if spot, ok := machinePrice(ps, family, region, true, vcpus, memGiB, ag, n); ok {
						ge.SpotPrice = spot
					}
					out = append(out, ge)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, malformed("no machine type could be priced from the billing catalog (%d zones of machine types read)", len(mts))
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		if a.InstanceType != b.InstanceType {
			return a.InstanceType < b.InstanceType
		}
		if a.GPUModel != b.GPUModel {
			return a.GPUModel < b.GPUModel
		}
		return a.GPUCount < b.GPUCount
	})
	return out, nil
}

// machinePrice is vCPUs × core rate + GiB × RAM rate + GPUs × GPU rate.
func machinePrice(ps *prices, family, region string, spot bool, vcpus int, memGiB float64, g gpu, gpus int) (float64, bool) {
	core, ok1 := ps.get(priceKey{family: family, part: "core", region: region, spot: spot})
	ram, ok2 := ps.get(priceKey{family: family, part: "ram", region: region, spot: spot})
	if !ok1 || !ok2 {
		return 0, false
	}
	total := float64(vcpus)*core + memGiB*ram
	if gpus > 0 {
		rate, ok := ps.get(priceKey{family: g.model + "/" + g.variant, part: "gpu", region: region, spot: spot})
		if !ok {
			return 0, false
		}
		total += float64(gpus) * rate
	}
	return round(total, 6), true
}

func round(v float64, places int) float64 {
	f := math.Pow(10, float64(places))
	return math.Round(v*f) / f
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
