package gcp

import (
	"encoding/json"
	"math"
	"testing"
)

// The billing catalog's SKUs and the machine and accelerator types of any
// content become a catalog or are refused; never a panic, and every row
// has a zone and a real, non-negative price.
func FuzzCatalogPayload(f *testing.F) {
	skuJSON := func(desc, usage, region, unit string, units, nanos int) string {
		b, _ := json.Marshal(map[string]any{
			"skuId": desc, "description": desc, "category": map[string]string{"usageType": usage},
			"serviceRegions": []string{region},
			"pricingInfo": []any{map[string]any{"effectiveTime": "2026-01-01T00:00:00Z", "pricingExpression": map[string]any{
				"usageUnit": unit, "tieredRates": []any{map[string]any{"startUsageAmount": 0, "unitPrice": map[string]any{"currencyCode": "USD", "units": units, "nanos": nanos}}}}}},
		})
		return string(b)
	}
	skus := "[" + skuJSON("N1 Predefined Instance Core running in Americas", "OnDemand", "us-central1", "h", 0, 31611000) + "," +
		skuJSON("N1 Predefined Instance Ram running in Americas", "OnDemand", "us-central1", "GiBy.h", 0, 4237000) + "," +
		skuJSON("Nvidia Tesla T4 GPU running in Americas", "OnDemand", "us-central1", "h", 0, 350000000) + "," +
		skuJSON("Storage PD Capacity", "OnDemand", "us-central1", "GiBy.mo", 0, 40000000) + "]"
	mts := `{"us-central1-a":[{"name":"n1-standard-4","guestCpus":4,"memoryMb":15360}]}`
	accs := `{"us-central1-a":[{"name":"nvidia-tesla-t4","maximumCardsPerInstance":4}]}`
	f.Add(skus, mts, accs)
	f.Add(`[{"description":"N1 Predefined Instance Core running in Americas","pricingInfo":[{"pricingExpression":{"tieredRates":[{"unitPrice":{"units":"-3","nanos":-1}}]}}]}]`, mts, `{}`)
	f.Add(`[null]`, `{"z":[{"guestCpus":-1,"memoryMb":-1}]}`, `{"z":[null]}`)
	f.Fuzz(func(t *testing.T, skuPayload, mtJSON, accJSON string) {
		var ss []*sku
		var mt zoneMachineTypes
		var acc zoneAccelerators
		if json.Unmarshal([]byte(skuPayload), &ss) != nil || json.Unmarshal([]byte(mtJSON), &mt) != nil || json.Unmarshal([]byte(accJSON), &acc) != nil {
			return
		}
		ps, err := parsePrices(ss)
		if err != nil {
			return
		}
		rows, err := buildCatalog(ps, mt, acc)
		if err != nil {
			return
		}
		for _, e := range rows {
			if e.Zone == "" || e.InstanceType == "" || e.HourlyPrice < 0 || math.IsNaN(e.HourlyPrice) || math.IsInf(e.HourlyPrice, 0) ||
				e.DiskPricePerGBMonth < 0 || math.IsNaN(e.DiskPricePerGBMonth) {
				t.Fatalf("row %+v", e)
			}
		}
	})
}
