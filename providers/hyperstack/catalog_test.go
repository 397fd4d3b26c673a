package hyperstack

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/providers/hyperstack/hyperstackfake"
)

func TestCatalogFromFake(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	cat, err := e.p.Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]provider.CatalogEntry{}
	for _, r := range cat {
		rows[r.Region+"/"+r.InstanceType] = r
		if r.Provider != Name || r.PricingSource != PricingSource || !strings.HasPrefix(r.PricingVersion, "sha256:") {
			t.Fatalf("row %+v lacks provider or pricing", r)
		}
	}
	// 9 default flavors minus the k8s one.
	if len(cat) != 8 {
		t.Fatalf("%d rows, want 8: %+v", len(cat), cat)
	}
	if _, ok := rows["CANADA-1/n3-A100x1-k8s"]; ok {
		t.Fatal("a Kubernetes-only flavor is in the catalog")
	}
	want := provider.CatalogEntry{
		Provider: Name, Region: "CANADA-1", InstanceType: "n3-A100x2", VCPUs: 60, MemoryGiB: 240,
		GPUModel: "a100", GPUCount: 2, GPUMemoryGiB: 80, HourlyPrice: 2.70, Available: true,
		// The fake's "Cloud-SSD" entry, 0.000096 per GB-hour × 730.
		DiskPricePerGBMonth: 0.07008,
		PricingSource:       PricingSource, PricingVersion: cat[0].PricingVersion,
	}
	if got := rows["CANADA-1/n3-A100x2"]; got != want {
		t.Fatalf("n3-A100x2\n got %+v\nwant %+v", got, want)
	}
	if r := rows["CANADA-1/n3-H100x1"]; r.Available || r.GPUModel != "h100" || r.HourlyPrice != 1.90 {
		t.Fatalf("out-of-stock h100: %+v", r)
	}
	if r := rows["CANADA-1/n1-cpu-small"]; r.GPUModel != "" || r.GPUCount != 0 || r.HourlyPrice != 0.05 {
		t.Fatalf("cpu flavor priced per vCPU and GiB: %+v, want 4×0.01 + 4×0.0025 = 0.05", r)
	}
	if r := rows["CANADA-1/n3-L40x1"]; r.GPUModel != "l40" || r.GPUMemoryGiB != 48 {
		t.Fatalf("l40: %+v", r)
	}
	if r := rows["NORWAY-1/n3-RTX-A6000x1"]; r.GPUModel != "a6000" || r.GPUMemoryGiB != 48 || r.HourlyPrice != 0.5 {
		t.Fatalf("rtx a6000: %+v", r)
	}
	// A price change changes the version; stock does not.
	e.fake.SetStock("n3-L40x1", "CANADA-1", false)
	again, err := e.p.Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if again[0].PricingVersion != cat[0].PricingVersion {
		t.Fatal("pricing version changed without a price change")
	}
	prices := hyperstackfake.DefaultPrices()
	prices[0].Value += 0.01
	e2 := newEnv(t, hyperstackfake.Options{Prices: prices}, nil)
	moved, err := e2.p.Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if moved[0].PricingVersion == cat[0].PricingVersion {
		t.Fatal("pricing version unchanged after a price change")
	}
	// A flavor whose GPU the pricebook does not price is left out, not
	// shown at a made-up price.
	e3 := newEnv(t, hyperstackfake.Options{Prices: []hyperstackfake.Price{{Name: "L40", Value: 1}}}, nil)
	only, err := e3.p.Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(only) != 1 || only[0].InstanceType != "n3-L40x1" {
		t.Fatalf("with only L40 priced: %+v", only)
	}
}

// serve answers /v1/core/flavors and /v1/pricebook with the given bodies.
func serve(t *testing.T, flavors, prices string) *Provider {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/core/flavors":
			w.Write([]byte(flavors)) //nolint:errcheck
		case "/v1/pricebook":
			w.Write([]byte(prices)) //nolint:errcheck
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	creds := filepath.Join(t.TempDir(), "key")
	os.WriteFile(creds, []byte("k"), 0o600) //nolint:errcheck
	p, err := New(provider.Config{Deployment: "d", CredentialsFile: creds, Options: map[string]string{"endpoint": srv.URL + "/v1"}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCatalogMalformed(t *testing.T) {
	fl := `{"status":true,"message":"ok","data":[{"gpu":"L40","region_name":"CANADA-1","flavors":[{"id":1,"name":"n3-L40x1","cpu":28,"ram":58,"disk":100,"gpu":"L40","gpu_count":1,"stock_available":true,"region_name":"CANADA-1"}]}]}`
	pb := `[{"id":1,"name":"L40","value":1.0}]`
	for name, tc := range map[string][2]string{
		"flavors not json":       {`<html>`, pb},
		"flavors without data":   {`{"status":true,"message":"ok"}`, pb},
		"data not a list":        {`{"status":true,"data":{"a":1}}`, pb},
		"flavor without name":    {strings.Replace(fl, `"name":"n3-L40x1",`, ``, 1), pb},
		"flavor without cpu":     {strings.Replace(fl, `"cpu":28,`, ``, 1), pb},
		"zero ram":               {strings.Replace(fl, `"ram":58`, `"ram":0`, 1), pb},
		"negative gpus":          {strings.Replace(fl, `"gpu_count":1`, `"gpu_count":-1`, 1), pb},
		"no region":              {strings.ReplaceAll(fl, `"region_name":"CANADA-1"`, `"region_name":""`), pb},
		"pricebook not an array": {fl, `{"status":true}`},
		"price not a number":     {fl, `[{"id":1,"name":"L40","value":"cheap"}]`},
		"negative price":         {fl, `[{"id":1,"name":"L40","value":-1}]`},
		"price without name":     {fl, `[{"id":1,"value":1}]`},
		"price without value":    {fl, `[{"id":1,"name":"L40"}]`},
		"prices nothing":         {fl, `[{"id":1,"name":"H100-80G-PCIe","value":2}]`},
	} {
		_, err := serve(t, tc[0], tc[1]).Catalog(ctxT(t))
		if err == nil {
			t.Errorf("%s: accepted a malformed payload", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "hyperstack ") {
			t.Errorf("%s: error %q does not name the provider", name, err)
		}
	}
	cat, err := serve(t, fl, pb).Catalog(ctxT(t))
	if err != nil || len(cat) != 1 || cat[0].HourlyPrice != 1 {
		t.Fatalf("the good payload: %+v, %v", cat, err)
	}
	// A price written as a string is read.
	cat, err = serve(t, fl, `[{"id":1,"name":"L40","value":"1.25"}]`).Catalog(ctxT(t))
	if err != nil || cat[0].HourlyPrice != 1.25 {
		t.Fatalf("string price: %+v, %v", cat, err)
	}
}

func TestGPUModel(t *testing.T) {
	for in, want := range map[string]struct {
		model string
		mem   float64
	}{
		"A100-80G-PCIe":        {"a100", 80},
		"A100-80G-PCIe-NVLink": {"a100", 80},
		"H100-80G-SXM5":        {"h100", 80},
		"H100-80G-PCIe":        {"h100", 80},
		"L40":                  {"l40", 48},
		"RTX-A6000":            {"a6000", 48},
		"RTX-A4000":            {"a4000", 16},
		"RTX-6000-ADA":         {"rtx6000-ada", 48},
		"H200-141G-SXM5":       {"h200", 141},
	} {
		m, mem := gpuModel(in)
		if m != want.model || mem != want.mem {
			t.Errorf("gpuModel(%q) = %s, %v; want %s, %v", in, m, mem, want.model, want.mem)
		}
	}
}

// The data volume is priced from the pricebook entry named after the
// configured volume type, per GB-hour × 730; every region gets it.
func TestCatalogDiskPrice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prices []hyperstackfake.Price
		opts   map[string]string
		want   float64
	}{
		{"default Cloud-SSD", nil, nil, 0.000096 * 730},
		{"configured volume type", append(hyperstackfake.DefaultPrices(), hyperstackfake.Price{Name: "Cloud-HDD", Value: 0.00005}),
			map[string]string{"volume_type": "Cloud-HDD"}, 0.00005 * 730},
		{"volume type not in the pricebook", nil, map[string]string{"volume_type": "Cloud-HDD"}, 0},
		{"pricebook without volumes", []hyperstackfake.Price{{Name: "L40", Value: 1}, {Name: "A100-80G-PCIe", Value: 1.35}}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, hyperstackfake.Options{Prices: tc.prices}, tc.opts)
			cat, err := e.p.Catalog(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			regions := map[string]bool{}
			for _, r := range cat {
				regions[r.Region] = true
				if math.Abs(r.DiskPricePerGBMonth-tc.want) > 1e-9 {
					t.Errorf("%s %s: disk price %v per GB-month, want %v", r.Region, r.InstanceType, r.DiskPricePerGBMonth, tc.want)
				}
			}
			if len(regions) < 2 {
				t.Fatalf("rows cover regions %v; the test needs two", regions)
			}
		})
	}
	// A negative volume price is left out and reported like any other
	// bad entry; the disk is then priced by the default.
	fl := `{"status":true,"message":"ok","data":[{"gpu":"L40","region_name":"CANADA-1","flavors":[{"id":1,"name":"n3-L40x1","cpu":28,"ram":58,"disk":100,"gpu":"L40","gpu_count":1,"stock_available":true,"region_name":"CANADA-1"}]}]}`
	rep, err := serve(t, fl, `[{"id":1,"name":"L40","value":1.0},{"id":2,"name":"Cloud-SSD","value":-0.0001}]`).CatalogReport(ctxT(t))
	if err != nil || rep.Skipped != 1 || !strings.Contains(rep.Reasons[0], `"Cloud-SSD" has a negative price`) || rep.Entries[0].DiskPricePerGBMonth != 0 {
		t.Fatalf("a negative volume price: %+v, %v; want it left out and reported", rep, err)
	}
}

// One flavor or price entry that fails validation is left out and
// reported; the others are served (issue 8 item 10).
func TestCatalogSkipsBadRows(t *testing.T) {
	good := `{"id":1,"name":"n3-L40x1","cpu":28,"ram":58,"disk":100,"gpu":"L40","gpu_count":1,"stock_available":true,"region_name":"CANADA-1"}`
	bad := strings.NewReplacer(`"id":1`, `"id":2`, `n3-L40x1`, `n3-L40x2`, `"gpu_count":1`, `"gpu_count":2`)
	flavors := func(second string) string {
		return `{"status":true,"message":"ok","data":[{"gpu":"L40","region_name":"CANADA-1","flavors":[` + good + `,` + second + `]}]}`
	}
	one := `{"status":true,"message":"ok","data":[{"gpu":"L40","region_name":"CANADA-1","flavors":[` + good + `]}]}`
	pb := `[{"id":1,"name":"L40","value":1.0}]`
	for name, tc := range map[string]struct{ flavors, prices, reason string }{
		"flavor without cpu":   {flavors(strings.Replace(bad.Replace(good), `"cpu":28,`, ``, 1)), pb, "flavor n3-L40x2 in CANADA-1 lacks a positive cpu and ram"},
		"fractional cpu":       {flavors(strings.Replace(bad.Replace(good), `"cpu":28`, `"cpu":2.5`, 1)), pb, "flavor 2 of the L40 group in CANADA-1: json: cannot unmarshal number 2.5"},
		"ram as text":          {flavors(strings.Replace(bad.Replace(good), `"ram":58`, `"ram":"lots"`, 1)), pb, "flavor 2 of the L40 group in CANADA-1: "},
		"negative gpus":        {flavors(strings.Replace(bad.Replace(good), `"gpu_count":2`, `"gpu_count":-2`, 1)), pb, "flavor n3-L40x2 in CANADA-1 has -2 GPUs"},
		"flavor without name":  {flavors(strings.Replace(bad.Replace(good), `"name":"n3-L40x2",`, ``, 1)), pb, `a flavor in region "CANADA-1" has no name`},
		"price not a number":   {one, `[{"id":1,"name":"L40","value":1.0},{"id":2,"name":"H100","value":"cheap"}]`, "pricebook entry 2: cheap is not a number"},
		"price without a name": {one, `[{"id":1,"name":"L40","value":1.0},{"id":2,"value":2}]`, "a pricebook entry has no name"},
		"bad price of a flavor": {`{"status":true,"message":"ok","data":[{"gpu":"L40","region_name":"CANADA-1","flavors":[` + good + `]},{"gpu":"H100","region_name":"CANADA-1","flavors":[` +
			strings.ReplaceAll(bad.Replace(good), "L40", "H100") + `]}]}`, `[{"id":1,"name":"L40","value":1.0},{"id":2,"name":"H100","value":-2}]`, `pricebook entry "H100" has a negative price -2`},
	} {
		rep, err := serve(t, tc.flavors, tc.prices).CatalogReport(ctxT(t))
		switch {
		case err != nil:
			t.Errorf("%s: %v; want the good row served", name, err)
		case len(rep.Entries) != 1 || rep.Entries[0].InstanceType != "n3-L40x1":
			t.Errorf("%s: rows %+v; want n3-L40x1 alone", name, rep.Entries)
		case rep.Skipped < 1 || !strings.Contains(strings.Join(rep.Reasons, "\n"), tc.reason):
			t.Errorf("%s: skipped %d, reasons %q; want %q among them", name, rep.Skipped, rep.Reasons, tc.reason)
		}
	}
	// Reasons are kept for the first few rows, the count for all.
	many := flavors(bad.Replace(strings.Replace(good, `"cpu":28,`, ``, 1)))
	for i := 3; i <= 6; i++ {
		many = strings.Replace(many, `]}]}`, `,`+strings.NewReplacer(`"id":1`, fmt.Sprintf(`"id":%d`, i), `"cpu":28,`, ``).Replace(good)+`]}]}`, 1)
	}
	rep, err := serve(t, many, pb).CatalogReport(ctxT(t))
	if err != nil || rep.Skipped != 5 || len(rep.Reasons) != provider.MaxSkipReasons {
		t.Fatalf("five bad flavors: skipped %d with %d reasons (%v); want 5 with %d", rep.Skipped, len(rep.Reasons), err, provider.MaxSkipReasons)
	}
}
