package hyperstack

import (
	"encoding/json"
	"math"
	"testing"
)

// Hyperstack's flavors and pricebook payloads of any content become a
// catalog, with bad rows left out and reported, or are refused; never a
// panic, and every row kept has a name, a region and a real price.
func FuzzCatalogPayload(f *testing.F) {
	f.Add(`[{"gpu":"A100","region_name":"CANADA-1","flavors":[{"id":1,"name":"n3-A100x1","cpu":28,"ram":120,"disk":100,"gpu":"A100","gpu_count":1,"stock_available":true,"region_name":"CANADA-1"}]}]`,
		`[{"name":"A100","value":"1.35"},{"name":"Cloud-SSD","value":"0.000096"}]`)
	f.Add(`[{"flavors":[{"name":"x","cpu":-1}]}]`, `[{"name":"vCPU (cpu-only-flavors)","value":-1}]`)
	f.Add(`[]`, `[]`)
	f.Add(`[{"flavors":[1,"a",null]}]`, `[null,{"name":"A100","value":"NaN"}]`)
	f.Fuzz(func(t *testing.T, flavors, pricebook string) {
		var groups []flavorGroup
		var prices []json.RawMessage
		if json.Unmarshal([]byte(flavors), &groups) != nil || json.Unmarshal([]byte(pricebook), &prices) != nil {
			return
		}
		rep, err := normalize(groups, prices, "Cloud-SSD")
		if err != nil {
			return
		}
		if rep.Skipped < len(rep.Reasons) {
			t.Fatalf("%d rows skipped but %d reasons", rep.Skipped, len(rep.Reasons))
		}
		for _, e := range rep.Entries {
			if e.InstanceType == "" || e.Region == "" || e.HourlyPrice < 0 || math.IsNaN(e.HourlyPrice) || math.IsInf(e.HourlyPrice, 0) ||
				e.DiskPricePerGBMonth < 0 || math.IsNaN(e.DiskPricePerGBMonth) || e.VCPUs <= 0 || e.MemoryGiB <= 0 {
				t.Fatalf("row %+v from %s / %s", e, flavors, pricebook)
			}
		}
	})
}
