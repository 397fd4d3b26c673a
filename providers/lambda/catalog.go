package lambda

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
)

// PricingSource names where Lambda prices come from.
const PricingSource = "lambda GET /instance-types price_cents_per_hour"

// instanceType is one Lambda instance type. Fields are pointers where the
// published spec and its own example disagree, so the normalizer can tell
// a missing value from a zero.
type instanceType struct {
	Name           string `json:"name"`
	Description    string `json:"description"`
	GPUDescription string `json:"gpu_description"`
	// The schema says integer; the spec's own example (and so any
	// client generated from it) sends a string such as "80".
	PriceCentsPerHour *restclient.Number `json:"price_cents_per_hour"`
	Specs             *specs             `json:"specs"`
}

type specs struct {
	VCPUs      *int     `json:"vcpus"`
	MemoryGiB  *float64 `json:"memory_gib"`
	StorageGiB *float64 `json:"storage_gib"`
	// GPUs is missing from the 1.5.3 spec's own example; the count is
	// then read from the type name (gpu_8x_h100_sxm5 has 8).
	GPUs *int `json:"gpus"`
}

type typeAvailability struct {
	InstanceType *instanceType `json:"instance_type"`
	Regions      []region      `json:"regions_with_capacity_available"`
}

// instanceTypes reads GET /instance-types as one raw value per type, so
// that normalize can leave out a malformed type and keep the others.
func (p *Provider) instanceTypes(ctx context.Context, op string) (map[string]json.RawMessage, error) {
	var raw json.RawMessage
	if err := p.api.Do(ctx, op, http.MethodGet, "/instance-types", nil, &raw); err != nil {
		return nil, err
	}
	var types map[string]json.RawMessage
	if err := json.Unmarshal(raw, &types); err != nil {
		return nil, malformed("instance types: want an object of instance types: %v", err)
	}
	return types, nil
}

// Catalog lists every instance type in every known region, with its
// on-demand price and whether Lambda has capacity for it there now.
// Known regions are those where any type has capacity, plus the
// configured region and regions: Lambda reports capacity, not offerings.
func (p *Provider) Catalog(ctx context.Context) ([]provider.CatalogEntry, error) {
	r, err := p.CatalogReport(ctx)
	return r.Entries, err
}

// CatalogReport is Catalog with the instance types left out as invalid.
func (p *Provider) CatalogReport(ctx context.Context) (provider.CatalogReport, error) {
	types, err := p.instanceTypes(ctx, "catalog")
	if err != nil {
		return provider.CatalogReport{}, err
	}
	rep, _, err := normalize(types, p.opts.regions, p.opts.region)
	return rep, err
}

// invalid says what is wrong with one instance type, or "" when nothing is.
func invalid(key string, ta typeAvailability) string {
	it := ta.InstanceType
	switch {
	case it == nil:
		return fmt.Sprintf("instance type %q has no instance_type object", key)
	case it.Name == "":
		return fmt.Sprintf("instance type %q has no name", key)
	case it.PriceCentsPerHour == nil:
		return fmt.Sprintf("instance type %s has no price_cents_per_hour", it.Name)
	case *it.PriceCentsPerHour < 0:
		return fmt.Sprintf("instance type %s has a negative price %v", it.Name, *it.PriceCentsPerHour)
	case it.Specs == nil || it.Specs.VCPUs == nil || it.Specs.MemoryGiB == nil:
		return fmt.Sprintf("instance type %s lacks specs.vcpus or specs.memory_gib", it.Name)
	case *it.Specs.VCPUs <= 0 || *it.Specs.MemoryGiB <= 0:
		return fmt.Sprintf("instance type %s has %d vCPUs and %v GiB of memory", it.Name, *it.Specs.VCPUs, *it.Specs.MemoryGiB)
	case ta.Regions == nil:
		return fmt.Sprintf("instance type %s has no regions_with_capacity_available list", it.Name)
	}
	for _, r := range ta.Regions {
		if r.Name == "" {
			return fmt.Sprintf("instance type %s lists a region without a name", it.Name)
		}
	}
	return ""
}

// normalize turns GET /instance-types data into catalog rows, sorted by
// region, price and name. A malformed instance type is left out and
// reported (one odd type must not hide the others, nor be shown at a
// made-up price); the payload is refused only when it has no data or no
// valid type remains.
func normalize(types map[string]json.RawMessage, extraRegions []string, defaultRegion string) (provider.CatalogReport, string, error) {
	var rep provider.CatalogReport
	if types == nil {
		return rep, "", malformed("instance types: no data")
	}
	regionSet := map[string]bool{}
	for _, r := range extraRegions {
		regionSet[r] = true
	}
	if defaultRegion != "" {
		regionSet[defaultRegion] = true
	}
	type parsed struct {
		entry provider.CatalogEntry
		cap   map[string]bool
	}
	var all []parsed
	keys := make([]string, 0, len(types))
	for k := range types {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		var ta typeAvailability
		if err := json.Unmarshal(types[k], &ta); err != nil {
			rep.Skip("instance type %q: %v", k, err)
			continue
		}
		if why := invalid(k, ta); why != "" {
			rep.Skip("%s", why)
			continue
		}
		it := ta.InstanceType
		model, count, memGiB := gpuOf(*it)
		e := provider.CatalogEntry{
			Provider: Name, InstanceType: it.Name, VCPUs: *it.Specs.VCPUs, MemoryGiB: *it.Specs.MemoryGiB,
			GPUModel: model, GPUCount: count, GPUMemoryGiB: memGiB,
			HourlyPrice:   math.Round(float64(*it.PriceCentsPerHour)) / 100,
			PricingSource: PricingSource,
			// DiskPricePerGBMonth stays 0: the Lambda API publishes no storage price, so pkg/catalog's default applies.
		}
		capacity := map[string]bool{}
		for _, r := range ta.Regions {
			capacity[r.Name] = true
			regionSet[r.Name] = true
		}
		fmt.Fprintf(h, "%s=%v\n", it.Name, float64(*it.PriceCentsPerHour))
		all = append(all, parsed{e, capacity})
	}
	if len(all) == 0 && rep.Skipped > 0 {
		return rep, "", malformed("no valid instance type (%d left out: %s)", rep.Skipped, strings.Join(rep.Reasons, "; "))
	}
	version := "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
	regions := make([]string, 0, len(regionSet))
	for r := range regionSet {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	var out []provider.CatalogEntry
	for _, r := range regions {
		for _, pt := range all {
			e := pt.entry
			e.Region, e.Available, e.PricingVersion = r, pt.cap[r], version
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Region != out[j].Region {
			return out[i].Region < out[j].Region
		}
		if out[i].HourlyPrice != out[j].HourlyPrice {
			return out[i].HourlyPrice < out[j].HourlyPrice
		}
		return out[i].InstanceType < out[j].InstanceType
	})
	rep.Entries = out
	return rep, version, nil
}

func malformed(format string, args ...any) error {
	return provider.Errorf(errkind.Invalid, Name, "catalog", "malformed instance-types payload from Lambda: "+format, args...)
}

var (
	// gpu_8x_h100_sxm5, gpu_1x_a100_sxm4, gpu_8x_a100_80gb_sxm4, gpu_1x_gh200
	typeNameRE = lazyre.New(`^gpu_(\d+)x_([a-z0-9]+)(.*)$`)
	memNameRE  = lazyre.New(`_(\d+)gb(_|$)`)
	memDescRE  = lazyre.New(`(?i)\((\d+)\s*GB`)
)

// gpuMemoryGiB is the memory of one GPU of each model Lambda offers, for
// types whose name and description do not say.
var gpuMemoryGiB = map[string]float64{
	"a10": 24, "a100": 40, "a6000": 48, "b200": 180, "gh200": 96, "h100": 80, "rtx6000": 24, "v100": 16,
}

// gpuOf reads the GPU model (lowercase, as "h100"), the count, and the
// memory of one GPU from an instance type.
func gpuOf(it instanceType) (model string, count int, memGiB float64) {
	name := strings.ToLower(it.Name)
	if m := typeNameRE().FindStringSubmatch(name); m != nil {
		count, _ = strconv.Atoi(m[1])
		model = m[2]
		if mm := memNameRE().FindStringSubmatch(m[3]); mm != nil {
			memGiB, _ = strconv.ParseFloat(mm[1], 64)
		}
	}
	if it.Specs != nil && it.Specs.GPUs != nil {
		count = *it.Specs.GPUs
	}
	if count == 0 {
		return "", 0, 0
	}
	if model == "" {
		model = modelFromDescription(it.GPUDescription)
	}
	if memGiB == 0 {
		if m := memDescRE().FindStringSubmatch(it.GPUDescription); m != nil {
			memGiB, _ = strconv.ParseFloat(m[1], 64)
		} else if m := memDescRE().FindStringSubmatch(it.Description); m != nil {
			memGiB, _ = strconv.ParseFloat(m[1], 64)
		} else {
			memGiB = gpuMemoryGiB[model]
		}
	}
	return model, count, memGiB
}

// modelFromDescription reads "H100 (80 GB SXM5)" as h100, "RTX A6000 (48
// GB)" as a6000 and "Quadro RTX 6000 (24 GB)" as rtx6000.
func modelFromDescription(d string) string {
	d = strings.ToLower(d)
	if i := strings.Index(d, "("); i >= 0 {
		d = d[:i]
	}
	var f []string
	for _, w := range strings.Fields(d) {
		if w != "nvidia" && w != "quadro" && w != "tesla" {
			f = append(f, w)
		}
	}
	switch {
	case len(f) == 0:
		return ""
	case f[0] == "rtx" && len(f) > 1 && f[1][0] >= 'a' && f[1][0] <= 'z':
		return f[1]
	}
	return strings.Join(f, "")
}
