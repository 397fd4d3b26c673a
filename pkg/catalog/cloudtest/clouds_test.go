// Package cloudtest normalizes every cloud's catalog through the cloud's
// in-repo fake and the provider's real client, and selects from them: the
// same path `catalog` and `create --gpu` take in production.
package cloudtest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	_ "github.com/sagemathinc/cocalc-hosts/providers/gcp"
	"github.com/sagemathinc/cocalc-hosts/providers/gcp/gcpfake"
	_ "github.com/sagemathinc/cocalc-hosts/providers/hyperstack"
	"github.com/sagemathinc/cocalc-hosts/providers/hyperstack/hyperstackfake"
	_ "github.com/sagemathinc/cocalc-hosts/providers/lambda"
	"github.com/sagemathinc/cocalc-hosts/providers/lambda/lambdafake"
	_ "github.com/sagemathinc/cocalc-hosts/providers/nebius"
	"github.com/sagemathinc/cocalc-hosts/providers/nebius/nebiusfake"
)

// clouds opens every cloud provider against its fake, with the fakes'
// default catalogs and price lists.
func clouds(t *testing.T) []provider.Provider {
	t.Helper()
	secret := func(s string) string {
		p := filepath.Join(t.TempDir(), "credentials")
		if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	g := gcpfake.New(gcpfake.Options{RequireAuth: true})
	t.Cleanup(g.Close)
	gkey, err := g.ServiceAccountKey("catalog@" + g.Project() + ".iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	_, hs := hyperstackfake.Start(hyperstackfake.Options{})
	t.Cleanup(hs.Close)
	_, ls := lambdafake.Start(lambdafake.Options{})
	t.Cleanup(ls.Close)
	ns, err := nebiusfake.Start(nebiusfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	cfgs := []struct {
		name string
		cfg  provider.Config
	}{
		{"gcp", provider.Config{Options: map[string]string{"project": g.Project(), "zone": "us-central1-a", "endpoint": g.URL,
			"billing_endpoint": g.URL}, CredentialsFile: secret(string(gkey))}},
		{"hyperstack", provider.Config{Options: map[string]string{"endpoint": hyperstackfake.URL(hs.URL)},
			CredentialsFile: secret(hyperstackfake.DefaultAPIKey)}},
		{"lambda", provider.Config{Options: map[string]string{"endpoint": lambdafake.URL(ls.URL)},
			CredentialsFile: secret(lambdafake.DefaultAPIKey)}},
		{"nebius", provider.Config{Options: map[string]string{"endpoint": ns.Addr(), "insecure": "true", "project_id": ns.ProjectID(),
			"region": "eu-north1", "subnet_id": ns.SubnetID()}, CredentialsFile: secret(nebiusfake.DefaultToken)}},
	}
	var out []provider.Provider
	for _, c := range cfgs {
		c.cfg.Deployment = "dcatalogtest"
		p, err := provider.Open(c.name, c.cfg)
		if err != nil {
			t.Fatalf("open %s: %v", c.name, err)
		}
		if cl, ok := p.(provider.Closer); ok {
			t.Cleanup(func() { cl.Close() })
		}
		out = append(out, p)
	}
	return out
}

func TestCloudCatalogsNormalizeAndSelect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cache := catalog.New(st)
	cats, errs := cache.RefreshAll(ctx, clouds(t))
	if len(errs) > 0 {
		t.Fatalf("refresh: %v", errors.Join(errs...))
	}
	if len(cats) != 4 {
		t.Fatalf("%d catalogs", len(cats))
	}
	for _, c := range cats {
		gpus := 0
		for _, e := range c.Entries {
			if e.Provider != c.Provider || e.PricingSource == "" || e.PricingVersion == "" || !(e.HourlyPrice > 0) ||
				e.GPUModel != strings.ToLower(e.GPUModel) || e.Simulated {
				t.Fatalf("%s: row not normalized: %+v", c.Provider, e)
			}
			if e.GPUCount > 0 {
				gpus++
			}
		}
		if gpus == 0 {
			t.Fatalf("%s lists no GPU machines", c.Provider)
		}
		// The prices were cached with their version.
		prices, err := st.ListPrices(ctx, c.Provider)
		if err != nil || len(prices) == 0 || prices[0].PricingVersion == "" {
			t.Fatalf("%s prices: %d %v", c.Provider, len(prices), err)
		}
	}
	all := catalog.Entries(cats)
	for _, tc := range []struct {
		name      string
		q         catalog.Query
		cloud     string
		typ       string
		region    string
		zone      string
		gpus      int
		price     float64
		wantError string
	}{
		{name: "gcp l4", q: catalog.Query{Providers: []string{"gcp"}, GPUModel: "l4"}, cloud: "gcp", typ: "g2-standard-4", region: "us-central1", zone: "us-central1-a", gpus: 1, price: 0.706784},
		{name: "gcp l4 with 8 vCPUs", q: catalog.Query{Providers: []string{"gcp"}, GPUModel: "l4", CPUs: 8}, typ: "g2-standard-8", zone: "us-central1-a", price: 0.853568},
		{name: "gcp l4 in europe", q: catalog.Query{Providers: []string{"gcp"}, GPUModel: "L4", Region: "europe-west4"}, typ: "g2-standard-4", zone: "europe-west4-a", price: 0.777462},
		{name: "gcp: 3 T4s means the 4-T4 N1", q: catalog.Query{Providers: []string{"gcp"}, GPUModel: "t4", GPUCount: 3}, typ: "n1-standard-4", gpus: 4, price: 1.589999},
		{name: "gcp spot", q: catalog.Query{Providers: []string{"gcp"}, GPUModel: "l4", Spot: true}, typ: "g2-standard-4", price: 0.28272},
		{name: "gcp a100", q: catalog.Query{Providers: []string{"gcp"}, GPUModel: "a100"}, typ: "a2-highgpu-1g", zone: "us-central1-b", price: 3.673385},
		{name: "gcp has no h100", q: catalog.Query{Providers: []string{"gcp"}, GPUModel: "h100"}, wantError: `gcp has no GPU model "h100" (GPU models: a100, l4, t4)`},
		{name: "hyperstack a100 where in stock", q: catalog.Query{Providers: []string{"hyperstack"}, GPUModel: "a100"}, typ: "n3-A100x1", region: "CANADA-1", price: 1.35},
		{name: "hyperstack h100 out of stock", q: catalog.Query{Providers: []string{"hyperstack"}, GPUModel: "h100"}, wantError: "is out of capacity now"},
		{name: "lambda a100", q: catalog.Query{Providers: []string{"lambda"}, GPUModel: "a100"}, typ: "gpu_1x_a100_sxm4", region: "us-east-1", price: 1.29},
		{name: "lambda 8 h100", q: catalog.Query{Providers: []string{"lambda"}, GPUModel: "h100", GPUCount: 8}, typ: "gpu_8x_h100_sxm5", region: "us-south-1", gpus: 8, price: 23.92},
		{name: "nebius h100", q: catalog.Query{Providers: []string{"nebius"}, GPUModel: "h100"}, typ: "gpu-h100-sxm/1gpu-16vcpu-200gb", region: "eu-north1", price: 2.95},
		{name: "nebius h100 spot", q: catalog.Query{Providers: []string{"nebius"}, GPUModel: "h100", Spot: true}, typ: "gpu-h100-sxm/1gpu-16vcpu-200gb", price: 1.25},
		{name: "cheapest a100 of all clouds", q: catalog.Query{GPUModel: "a100"}, cloud: "lambda", typ: "gpu_1x_a100_sxm4", price: 1.29},
		{name: "8 h100 and 1 TB: nebius beats lambda", q: catalog.Query{GPUModel: "h100", GPUCount: 8, MemoryGiB: 1000}, cloud: "nebius", typ: "gpu-h100-sxm/8gpu-128vcpu-1600gb", price: 23.6},
		{name: "a100 in a region of another cloud", q: catalog.Query{GPUModel: "a100", Region: "CANADA-1", MaxPrice: 1.3}, wantError: "raise --max-price"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := catalog.Select(all, tc.q)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.InstanceType != tc.typ || (tc.cloud != "" && got.Provider != tc.cloud) || (tc.region != "" && got.Region != tc.region) ||
				(tc.zone != "" && got.Zone != tc.zone) || (tc.gpus != 0 && got.GPUCount != tc.gpus) || tc.q.Price(got) != tc.price {
				t.Fatalf("chose %+v", got)
			}
		})
	}
}
