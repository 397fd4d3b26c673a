package hyperstack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
)

// PricingSource names where Hyperstack prices come from.
const PricingSource = "hyperstack GET /pricebook"

// Pricebook entries for CPU-only flavors, which are priced per vCPU and
// per GiB of RAM; GPU flavors are priced per GPU under the GPU's name.
const (
	priceVCPU = "vCPU (cpu-only-flavors)"
	priceRAM  = "RAM (cpu-only-flavors)"
)

// hoursPerMonth turns the pricebook's hourly volume rate into a monthly
// one; it is pkg/catalog.HoursPerMonth, which providers cannot import
// (they sit below pkg/catalog, which imports pkg/store).
const hoursPerMonth = 730

type flavor struct {
	ID             int      `json:"id"`
	Name           string   `json:"name"`
	CPU            *int     `json:"cpu"`
	RAM            *float64 `json:"ram"`
	Disk           int      `json:"disk"`
	GPU            string   `json:"gpu"`
	GPUCount       *int     `json:"gpu_count"`
	StockAvailable *bool    `json:"stock_available"`
	RegionName     string   `json:"region_name"`
}

type flavorGroup struct {
	GPU        string `json:"gpu"`
	RegionName string `json:"region_name"`
	// Flavors are decoded one by one (flavors), so that one that does
	// not decode is one bad row, not a bad payload.
	Flavors []json.RawMessage `json:"flavors"`
}

// flavors decodes g's flavors; one that does not decode is left out and
// reported in rep.
func (g flavorGroup) flavors(rep *provider.CatalogReport) []flavor {
	out := make([]flavor, 0, len(g.Flavors))
	for i, raw := range g.Flavors {
		var f flavor
		if err := json.Unmarshal(raw, &f); err != nil {
			rep.Skip("flavor %d of the %s group in %s: %v", i+1, firstNonEmpty(g.GPU, "CPU"), g.RegionName, err)
			continue
		}
		out = append(out, f)
	}
	return out
}

type priceEntry struct {
	Name  string             `json:"name"`
	Value *restclient.Number `json:"value"` // USD
}

func malformed(what, format string, args ...any) error {
	return provider.Errorf(errkind.Invalid, Name, "catalog", "malformed "+what+" payload from Hyperstack: "+format, args...)
}

func (p *Provider) flavorGroups(ctx context.Context, op, region string) ([]flavorGroup, error) {
	path := "/core/flavors"
	if region != "" {
		path += "?" + url.Values{"region": {region}}.Encode()
	}
	var reply map[string]json.RawMessage
	if err := p.api.Do(ctx, op, http.MethodGet, path, nil, &reply); err != nil {
		return nil, err
	}
	raw, ok := reply["data"]
	if !ok {
		return nil, malformed("flavors", "no data list")
	}
	var groups []flavorGroup
	if err := json.Unmarshal(raw, &groups); err != nil {
		return nil, malformed("flavors", "%v", err)
	}
	return groups, nil
}

func (p *Provider) findFlavor(ctx context.Context, op, region, name string) (flavor, bool, error) {
	groups, err := p.flavorGroups(ctx, op, region)
	if err != nil {
		return flavor{}, false, err
	}
	for _, g := range groups {
		for _, f := range g.flavors(&provider.CatalogReport{}) {
			if f.Name == name && strings.EqualFold(firstNonEmpty(f.RegionName, g.RegionName), region) {
				return f, true, nil
			}
		}
	}
	return flavor{}, false, nil
}

// Catalog lists every flavor in every region with its on-demand price
// from the pricebook and whether it is in stock.
func (p *Provider) Catalog(ctx context.Context) ([]provider.CatalogEntry, error) {
	r, err := p.CatalogReport(ctx)
	return r.Entries, err
}

// CatalogReport is Catalog with the flavors and prices left out as
// invalid.
func (p *Provider) CatalogReport(ctx context.Context) (provider.CatalogReport, error) {
	const op = "catalog"
	groups, err := p.flavorGroups(ctx, op, "")
	if err != nil {
		return provider.CatalogReport{}, err
	}
	var rawPrices json.RawMessage
	if err := p.api.Do(ctx, op, http.MethodGet, "/pricebook", nil, &rawPrices); err != nil {
		return provider.CatalogReport{}, err
	}
	var rawEntries []json.RawMessage
	if err := json.Unmarshal(rawPrices, &rawEntries); err != nil {
		return provider.CatalogReport{}, malformed("pricebook", "want an array of {name, value}: %v", err)
	}
	return normalize(groups, rawEntries, p.opts.volumeType)
}

// normalize builds catalog rows from flavors and pricebook entries. A
// flavor or price entry that fails validation is left out and reported
// (one odd flavor must not hide the others); a flavor whose price entry
// was bad is left out too, never shown at a made-up price. The payload
// is refused only when no valid row remains. Flavors the pricebook does
// not price are left out as well, as are Kubernetes-only flavors (name
// ending in k8s), which cannot run a host; those are not errors.
//
// The data volume (of volumeType) is priced from the pricebook entry
// named after the volume type ("Cloud-SSD"), read as USD per GB per hour
// like Hyperstack's published storage rate, times hoursPerMonth. That
// entry name and unit are our reading of the pricebook, not confirmed
// against the live API. The pricebook is not per region, so every row
// gets the same disk price; without the entry it is 0 (a default applies).
func normalize(groups []flavorGroup, rawPrices []json.RawMessage, volumeType string) (provider.CatalogReport, error) {
	var rep provider.CatalogReport
	var prices []priceEntry
	badPrice := map[string]bool{}
	for i, raw := range rawPrices {
		var e priceEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			rep.Skip("pricebook entry %d: %v", i+1, err)
			var named struct{ Name string }
			if json.Unmarshal(raw, &named) == nil && named.Name != "" {
				badPrice[named.Name] = true
			}
			continue
		}
		prices = append(prices, e)
	}
	price := map[string]float64{}
	h := sha256.New()
	sorted := append([]priceEntry(nil), prices...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, e := range sorted {
		switch {
		case e.Name == "":
			rep.Skip("a pricebook entry has no name")
			continue
		case e.Value == nil:
			rep.Skip("pricebook entry %q has no value", e.Name)
			badPrice[e.Name] = true
			continue
		case *e.Value < 0:
			rep.Skip("pricebook entry %q has a negative price %v", e.Name, *e.Value)
			badPrice[e.Name] = true
			continue
		}
		price[e.Name] = float64(*e.Value)
		fmt.Fprintf(h, "%s=%v\n", e.Name, float64(*e.Value))
	}
	version := "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
	diskGBMonth := math.Round(price[volumeType]*hoursPerMonth*1e6) / 1e6
	flavors := 0
	for _, g := range groups {
		flavors += len(g.Flavors)
		for _, f := range g.flavors(&rep) {
			region := firstNonEmpty(f.RegionName, g.RegionName)
			gpu := firstNonEmpty(f.GPU, g.GPU)
			switch {
			case f.Name == "":
				rep.Skip("a flavor in region %q has no name", region)
				continue
			case region == "":
				rep.Skip("flavor %s has no region_name", f.Name)
				continue
			case f.CPU == nil || f.RAM == nil || *f.CPU <= 0 || *f.RAM <= 0:
				rep.Skip("flavor %s in %s lacks a positive cpu and ram", f.Name, region)
				continue
			case f.GPUCount != nil && *f.GPUCount < 0:
				rep.Skip("flavor %s in %s has %d GPUs", f.Name, region, *f.GPUCount)
				continue
			case strings.HasSuffix(strings.ToLower(f.Name), "k8s"):
				continue
			}
			count := 0
			if f.GPUCount != nil {
				count = *f.GPUCount
			}
			e := provider.CatalogEntry{
				Provider: Name, Region: region, InstanceType: f.Name, VCPUs: *f.CPU, MemoryGiB: *f.RAM,
				Available:           f.StockAvailable != nil && *f.StockAvailable,
				DiskPricePerGBMonth: diskGBMonth,
				PricingSource:       PricingSource, PricingVersion: version,
			}
			if gpu != "" && count > 0 {
				perGPU, ok := price[gpu]
				if badPrice[gpu] {
					rep.Skip("flavor %s in %s: its pricebook entry %q is invalid", f.Name, region, gpu)
				}
				if !ok {
					continue
				}
				e.GPUModel, e.GPUMemoryGiB = gpuModel(gpu)
				e.GPUCount = count
				e.HourlyPrice = perGPU * float64(count)
			} else {
				vcpu, ok1 := price[priceVCPU]
				ram, ok2 := price[priceRAM]
				if badPrice[priceVCPU] || badPrice[priceRAM] {
					rep.Skip("flavor %s in %s: its pricebook entries %q and %q are not both valid", f.Name, region, priceVCPU, priceRAM)
				}
				if !ok1 || !ok2 {
					continue
				}
				e.HourlyPrice = vcpu*float64(*f.CPU) + ram**f.RAM
			}
			e.HourlyPrice = math.Round(e.HourlyPrice*1e6) / 1e6
			rep.Entries = append(rep.Entries, e)
		}
	}
	if len(rep.Entries) == 0 && flavors > 0 {
		why := fmt.Sprintf("the pricebook prices none of the %d flavors", flavors)
		if rep.Skipped > 0 {
			why = fmt.Sprintf("no valid flavor remains (%d rows left out: %s)", rep.Skipped, strings.Join(rep.Reasons, "; "))
		}
		return provider.CatalogReport{}, malformed("flavors", "%s", why)
	}
	out := rep.Entries
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Region != out[j].Region {
			return out[i].Region < out[j].Region
		}
		if out[i].HourlyPrice != out[j].HourlyPrice {
			return out[i].HourlyPrice < out[j].HourlyPrice
		}
		return out[i].InstanceType < out[j].InstanceType
	})
	return rep, nil
}

var memTokenRE = lazyre.New(`^(\d+)g(b)?$`)

// gpuMemoryGiB is the memory of one GPU of models whose Hyperstack name
// does not carry it (A100-80G-PCIe does; L40 does not).
var gpuMemoryGiB = map[string]float64{
	"a4000": 16, "a5000": 24, "a6000": 48, "a40": 48, "l40": 48, "l40s": 48, "rtx6000-ada": 48, "h200": 141, "a100": 80, "h100": 80,
}

// gpuModel normalizes a Hyperstack GPU name: "A100-80G-PCIe" → a100 with
// 80 GiB, "H100-80G-SXM5" → h100, "RTX-A6000" → a6000, "L40" → l40,
// "RTX-6000-ADA" → rtx6000-ada.
func gpuModel(name string) (string, float64) {
	tokens := strings.Split(strings.ToLower(strings.TrimSpace(name)), "-")
	var mem float64
	var rest []string
	for _, t := range tokens {
		if m := memTokenRE().FindStringSubmatch(t); m != nil {
			mem, _ = strconv.ParseFloat(m[1], 64)
			continue
		}
		rest = append(rest, t)
	}
	model := ""
	switch {
	case len(rest) == 0:
	case rest[0] == "rtx" && len(rest) > 1 && rest[1] != "" && rest[1][0] >= 'a' && rest[1][0] <= 'z':
		model = rest[1]
	case rest[0] == "rtx" && len(rest) > 1:
		model = "rtx" + rest[1]
		if len(rest) > 2 && rest[2] == "ada" {
			model += "-ada"
		}
	default:
		model = rest[0]
	}
	if mem == 0 {
		mem = gpuMemoryGiB[model]
	}
	return model, mem
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
