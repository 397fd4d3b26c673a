package sim

import (
	"sort"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// machineType is one simulated instance type.
type machineType struct {
	name         string
	vcpus        int
	memoryGiB    float64
	gpuModel     string
	gpuCount     int
	gpuMemoryGiB float64
	hourly       float64
	// zones restricts the type to some zones, as GPUs are on real clouds;
	// empty means every zone.
	zones []string
}

// regions and their zones. Two zones in one region let tests exercise
// zone choice; a second region exercises region choice.
var regions = map[string][]string{
	"sim-east1": {"sim-east1-a", "sim-east1-b"},
	"sim-west1": {"sim-west1-a"},
}

const defaultRegion = "sim-east1"

// diskPricePerGBMonth is each region's simulated data-disk price (USD per
// GB-month); the regions differ so callers can see the price follow the
// region.
var diskPricePerGBMonth = map[string]float64{
	"sim-east1": 0.08,
	"sim-west1": 0.12,
}

var machineTypes = []machineType{
	{name: "sim-small", vcpus: 2, memoryGiB: 8, hourly: 0.05},
	{name: "sim-medium", vcpus: 4, memoryGiB: 16, hourly: 0.10},
	{name: "sim-large", vcpus: 16, memoryGiB: 64, hourly: 0.40},
	{name: "sim-gpu-l4", vcpus: 8, memoryGiB: 32, gpuModel: "l4", gpuCount: 1, gpuMemoryGiB: 24, hourly: 0.85},
	{name: "sim-gpu-a100", vcpus: 12, memoryGiB: 85, gpuModel: "a100", gpuCount: 1, gpuMemoryGiB: 40, hourly: 3.10,
		zones: []string{"sim-east1-b"}},
}

func findMachineType(name string) (machineType, bool) {
	for _, m := range machineTypes {
		if m.name == name {
			return m, true
		}
	}
	return machineType{}, false
}

func (m machineType) inZone(zone string) bool {
	if len(m.zones) == 0 {
		return true
	}
	for _, z := range m.zones {
		if z == zone {
			return true
		}
	}
	return false
}

func regionNames() []string {
	out := make([]string, 0, len(regions))
	for r := range regions {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func machineTypeNames() []string {
	out := make([]string, 0, len(machineTypes))
	for _, m := range machineTypes {
		out = append(out, m.name)
	}
	return out
}

// catalog lists every machine type in every zone that offers it. Regions
// configured to fail with capacity errors are shown as unavailable, the
// way a real catalog with stock information would.
func (p *Provider) catalog() []provider.CatalogEntry {
	var out []provider.CatalogEntry
	for _, r := range regionNames() {
		for _, z := range regions[r] {
			for _, m := range machineTypes {
				if !m.inZone(z) {
					continue
				}
				out = append(out, provider.CatalogEntry{
					Provider: Name, Region: r, Zone: z, InstanceType: m.name,
					VCPUs: m.vcpus, MemoryGiB: m.memoryGiB,
					GPUModel: m.gpuModel, GPUCount: m.gpuCount, GPUMemoryGiB: m.gpuMemoryGiB,
					HourlyPrice: m.hourly, SpotPrice: round4(m.hourly * 0.3),
					DiskPricePerGBMonth: diskPricePerGBMonth[r],
					BootDiskMonthly:     float64(p.opts.bootDiskGB) * diskPricePerGBMonth[r],
					Available:           !p.opts.capacityRegions[r], Simulated: true, PricingSource: "simulated",
				})
			}
		}
	}
	return out
}

func round4(f float64) float64 { return float64(int64(f*10000+0.5)) / 10000 }
