package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// CostStore holds the pricing cache and usage computed from cloud_vm_log.
type CostStore interface {
	// ReplaceCatalog writes one provider's catalog records and its price
	// list in one transaction: either the whole refresh lands or the
	// cache stays as it was. The provider's old price rows are replaced.
	ReplaceCatalog(ctx context.Context, providerName string, records []CatalogRecord, prices []PriceRecord) error
	// GetPrice returns one cached price; an errkind.NotFound error when absent.
	GetPrice(ctx context.Context, providerName, sku, region string) (PriceRecord, error)
	// ListPrices returns a provider's cached prices (every provider's for "").
	ListPrices(ctx context.Context, providerName string) ([]PriceRecord, error)

	// ReplaceUsage replaces the usage rows of one source of the given
	// hosts with rows, in one transaction.
	ReplaceUsage(ctx context.Context, source string, hostIDs []string, rows []UsageRecord) error
	// ListUsage returns usage rows overlapping [From, To), oldest first.
	ListUsage(ctx context.Context, f UsageFilter) ([]UsageRecord, error)
}

// PriceRecord is one row of cloud_pricing_cache: the price of one SKU (a
// machine type, its spot variant, ...) in one region.
type PriceRecord struct {
	Provider       string    `json:"provider"`
	SKU            string    `json:"sku"`
	Region         string    `json:"region"`
	Unit           string    `json:"unit"` // "hour"
	UnitPrice      float64   `json:"unit_price"`
	PricingVersion string    `json:"pricing_version"`
	FetchedAt      time.Time `json:"fetched_at"`
	ExpiresAt      time.Time `json:"expires_at"`
}

// UsageRecord is one row of cloud_vm_usage: a stretch of a host's life in
// one state at one price, so the cost of part of it is pro rata.
type UsageRecord struct {
	HostID      string    `json:"host_id"`
	Owner       string    `json:"owner"`
	Provider    string    `json:"provider"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	// State is "running" (compute and disk billed) or "off" (disk only).
	State               string  `json:"state"`
	ComputeHours        float64 `json:"compute_hours"`
	StorageGBHours      float64 `json:"storage_gb_hours"`
	EgressGB            float64 `json:"egress_gb"`
	HourlyPrice         float64 `json:"hourly_price"`
	DiskGB              int     `json:"disk_gb"`
	DiskPricePerGBMonth float64 `json:"disk_price_gb_month"`
	ComputeCost         float64 `json:"compute_cost"`
	// StorageCost is what the disks cost: the data disk, and the boot
	// disk (BootDiskCost) where the machine price does not include it.
	StorageCost    float64   `json:"storage_cost"`
	BootDiskCost   float64   `json:"boot_disk_cost,omitempty"`
	Cost           float64   `json:"cost"`
	PricingVersion string    `json:"pricing_version,omitempty"`
	Source         string    `json:"source"`
	Confidence     string    `json:"confidence"`
	ComputedAt     time.Time `json:"computed_at"`
}

// UsageFilter selects usage rows that overlap [From, To). Zero times are
// open ends; an empty HostID selects every host.
type UsageFilter struct {
	HostID string
	From   time.Time
	To     time.Time
}

func (s *SQLStore) ReplaceCatalog(ctx context.Context, providerName string, records []CatalogRecord, prices []PriceRecord) error {
	op := "cache catalog of " + providerName
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.err(op, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	for _, c := range records {
		if c.Provider != providerName {
			return fmt.Errorf("%s: record for provider %q", op, c.Provider)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO cloud_catalog_cache (provider, kind, scope, payload, fetched_at, expires_at)
 VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (provider, kind, scope) DO UPDATE SET payload = excluded.payload,
 fetched_at = excluded.fetched_at, expires_at = excluded.expires_at`,
			c.Provider, c.Kind, c.Scope, string(c.Payload), ms(c.FetchedAt), ms(c.ExpiresAt)); err != nil {
			return s.err(op, err)
		}
	}
	if prices != nil {
		if _, err := tx.ExecContext(ctx, `DELETE FROM cloud_pricing_cache WHERE provider = $1`, providerName); err != nil {
			return s.err(op, err)
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO cloud_pricing_cache (provider, sku, region, unit, unit_price,
 pricing_version, fetched_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`)
		if err != nil {
			return s.err(op, err)
		}
		defer ins.Close()
		for _, p := range prices {
			if p.Provider != providerName {
				return fmt.Errorf("%s: price for provider %q", op, p.Provider)
			}
			if _, err := ins.ExecContext(ctx, p.Provider, p.SKU, p.Region, p.Unit, p.UnitPrice, p.PricingVersion,
				ms(p.FetchedAt), ms(p.ExpiresAt)); err != nil {
				return s.err(op+": price of "+p.SKU+" in "+p.Region, err)
			}
		}
	}
	return s.err(op, tx.Commit())
}

const priceColumns = `provider, sku, region, unit, unit_price, pricing_version, fetched_at, expires_at`

func scanPrice(r scanner) (PriceRecord, error) {
	var p PriceRecord
	var fetched, expires int64
	err := r.Scan(&p.Provider, &p.SKU, &p.Region, &p.Unit, &p.UnitPrice, &p.PricingVersion, &fetched, &expires)
	p.FetchedAt, p.ExpiresAt = fromMS(fetched), fromMS(expires)
	return p, err
}

func (s *SQLStore) GetPrice(ctx context.Context, providerName, sku, region string) (PriceRecord, error) {
	p, err := scanPrice(s.db.QueryRowContext(ctx, `SELECT `+priceColumns+` FROM cloud_pricing_cache
 WHERE provider = $1 AND sku = $2 AND region = $3`, providerName, sku, region))
	if errors.Is(err, sql.ErrNoRows) {
		return p, errkind.Errorf(errkind.NotFound, "no cached price of %s %s in %s", providerName, sku, region)
	}
	return p, s.err("get price", err)
}

func (s *SQLStore) ListPrices(ctx context.Context, providerName string) ([]PriceRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+priceColumns+` FROM cloud_pricing_cache
 WHERE ($1 = '' OR provider = $1) ORDER BY provider, sku, region`, providerName)
	if err != nil {
		return nil, s.err("list prices", err)
	}
	defer rows.Close()
	var out []PriceRecord
	for rows.Next() {
		p, err := scanPrice(rows)
		if err != nil {
			return nil, s.err("list prices", err)
		}
		out = append(out, p)
	}
	return out, s.err("list prices", rows.Err())
}

const usageColumns = `host_id, owner, provider, period_start, period_end, state, compute_hours, storage_gb_hours,
 egress_gb, hourly_price, disk_gb, disk_price_gb_month, compute_cost, storage_cost, cost, pricing_version, source,
 confidence, computed_at, boot_disk_cost`

func (s *SQLStore) ReplaceUsage(ctx context.Context, source string, hostIDs []string, rows []UsageRecord) error {
	op := fmt.Sprintf("record usage of %d hosts", len(hostIDs))
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.err(op, err)
	}
	defer tx.Rollback() //nolint:errcheck
	hosts := make(map[string]bool, len(hostIDs))
	for _, id := range hostIDs {
		hosts[id] = true
		if _, err := tx.ExecContext(ctx, `DELETE FROM cloud_vm_usage WHERE host_id = $1 AND source = $2`, id, source); err != nil {
			return s.err(op, err)
		}
	}
	for _, u := range rows {
		if !hosts[u.HostID] || u.Source != source {
			return fmt.Errorf("%s: row for host %s source %s is not among them", op, u.HostID, u.Source)
		}
	}
	// One prepared statement for all rows: parsing the insert again for
	// each row made a report over a thousand hosts take seconds.
	ins, err := tx.PrepareContext(ctx, `INSERT INTO cloud_vm_usage (`+usageColumns+`)
 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)`)
	if err != nil {
		return s.err(op, err)
	}
	defer ins.Close()
	for _, u := range rows {
		if _, err := ins.ExecContext(ctx, u.HostID, u.Owner, u.Provider, ms(u.PeriodStart), ms(u.PeriodEnd), u.State, u.ComputeHours,
			u.StorageGBHours, u.EgressGB, u.HourlyPrice, u.DiskGB, u.DiskPricePerGBMonth, u.ComputeCost, u.StorageCost, u.Cost,
			u.PricingVersion, u.Source, u.Confidence, ms(u.ComputedAt), u.BootDiskCost); err != nil {
			return s.err(op, err)
		}
	}
	return s.err(op, tx.Commit())
}

func (s *SQLStore) ListUsage(ctx context.Context, f UsageFilter) ([]UsageRecord, error) {
	from, to := int64(-1<<62), int64(1<<62)
	if !f.From.IsZero() {
		from = ms(f.From)
	}
	if !f.To.IsZero() {
		to = ms(f.To)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+usageColumns+` FROM cloud_vm_usage
 WHERE ($1 = '' OR host_id = $1) AND period_end > $2 AND period_start < $3 ORDER BY period_start, host_id`, f.HostID, from, to)
	if err != nil {
		return nil, s.err("list usage", err)
	}
	defer rows.Close()
	var out []UsageRecord
	for rows.Next() {
		var u UsageRecord
		var start, end, computed int64
		if err := rows.Scan(&u.HostID, &u.Owner, &u.Provider, &start, &end, &u.State, &u.ComputeHours, &u.StorageGBHours,
			&u.EgressGB, &u.HourlyPrice, &u.DiskGB, &u.DiskPricePerGBMonth, &u.ComputeCost, &u.StorageCost, &u.Cost,
			&u.PricingVersion, &u.Source, &u.Confidence, &computed, &u.BootDiskCost); err != nil {
			return nil, s.err("list usage", err)
		}
		u.PeriodStart, u.PeriodEnd, u.ComputedAt = fromMS(start), fromMS(end), fromMS(computed)
		out = append(out, u)
	}
	return out, s.err("list usage", rows.Err())
}
