package lambda

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/providers/lambda/lambdafake"
)

func TestCatalogFromFake(t *testing.T) {
	e := newEnv(t, fastFake(), map[string]string{"regions": "asia-south-1"})
	cat, err := e.p.Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// 5 types × (4 regions with capacity somewhere + 1 configured).
	if len(cat) != 25 {
		t.Fatalf("%d rows, want 25", len(cat))
	}
	byKey := map[string]provider.CatalogEntry{}
	for _, r := range cat {
		byKey[r.Region+"/"+r.InstanceType] = r
		if r.Provider != Name || r.PricingSource != PricingSource || !strings.HasPrefix(r.PricingVersion, "sha256:") || r.Zone != "" {
			t.Fatalf("row %+v lacks provider, pricing source or version", r)
		}
	}
	h100 := byKey["us-south-1/gpu_8x_h100_sxm5"]
	want := provider.CatalogEntry{
		Provider: Name, Region: "us-south-1", InstanceType: "gpu_8x_h100_sxm5", VCPUs: 208, MemoryGiB: 1800,
		GPUModel: "h100", GPUCount: 8, GPUMemoryGiB: 80, HourlyPrice: 23.92, Available: true,
		PricingSource: PricingSource, PricingVersion: h100.PricingVersion,
	}
	if h100 != want {
		t.Fatalf("h100 row\n got %+v\nwant %+v", h100, want)
	}
	a100 := byKey["us-east-1/gpu_8x_a100_80gb_sxm4"]
	if a100.GPUModel != "a100" || a100.GPUMemoryGiB != 80 || a100.GPUCount != 8 || a100.Available {
		t.Fatalf("sold-out 8x a100 80gb row: %+v", a100)
	}
	if r := byKey["asia-south-1/gpu_1x_a10"]; r.InstanceType == "" || r.Available {
		t.Fatalf("configured region without capacity: %+v, want listed and unavailable", r)
	}
	if r := byKey["us-west-1/gpu_1x_a10"]; !r.Available || r.HourlyPrice != 0.75 || r.GPUMemoryGiB != 24 {
		t.Fatalf("a10 in us-west-1: %+v", r)
	}
	// Capacity changes the rows, not the pricing version; prices do.
	e.fake.SetCapacity("gpu_1x_a10")
	again, err := e.p.Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if again[0].PricingVersion != cat[0].PricingVersion {
		t.Fatal("pricing version changed without a price change")
	}
	for _, r := range again {
		if r.InstanceType == "gpu_1x_a10" && r.Available {
			t.Fatalf("sold-out a10 still available in %s", r.Region)
		}
	}
	types := lambdafake.DefaultInstanceTypes()
	types[0].PriceCents++
	e2 := newEnv(t, lambdafake.Options{InstanceTypes: types}, nil)
	moved, err := e2.p.Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if moved[0].PricingVersion == cat[0].PricingVersion {
		t.Fatal("pricing version unchanged after a price change")
	}
}

// serveInstanceTypes serves body as the reply to GET /instance-types.
func serveInstanceTypes(t *testing.T, body string) *Provider {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/instance-types" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body)) //nolint:errcheck
	}))
	t.Cleanup(srv.Close)
	creds := filepath.Join(t.TempDir(), "key")
	os.WriteFile(creds, []byte("k"), 0o600) //nolint:errcheck
	p, err := New(provider.Config{Deployment: "d", CredentialsFile: creds, Options: map[string]string{"endpoint": srv.URL + "/api/v1"}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The spec's own example writes prices as strings and omits specs.gpus;
// the catalog must still read it right.
func TestCatalogSpecExample(t *testing.T) {
	raw, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Example any `yaml:"example"`
				} `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	example := doc.Components.Schemas["InstanceTypeGetListResponse"].Properties["data"].Example
	if example == nil {
		t.Fatal("the spec has no instance-types example")
	}
	body, err := json.Marshal(map[string]any{"data": example})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"price_cents_per_hour":"80"`) {
		t.Fatalf("the example no longer has a string price; this test checks that case: %s", body)
	}
	cat, err := serveInstanceTypes(t, string(body)).Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]provider.CatalogEntry{}
	for _, r := range cat {
		got[r.Region+"/"+r.InstanceType] = r
	}
	a100 := got["us-tx-1/gpu_1x_a100"]
	if a100.HourlyPrice != 0.80 || a100.GPUModel != "a100" || a100.GPUCount != 1 || a100.VCPUs != 24 || a100.MemoryGiB != 800 || !a100.Available {
		t.Fatalf("a100 from the spec example: %+v", a100)
	}
	a6000 := got["us-az-1/gpu_4x_a6000"]
	if a6000.HourlyPrice != 1.10 || a6000.GPUModel != "a6000" || a6000.GPUCount != 4 || a6000.GPUMemoryGiB != 24 || !a6000.Available {
		t.Fatalf("a6000 from the spec example: %+v", a6000)
	}
	if r := got["us-az-1/gpu_1x_a100"]; r.Available {
		t.Fatalf("a100 has no capacity in us-az-1 in the example: %+v", r)
	}
	if len(cat) != 4 {
		t.Fatalf("%d rows, want 2 types × 2 regions", len(cat))
	}
}

func TestCatalogMalformed(t *testing.T) {
	good := `{"instance_type":{"name":"gpu_1x_a10","description":"d","gpu_description":"A10 (24 GB)","price_cents_per_hour":75,"specs":{"vcpus":30,"memory_gib":200,"storage_gib":1400,"gpus":1}},"regions_with_capacity_available":[{"name":"us-east-1","description":"x"}]}`
	for name, body := range map[string]string{
		"not json":        `<html>502 Bad Gateway</html>`,
		"no data":         `{"error": null}`,
		"data not object": `{"data": [1,2]}`,
		"string price":    `{"data":{"t":` + strings.Replace(good, `75`, `"seventy"`, 1) + `}}`,
		"negative price":  `{"data":{"t":` + strings.Replace(good, `75`, `-1`, 1) + `}}`,
		"no price":        `{"data":{"t":` + strings.Replace(good, `"price_cents_per_hour":75,`, ``, 1) + `}}`,
		"no specs":        `{"data":{"t":` + strings.Replace(good, `"specs":{"vcpus":30,"memory_gib":200,"storage_gib":1400,"gpus":1}`, `"x":1`, 1) + `}}`,
		"zero vcpus":      `{"data":{"t":` + strings.Replace(good, `"vcpus":30`, `"vcpus":0`, 1) + `}}`,
		"no name":         `{"data":{"t":` + strings.Replace(good, `"name":"gpu_1x_a10",`, ``, 1) + `}}`,
		"no regions list": `{"data":{"t":` + strings.Replace(good, `,"regions_with_capacity_available":[{"name":"us-east-1","description":"x"}]`, ``, 1) + `}}`,
		"nameless region": `{"data":{"t":` + strings.Replace(good, `"name":"us-east-1",`, ``, 1) + `}}`,
	} {
		_, err := serveInstanceTypes(t, body).Catalog(ctxT(t))
		if err == nil {
			t.Errorf("%s: accepted a malformed payload", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "lambda ") {
			t.Errorf("%s: error %q does not name the provider", name, err)
		}
	}
	// The good entry alone is accepted, so the cases above fail for
	// their defect, not for the fixture.
	if cat, err := serveInstanceTypes(t, `{"data":{"t":`+good+`}}`).Catalog(ctxT(t)); err != nil || len(cat) != 1 {
		t.Fatalf("good payload: %v, %d rows", err, len(cat))
	}
}

// One malformed instance type is left out and reported; the others stay
// in the catalog at their own prices.
func TestCatalogSkipsBadTypes(t *testing.T) {
	good := `{"instance_type":{"name":"gpu_1x_a10","description":"d","gpu_description":"A10 (24 GB)","price_cents_per_hour":75,"specs":{"vcpus":30,"memory_gib":200,"storage_gib":1400,"gpus":1}},"regions_with_capacity_available":[{"name":"us-east-1","description":"x"}]}`
	other := strings.NewReplacer(`gpu_1x_a10`, `gpu_1x_h100`, `75`, `249`).Replace(good)
	body := `{"data":{"a":` + good + `,"h":` + other +
		`,"b":` + strings.Replace(good, `75`, `null`, 1) +
		`,"c":` + strings.Replace(good, `75`, `"seventy"`, 1) +
		`,"d":` + strings.Replace(good, `"name":"us-east-1",`, ``, 1) +
		`,"e":{"instance_type":null},"f":[1],"g":` + strings.Replace(good, `"vcpus":30`, `"vcpus":0`, 1) + `}}`
	rep, err := serveInstanceTypes(t, body).CatalogReport(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	prices := map[string]float64{}
	for _, e := range rep.Entries {
		prices[e.InstanceType] = e.HourlyPrice
	}
	if len(rep.Entries) != 2 || prices["gpu_1x_a10"] != 0.75 || prices["gpu_1x_h100"] != 2.49 {
		t.Errorf("entries %+v, want gpu_1x_a10 at 0.75 and gpu_1x_h100 at 2.49 in us-east-1", rep.Entries)
	}
	if rep.Skipped != 6 || len(rep.Reasons) != provider.MaxSkipReasons {
		t.Fatalf("skipped %d with reasons %q, want 6 and %d reasons", rep.Skipped, rep.Reasons, provider.MaxSkipReasons)
	}
	// Types are read in key order: b (no price), c (a word for a price), d.
	for i, want := range []string{"no price_cents_per_hour", `instance type "c"`, "region without a name"} {
		if !strings.Contains(rep.Reasons[i], want) {
			t.Errorf("reason %d = %q, want it to say %q", i, rep.Reasons[i], want)
		}
	}
	// Catalog is the same rows.
	if cat, err := serveInstanceTypes(t, body).Catalog(ctxT(t)); err != nil || len(cat) != 2 {
		t.Errorf("Catalog: %v, %d rows", err, len(cat))
	}
	// Only bad types left: refused, with the reasons.
	_, err = serveInstanceTypes(t, `{"data":{"b":`+strings.Replace(good, `75`, `null`, 1)+`}}`).CatalogReport(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "no valid instance type") || !strings.Contains(err.Error(), "no price_cents_per_hour") {
		t.Errorf("all types bad: %v", err)
	}
}

func TestGPUOf(t *testing.T) {
	n := func(i int) *int { return &i }
	for _, tc := range []struct {
		it    instanceType
		model string
		count int
		mem   float64
	}{
		{instanceType{Name: "gpu_1x_a10", GPUDescription: "A10 (24 GB PCIe)"}, "a10", 1, 24},
		{instanceType{Name: "gpu_8x_a100_80gb_sxm4", GPUDescription: "A100 (80 GB SXM4)"}, "a100", 8, 80},
		{instanceType{Name: "gpu_1x_a100"}, "a100", 1, 40},
		{instanceType{Name: "gpu_1x_gh200", GPUDescription: "GH200 (96 GB)"}, "gh200", 1, 96},
		{instanceType{Name: "gpu_1x_rtx6000", GPUDescription: "RTX 6000 (24 GB)"}, "rtx6000", 1, 24},
		{instanceType{Name: "custom", GPUDescription: "RTX A6000 (48 GB)", Specs: &specs{GPUs: n(2)}}, "a6000", 2, 48},
		{instanceType{Name: "cpu_4x_general", Specs: &specs{GPUs: n(0)}}, "", 0, 0},
	} {
		m, c, mem := gpuOf(tc.it)
		if m != tc.model || c != tc.count || mem != tc.mem {
			t.Errorf("gpuOf(%s) = %s ×%d %v GiB, want %s ×%d %v GiB", tc.it.Name, m, c, mem, tc.model, tc.count, tc.mem)
		}
	}
}
