package catalog_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// bigCatalog is the size of a real cross-cloud catalog: GCP alone lists
// a few hundred machine types in each of ~120 zones.
func bigCatalog(n int) []entry {
	r := rand.New(rand.NewPCG(7, 7))
	gpus := []string{"", "", "", "l4", "t4", "a100", "h100"}
	out := make([]entry, 0, n)
	for i := range n {
		g := gpus[r.IntN(len(gpus))]
		cnt := 0
		if g != "" {
			cnt = 1 << r.IntN(4)
		}
		out = append(out, entry{Provider: "bench", Region: fmt.Sprintf("r%d", i%40), Zone: fmt.Sprintf("r%d-%c", i%40, 'a'+rune(i%3)),
			InstanceType: fmt.Sprintf("t%d", i), VCPUs: 1 << r.IntN(8), MemoryGiB: float64(int(1) << r.IntN(11)),
			GPUModel: g, GPUCount: cnt, HourlyPrice: float64(r.IntN(5000)) / 100, SpotPrice: float64(r.IntN(1500)) / 100,
			Available: r.IntN(5) > 0, PricingSource: "bench"})
	}
	return out
}

// BenchmarkSelect50k: one cheapest-match selection over 50,000 rows.
func BenchmarkSelect50k(b *testing.B) {
	cat := bigCatalog(50000)
	q := catalog.Query{GPUModel: "a100", GPUCount: 2, CPUs: 16, MemoryGiB: 64}
	for b.Loop() {
		if _, _, err := catalog.Select(cat, q); err != nil {
			b.Fatal(err)
		}
	}
}

type staticCloud struct {
	provider.Provider
	entries []entry
}

func (s staticCloud) Name() string                             { return "bench" }
func (s staticCloud) Catalog(context.Context) ([]entry, error) { return s.entries, nil }
func (s staticCloud) Capabilities() provider.Capabilities      { return provider.Capabilities{} }

// BenchmarkCacheGet50k: serving a cached 50,000-row catalog from SQLite
// (the cost every `catalog` and `create` pays when the cache is fresh),
// and refreshing it (fetch aside: normalize, and write catalog, capacity
// and price rows in one transaction).
func BenchmarkCacheGet50k(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "state.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cache := catalog.New(st)
	cloud := staticCloud{entries: bigCatalog(50000)}
	b.Run("refresh", func(b *testing.B) {
		for b.Loop() {
			if _, err := cache.Refresh(ctx, cloud); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		cache.Now = func() time.Time { return time.Now() }
		for b.Loop() {
			c, err := cache.Get(ctx, cloud)
			if err != nil || len(c.Entries) != 50000 {
				b.Fatal(err)
			}
		}
	})
}
