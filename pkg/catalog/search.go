package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// Search is what `catalog` asks: machines meeting Query, cheapest first,
// at most Limit of them (0: all).
type Search struct {
	Query Query `json:"query"`
	Limit int   `json:"limit"`
}

// SearchResult is `catalog`'s answer.
type SearchResult struct {
	Query    Query    `json:"query"`
	Total    int      `json:"total"`
	Entries  []Entry  `json:"entries"`
	Warnings []string `json:"warnings"`
	// Disk are the configured disk prices (pricing.disk_gb_month) that
	// price a row's data disk before the defaults; they travel with the
	// rows so that a client of a server prices disks as the server does.
	Disk DiskPricing `json:"disk_pricing,omitempty"`
}

// Search answers s from the catalogs of ps (fetching expired ones). A
// provider whose catalog cannot be had is a warning while another's can.
func (c *Cache) Search(ctx context.Context, ps []provider.Provider, s Search) (SearchResult, error) {
	q := s.Query
	if q.GPUCount < 0 || q.CPUs < 0 || q.MemoryGiB < 0 || q.MaxPrice < 0 || s.Limit < 0 {
		return SearchResult{}, errkind.New(errkind.Invalid, "--gpus, --cpu, --ram, --max-price and --limit must not be negative")
	}
	cats, errs := c.GetAll(ctx, ps)
	if len(cats) == 0 {
		return SearchResult{}, errors.Join(errs...)
	}
	res := SearchResult{Entries: []Entry{}, Warnings: warnings(cats, errs), Disk: c.Disk}
	if len(q.Providers) == 0 {
		for _, cat := range cats {
			q.Providers = append(q.Providers, cat.Provider)
		}
	}
	res.Query = q
	entries := Entries(cats)
	if err := Validate(entries, q); err != nil {
		return SearchResult{}, errkind.Wrap(errkind.Invalid, err)
	}
	match := Matches(entries, q)
	if len(match) == 0 {
		_, _, err := Select(entries, q)
		return SearchResult{}, errkind.Wrap(errkind.Invalid, err)
	}
	res.Total = len(match)
	if s.Limit > 0 && len(match) > s.Limit {
		match = match[:s.Limit]
	}
	res.Entries = match
	return res, nil
}

func warnings(cats []Catalog, errs []error) []string {
	out := []string{}
	for _, c := range cats {
		if c.Warning != "" {
			out = append(out, c.Warning)
		}
	}
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

// RefreshResult is what `catalog refresh` did.
type RefreshResult struct {
	Refreshed []Refreshed      `json:"refreshed"`
	Failed    []RefreshFailure `json:"failed"`
}

// Refreshed is one provider's fresh catalog.
type Refreshed struct {
	Provider string `json:"provider"`
	// Rows are offers: a machine type in one region or zone.
	Rows         int `json:"rows"`
	MachineTypes int `json:"machine_types"`
	// Available counts rows with capacity.
	Available      int       `json:"available"`
	PricingSource  string    `json:"pricing_source"`
	PricingVersion string    `json:"pricing_version"`
	FetchedAt      time.Time `json:"fetched_at"`
	// Skipped counts rows of the cloud's payload left out as invalid;
	// SkipReasons says why for the first few.
	Skipped     int      `json:"skipped"`
	SkipReasons []string `json:"skip_reasons,omitempty"`
}

// RefreshFailure is a provider whose catalog could not be refreshed.
type RefreshFailure struct {
	Provider string `json:"provider"`
	Error    string `json:"error"`
	// Kind is the failure's kind (pkg/errkind).
	Kind string `json:"kind"`
}

// RefreshSummary fetches the catalogs of ps now and says what each gave; a
// provider that fails keeps its cache and is listed in Failed.
func (c *Cache) RefreshSummary(ctx context.Context, ps []provider.Provider) RefreshResult {
	cats, errs := c.RefreshAll(ctx, ps)
	res := RefreshResult{Refreshed: []Refreshed{}, Failed: []RefreshFailure{}}
	for _, cat := range cats {
		rc := Refreshed{Provider: cat.Provider, Rows: len(cat.Entries), FetchedAt: cat.FetchedAt, Skipped: cat.Skipped, SkipReasons: cat.SkipReasons}
		types := map[string]bool{}
		for _, e := range cat.Entries {
			types[e.InstanceType] = true
			if e.Available {
				rc.Available++
			}
		}
		rc.MachineTypes = len(types)
		if len(cat.Entries) > 0 {
			rc.PricingSource, rc.PricingVersion = cat.Entries[0].PricingSource, cat.Entries[0].PricingVersion
		}
		res.Refreshed = append(res.Refreshed, rc)
	}
	for _, err := range errs {
		name := "?"
		var re *RefreshError
		if errors.As(err, &re) {
			name = re.Provider
		}
		res.Failed = append(res.Failed, RefreshFailure{Provider: name, Error: err.Error(), Kind: string(errkind.Of(err))})
	}
	return res
}

// Err is the failures of r as one error of the first failure's kind (nil:
// none), the same in a command and in a client of a server.
func (r RefreshResult) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	var names, msgs []string
	for _, f := range r.Failed {
		names, msgs = append(names, f.Provider), append(msgs, f.Error)
	}
	k, _ := errkind.Parse(r.Failed[0].Kind)
	return errkind.New(k, fmt.Sprintf("catalog refresh failed for %s: %s", strings.Join(names, ", "), strings.Join(msgs, "; ")))
}
