package catalog_test

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	_ "github.com/sagemathinc/cocalc-hosts/providers/sim"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// cloud is the sim provider with a catalog the test can replace (to serve
// malformed payloads or fail) and a count of catalog calls.
type cloud struct {
	provider.Provider
	calls   atomic.Int32
	catalog func() ([]entry, error) // nil: the sim's own
}

func (c *cloud) Catalog(ctx context.Context) ([]entry, error) {
	c.calls.Add(1)
	if c.catalog != nil {
		return c.catalog()
	}
	return c.Provider.Catalog(ctx)
}

func openSim(t *testing.T, s *store.SQLStore, opts map[string]string) *cloud {
	t.Helper()
	dep, err := s.Deployment(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p, err := provider.Open("sim", provider.Config{Deployment: dep, State: s.ProviderState(), Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	return &cloud{Provider: p}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newCache(s *store.SQLStore, c *clock) *catalog.Cache {
	cache := catalog.New(s)
	cache.Now = c.now
	cache.TTL = catalog.TTLs{MachineTypes: 72 * time.Hour, Capacity: 10 * time.Minute}
	cache.RetryDelay = time.Millisecond
	return cache
}

func TestCacheTTLsPerKind(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		clk := &clock{time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
		cache := newCache(s, clk)
		sim := openSim(t, s, nil)

		cat, err := cache.Get(ctx, sim)
		if err != nil {
			t.Fatal(err)
		}
		if sim.calls.Load() != 1 || len(cat.Entries) == 0 || cat.Stale {
			t.Fatalf("first get: %d calls, %d entries, stale %v", sim.calls.Load(), len(cat.Entries), cat.Stale)
		}
		for _, e := range cat.Entries {
			if e.Provider != "sim" || !e.Simulated || e.PricingSource != "simulated" || !strings.HasPrefix(e.PricingVersion, "sha256:") {
				t.Fatalf("entry not normalized: %+v", e)
			}
		}
		// Fresh: served from the store, no call.
		clk.advance(5 * time.Minute)
		again, err := cache.Get(ctx, sim)
		if err != nil || sim.calls.Load() != 1 || len(again.Entries) != len(cat.Entries) {
			t.Fatalf("fresh cache: %v, %d calls", err, sim.calls.Load())
		}
		// Capacity expires after minutes, even though machine types are
		// good for days: the next use fetches again.
		clk.advance(6 * time.Minute)
		if _, fresh, _ := cache.Cached(ctx, "sim"); fresh {
			t.Fatal("capacity older than its TTL must make the cache stale")
		}
		if _, err := cache.Get(ctx, sim); err != nil || sim.calls.Load() != 2 {
			t.Fatalf("expired capacity: %v, %d calls", err, sim.calls.Load())
		}
		// RefreshStale leaves a fresh catalog alone...
		if got, errs := cache.RefreshStale(ctx, []provider.Provider{sim}); len(got) != 0 || len(errs) != 0 || sim.calls.Load() != 2 {
			t.Fatalf("RefreshStale of a fresh catalog: %v %v, %d calls", got, errs, sim.calls.Load())
		}
		// ...and refreshes an expired one.
		clk.advance(73 * time.Hour)
		if got, errs := cache.RefreshStale(ctx, []provider.Provider{sim}); len(got) != 1 || len(errs) != 0 || sim.calls.Load() != 3 {
			t.Fatalf("RefreshStale of an expired catalog: %v %v, %d calls", got, errs, sim.calls.Load())
		}
	})
}

func TestCapacityIsRefreshedSeparately(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		clk := &clock{time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
		cache := newCache(s, clk)
		if _, err := cache.Refresh(ctx, openSim(t, s, nil)); err != nil {
			t.Fatal(err)
		}
		// The sim reports a region without capacity as unavailable.
		full := openSim(t, s, map[string]string{"capacity_error_regions": "sim-east1"})
		clk.advance(11 * time.Minute)
		cat, err := cache.Get(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range cat.Entries {
			if e.Available == (e.Region == "sim-east1") {
				t.Fatalf("availability not refreshed: %+v", e)
			}
		}
		// The cached capacity says so too.
		cached, _, err := cache.Cached(ctx, "sim")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range cached.Entries {
			if e.Available == (e.Region == "sim-east1") {
				t.Fatalf("cached availability: %+v", e)
			}
		}
	})
}

func TestFailedRefreshKeepsCacheAndNamesProvider(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		clk := &clock{time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
		cache := newCache(s, clk)
		sim := openSim(t, s, nil)
		good, err := cache.Refresh(ctx, sim)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := s.GetCatalog(ctx, "sim", catalog.KindMachineTypes, "all")
		pricesBefore, _ := s.ListPrices(ctx, "sim")

		malformed := map[string]func() ([]entry, error){
			"negative price": func() ([]entry, error) {
				es := append([]entry(nil), good.Entries...)
				es[2].HourlyPrice = -1
				return es, nil
			},
			"NaN memory": func() ([]entry, error) {
				es := append([]entry(nil), good.Entries...)
				es[0].MemoryGiB = math.NaN()
				return es, nil
			},
			"negative vCPUs": func() ([]entry, error) {
				return []entry{{Region: "r", InstanceType: "x", VCPUs: -2, MemoryGiB: 1}}, nil
			},
			"no instance type": func() ([]entry, error) { return []entry{{Region: "r", VCPUs: 1, MemoryGiB: 1}}, nil },
			"GPU count no model": func() ([]entry, error) {
				return []entry{{Region: "r", InstanceType: "x", VCPUs: 1, MemoryGiB: 1, GPUCount: 2}}, nil
			},
			"other provider": func() ([]entry, error) {
				return []entry{{Provider: "gcp", Region: "r", InstanceType: "x", VCPUs: 1, MemoryGiB: 1}}, nil
			},
			"duplicate rows": func() ([]entry, error) { return append(good.Entries[:1:1], good.Entries[0]), nil },
			"empty":          func() ([]entry, error) { return nil, nil },
			"API refuses": func() ([]entry, error) {
				return nil, provider.Errorf(errkind.Auth, "sim", "catalog", "401 Unauthorized")
			},
			"malformed from SDK": func() ([]entry, error) {
				return nil, provider.Errorf(errkind.Invalid, "sim", "catalog", "malformed catalog payload: unexpected end of JSON input")
			},
		}
		for name, bad := range malformed {
			sim.catalog = bad
			_, err := cache.Refresh(ctx, sim)
			var re *catalog.RefreshError
			if !errors.As(err, &re) || re.Provider != "sim" || !strings.Contains(err.Error(), "catalog of sim") ||
				!strings.Contains(err.Error(), "left as it was") {
				t.Fatalf("%s: want a RefreshError naming sim, got %v", name, err)
			}
			after, _ := s.GetCatalog(ctx, "sim", catalog.KindMachineTypes, "all")
			pricesAfter, _ := s.ListPrices(ctx, "sim")
			if string(after.Payload) != string(before.Payload) || !after.FetchedAt.Equal(before.FetchedAt) || len(pricesAfter) != len(pricesBefore) {
				t.Fatalf("%s: the cache changed", name)
			}
		}
		// An expired cache is served, marked stale, when the refresh fails.
		sim.catalog = malformed["API refuses"]
		clk.advance(100 * time.Hour)
		cat, err := cache.Get(ctx, sim)
		if err != nil || !cat.Stale || len(cat.Entries) != len(good.Entries) || !strings.Contains(cat.Warning, "401 Unauthorized") {
			t.Fatalf("stale fallback: %v %+v", err, cat)
		}
		// Without any cache, the failure is the answer.
		fresh := newCache(s, clk)
		other := &cloud{Provider: namedProvider{sim.Provider, "sim2"}, catalog: malformed["API refuses"]}
		if _, err := fresh.Get(ctx, other); err == nil || !strings.Contains(err.Error(), "catalog of sim2") {
			t.Fatalf("no cache and a failing API: %v", err)
		}
	})
}

// namedProvider is a provider under another name.
type namedProvider struct {
	provider.Provider
	name string
}

func (n namedProvider) Name() string { return n.name }

func TestTransientErrorsAreRetried(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		clk := &clock{time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
		cache := newCache(s, clk)
		sim := openSim(t, s, nil)
		fails := 2
		sim.catalog = func() ([]entry, error) {
			if fails > 0 {
				fails--
				return nil, &provider.Error{Kind: errkind.RateLimited, Provider: "sim", Op: "catalog",
					RetryAfter: time.Millisecond, Err: errors.New("429")}
			}
			return sim.Provider.Catalog(ctx)
		}
		if _, err := cache.Refresh(ctx, sim); err != nil {
			t.Fatalf("two rate limits then success: %v", err)
		}
		if sim.calls.Load() != 3 {
			t.Fatalf("%d calls, want 3", sim.calls.Load())
		}
	})
}

func TestPricingCacheAndVersion(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		clk := &clock{time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
		cache := newCache(s, clk)
		sim := openSim(t, s, nil)
		cat, err := cache.Refresh(ctx, sim)
		if err != nil {
			t.Fatal(err)
		}
		p, err := cache.Price(ctx, "sim", "sim-gpu-l4/1xl4", "sim-east1", false)
		if err != nil || p.UnitPrice != 0.85 || p.Unit != "hour" || !strings.HasPrefix(p.PricingVersion, "simulated@sha256:") {
			t.Fatalf("cached price: %+v %v", p, err)
		}
		spot, err := cache.Price(ctx, "sim", "sim-gpu-l4/1xl4", "sim-east1", true)
		if err != nil || spot.UnitPrice != 0.255 {
			t.Fatalf("cached spot price: %+v %v", spot, err)
		}
		// The same prices give the same version; a change gives another,
		// and replaces the old price rows.
		again, _ := cache.Refresh(ctx, sim)
		if again.Entries[0].PricingVersion != cat.Entries[0].PricingVersion {
			t.Fatal("same prices, different version")
		}
		sim.catalog = func() ([]entry, error) {
			es := append([]entry(nil), cat.Entries...)
			for i := range es {
				es[i].PricingVersion = ""
				es[i].HourlyPrice *= 2
			}
			return es[:3], nil
		}
		changed, err := cache.Refresh(ctx, sim)
		if err != nil || changed.Entries[0].PricingVersion == cat.Entries[0].PricingVersion {
			t.Fatalf("changed prices kept version %q: %v", changed.Entries[0].PricingVersion, err)
		}
		if _, err := cache.Price(ctx, "sim", "sim-gpu-l4/1xl4", "sim-east1", false); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("a type no longer listed still has a price: %v", err)
		}
		// A provider's own version is kept.
		sim.catalog = func() ([]entry, error) {
			es := append([]entry(nil), cat.Entries...)
			for i := range es {
				es[i].PricingVersion = "pricebook-2026-11-01"
			}
			return es, nil
		}
		own, err := cache.Refresh(ctx, sim)
		if err != nil || own.Entries[0].PricingVersion != "pricebook-2026-11-01" || catalog.VersionTag(own.Entries[0]) != "simulated@pricebook-2026-11-01" {
			t.Fatalf("provider version: %+v %v", own.Entries[0], err)
		}
	})
}

func TestGetAllReportsFailuresPerProvider(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		clk := &clock{time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
		cache := newCache(s, clk)
		good := openSim(t, s, nil)
		bad := &cloud{Provider: namedProvider{good.Provider, "broken"},
			catalog: func() ([]entry, error) { return nil, provider.Errorf(errkind.Auth, "broken", "catalog", "403") }}
		cats, errs := cache.GetAll(ctx, []provider.Provider{bad, good})
		if len(cats) != 1 || cats[0].Provider != "sim" || len(errs) != 1 || !strings.Contains(errs[0].Error(), "catalog of broken") {
			t.Fatalf("cats %v errs %v", len(cats), errs)
		}
	})
}
