package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Kinds of cached catalog data. Each has its own TTL: machine types and
// their prices change rarely; whether a cloud has capacity for a type
// changes by the minute.
const (
	KindMachineTypes = "machine_types"
	KindCapacity     = "capacity"
	scopeAll         = "all"
)

// TTLs says how long each kind of cached data is used before it is
// fetched again.
type TTLs struct {
	MachineTypes time.Duration
	Capacity     time.Duration
}

// DefaultTTLs are the TTLs when the config sets none.
var DefaultTTLs = TTLs{MachineTypes: 72 * time.Hour, Capacity: 15 * time.Minute}

// Store is what the cache needs of the state database.
type Store interface {
	GetCatalog(ctx context.Context, providerName, kind, scope string) (store.CatalogRecord, error)
	ReplaceCatalog(ctx context.Context, providerName string, records []store.CatalogRecord, prices []store.PriceRecord) error
	GetPrice(ctx context.Context, providerName, sku, region string) (store.PriceRecord, error)
}

// Cache serves provider catalogs from the state database and fetches
// them again when they expire.
type Cache struct {
	Store Store
	TTL   TTLs
	// Disk prices data disks (they are not in machine catalogs).
	Disk DiskPricing
	Now  func() time.Time
	// Attempts and RetryDelay bound retries of transient fetch errors.
	Attempts   int
	RetryDelay time.Duration
}

// New returns a cache with default TTLs, disk prices and retries.
func New(st Store) *Cache {
	return &Cache{Store: st, TTL: DefaultTTLs, Now: time.Now, Attempts: 4, RetryDelay: 200 * time.Millisecond}
}

// Catalog is one provider's catalog as served.
type Catalog struct {
	Provider string  `json:"provider"`
	Entries  []Entry `json:"entries"`
	// FetchedAt is when the machine types were fetched; CapacityAt when
	// availability was.
	FetchedAt  time.Time `json:"fetched_at"`
	CapacityAt time.Time `json:"capacity_at"`
	// Stale is set when an expired cache is served because fetching a
	// fresh one failed; Warning says why.
	Stale   bool   `json:"stale,omitempty"`
	Warning string `json:"warning,omitempty"`
	// Skipped counts the rows of the cloud's payload a refresh left out
	// as invalid; SkipReasons says why for the first few.
	Skipped     int      `json:"skipped,omitempty"`
	SkipReasons []string `json:"skip_reasons,omitempty"`
}

// RefreshError is a catalog that could not be fetched or was malformed.
// The cache was left as it was.
type RefreshError struct {
	Provider string
	Err      error
}

func (e *RefreshError) Error() string {
	return fmt.Sprintf("catalog of %s: %v (the cached catalog was left as it was)", e.Provider, e.Err)
}

func (e *RefreshError) Unwrap() error { return e.Err }

// capacityRow is one entry's availability in the capacity record.
type capacityRow struct {
	Region       string `json:"region"`
	Zone         string `json:"zone,omitempty"`
	InstanceType string `json:"instance_type"`
	GPUModel     string `json:"gpu_model,omitempty"`
	GPUCount     int    `json:"gpu_count,omitempty"`
	Available    bool   `json:"available"`
}

// Key identifies a catalog row: a machine type in a place, with its GPUs
// (on GCP one N1 type comes with 1, 2 or 4 attached GPUs).
func Key(e Entry) string {
	return fmt.Sprintf("%s|%s|%s|%s|%d", e.Region, e.Zone, e.InstanceType, e.GPUModel, e.GPUCount)
}

func (r capacityRow) key() string {
	return Key(Entry{Region: r.Region, Zone: r.Zone, InstanceType: r.InstanceType, GPUModel: r.GPUModel, GPUCount: r.GPUCount})
}

// Get returns p's catalog: from the cache while both kinds are fresh,
// else fetched again. If fetching fails and an expired cache exists, that
// is served with Stale set, so a flaky cloud API does not block listing
// or creating hosts; without any cache the fetch error is returned.
func (c *Cache) Get(ctx context.Context, p provider.Provider) (Catalog, error) {
	cached, fresh, err := c.cached(ctx, p.Name())
	if err != nil {
		return Catalog{}, err
	}
	if fresh {
		return cached, nil
	}
	got, rerr := c.Refresh(ctx, p)
	if rerr == nil {
		return got, nil
	}
	if cached.Entries == nil {
		return Catalog{}, rerr
	}
	cached.Stale = true
	cached.Warning = fmt.Sprintf("%s: showing the catalog fetched %s, because %v", p.Name(),
		cached.FetchedAt.UTC().Format(time.RFC3339), rerr)
	return cached, nil
}

// Cached returns what the cache holds for a provider without fetching,
// and whether it is fresh. A provider never fetched gives no entries.
func (c *Cache) Cached(ctx context.Context, name string) (Catalog, bool, error) {
	return c.cached(ctx, name)
}

func (c *Cache) cached(ctx context.Context, name string) (Catalog, bool, error) {
	cat := Catalog{Provider: name}
	mt, err := c.Store.GetCatalog(ctx, name, KindMachineTypes, scopeAll)
	if errkind.Is(err, errkind.NotFound) {
		return cat, false, nil
	}
	if err != nil {
		return cat, false, err
	}
	if err := json.Unmarshal(mt.Payload, &cat.Entries); err != nil {
		// A corrupt cache is a missing cache: fetch again.
		return Catalog{Provider: name}, false, nil
	}
	if cat.Entries == nil {
		cat.Entries = []Entry{}
	}
	cat.FetchedAt = mt.FetchedAt
	now := c.now()
	// Freshness follows the TTLs configured now, not those in force when
	// the data was fetched, so a shorter TTL takes effect at once.
	ttl := c.ttl()
	fresh := now.Before(mt.FetchedAt.Add(ttl.MachineTypes))
	cp, err := c.Store.GetCatalog(ctx, name, KindCapacity, scopeAll)
	var rows []capacityRow
	switch {
	case errkind.Is(err, errkind.NotFound):
		fresh = false
	case err != nil:
		return cat, false, err
	case json.Unmarshal(cp.Payload, &rows) != nil:
		fresh = false
	default:
		cat.CapacityAt = cp.FetchedAt
		fresh = fresh && now.Before(cp.FetchedAt.Add(ttl.Capacity))
		avail := make(map[string]bool, len(rows))
		for _, r := range rows {
			avail[r.key()] = r.Available
		}
		for i, e := range cat.Entries {
			if a, ok := avail[Key(e)]; ok {
				cat.Entries[i].Available = a
			}
		}
	}
	return cat, fresh, nil
}

// Refresh fetches p's catalog now and replaces its cache (machine types,
// capacity and prices) in one transaction. A failed fetch or a malformed
// catalog returns a *RefreshError naming the provider and leaves the
// cache as it was.
func (c *Cache) Refresh(ctx context.Context, p provider.Provider) (Catalog, error) {
	name := p.Name()
	rep, err := c.fetch(ctx, p)
	if err != nil {
		return Catalog{}, &RefreshError{Provider: name, Err: err}
	}
	entries, err := Normalize(name, rep.Entries)
	if err != nil {
		return Catalog{}, &RefreshError{Provider: name, Err: err}
	}
	now := c.now()
	caps := make([]capacityRow, len(entries))
	for i, e := range entries {
		caps[i] = capacityRow{Region: e.Region, Zone: e.Zone, InstanceType: e.InstanceType, GPUModel: e.GPUModel,
			GPUCount: e.GPUCount, Available: e.Available}
	}
	mtPayload, err := json.Marshal(entries)
	if err != nil {
		return Catalog{}, &RefreshError{Provider: name, Err: err}
	}
	capPayload, err := json.Marshal(caps)
	if err != nil {
		return Catalog{}, &RefreshError{Provider: name, Err: err}
	}
	mtExpiry := now.Add(c.ttl().MachineTypes)
	records := []store.CatalogRecord{
		{Provider: name, Kind: KindMachineTypes, Scope: scopeAll, Payload: mtPayload, FetchedAt: now, ExpiresAt: mtExpiry},
		{Provider: name, Kind: KindCapacity, Scope: scopeAll, Payload: capPayload, FetchedAt: now, ExpiresAt: now.Add(c.ttl().Capacity)},
	}
	if err := c.Store.ReplaceCatalog(ctx, name, records, priceRecords(entries, now, mtExpiry)); err != nil {
		return Catalog{}, fmt.Errorf("catalog of %s: %w", name, err)
	}
	return Catalog{Provider: name, Entries: entries, FetchedAt: now, CapacityAt: now, Skipped: rep.Skipped, SkipReasons: rep.Reasons}, nil
}

// GetAll returns the catalogs of ps, fetched concurrently where needed.
// A provider whose catalog cannot be had is left out and its error
// returned in errs; the others are still served.
func (c *Cache) GetAll(ctx context.Context, ps []provider.Provider) (cats []Catalog, errs []error) {
	return c.each(ctx, ps, c.Get)
}

// RefreshAll refreshes the catalogs of ps concurrently.
func (c *Cache) RefreshAll(ctx context.Context, ps []provider.Provider) (cats []Catalog, errs []error) {
	return c.each(ctx, ps, c.Refresh)
}

// RefreshStale refreshes the catalogs of ps whose machine types or
// capacity have expired; the worker calls it periodically.
func (c *Cache) RefreshStale(ctx context.Context, ps []provider.Provider) (refreshed []Catalog, errs []error) {
	return c.each(ctx, ps, func(ctx context.Context, p provider.Provider) (Catalog, error) {
		if _, fresh, err := c.cached(ctx, p.Name()); err != nil || fresh {
			return Catalog{}, err
		}
		return c.Refresh(ctx, p)
	})
}

func (c *Cache) each(ctx context.Context, ps []provider.Provider, f func(context.Context, provider.Provider) (Catalog, error)) ([]Catalog, []error) {
	out := make([]Catalog, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = f(ctx, p)
		}()
	}
	wg.Wait()
	var cats []Catalog
	var failed []error
	for i := range ps {
		if errs[i] != nil {
			failed = append(failed, errs[i])
		} else if out[i].Provider != "" {
			cats = append(cats, out[i])
		}
	}
	sort.Slice(cats, func(i, j int) bool { return cats[i].Provider < cats[j].Provider })
	return cats, failed
}

// Entries flattens catalogs into one list.
func Entries(cats []Catalog) []Entry {
	var out []Entry
	for _, c := range cats {
		out = append(out, c.Entries...)
	}
	return out
}

// Price returns the cached on-demand (or spot) hourly price of a machine
// SKU (see SKU) in a region, for hosts whose launch price was not recorded.
func (c *Cache) Price(ctx context.Context, providerName, sku, region string, spot bool) (store.PriceRecord, error) {
	if spot {
		sku += spotSuffix
	}
	return c.Store.GetPrice(ctx, providerName, sku, region)
}

const spotSuffix = ":spot"

// fetch asks the provider a few times when it fails transiently; a
// provider.CatalogReporter also says which rows it left out.
func (c *Cache) fetch(ctx context.Context, p provider.Provider) (provider.CatalogReport, error) {
	delay := c.RetryDelay
	attempts := max(c.Attempts, 1)
	for attempt := 1; ; attempt++ {
		var rep provider.CatalogReport
		var err error
		if r, ok := p.(provider.CatalogReporter); ok {
			rep, err = r.CatalogReport(ctx)
		} else {
			rep.Entries, err = p.Catalog(ctx)
		}
		if err == nil {
			return rep, nil
		}
		if attempt >= attempts || !errkind.Retryable(err) || ctx.Err() != nil {
			return provider.CatalogReport{}, err
		}
		t := time.NewTimer(max(delay, errkind.RetryAfter(err)))
		select {
		case <-ctx.Done():
			t.Stop()
			return provider.CatalogReport{}, ctx.Err()
		case <-t.C:
		}
		delay *= 2
	}
}

func (c *Cache) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Cache) ttl() TTLs {
	t := c.TTL
	if t.MachineTypes <= 0 {
		t.MachineTypes = DefaultTTLs.MachineTypes
	}
	if t.Capacity <= 0 {
		t.Capacity = DefaultTTLs.Capacity
	}
	return t
}

// Normalize checks a provider's catalog and returns it in canonical form
// (GPU models lowercased, provider name filled in, a pricing version on
// every row). A malformed catalog is rejected whole — never cached in
// part — with the first bad row named.
func Normalize(providerName string, entries []Entry) ([]Entry, error) {
	if len(entries) == 0 {
		return nil, errors.New("the provider listed no machine types")
	}
	out := make([]Entry, len(entries))
	seen := make(map[string]int, len(entries))
	for i, e := range entries {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("malformed catalog row %d (%s in %s): %s", i+1, orQ(e.InstanceType), orQ(e.Region), fmt.Sprintf(format, args...))
		}
		switch {
		case e.Provider != "" && e.Provider != providerName:
			return nil, bad("it names provider %q", e.Provider)
		case strings.TrimSpace(e.InstanceType) == "":
			return nil, bad("no instance type")
		case strings.TrimSpace(e.Region) == "":
			return nil, bad("no region")
		// Zero vCPUs or memory means unknown (a machine adopted over SSH
		// is measured only once bootstrapped); such a row meets no
		// --cpu or --ram minimum.
		case e.VCPUs < 0:
			return nil, bad("%d vCPUs", e.VCPUs)
		case !finiteNonNegative(e.MemoryGiB):
			return nil, bad("memory %v GiB", e.MemoryGiB)
		case e.GPUCount < 0 || (e.GPUCount > 0) != (e.GPUModel != ""):
			return nil, bad("GPU model %q with count %d", e.GPUModel, e.GPUCount)
		case !finiteNonNegative(e.GPUMemoryGiB):
			return nil, bad("GPU memory %v GiB", e.GPUMemoryGiB)
		case !finiteNonNegative(e.HourlyPrice):
			return nil, bad("hourly price %v", e.HourlyPrice)
		case !finiteNonNegative(e.SpotPrice):
			return nil, bad("spot price %v", e.SpotPrice)
		}
		e.Provider = providerName
		e.GPUModel = NormalizeGPU(e.GPUModel)
		k := Key(e)
		if j, dup := seen[k]; dup {
			return nil, bad("duplicate of row %d", j+1)
		}
		seen[k] = i
		out[i] = e
	}
	version := priceHash(out)
	for i := range out {
		if out[i].PricingVersion == "" {
			out[i].PricingVersion = version
		}
	}
	return out, nil
}

func orQ(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func finiteNonNegative(f float64) bool { return f >= 0 && !math.IsInf(f, 0) }

// priceHash identifies a price list whose source gave no version: the
// same prices give the same version, any change gives another.
func priceHash(es []Entry) string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = fmt.Sprintf("%s|%g|%g", Key(e), e.HourlyPrice, e.SpotPrice)
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// VersionTag is what cloud_vm_log records as the pricing version of a
// launch: the pricing source and its version.
func VersionTag(e Entry) string {
	switch {
	case e.PricingSource == "":
		return e.PricingVersion
	case e.PricingVersion == "":
		return e.PricingSource
	}
	return e.PricingSource + "@" + e.PricingVersion
}

// priceRecords turns a catalog into cloud_pricing_cache rows: one per
// machine type and region (zones of one region share a price), and one
// for its spot price where it has one.
func priceRecords(es []Entry, fetched, expires time.Time) []store.PriceRecord {
	out := []store.PriceRecord{}
	seen := map[string]bool{}
	add := func(e Entry, sku string, price float64) {
		k := sku + "\x00" + e.Region
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, store.PriceRecord{Provider: e.Provider, SKU: sku, Region: e.Region, Unit: "hour",
			UnitPrice: price, PricingVersion: VersionTag(e), FetchedAt: fetched, ExpiresAt: expires})
	}
	for _, e := range es {
		add(e, SKU(e.InstanceType, e.GPUModel, e.GPUCount), e.HourlyPrice)
		if e.SpotPrice > 0 {
			add(e, SKU(e.InstanceType, e.GPUModel, e.GPUCount)+spotSuffix, e.SpotPrice)
		}
	}
	return out
}

// SKU names a machine type with its GPUs in the pricing cache: the type
// alone, or TYPE/COUNTxMODEL where GPUs are attached (n1-standard-4/2xt4).
func SKU(instanceType, gpuModel string, gpuCount int) string {
	if gpuCount <= 0 {
		return instanceType
	}
	return fmt.Sprintf("%s/%dx%s", instanceType, gpuCount, gpuModel)
}
