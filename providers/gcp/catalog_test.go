package gcp

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/providers/gcp/gcpfake"
)

func findEntry(cat []provider.CatalogEntry, zone, typ, gpu string, count int) (provider.CatalogEntry, bool) {
	for _, e := range cat {
		if e.Zone == zone && e.InstanceType == typ && e.GPUModel == gpu && e.GPUCount == count {
			return e, true
		}
	}
	return provider.CatalogEntry{}, false
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// The catalog is normalized from payloads shaped like the real ones:
// machine types per zone from the compute API, prices as per-vCPU,
// per-GiB and per-GPU SKUs from the billing catalog.
func TestCatalog(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{PageSize: 3}) // every listing pages
	p := newTestProvider(t, srv, "dep1", nil)
	cat, err := p.Catalog(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		zone, typ, gpu string
		count          int
		vcpus          int
		mem            float64
		gpuMem         float64
		hourly, spot   float64
	}{
		// 4 × G2 core + 16 GiB × G2 RAM + 1 × L4, on demand and spot.
		{"us-central1-a", "g2-standard-4", "l4", 1, 4, 16, 24, 4*0.024988 + 16*0.002927 + 0.56, 4*0.009996 + 16*0.001171 + 0.224},
		{"us-central1-b", "g2-standard-24", "l4", 2, 24, 96, 24, 24*0.024988 + 96*0.002927 + 2*0.56, 24*0.009996 + 96*0.001171 + 2*0.224},
		// The same shape in Europe, priced from that region's SKUs.
		{"europe-west4-a", "n2-standard-4", "", 0, 4, 16, 0, 4*0.0347721 + 16*0.0046607, 4*0.0084183 + 16*0.0011286},
		// A100s are bundled with a2 and only offered in us-central1-b.
		{"us-central1-b", "a2-highgpu-1g", "a100", 1, 12, 85, 40, 12*0.031611 + 85*0.004237 + 2.933908, 0},
		// T4s are attached to N1 shapes; N1 and T4 have no spot SKU here.
		{"us-central1-a", "n1-standard-4", "t4", 1, 4, 15, 16, 4*0.031611 + 15*0.004237 + 0.35, 0},
		{"us-central1-a", "n1-standard-8", "t4", 4, 8, 30, 16, 8*0.031611 + 30*0.004237 + 4*0.35, 0},
		{"us-central1-a", "n1-standard-8", "", 0, 8, 30, 0, 8*0.031611 + 30*0.004237, 0},
		{"us-central1-a", "e2-standard-2", "", 0, 2, 8, 0, 2*0.021811 + 8*0.002923, 2*0.006543 + 8*0.000877},
	} {
		e, ok := findEntry(cat, tc.zone, tc.typ, tc.gpu, tc.count)
		if !ok {
			t.Errorf("no entry for %s %s with %d× %q", tc.zone, tc.typ, tc.count, tc.gpu)
			continue
		}
		if e.Provider != Name || e.Region != regionOf(tc.zone) || e.VCPUs != tc.vcpus || e.MemoryGiB != tc.mem ||
			e.GPUMemoryGiB != tc.gpuMem || !e.Available {
			t.Errorf("%s %s: %+v", tc.zone, tc.typ, e)
		}
		if !near(e.HourlyPrice, tc.hourly) || !near(e.SpotPrice, tc.spot) {
			t.Errorf("%s %s %d×%s: price %.6f spot %.6f, want %.6f and %.6f", tc.zone, tc.typ, tc.count, tc.gpu, e.HourlyPrice, e.SpotPrice, tc.hourly, tc.spot)
		}
		if e.PricingSource != "gcp-billing-catalog" || !strings.HasPrefix(e.PricingVersion, "2026-10-01-") {
			t.Errorf("pricing source %q version %q", e.PricingSource, e.PricingVersion)
		}
	}
	for _, e := range cat {
		switch {
		case e.InstanceType == "e2-micro":
			t.Errorf("shared-core e2-micro cannot be priced per vCPU, yet it is listed at %v", e.HourlyPrice)
		case e.InstanceType == "a2-highgpu-1g" && e.Zone != "us-central1-b":
			t.Errorf("a2 listed in %s, where the API does not offer it", e.Zone)
		case e.GPUModel == "l4" && !strings.HasPrefix(e.InstanceType, "g2-"):
			t.Errorf("L4 attached to %s: L4s come only with g2", e.InstanceType)
		case e.GPUCount > 4 && e.GPUModel == "t4":
			t.Errorf("%d T4s on one VM; at most 4 fit", e.GPUCount)
		case e.HourlyPrice <= 0:
			t.Errorf("%s listed without a price", e.InstanceType)
		}
	}
	if _, ok := findEntry(cat, "us-central1-a", "n1-standard-8", "t4", 1); !ok {
		t.Error("n1-standard-8 with one T4 is a valid shape and missing")
	}

	// The version is stable for the same prices and changes with them.
	again, err := p.Catalog(testCtx(t))
	if err != nil || len(again) != len(cat) || again[0].PricingVersion != cat[0].PricingVersion {
		t.Fatalf("a second fetch differs: %d vs %d entries, version %q vs %q (%v)", len(again), len(cat), again[0].PricingVersion, cat[0].PricingVersion, err)
	}
	skus := gcpfake.DefaultSKUs()
	skus[0].PricingInfo[0].PricingExpression.TieredRates[0].UnitPrice = gcpfake.USD(0.03)
	srv.SetSKUs(skus)
	changed, err := p.Catalog(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if changed[0].PricingVersion == cat[0].PricingVersion {
		t.Fatal("the pricing version did not change with a price")
	}
}

func TestCatalogZones(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", map[string]string{"catalog_zones": "us-central1-b, europe-west4-a"})
	cat, err := p.Catalog(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	zones := map[string]bool{}
	for _, e := range cat {
		zones[e.Zone] = true
	}
	if len(zones) != 2 || !zones["us-central1-b"] || !zones["europe-west4-a"] {
		t.Fatalf("catalog zones %v", zones)
	}
	if srv.Requests("machineTypes.aggregatedList") != 0 || srv.Requests("machineTypes.list") != 2 {
		t.Fatal("catalog_zones should list each zone, not aggregate")
	}
}

// A payload that does not make sense fails the whole catalog, naming the
// provider, and returns no entries.
func TestCatalogMalformed(t *testing.T) {
	sku := func(desc, unit, units string, nanos int, extra string) string {
		return `{"skuId":"AAAA-BBBB-CCCC","description":"` + desc + `","category":{"resourceFamily":"Compute","usageType":"OnDemand"},` +
			`"serviceRegions":["us-central1"],"pricingInfo":[{"effectiveTime":"2026-10-01T07:00:00Z","pricingExpression":{"usageUnit":"` + unit +
			`","tieredRates":[{"startUsageAmount":0,"unitPrice":{"currencyCode":"USD","units":"` + units + `","nanos":` + strconv.Itoa(nanos) + `}}]}}]` + extra + `}`
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"not JSON", `<html>502 Bad Gateway</html>`, "gcp"},
		{"units not a number", `{"skus":[` + sku("N2 Instance Core running in Americas", "h", "abc", 1, "") + `]}`, "gcp"},
		{"no SKUs", `{"skus":[]}`, "lists no Compute Engine SKUs"},
		{"nothing prices a machine", `{"skus":[` + sku("Storage PD Capacity in Iowa", "GiBy.mo", "0", 40000000, "") + `]}`, "no SKU prices"},
		{"core priced per GiB", `{"skus":[` + sku("N2 Instance Core running in Americas", "GiBy.h", "0", 31611000, "") + `]}`, `priced per "GiBy.h"`},
		{"negative price", `{"skus":[` + sku("N2 Instance Core running in Americas", "h", "-1", 0, "") + `]}`, "negative price"},
		{"nanos out of range", `{"skus":[` + sku("N2 Instance Core running in Americas", "h", "0", 2000000000, "") + `]}`, "nanos"},
		{"no pricing info", `{"skus":[{"skuId":"X","description":"N2 Instance Core running in Americas","category":{"usageType":"OnDemand"},"serviceRegions":["us-central1"]}]}`, "no pricingInfo"},
		{"no category", `{"skus":[{"skuId":"X","description":"N2 Instance Core running in Americas"}]}`, "no category"},
		{"no region", strings.Replace(`{"skus":[`+sku("N2 Instance Core running in Americas", "h", "0", 1, "")+`]}`, `"serviceRegions":["us-central1"],`, "", 1), "no service region"},
		{"disk capacity priced per hour of use", `{"skus":[` + sku("Balanced PD Capacity", "h", "0", 100000000, "") + `]}`, `priced per "h", want "GiBy.mo"`},
		{"negative disk price", `{"skus":[` + sku("SSD backed PD Capacity in Netherlands", "GiBy.mo", "-1", 0, "") + `]}`, "negative price"},
		{"euros", strings.Replace(`{"skus":[`+sku("N2 Instance Core running in Americas", "h", "0", 1, "")+`]}`, `"USD"`, `"EUR"`, 1), "want USD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fastFake(t, gcpfake.Options{})
			srv.SetBillingResponse([]byte(tc.body))
			p := newTestProvider(t, srv, "dep1", nil)
			cat, err := p.Catalog(testCtx(t))
			if err == nil || cat != nil {
				t.Fatalf("got %d entries and error %v; want no entries and an error", len(cat), err)
			}
			if !strings.Contains(err.Error(), "gcp") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q should name the provider and say %q", err, tc.want)
			}
		})
	}

	t.Run("machine type without vCPUs", func(t *testing.T) {
		mts := gcpfake.DefaultMachineTypes()
		mts["us-central1-a"] = append(mts["us-central1-a"], &computepb.MachineType{Name: proto.String("n2-broken"), MemoryMb: proto.Int32(1024)})
		srv := fastFake(t, gcpfake.Options{MachineTypes: mts})
		cat, err := newTestProvider(t, srv, "dep1", nil).Catalog(testCtx(t))
		if err == nil || cat != nil || !strings.Contains(err.Error(), "gcp") || !strings.Contains(err.Error(), "n2-broken") {
			t.Fatalf("got %d entries, %v; want an error about n2-broken", len(cat), err)
		}
	})
	t.Run("billing down", func(t *testing.T) {
		srv := fastFake(t, gcpfake.Options{})
		srv.InjectFault(gcpfake.Fault{Action: "billing.skus", Status: 503})
		_, err := newTestProvider(t, srv, "dep1", nil).Catalog(testCtx(t))
		wantKind(t, err, errkind.Transient)
	})
}

// Prices use the newest pricing and, within it, the last tier (after any
// free allowance); SKUs for commitments, custom shapes and workstations
// never price a machine.
func TestParsePrices(t *testing.T) {
	sku := gcpfake.NewSKU("A", "N2 Instance Core running in Americas", "CPU", "OnDemand", []string{"us-central1"}, "h", 0.5)
	pe := &sku.PricingInfo[0].PricingExpression
	pe.TieredRates = append([]gcpfake.TierRate{{StartUsageAmount: 0, UnitPrice: gcpfake.USD(0)}}, gcpfake.TierRate{StartUsageAmount: 10, UnitPrice: gcpfake.USD(1.25)})
	skus := []gcpfake.SKU{sku,
		gcpfake.NewSKU("B", "Commitment v1: N2 Cpu in Americas for 1 Year", "CPU", "Commit1Yr", []string{"us-central1"}, "h", 0.01),
		gcpfake.NewSKU("C", "N2 Custom Instance Core running in Americas", "CPU", "OnDemand", []string{"us-central1"}, "h", 0.02),
		gcpfake.NewSKU("D", "Nvidia L4 GPU Virtual Workstation running in Americas", "GPU", "OnDemand", []string{"us-central1"}, "h", 0.03),
		gcpfake.NewSKU("E", "Nvidia Tesla A100 80GB GPU running in Americas", "GPU", "OnDemand", []string{"us-central1"}, "h", 3.5),
		gcpfake.NewSKU("F", "N2D AMD Instance Ram running in Americas", "RAM", "OnDemand", []string{"us-central1"}, "GiBy.h", 0.004),
	}
	srv := fastFake(t, gcpfake.Options{SKUs: skus})
	p := newTestProvider(t, srv, "dep1", nil)
	ps, err := p.fetchPrices(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := ps.get(priceKey{family: "n2", part: "core", region: "us-central1"}); !ok || v != 1.25 {
		t.Fatalf("n2 core = %v, %v; want the last tier, 1.25", v, ok)
	}
	if len(ps.rate) != 3 {
		t.Fatalf("%d prices indexed, want 3 (n2 core, a100 80gb, n2d ram): %v", len(ps.rate), ps.rate)
	}
	a100 := gpuOf("nvidia-a100-80gb")
	if v, ok := ps.get(priceKey{family: a100.model + "/" + a100.variant, part: "gpu", region: "us-central1"}); !ok || v != 3.5 || a100.memoryGiB != 80 {
		t.Fatalf("A100 80GB = %v, %v (memory %v)", v, ok, a100.memoryGiB)
	}
	if _, ok := ps.get(priceKey{family: "n2d", part: "ram", region: "us-central1"}); !ok {
		t.Fatal("N2D AMD RAM not indexed as n2d")
	}
}

func TestGPUNames(t *testing.T) {
	for name, want := range map[string]gpu{
		"nvidia-l4":             {model: "l4", memoryGiB: 24},
		"nvidia-l4-vws":         {model: "l4", memoryGiB: 24, workstation: true},
		"nvidia-tesla-t4":       {model: "t4", memoryGiB: 16},
		"nvidia-tesla-a100":     {model: "a100", memoryGiB: 40},
		"nvidia-a100-80gb":      {model: "a100", variant: "80gb", memoryGiB: 80},
		"nvidia-h100-80gb":      {model: "h100", variant: "80gb", memoryGiB: 80},
		"nvidia-h100-mega-80gb": {model: "h100", variant: "80gb-mega", memoryGiB: 80},
	} {
		if got := gpuOf(name); got != want {
			t.Errorf("gpuOf(%s) = %+v, want %+v", name, got, want)
		}
	}
}

// Every row carries the per-GiB-month price of the data disk type the
// provider creates, from that region's zonal capacity SKU.
func TestCatalogDiskPrices(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	diskPrices := func(t *testing.T, options map[string]string) map[string]float64 {
		t.Helper()
		cat, err := newTestProvider(t, srv, "dep1", options).Catalog(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		byRegion := map[string]float64{}
		for _, e := range cat {
			if prev, seen := byRegion[e.Region]; seen && prev != e.DiskPricePerGBMonth {
				t.Fatalf("%s %s: disk price %v, other rows in %s have %v", e.Zone, e.InstanceType, e.DiskPricePerGBMonth, e.Region, prev)
			}
			byRegion[e.Region] = e.DiskPricePerGBMonth
			// The boot disk is pd-balanced (20 GB by default), whatever
			// the data disk's type.
			if balanced := options["data_disk_type"] == ""; balanced && !near(e.BootDiskMonthly, 20*e.DiskPricePerGBMonth) ||
				!balanced && !near(e.BootDiskMonthly, 20*map[string]float64{"us-central1": 0.10, "europe-west4": 0.11}[e.Region]) {
				t.Fatalf("%s %s: boot disk %v a month, want 20 GB at the pd-balanced price", e.Zone, e.InstanceType, e.BootDiskMonthly)
			}
		}
		return byRegion
	}
	for _, tc := range []struct {
		name    string
		options map[string]string
		want    map[string]float64
	}{
		// pd-balanced by default; the dearer "Regional Balanced PD
		// Capacity" (0.20) must not be taken for the zonal disk.
		{"default pd-balanced", nil, map[string]float64{"us-central1": 0.10, "europe-west4": 0.11}},
		{"pd-ssd", map[string]string{"data_disk_type": "pd-ssd"}, map[string]float64{"us-central1": 0.17, "europe-west4": 0.187}},
		{"pd-standard", map[string]string{"data_disk_type": "pd-standard"}, map[string]float64{"us-central1": 0.04, "europe-west4": 0.044}},
		// Extreme PD is only listed for us-central1 in the fake.
		{"pd-extreme", map[string]string{"data_disk_type": "pd-extreme"}, map[string]float64{"us-central1": 0.125, "europe-west4": 0}},
		// Hyperdisk also bills IOPS and throughput: left unpriced.
		{"hyperdisk", map[string]string{"data_disk_type": "hyperdisk-balanced"}, map[string]float64{"us-central1": 0, "europe-west4": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := diskPrices(t, tc.options)
			if len(got) != len(tc.want) {
				t.Fatalf("regions %v, want %v", got, tc.want)
			}
			for region, want := range tc.want {
				if !near(got[region], want) {
					t.Errorf("%s: disk price %v per GB-month, want %v", region, got[region], want)
				}
			}
		})
	}

	t.Run("region without a disk SKU", func(t *testing.T) {
		var skus []gcpfake.SKU
		for _, s := range gcpfake.DefaultSKUs() {
			if s.Description != "Balanced PD Capacity in Netherlands" {
				skus = append(skus, s)
			}
		}
		srv.SetSKUs(skus)
		t.Cleanup(func() { srv.SetSKUs(gcpfake.DefaultSKUs()) })
		got := diskPrices(t, nil)
		if got["europe-west4"] != 0 || !near(got["us-central1"], 0.10) {
			t.Fatalf("disk prices %v; want europe-west4 0 (no SKU) and us-central1 0.10", got)
		}
	})

	t.Run("per GiB-hour SKU is converted", func(t *testing.T) {
		skus := append(gcpfake.DefaultSKUs(), gcpfake.NewSKU("D15C-0000-0001", "Balanced PD Capacity in Netherlands", "SSD", "OnDemand", []string{"europe-west4"}, "GiBy.h", 0.0002))
		// NewSKU files per-hour units under Compute; the parser must not care.
		srv.SetSKUs(skus)
		t.Cleanup(func() { srv.SetSKUs(gcpfake.DefaultSKUs()) })
		got := diskPrices(t, nil)
		// 0.0002 × 730 = 0.146, dearer than the per-month 0.11 SKU.
		if !near(got["europe-west4"], 0.146) {
			t.Fatalf("europe-west4 disk price %v, want 0.0002/GiB-h × 730 = 0.146", got["europe-west4"])
		}
	})

	t.Run("disk prices are part of the pricing version", func(t *testing.T) {
		p := newTestProvider(t, srv, "dep1", nil)
		before, err := p.Catalog(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		skus := gcpfake.DefaultSKUs()
		for i := range skus {
			if skus[i].Description == "Balanced PD Capacity" {
				skus[i].PricingInfo[0].PricingExpression.TieredRates[0].UnitPrice = gcpfake.USD(0.12)
			}
		}
		srv.SetSKUs(skus)
		t.Cleanup(func() { srv.SetSKUs(gcpfake.DefaultSKUs()) })
		after, err := p.Catalog(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if after[0].PricingVersion == before[0].PricingVersion {
			t.Fatal("a disk price change left the pricing version unchanged")
		}
	})
}
