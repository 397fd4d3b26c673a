package nebius

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	billing "github.com/nebius/gosdk/proto/nebius/billing/v1alpha1"
	common "github.com/nebius/gosdk/proto/nebius/common/v1"
	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/providers/nebius/nebiusfake"
)

func catalogByType(t *testing.T, rows []provider.CatalogEntry) map[string]provider.CatalogEntry {
	t.Helper()
	out := map[string]provider.CatalogEntry{}
	for _, r := range rows {
		if _, dup := out[r.InstanceType]; dup {
			t.Fatalf("instance type %s listed twice", r.InstanceType)
		}
		out[r.InstanceType] = r
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestCatalogFromCalculator checks normalization against the fake's
// platform payload (the shape PlatformService.List returns) and prices
// computed by hand from the fake calculator's price model.
func TestCatalogFromCalculator(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	rows, err := p.Catalog(ctx)
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	byType := catalogByType(t, rows)
	presets := 0
	for _, pl := range nebiusfake.DefaultPlatforms() {
		presets += len(pl.GetSpec().GetPresets())
	}
	if len(rows) != presets {
		t.Fatalf("%d rows for %d presets", len(rows), presets)
	}
	want := map[string]provider.CatalogEntry{
		// 1 GPU × 2.95; preemptible 1 × 1.25
		"gpu-h100-sxm/1gpu-16vcpu-200gb":   {VCPUs: 16, MemoryGiB: 200, GPUModel: "h100", GPUCount: 1, GPUMemoryGiB: 80, HourlyPrice: 2.95, SpotPrice: 1.25},
		"gpu-h100-sxm/8gpu-128vcpu-1600gb": {VCPUs: 128, MemoryGiB: 1600, GPUModel: "h100", GPUCount: 8, GPUMemoryGiB: 80, HourlyPrice: 23.6, SpotPrice: 10},
		// 1.35 + 8 × 0.012 + 32 × 0.0032; no preemptibles on L40S
		"gpu-l40s-a/1gpu-8vcpu-32gb": {VCPUs: 8, MemoryGiB: 32, GPUModel: "l40s", GPUCount: 1, GPUMemoryGiB: 48, HourlyPrice: 1.5484},
		// 4 × 0.012 + 16 × 0.0032
		"cpu-d3/4vcpu-16gb": {VCPUs: 4, MemoryGiB: 16, HourlyPrice: 0.0992},
	}
	for typ, w := range want {
		g, ok := byType[typ]
		if !ok {
			t.Errorf("no row for %s", typ)
			continue
		}
		if g.Provider != Name || g.Region != testRegion || g.Zone != "" || !g.Available {
			t.Errorf("%s: provider %q region %q zone %q available %v", typ, g.Provider, g.Region, g.Zone, g.Available)
		}
		if g.VCPUs != w.VCPUs || g.MemoryGiB != w.MemoryGiB || g.GPUModel != w.GPUModel || g.GPUCount != w.GPUCount || g.GPUMemoryGiB != w.GPUMemoryGiB {
			t.Errorf("%s: got %d vCPU %.0f GiB %q×%d (%.0f GiB), want %d vCPU %.0f GiB %q×%d (%.0f GiB)", typ,
				g.VCPUs, g.MemoryGiB, g.GPUModel, g.GPUCount, g.GPUMemoryGiB, w.VCPUs, w.MemoryGiB, w.GPUModel, w.GPUCount, w.GPUMemoryGiB)
		}
		if !near(g.HourlyPrice, w.HourlyPrice) || !near(g.SpotPrice, w.SpotPrice) {
			t.Errorf("%s: price %v spot %v, want %v spot %v", typ, g.HourlyPrice, g.SpotPrice, w.HourlyPrice, w.SpotPrice)
		}
		if g.PricingSource != PricingSourceCalculator || !strings.HasPrefix(g.PricingVersion, "calculator-") {
			t.Errorf("%s: pricing source %q version %q", typ, g.PricingSource, g.PricingVersion)
		}
	}
	// The default data disk (network_ssd) at the fake's 0.0000972 per
	// GiB-hour, × 730 hours: on every row.
	for _, r := range rows {
		if !near(r.DiskPricePerGBMonth, 0.0000972*730) {
			t.Errorf("%s: disk price %v per GB-month, want %v", r.InstanceType, r.DiskPricePerGBMonth, 0.0000972*730)
		}
	}
	// The version identifies the prices: same prices, same version;
	// another price, another version.
	again, err := p.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].PricingVersion != rows[0].PricingVersion {
		t.Fatalf("version changed without a price change: %s → %s", rows[0].PricingVersion, again[0].PricingVersion)
	}
	prices := nebiusfake.DefaultPrices()
	h := prices["gpu-h100-sxm"]
	h.GPU = 2.5
	prices["gpu-h100-sxm"] = h
	o := fastFake()
	o.Prices = prices
	other := openProvider(t, startFake(t, o), "dep", nil)
	changed, err := other.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if changed[0].PricingVersion == rows[0].PricingVersion {
		t.Fatal("a price changed but the pricing version did not")
	}
	if n := len(srv.Calls(nebiusfake.MethodEstimate)); n != 2*(presets+4+1) {
		// one estimate per preset, one more per preset of the two
		// preemptible-capable platforms, one for the data disk, for each
		// of the two calls
		t.Fatalf("%d calculator calls, want %d", n, 2*(presets+4+1))
	}
}

func TestCatalogRejectsMalformedPayloads(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", map[string]string{"retries": "0"})
	ctx := testCtx(t)
	good := nebiusfake.DefaultPlatforms()
	withPreset := func(name string, r *compute.PresetResources) []*compute.Platform {
		return []*compute.Platform{{
			Metadata: &common.ResourceMetadata{Name: name},
			Spec:     &compute.PlatformSpec{Presets: []*compute.Preset{{Name: "p", Resources: r}}},
		}}
	}
	platformCases := map[string][]*compute.Platform{
		"no platforms":          {},
		"platform without name": {{Spec: good[0].GetSpec()}},
		"no presets":            {{Metadata: &common.ResourceMetadata{Name: "cpu-d3"}, Spec: &compute.PlatformSpec{}}},
		"no resources":          withPreset("cpu-d3", nil),
		"zero vCPUs":            withPreset("cpu-d3", &compute.PresetResources{VcpuCount: 0, MemoryGibibytes: 8}),
		"GPUs on a CPU name":    withPreset("cpu-d3", &compute.PresetResources{VcpuCount: 8, MemoryGibibytes: 8, GpuCount: 1}),
		"duplicate preset":      {good[0], good[0]},
	}
	for name, plats := range platformCases {
		t.Run("platforms/"+name, func(t *testing.T) {
			srv.SetPlatforms(plats)
			defer srv.SetPlatforms(nil)
			rows, err := p.Catalog(ctx)
			if err == nil || rows != nil {
				t.Fatalf("got %d rows, error %v; want the payload rejected", len(rows), err)
			}
			if kindOf(err) != errkind.Invalid || !strings.Contains(err.Error(), "nebius") || !strings.Contains(err.Error(), "malformed") {
				t.Fatalf("error %v (kind %s) does not reject a malformed payload naming nebius", err, kindOf(err))
			}
		})
	}
	priceCases := map[string]*billing.EstimateResponse{
		"no hourly cost":   {MonthlyCost: nebiusfake.Cost("100")},
		"not a number":     {HourlyCost: nebiusfake.Cost("two dollars")},
		"negative":         {HourlyCost: nebiusfake.Cost("-1.5")},
		"zero":             {HourlyCost: nebiusfake.Cost("0")},
		"not a number NaN": {HourlyCost: nebiusfake.Cost("NaN")},
	}
	// One bad price — of one machine preset, or of the data disk — and
	// the catalog is refused as a whole.
	for name, resp := range priceCases {
		for _, bad := range []string{"machine", "disk"} {
			t.Run(bad+" prices/"+name, func(t *testing.T) {
				srv.SetEstimate(func(req *billing.EstimateRequest) (*billing.EstimateResponse, error) {
					isDisk := req.GetResourceSpec().GetComputeDiskSpec() != nil
					badMachine := req.GetResourceSpec().GetComputeInstanceSpec().GetSpec().GetResources().GetPreset() == "1gpu-8vcpu-32gb"
					switch {
					case bad == "disk" && isDisk, bad == "machine" && badMachine:
						return resp, nil
					case isDisk:
						return &billing.EstimateResponse{HourlyCost: nebiusfake.Cost("0.005")}, nil
					}
					return &billing.EstimateResponse{HourlyCost: nebiusfake.Cost("1.0")}, nil
				})
				defer srv.SetEstimate(nil)
				rows, err := p.Catalog(ctx)
				if err == nil || rows != nil {
					t.Fatalf("got %d rows, error %v; want the payload rejected", len(rows), err)
				}
				if kindOf(err) != errkind.Invalid || !strings.Contains(err.Error(), "nebius") ||
					bad == "disk" && !strings.Contains(err.Error(), "data disk") {
					t.Fatalf("error %v (kind %s)", err, kindOf(err))
				}
			})
		}
	}
	// A calculator outage is not a malformed payload: transient, and
	// still no partial catalog. (Every call fails: a request the last
	// subtest cancelled may still reach the fake and take a one-off fault.)
	srv.Inject(nebiusfake.MethodEstimate, -1, nebiusfake.Unavailable())
	defer srv.Clear()
	rows, err := p.Catalog(ctx)
	if rows != nil || kindOf(err) != errkind.Transient {
		t.Fatalf("calculator outage: %d rows, %v (kind %s)", len(rows), err, kindOf(err))
	}
}

func TestCatalogFromPriceTable(t *testing.T) {
	srv := startFake(t, fastFake())
	dir := t.TempDir()
	table := filepath.Join(dir, "nebius-prices.json")
	write := func(s string) {
		if err := os.WriteFile(table, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"version": "2026-03-01", "currency": "USD", "prices": [
		{"platform": "gpu-h100-sxm", "preset": "1gpu-16vcpu-200gb", "hourly": 3.1, "preemptible": 1.4},
		{"region": "eu-north1", "platform": "gpu-h100-sxm", "preset": "1gpu-16vcpu-200gb", "hourly": 2.9, "preemptible": 1.2},
		{"region": "us-central1", "platform": "cpu-d3", "preset": "2vcpu-8gb", "hourly": 0.5},
		{"platform": "cpu-d3", "preset": "4vcpu-16gb", "hourly": 0.1}]}`)
	p := openProvider(t, srv, "dep", map[string]string{"price_table": table})
	rows, err := p.Catalog(testCtx(t))
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	byType := catalogByType(t, rows)
	if len(rows) != 2 {
		t.Fatalf("got %d rows (%v), want the 2 presets the table prices for %s", len(rows), rows, testRegion)
	}
	h := byType["gpu-h100-sxm/1gpu-16vcpu-200gb"]
	if h.HourlyPrice != 2.9 || h.SpotPrice != 1.2 || h.PricingVersion != "2026-03-01" || !strings.Contains(h.PricingSource, table) || h.GPUModel != "h100" {
		t.Fatalf("h100 row %+v", h)
	}
	if c := byType["cpu-d3/4vcpu-16gb"]; c.HourlyPrice != 0.1 || c.VCPUs != 4 {
		t.Fatalf("cpu row %+v", c)
	}
	if n := len(srv.Calls(nebiusfake.MethodEstimate)); n != 0 {
		t.Fatalf("the calculator was called %d times with a price table", n)
	}

	for name, bad := range map[string]string{
		"no version":  `{"prices": [{"platform": "cpu-d3", "preset": "4vcpu-16gb", "hourly": 0.1}]}`,
		"not USD":     `{"version": "1", "currency": "EUR", "prices": [{"platform": "cpu-d3", "preset": "4vcpu-16gb", "hourly": 0.1}]}`,
		"zero price":  `{"version": "1", "prices": [{"platform": "cpu-d3", "preset": "4vcpu-16gb", "hourly": 0}]}`,
		"unknown key": `{"version": "1", "prices": [{"platform": "cpu-d3", "preset": "4vcpu-16gb", "hourly": 0.1, "hourley": 1}]}`,
		"prices none": `{"version": "1", "prices": [{"platform": "cpu-x", "preset": "big", "hourly": 0.1}]}`,
		"not JSON":    `version: 1`,
	} {
		write(bad)
		if rows, err := p.Catalog(testCtx(t)); err == nil || kindOf(err) != errkind.Invalid || !strings.Contains(err.Error(), "nebius") {
			t.Errorf("%s: got %d rows, %v (kind %s); want an invalid error", name, len(rows), err, kindOf(err))
		}
	}
}

func TestGPUModelFromPlatformName(t *testing.T) {
	for platform, want := range map[string]string{
		"gpu-h100-sxm": "h100", "gpu-h200-sxm": "h200", "gpu-l40s-a": "l40s", "gpu-l40s-d": "l40s",
		"gpu-b200-sxm-a": "b200", "gpu-b300-sxm": "b300", "cpu-d3": "", "cpu-e2": "", "gpu": "",
	} {
		if got := gpuModel(platform); got != want {
			t.Errorf("gpuModel(%q) = %q, want %q", platform, got, want)
		}
	}
}

func TestCatalogAvailability(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", map[string]string{"retries": "0"})
	ctx := testCtx(t)
	srv.SetCapacity("gpu-h100-sxm", false)
	rows, err := p.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if want := !strings.HasPrefix(r.InstanceType, "gpu-h100-sxm/"); r.Available != want {
			t.Errorf("%s: available %v, want %v", r.InstanceType, r.Available, want)
		}
	}
	// Without access to the capacity advisor the catalog still comes,
	// every preset counted as available.
	srv.Inject(nebiusfake.MethodResourceAdvice, 1, nebiusfake.PermissionDenied())
	rows, err = p.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if !r.Available {
			t.Errorf("%s is unavailable without advice", r.InstanceType)
		}
	}
	// An advisor outage fails the refresh (the cache keeps what it had).
	srv.Inject(nebiusfake.MethodResourceAdvice, 1, nebiusfake.Unavailable())
	if rows, err := p.Catalog(ctx); rows != nil || kindOf(err) != errkind.Transient {
		t.Fatalf("advisor outage: %d rows, %v", len(rows), err)
	}
}

// The data disk is priced once per catalog from a disk spec of the
// configured type and default size: hourly cost / GiB × 730.
func TestCatalogDiskPriceFromCalculator(t *testing.T) {
	srv := startFake(t, fastFake())
	ctx := testCtx(t)
	for _, tc := range []struct {
		name  string
		extra map[string]string
		want  float64
	}{
		{"network_hdd", map[string]string{"disk_type": "network_hdd"}, 0.0000486 * 730},
		{"non-replicated", map[string]string{"disk_type": "network_ssd_non_replicated"}, 0.0000777 * 730},
		// The size asked about does not change the per-GB price.
		{"larger default disk", map[string]string{"data_disk_gb": "400"}, 0.0000972 * 730},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := openProvider(t, srv, "dep", tc.extra).Catalog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The boot disk (network SSD, 50 GiB by default) is priced too.
			for _, r := range rows {
				if !near(r.DiskPricePerGBMonth, tc.want) || !near(r.BootDiskMonthly, 0.0000972*730*50) {
					t.Fatalf("%s: disk price %v, want %v; boot disk %v a month", r.InstanceType, r.DiskPricePerGBMonth, tc.want, r.BootDiskMonthly)
				}
			}
		})
	}

	// The disk spec sent is the one Create makes: project, type, size.
	var sent []*compute.CreateDiskRequest
	srv.SetEstimate(func(req *billing.EstimateRequest) (*billing.EstimateResponse, error) {
		if d := req.GetResourceSpec().GetComputeDiskSpec(); d != nil {
			sent = append(sent, d)
			return &billing.EstimateResponse{HourlyCost: nebiusfake.Cost("0.012")}, nil
		}
		return &billing.EstimateResponse{HourlyCost: nebiusfake.Cost("1.0")}, nil
	})
	defer srv.SetEstimate(nil)
	p := openProvider(t, srv, "dep", map[string]string{"disk_type": "network_hdd", "data_disk_gb": "120", "catalog_concurrency": "1"})
	rows, err := p.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One estimate for the data disk and, as its type differs, one for
	// the boot disk.
	if len(sent) != 2 {
		t.Fatalf("%d disk estimates, want 2 per catalog", len(sent))
	}
	d, b := sent[0], sent[1]
	if d.GetMetadata().GetParentId() != p.opts.projectID || d.GetSpec().GetType() != compute.DiskSpec_NETWORK_HDD || d.GetSpec().GetSizeGibibytes() != 120 {
		t.Fatalf("data disk spec sent: %v", d)
	}
	if b.GetSpec().GetType() != compute.DiskSpec_NETWORK_SSD || b.GetSpec().GetSizeGibibytes() != 50 {
		t.Fatalf("boot disk spec sent: %v", b)
	}
	// 0.012 per hour for 120 GiB → 0.0001 per GiB-hour → 0.073 per
	// GiB-month; the boot disk is 0.012 per hour as a whole → 8.76 a month.
	if !near(rows[0].DiskPricePerGBMonth, 0.073) || !near(rows[0].BootDiskMonthly, 8.76) {
		t.Fatalf("disk price %v, boot disk %v a month; want 0.073 and 8.76", rows[0].DiskPricePerGBMonth, rows[0].BootDiskMonthly)
	}
}

func TestPriceTableDiskPrice(t *testing.T) {
	srv := startFake(t, fastFake())
	table := filepath.Join(t.TempDir(), "nebius-prices.json")
	write := func(s string) {
		if err := os.WriteFile(table, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := openProvider(t, srv, "dep", map[string]string{"price_table": table})
	const prices = `"prices": [{"platform": "cpu-d3", "preset": "4vcpu-16gb", "hourly": 0.1}]`
	for _, tc := range []struct {
		name, table string
		want        float64
	}{
		{"none", `{"version": "1", ` + prices + `}`, 0},
		{"top level", `{"version": "1", "disk_gb_month": 0.071, ` + prices + `}`, 0.071},
		{"this region wins", `{"version": "1", "disk_gb_month": 0.071, "disk_gb_month_by_region": {"` + testRegion + `": 0.08, "us-central1": 0.09}, ` + prices + `}`, 0.08},
		{"another region only", `{"version": "1", "disk_gb_month_by_region": {"us-central1": 0.09}, ` + prices + `}`, 0},
	} {
		write(tc.table)
		rows, err := p.Catalog(testCtx(t))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// The boot disk (50 GiB) is priced at the table's disk price.
		if len(rows) != 1 || rows[0].DiskPricePerGBMonth != tc.want || !near(rows[0].BootDiskMonthly, tc.want*50) {
			t.Fatalf("%s: rows %+v, want one with disk price %v", tc.name, rows, tc.want)
		}
	}
	for name, bad := range map[string]string{
		"negative":           `{"version": "1", "disk_gb_month": -0.01, ` + prices + `}`,
		"negative in region": `{"version": "1", "disk_gb_month_by_region": {"` + testRegion + `": -1}, ` + prices + `}`,
		"empty region":       `{"version": "1", "disk_gb_month_by_region": {"": 0.1}, ` + prices + `}`,
		"not a number":       `{"version": "1", "disk_gb_month": "cheap", ` + prices + `}`,
	} {
		write(bad)
		if rows, err := p.Catalog(testCtx(t)); err == nil || kindOf(err) != errkind.Invalid || !strings.Contains(err.Error(), "disk_gb_month") {
			t.Errorf("%s: got %d rows, %v; want an invalid error naming disk_gb_month", name, len(rows), err)
		}
	}
}
