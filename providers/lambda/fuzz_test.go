package lambda

import (
	"encoding/json"
	"testing"
)

// Lambda's GET /instance-types payload of any content becomes a catalog
// or is refused as malformed, never a panic, and rows have a price and a
// region.
func FuzzCatalogPayload(f *testing.F) {
	f.Add(`{"gpu_1x_a10":{"instance_type":{"name":"gpu_1x_a10","description":"1x A10 (24 GB PCIe)","price_cents_per_hour":75,"specs":{"vcpus":30,"memory_gib":200,"storage_gib":1400,"gpus":1}},"regions_with_capacity_available":[{"name":"us-east-1","description":"Virginia, USA"}]}}`)
	f.Add(`{}`)
	f.Add(`{"x":{"instance_type":null,"regions_with_capacity_available":[]}}`)
	f.Add(`{"x":{"instance_type":{"name":"x","price_cents_per_hour":-5,"specs":{"vcpus":-1}}}}`)
	f.Fuzz(func(t *testing.T, payload string) {
		var types map[string]json.RawMessage
		if json.Unmarshal([]byte(payload), &types) != nil {
			return
		}
		rep, _, err := normalize(types, []string{"us-west-1"}, "us-east-1")
		if err != nil {
			return
		}
		if rep.Skipped > 0 && len(rep.Reasons) == 0 {
			t.Fatalf("%d types left out without a reason, from %s", rep.Skipped, payload)
		}
		for _, r := range rep.Entries {
			if r.Region == "" || r.HourlyPrice < 0 || r.HourlyPrice != r.HourlyPrice {
				t.Fatalf("row %+v from %s", r, payload)
			}
		}
	})
}
