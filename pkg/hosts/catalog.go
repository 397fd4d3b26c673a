package hosts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// CatalogTTL is how long a fetched machine-type catalog is used before it
// is fetched again.
var CatalogTTL = 24 * time.Hour

// Catalog returns p's machine types from the store's cache, fetching them
// when the cache is missing or stale. A failed fetch falls back to a stale
// cache, so a flaky cloud API does not block creating hosts.
func (s *Service) Catalog(ctx context.Context, p provider.Provider) ([]provider.CatalogEntry, error) {
	cached, cerr := s.Store.GetCatalog(ctx, p.Name(), "machine_types", "all")
	if cerr == nil && s.Now().Before(cached.ExpiresAt) {
		var out []provider.CatalogEntry
		if err := json.Unmarshal(cached.Payload, &out); err == nil {
			return out, nil
		}
	} else if cerr != nil && !errors.Is(cerr, store.ErrNotFound) {
		return nil, cerr
	}
	entries, err := fetchCatalog(ctx, p)
	if err != nil {
		var out []provider.CatalogEntry
		if cerr == nil && json.Unmarshal(cached.Payload, &out) == nil {
			return out, nil
		}
		return nil, fmt.Errorf("catalog of %s: %w", p.Name(), err)
	}
	payload, err := json.Marshal(entries)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	if err := s.Store.PutCatalog(ctx, store.CatalogRecord{Provider: p.Name(), Kind: "machine_types", Scope: "all",
		Payload: payload, FetchedAt: now, ExpiresAt: now.Add(CatalogTTL)}); err != nil {
		return nil, err
	}
	return entries, nil
}

// fetchCatalog asks the provider a few times when it fails transiently.
func fetchCatalog(ctx context.Context, p provider.Provider) ([]provider.CatalogEntry, error) {
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		entries, err := p.Catalog(ctx)
		if err == nil {
			return entries, nil
		}
		if attempt == 4 || !provider.IsRetryable(err) {
			return nil, err
		}
		d := max(delay, provider.RetryAfter(err))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay *= 2
	}
}
