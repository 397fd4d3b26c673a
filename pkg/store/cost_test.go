package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

func TestReplaceCatalogIsAllOrNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		rec := func(kind, payload string) store.CatalogRecord {
			return store.CatalogRecord{Provider: "gcp", Kind: kind, Scope: "all", Payload: json.RawMessage(payload),
				FetchedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		}
		price := func(sku, region string, p float64) store.PriceRecord {
			return store.PriceRecord{Provider: "gcp", SKU: sku, Region: region, Unit: "hour", UnitPrice: p,
				PricingVersion: "v1", FetchedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		}
		if err := s.ReplaceCatalog(ctx, "gcp", []store.CatalogRecord{rec("machine_types", `[1]`), rec("capacity", `[2]`)},
			[]store.PriceRecord{price("n2", "us-central1", 0.1), price("n2:spot", "us-central1", 0.03), price("n2", "europe-west4", 0.11)}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetPrice(ctx, "gcp", "n2", "europe-west4")
		if err != nil || got.UnitPrice != 0.11 || got.PricingVersion != "v1" || !got.FetchedAt.Equal(t0) {
			t.Fatalf("price: %+v %v", got, err)
		}
		// A failing write in the middle leaves everything as it was.
		bad := price("n3", "us-central1", 0.2)
		bad.Provider = "aws"
		err = s.ReplaceCatalog(ctx, "gcp", []store.CatalogRecord{rec("machine_types", `[3]`)},
			[]store.PriceRecord{price("n3", "us-central1", 0.2), bad})
		if err == nil {
			t.Fatal("a price of another provider must be refused")
		}
		mt, _ := s.GetCatalog(ctx, "gcp", "machine_types", "all")
		if string(mt.Payload) != `[1]` {
			t.Fatalf("machine types changed by a failed replace: %s", mt.Payload)
		}
		if all, _ := s.ListPrices(ctx, "gcp"); len(all) != 3 {
			t.Fatalf("%d prices after a failed replace, want 3", len(all))
		}
		// A successful replace drops prices no longer listed.
		if err := s.ReplaceCatalog(ctx, "gcp", []store.CatalogRecord{rec("machine_types", `[4]`)},
			[]store.PriceRecord{price("n4", "us-central1", 0.3)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetPrice(ctx, "gcp", "n2", "us-central1"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("old price survived: %v", err)
		}
		if all, _ := s.ListPrices(ctx, ""); len(all) != 1 || all[0].SKU != "n4" {
			t.Fatalf("prices: %+v", all)
		}
	})
}

func TestUsageRowsAndWindow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		row := func(host string, start, end time.Time, cost float64) store.UsageRecord {
			return store.UsageRecord{HostID: host, Owner: "alice", Provider: "sim", PeriodStart: start, PeriodEnd: end,
				State: "running", ComputeHours: end.Sub(start).Hours(), HourlyPrice: 0.5, DiskGB: 10, DiskPricePerGBMonth: 0.1,
				ComputeCost: cost, Cost: cost, PricingVersion: "simulated@x", Source: "cloud_vm_log", Confidence: "estimate", ComputedAt: t0,
				StorageCost: 0.25, BootDiskCost: 0.25}
		}
		day := 24 * time.Hour
		if err := s.ReplaceUsage(ctx, "cloud_vm_log", []string{"h1"}, []store.UsageRecord{
			row("h1", t0, t0.Add(day), 12), row("h1", t0.Add(day), t0.Add(2*day), 12),
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.ReplaceUsage(ctx, "cloud_vm_log", []string{"h2"}, []store.UsageRecord{row("h2", t0.Add(day), t0.Add(3*day), 24)}); err != nil {
			t.Fatal(err)
		}
		all, err := s.ListUsage(ctx, store.UsageFilter{})
		if err != nil || len(all) != 3 {
			t.Fatalf("all usage: %d %v", len(all), err)
		}
		if all[0].HostID != "h1" || all[0].Owner != "alice" || all[0].DiskGB != 10 || all[0].PricingVersion != "simulated@x" || !all[0].PeriodStart.Equal(t0) ||
			all[0].BootDiskCost != 0.25 {
			t.Fatalf("round trip: %+v", all[0])
		}
		// Rows overlapping [t0+36h, t0+40h): h1's second day and h2's row.
		w, _ := s.ListUsage(ctx, store.UsageFilter{From: t0.Add(36 * time.Hour), To: t0.Add(40 * time.Hour)})
		if len(w) != 2 {
			t.Fatalf("window: %d rows", len(w))
		}
		h2, _ := s.ListUsage(ctx, store.UsageFilter{HostID: "h2"})
		if len(h2) != 1 {
			t.Fatalf("host filter: %d rows", len(h2))
		}
		// Replacing a host's rows removes its old ones only.
		if err := s.ReplaceUsage(ctx, "cloud_vm_log", []string{"h1"}, []store.UsageRecord{row("h1", t0, t0.Add(time.Hour), 0.5)}); err != nil {
			t.Fatal(err)
		}
		all, _ = s.ListUsage(ctx, store.UsageFilter{})
		if len(all) != 2 {
			t.Fatalf("after replace: %d rows", len(all))
		}
		if err := s.ReplaceUsage(ctx, "cloud_vm_log", []string{"h1"}, []store.UsageRecord{row("h2", t0, t0.Add(time.Hour), 1)}); err == nil {
			t.Fatal("a row of another host must be refused")
		}
		if got, _ := s.ListUsage(ctx, store.UsageFilter{HostID: "h1"}); len(got) != 1 {
			t.Fatalf("a refused replace changed rows: %d", len(got))
		}
	})
}
