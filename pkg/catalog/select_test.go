package catalog_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
)

type entry = catalog.Entry

// A small two-cloud catalog shaped like real ones: GPUs only in some
// zones, a type offered in two regions at different prices, one zone out
// of capacity, spot prices on one cloud only.
var twoClouds = []entry{
	{Provider: "gcp", Region: "us-central1", Zone: "us-central1-a", InstanceType: "e2-standard-2", VCPUs: 2, MemoryGiB: 8, HourlyPrice: 0.067, SpotPrice: 0.02, Available: true},
	{Provider: "gcp", Region: "us-central1", Zone: "us-central1-a", InstanceType: "n1-standard-2", VCPUs: 2, MemoryGiB: 7.5, HourlyPrice: 0.095, SpotPrice: 0.03, Available: true},
	{Provider: "gcp", Region: "us-central1", Zone: "us-central1-a", InstanceType: "g2-standard-8", VCPUs: 8, MemoryGiB: 32, GPUModel: "l4", GPUCount: 1, GPUMemoryGiB: 24, HourlyPrice: 0.85, SpotPrice: 0.34, Available: true},
	{Provider: "gcp", Region: "us-central1", Zone: "us-central1-b", InstanceType: "g2-standard-8", VCPUs: 8, MemoryGiB: 32, GPUModel: "l4", GPUCount: 1, GPUMemoryGiB: 24, HourlyPrice: 0.85, SpotPrice: 0.34, Available: false},
	{Provider: "gcp", Region: "europe-west4", Zone: "europe-west4-a", InstanceType: "g2-standard-8", VCPUs: 8, MemoryGiB: 32, GPUModel: "l4", GPUCount: 1, GPUMemoryGiB: 24, HourlyPrice: 0.94, SpotPrice: 0.37, Available: true},
	{Provider: "gcp", Region: "us-central1", Zone: "us-central1-a", InstanceType: "g2-standard-24", VCPUs: 24, MemoryGiB: 96, GPUModel: "l4", GPUCount: 2, GPUMemoryGiB: 24, HourlyPrice: 2.00, SpotPrice: 0.80, Available: true},
	{Provider: "gcp", Region: "us-central1", Zone: "us-central1-a", InstanceType: "a2-highgpu-1g", VCPUs: 12, MemoryGiB: 85, GPUModel: "a100", GPUCount: 1, GPUMemoryGiB: 40, HourlyPrice: 3.67, SpotPrice: 1.10, Available: true},
	{Provider: "lambda", Region: "us-west-1", InstanceType: "gpu_1x_a10", VCPUs: 30, MemoryGiB: 200, GPUModel: "a10", GPUCount: 1, GPUMemoryGiB: 24, HourlyPrice: 0.75, Available: true},
	{Provider: "lambda", Region: "us-east-1", InstanceType: "gpu_1x_a100_sxm4", VCPUs: 30, MemoryGiB: 200, GPUModel: "a100", GPUCount: 1, GPUMemoryGiB: 40, HourlyPrice: 1.29, Available: true},
	{Provider: "lambda", Region: "us-east-1", InstanceType: "gpu_8x_h100_sxm5", VCPUs: 208, MemoryGiB: 1800, GPUModel: "h100", GPUCount: 8, GPUMemoryGiB: 80, HourlyPrice: 23.92, Available: false},
}

func TestSelectTable(t *testing.T) {
	for _, tc := range []struct {
		name       string
		q          catalog.Query
		wantType   string
		wantZone   string
		wantCloud  string
		wantErr    string // substring of the error
		wantFallbk int    // number of alternatives
	}{
		{name: "cheapest of all", q: catalog.Query{}, wantType: "e2-standard-2", wantCloud: "gcp", wantFallbk: 7},
		{name: "ram is a strict minimum: 7.5 GiB does not meet 8", q: catalog.Query{MemoryGiB: 8, Providers: []string{"gcp"}, CPUs: 2}, wantType: "e2-standard-2"},
		{name: "gpu across clouds picks the cheapest l4", q: catalog.Query{GPUModel: "L4"}, wantType: "g2-standard-8", wantZone: "us-central1-a", wantFallbk: 2},
		{name: "vendor prefix and case are ignored", q: catalog.Query{GPUModel: "NVIDIA-L4"}, wantType: "g2-standard-8"},
		{name: "unavailable zone is skipped", q: catalog.Query{GPUModel: "l4", Zone: "us-central1-b"}, wantErr: "out of capacity now"},
		{name: "unavailable is shown when asked", q: catalog.Query{GPUModel: "l4", Zone: "us-central1-b", IncludeUnavailable: true}, wantType: "g2-standard-8", wantZone: "us-central1-b"},
		{name: "region restricts", q: catalog.Query{GPUModel: "l4", Region: "europe-west4"}, wantType: "g2-standard-8", wantZone: "europe-west4-a"},
		{name: "two GPUs", q: catalog.Query{GPUModel: "l4", GPUCount: 2}, wantType: "g2-standard-24"},
		{name: "a100 is cheaper on lambda", q: catalog.Query{GPUModel: "a100"}, wantType: "gpu_1x_a100_sxm4", wantCloud: "lambda", wantFallbk: 1},
		{name: "a100 on gcp only", q: catalog.Query{GPUModel: "a100", Providers: []string{"gcp"}}, wantType: "a2-highgpu-1g"},
		{name: "spot prices reorder and drop machines without spot", q: catalog.Query{GPUModel: "a100", Spot: true}, wantType: "a2-highgpu-1g"},
		{name: "max price", q: catalog.Query{CPUs: 8, MaxPrice: 0.80}, wantType: "gpu_1x_a10"},
		{name: "cpu minimum", q: catalog.Query{CPUs: 13}, wantType: "gpu_1x_a10", wantCloud: "lambda"},
		{name: "cpu minimum on one cloud", q: catalog.Query{CPUs: 13, Providers: []string{"gcp"}}, wantType: "g2-standard-24"},
		{name: "machine type pins the type", q: catalog.Query{MachineType: "g2-standard-8"}, wantZone: "us-central1-a", wantType: "g2-standard-8", wantFallbk: 1},

		{name: "unknown gpu suggests nearest", q: catalog.Query{GPUModel: "a101"}, wantErr: `any configured cloud has no GPU model "a101" (nearest: a10, a100`},
		{name: "unknown region suggests nearest", q: catalog.Query{Region: "us-central"}, wantErr: `(nearest: us-central1`},
		{name: "region of another cloud", q: catalog.Query{Region: "us-west-1", Providers: []string{"gcp"}}, wantErr: `gcp has no region "us-west-1"`},
		{name: "gpu not in the region", q: catalog.Query{Region: "europe-west4", GPUModel: "a100"}, wantErr: `in region europe-west4 has no GPU model "a100" (GPU models: l4)`},
		{name: "ram rules out everything alone", q: catalog.Query{MemoryGiB: 4096}, wantErr: "meets --ram 4096 (the most memory is 1800 GiB); lower --ram"},
		{name: "cpu rules out what the gpu leaves", q: catalog.Query{GPUModel: "l4", CPUs: 32}, wantErr: "with --gpu l4 --gpus 1 also meets --cpu 32 (the most vCPUs is 24); lower --cpu, or relax --gpu, --gpus"},
		{name: "price rules out", q: catalog.Query{GPUModel: "h100", MaxPrice: 10, IncludeUnavailable: true}, wantErr: "also meets --max-price 10 (the cheapest costs $23.92/hour); raise --max-price"},
		{name: "gpu count", q: catalog.Query{GPUModel: "a100", GPUCount: 4}, wantErr: "also meets --gpus 4 (the most GPUs is 1); lower --gpus"},
		{name: "spot with no spot prices", q: catalog.Query{Providers: []string{"lambda"}, Spot: true}, wantErr: "meets --spot (none has a spot price); drop --spot"},
		{name: "type not offered in the zone", q: catalog.Query{MachineType: "a2-highgpu-1g", Zone: "europe-west4-a"}, wantErr: "no machine is offered at any configured cloud in zone europe-west4-a of type a2-highgpu-1g"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rest, err := catalog.Select(twoClouds, tc.q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				var iq *catalog.InvalidQueryError
				var nm *catalog.NoMatchError
				if !errors.As(err, &iq) && !errors.As(err, &nm) {
					t.Fatalf("error %T is neither InvalidQueryError nor NoMatchError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.InstanceType != tc.wantType || (tc.wantZone != "" && got.Zone != tc.wantZone) || (tc.wantCloud != "" && got.Provider != tc.wantCloud) {
				t.Fatalf("chose %s %s %s, want %s %s %s", got.Provider, got.Zone, got.InstanceType, tc.wantCloud, tc.wantZone, tc.wantType)
			}
			if tc.wantFallbk != 0 && len(rest) != tc.wantFallbk {
				t.Fatalf("%d alternatives, want %d: %+v", len(rest), tc.wantFallbk, rest)
			}
		})
	}
}

// meets is the property tests' own statement of "meets every minimum",
// written independently of the package's constraint list.
func meets(e entry, q catalog.Query) bool {
	if len(q.Providers) > 0 {
		found := false
		for _, p := range q.Providers {
			found = found || p == e.Provider
		}
		if !found {
			return false
		}
	}
	gpuCount := q.GPUCount
	if q.GPUModel != "" && gpuCount == 0 {
		gpuCount = 1
	}
	price := e.HourlyPrice
	if q.Spot {
		price = e.SpotPrice
	}
	return (q.Region == "" || e.Region == q.Region) &&
		(q.Zone == "" || e.Zone == q.Zone) &&
		(q.MachineType == "" || e.InstanceType == q.MachineType) &&
		(q.GPUModel == "" || e.GPUModel == strings.ToLower(q.GPUModel)) &&
		e.GPUCount >= gpuCount && e.VCPUs >= q.CPUs && e.MemoryGiB >= q.MemoryGiB &&
		(!q.Spot || e.SpotPrice > 0) && (q.MaxPrice == 0 || price <= q.MaxPrice) &&
		(q.IncludeUnavailable || e.Available)
}

func randomCatalog(r *rand.Rand) []entry {
	clouds := []string{"gcp", "lambda", "nebius"}
	gpus := []string{"", "", "l4", "a100", "h100"}
	n := 1 + r.IntN(40)
	var out []entry
	for i := range n {
		g := gpus[r.IntN(len(gpus))]
		cnt := 0
		if g != "" {
			cnt = 1 << r.IntN(4)
		}
		cloud := clouds[r.IntN(len(clouds))]
		region := fmt.Sprintf("%s-r%d", cloud, r.IntN(3))
		e := entry{
			Provider: cloud, Region: region, Zone: fmt.Sprintf("%s-%c", region, 'a'+rune(r.IntN(2))),
			InstanceType: fmt.Sprintf("t%d", i), VCPUs: 1 << r.IntN(7), MemoryGiB: float64(r.IntN(512)) + 0.5*float64(r.IntN(2)),
			GPUModel: g, GPUCount: cnt, HourlyPrice: float64(r.IntN(2000)) / 100, Available: r.IntN(4) > 0,
		}
		if r.IntN(2) == 0 {
			e.SpotPrice = e.HourlyPrice * 0.3
		}
		out = append(out, e)
	}
	return out
}

func randomQuery(r *rand.Rand, cat []entry) catalog.Query {
	pick := func() entry { return cat[r.IntN(len(cat))] }
	var q catalog.Query
	// Draw names from the catalog most of the time, so that queries
	// mostly pass validation and exercise selection.
	if r.IntN(3) == 0 {
		q.Providers = []string{pick().Provider}
	}
	if r.IntN(3) == 0 {
		q.Region = pick().Region
	}
	if r.IntN(5) == 0 {
		q.Zone = pick().Zone
	}
	if r.IntN(8) == 0 {
		q.MachineType = pick().InstanceType
	}
	if r.IntN(2) == 0 {
		q.GPUModel = pick().GPUModel
	}
	if r.IntN(3) == 0 {
		q.GPUCount = r.IntN(9)
	}
	if r.IntN(2) == 0 {
		q.CPUs = r.IntN(130)
	}
	if r.IntN(2) == 0 {
		q.MemoryGiB = float64(r.IntN(600))
	}
	if r.IntN(3) == 0 {
		q.MaxPrice = float64(r.IntN(2000)) / 100
	}
	q.Spot = r.IntN(4) == 0
	q.IncludeUnavailable = r.IntN(4) == 0
	return q
}

// TestSelectProperties: over many random catalogs and queries, a choice
// always meets every minimum and no cheaper row does; the alternatives
// all meet them too, in price order; and an error means no row meets the
// request (a NoMatchError then names one of the query's requirements).
func TestSelectProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	chosen, noMatch, invalid := 0, 0, 0
	for i := range 20000 {
		cat := randomCatalog(r)
		q := randomQuery(r, cat)
		got, rest, err := catalog.Select(cat, q)
		price := func(e entry) float64 {
			if q.Spot {
				return e.SpotPrice
			}
			return e.HourlyPrice
		}
		cheapest := -1.0
		for _, e := range cat {
			if meets(e, q) && (cheapest < 0 || price(e) < cheapest) {
				cheapest = price(e)
			}
		}
		if err != nil {
			var iq *catalog.InvalidQueryError
			var nm *catalog.NoMatchError
			switch {
			case errors.As(err, &iq):
				invalid++
			case errors.As(err, &nm):
				noMatch++
				if nm.Blocking != "" && nm.Blocking != "capacity" && !strings.Contains(fmt.Sprintf("%+v", flags(q)), strings.Fields(nm.Blocking)[0]) {
					t.Fatalf("case %d: blamed %q, which the query %+v does not set", i, nm.Blocking, q)
				}
			default:
				t.Fatalf("case %d: unexpected error type %T: %v", i, err, err)
			}
			if cheapest >= 0 {
				t.Fatalf("case %d: error %q although a row meets %+v", i, err, q)
			}
			continue
		}
		chosen++
		if !meets(got, q) {
			t.Fatalf("case %d: choice %+v does not meet %+v", i, got, q)
		}
		if price(got) != cheapest {
			t.Fatalf("case %d: chose price %v, but a matching row costs %v", i, price(got), cheapest)
		}
		prev := price(got)
		for _, e := range rest {
			if !meets(e, q) || price(e) < prev {
				t.Fatalf("case %d: alternative %+v out of order or not meeting %+v", i, e, q)
			}
			prev = price(e)
		}
		n := 0
		for _, e := range cat {
			if meets(e, q) {
				n++
			}
		}
		if n != len(rest)+1 {
			t.Fatalf("case %d: %d rows meet the query, Select returned %d", i, n, len(rest)+1)
		}
	}
	// The generator must exercise all three outcomes, or the test proves little.
	if chosen < 2000 || noMatch < 2000 || invalid < 200 {
		t.Fatalf("poor coverage: %d chosen, %d no match, %d invalid", chosen, noMatch, invalid)
	}
}

func flags(q catalog.Query) []string {
	var out []string
	if q.GPUModel != "" {
		out = append(out, "--gpu", "--gpus")
	}
	if q.GPUCount > 0 {
		out = append(out, "--gpus")
	}
	if q.CPUs > 0 {
		out = append(out, "--cpu")
	}
	if q.MemoryGiB > 0 {
		out = append(out, "--ram")
	}
	if q.Spot {
		out = append(out, "--spot")
	}
	if q.MaxPrice > 0 {
		out = append(out, "--max-price")
	}
	return out
}

func TestNearest(t *testing.T) {
	known := []string{"us-central1", "us-east1", "us-west1", "europe-west4", "asia-east1"}
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"us-centrl1", "us-central1"},
		{"us-central", "us-central1"},
		{"europe-west", "europe-west4"},
		{"asia", "asia-east1"},
	} {
		got := catalog.Nearest(tc.in, known, 2)
		if len(got) == 0 || got[0] != tc.want {
			t.Errorf("Nearest(%q) = %v, want %s first", tc.in, got, tc.want)
		}
	}
}
