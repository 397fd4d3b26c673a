package gcpfake

import (
	"math"
	"strconv"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// DefaultZones are the zones the fake serves unless Options.MachineTypes
// names others: two in one region and one in another, so zone and region
// choices can be exercised.
var DefaultZones = []string{"us-central1-a", "us-central1-b", "europe-west4-a"}

type mtShape struct {
	name     string
	cpus     int32
	memMB    int32
	shared   bool
	gpu      string
	gpuCount int32
}

// Shapes as the real API lists them (guestCpus, memoryMb, accelerators).
var defaultShapes = []mtShape{
	{name: "e2-micro", cpus: 2, memMB: 1024, shared: true},
	{name: "e2-standard-2", cpus: 2, memMB: 8192},
	{name: "e2-standard-4", cpus: 4, memMB: 16384},
	{name: "n2-standard-2", cpus: 2, memMB: 8192},
	{name: "n2-standard-4", cpus: 4, memMB: 16384},
	{name: "n2-standard-8", cpus: 8, memMB: 32768},
	{name: "n1-standard-4", cpus: 4, memMB: 15360},
	{name: "n1-standard-8", cpus: 8, memMB: 30720},
	{name: "g2-standard-4", cpus: 4, memMB: 16384, gpu: "nvidia-l4", gpuCount: 1},
	{name: "g2-standard-8", cpus: 8, memMB: 32768, gpu: "nvidia-l4", gpuCount: 1},
	{name: "g2-standard-24", cpus: 24, memMB: 98304, gpu: "nvidia-l4", gpuCount: 2},
	{name: "a2-highgpu-1g", cpus: 12, memMB: 87040, gpu: "nvidia-tesla-a100", gpuCount: 1},
}

// DefaultMachineTypes lists the fake's machine types per zone. GPU types
// are not everywhere, as on the real cloud: A100s only in us-central1-b.
func DefaultMachineTypes() map[string][]*computepb.MachineType {
	out := map[string][]*computepb.MachineType{}
	for _, zone := range DefaultZones {
		for _, s := range defaultShapes {
			if s.gpu == "nvidia-tesla-a100" && zone != "us-central1-b" {
				continue
			}
			mt := &computepb.MachineType{
				Kind:        proto.String("compute#machineType"),
				Name:        proto.String(s.name),
				Description: proto.String(s.name),
				GuestCpus:   proto.Int32(s.cpus),
				MemoryMb:    proto.Int32(s.memMB),
				IsSharedCpu: proto.Bool(s.shared),
				Zone:        proto.String(zone),
			}
			if s.gpu != "" {
				mt.Accelerators = []*computepb.Accelerators{{
					GuestAcceleratorType: proto.String(s.gpu), GuestAcceleratorCount: proto.Int32(s.gpuCount),
				}}
			}
			out[zone] = append(out[zone], mt)
		}
	}
	return out
}

// DefaultAcceleratorTypes lists the GPUs per zone. T4s attach to N1
// machines; L4 and A100 come inside g2 and a2 types.
func DefaultAcceleratorTypes() map[string][]*computepb.AcceleratorType {
	out := map[string][]*computepb.AcceleratorType{}
	for _, zone := range DefaultZones {
		add := func(name, desc string, maxCards int32) {
			out[zone] = append(out[zone], &computepb.AcceleratorType{
				Kind: proto.String("compute#acceleratorType"), Name: proto.String(name), Description: proto.String(desc),
				MaximumCardsPerInstance: proto.Int32(maxCards), Zone: proto.String(zone),
			})
		}
		add("nvidia-l4", "NVIDIA L4", 8)
		add("nvidia-l4-vws", "NVIDIA L4 Virtual Workstation", 8)
		add("nvidia-tesla-t4", "NVIDIA T4", 4)
		if zone == "us-central1-b" {
			add("nvidia-tesla-a100", "NVIDIA A100 40GB", 16)
		}
	}
	return out
}

// SKU is one entry of the Cloud Billing Catalog's services.skus.list, in
// its documented JSON shape.
type SKU struct {
	Name                string        `json:"name,omitempty"`
	SkuID               string        `json:"skuId"`
	Description         string        `json:"description"`
	Category            Category      `json:"category"`
	ServiceRegions      []string      `json:"serviceRegions"`
	PricingInfo         []PricingInfo `json:"pricingInfo"`
	ServiceProviderName string        `json:"serviceProviderName,omitempty"`
}

type Category struct {
	ServiceDisplayName string `json:"serviceDisplayName"`
	ResourceFamily     string `json:"resourceFamily"`
	ResourceGroup      string `json:"resourceGroup"`
	UsageType          string `json:"usageType"`
}

type PricingInfo struct {
	Summary                string            `json:"summary"`
	PricingExpression      PricingExpression `json:"pricingExpression"`
	CurrencyConversionRate float64           `json:"currencyConversionRate"`
	EffectiveTime          string            `json:"effectiveTime"`
}

type PricingExpression struct {
	UsageUnit                string     `json:"usageUnit"`
	UsageUnitDescription     string     `json:"usageUnitDescription"`
	BaseUnit                 string     `json:"baseUnit"`
	BaseUnitDescription      string     `json:"baseUnitDescription"`
	BaseUnitConversionFactor float64    `json:"baseUnitConversionFactor"`
	DisplayQuantity          float64    `json:"displayQuantity"`
	TieredRates              []TierRate `json:"tieredRates"`
}

type TierRate struct {
	StartUsageAmount float64 `json:"startUsageAmount"`
	UnitPrice        Money   `json:"unitPrice"`
}

// Money is google.type.Money: units is an int64, which JSON carries as a
// string.
type Money struct {
	CurrencyCode string `json:"currencyCode"`
	Units        string `json:"units"`
	Nanos        int64  `json:"nanos"`
}

// USD splits a price into the API's units and nanos.
func USD(price float64) Money {
	units := math.Floor(price)
	nanos := math.Round((price - units) * 1e9)
	if nanos >= 1e9 {
		units++
		nanos -= 1e9
	}
	return Money{CurrencyCode: "USD", Units: strconv.FormatInt(int64(units), 10), Nanos: int64(nanos)}
}

// NewSKU makes a SKU the way the catalog lists one. usageType is
// "OnDemand" or "Preemptible"; unit is "h" (cores, GPUs), "GiBy.h"
// (memory) or "GiBy.mo" (disk capacity, in resource family Storage).
func NewSKU(id, description, resourceGroup, usageType string, regions []string, unit string, price float64) SKU {
	family, unitDesc, base, baseDesc, factor := "Compute", "hour", "s", "second", 3600.0
	switch unit {
	case "GiBy.h":
		unitDesc, base, baseDesc, factor = "gibibyte hour", "By.s", "byte second", 3865470566400
	case "GiBy.mo":
		// The real catalog's factor: a GiB over a 31-day month.
		family, unitDesc, base, baseDesc, factor = "Storage", "gibibyte month", "By.s", "byte second", 2875910101401600
	}
	return SKU{
		Name:        "services/6F81-5844-456A/skus/" + id,
		SkuID:       id,
		Description: description,
		Category: Category{
			ServiceDisplayName: "Compute Engine", ResourceFamily: family, ResourceGroup: resourceGroup, UsageType: usageType,
		},
		ServiceRegions: regions,
		PricingInfo: []PricingInfo{{
			PricingExpression: PricingExpression{
				UsageUnit: unit, UsageUnitDescription: unitDesc, BaseUnit: base, BaseUnitDescription: baseDesc,
				BaseUnitConversionFactor: factor, DisplayQuantity: 1,
				TieredRates: []TierRate{{StartUsageAmount: 0, UnitPrice: USD(price)}},
			},
			CurrencyConversionRate: 1,
			EffectiveTime:          "2026-10-01T07:00:00.000Z",
		}},
		ServiceProviderName: "Google",
	}
}

// Region groups as the billing catalog uses them.
var (
	americas    = []string{"us-central1", "us-east1", "us-east4", "us-west1"}
	netherlands = []string{"europe-west4"}
)

// DefaultSKUs are Compute Engine SKUs for the default machine types, with
// list prices of the kind the real catalog has (USD per vCPU hour, per
// GiB hour, per GPU hour), zonal persistent-disk capacity per GiB-month
// in us-central1 and europe-west4, plus SKUs the provider must ignore
// (commitments, custom shapes, workstations, regional disks, snapshots).
func DefaultSKUs() []SKU {
	var out []SKU
	n := 0
	add := func(desc, group, usage string, regions []string, unit string, price float64) {
		n++
		out = append(out, NewSKU(skuID(n), desc, group, usage, regions, unit, price))
	}
	for _, r := range []struct {
		where   string
		regions []string
		markup  float64
	}{{"Americas", americas, 1}, {"Netherlands", netherlands, 1.1}} {
		m := r.markup
		add("E2 Instance Core running in "+r.where, "CPU", "OnDemand", r.regions, "h", 0.021811*m)
		add("E2 Instance Ram running in "+r.where, "RAM", "OnDemand", r.regions, "GiBy.h", 0.002923*m)
		add("Spot Preemptible E2 Instance Core running in "+r.where, "CPU", "Preemptible", r.regions, "h", 0.006543*m)
		add("Spot Preemptible E2 Instance Ram running in "+r.where, "RAM", "Preemptible", r.regions, "GiBy.h", 0.000877*m)
		add("N2 Instance Core running in "+r.where, "CPU", "OnDemand", r.regions, "h", 0.031611*m)
		add("N2 Instance Ram running in "+r.where, "RAM", "OnDemand", r.regions, "GiBy.h", 0.004237*m)
		add("Spot Preemptible N2 Instance Core running in "+r.where, "CPU", "Preemptible", r.regions, "h", 0.007653*m)
		add("Spot Preemptible N2 Instance Ram running in "+r.where, "RAM", "Preemptible", r.regions, "GiBy.h", 0.001026*m)
		add("N1 Predefined Instance Core running in "+r.where, "N1Standard", "OnDemand", r.regions, "h", 0.031611*m)
		add("N1 Predefined Instance Ram running in "+r.where, "N1Standard", "OnDemand", r.regions, "GiBy.h", 0.004237*m)
		add("G2 Instance Core running in "+r.where, "CPU", "OnDemand", r.regions, "h", 0.024988*m)
		add("G2 Instance Ram running in "+r.where, "RAM", "OnDemand", r.regions, "GiBy.h", 0.002927*m)
		add("Spot Preemptible G2 Instance Core running in "+r.where, "CPU", "Preemptible", r.regions, "h", 0.009996*m)
		add("Spot Preemptible G2 Instance Ram running in "+r.where, "RAM", "Preemptible", r.regions, "GiBy.h", 0.001171*m)
		add("A2 Instance Core running in "+r.where, "CPU", "OnDemand", r.regions, "h", 0.031611*m)
		add("A2 Instance Ram running in "+r.where, "RAM", "OnDemand", r.regions, "GiBy.h", 0.004237*m)
		add("Nvidia L4 GPU running in "+r.where, "GPU", "OnDemand", r.regions, "h", 0.56*m)
		add("Nvidia L4 GPU attached to Spot Preemptible VMs running in "+r.where, "GPU", "Preemptible", r.regions, "h", 0.224*m)
		add("Nvidia Tesla T4 GPU running in "+r.where, "GPU", "OnDemand", r.regions, "h", 0.35*m)
		add("Nvidia Tesla A100 GPU running in "+r.where, "GPU", "OnDemand", r.regions, "h", 2.933908*m)
		// Lookalikes that must not price a machine.
		add("Nvidia L4 GPU Virtual Workstation running in "+r.where, "GPU", "OnDemand", r.regions, "h", 0.8*m)
		add("Commitment v1: N2 Cpu in "+r.where+" for 1 Year", "CPU", "Commit1Yr", r.regions, "h", 0.019915*m)
		add("N2 Custom Instance Core running in "+r.where, "CPU", "OnDemand", r.regions, "h", 0.033197*m)
		add("Storage PD Capacity in "+r.where, "PDStandard", "OnDemand", r.regions, "GiBy.mo", 0.04*m)
	}
	// Disk capacity SKUs are per region, as in the real catalog; the one
	// for us-central1 has no place suffix there.
	iowa := []string{"us-central1"}
	add("Balanced PD Capacity", "SSD", "OnDemand", iowa, "GiBy.mo", 0.10)
	add("Balanced PD Capacity in Netherlands", "SSD", "OnDemand", netherlands, "GiBy.mo", 0.11)
	add("SSD backed PD Capacity", "SSD", "OnDemand", iowa, "GiBy.mo", 0.17)
	add("SSD backed PD Capacity in Netherlands", "SSD", "OnDemand", netherlands, "GiBy.mo", 0.187)
	add("Extreme PD Capacity", "SSD", "OnDemand", iowa, "GiBy.mo", 0.125)
	// Lookalikes that must not price a zonal data disk.
	add("Regional Balanced PD Capacity", "SSD", "OnDemand", iowa, "GiBy.mo", 0.20)
	add("Regional SSD backed PD Capacity in Netherlands", "SSD", "OnDemand", netherlands, "GiBy.mo", 0.374)
	add("Storage PD Snapshot in Netherlands", "PDSnapshot", "OnDemand", netherlands, "GiBy.mo", 0.029)
	return out
}

func skuID(n int) string {
	const hex = "0123456789ABCDEF"
	b := []byte("F000-0000-0000")
	for i, pos := 0, len(b)-1; i < 4 && n > 0; pos-- {
		if b[pos] == '-' {
			continue
		}
		b[pos] = hex[n%16]
		n /= 16
		i++
	}
	return string(b)
}
