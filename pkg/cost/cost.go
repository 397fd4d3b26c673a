// Package cost turns each host's cloud_vm_log into usage — compute while
// the VM runs, the data disk for as long as it exists, stopped or not —
// stores it in cloud_vm_usage and totals it per host and owner for any
// time window.
//
// Usage is an estimate from our own log: compute is counted from the
// moment an action left the VM running until the moment one left it
// stopped or deleted (so the minutes a VM spends booting before our
// action completes are not counted), at the hourly price stored on the
// host when it was launched; disks at the provider's disk price
// (catalog.DiskPricing). Rows are homogeneous segments split at UTC
// midnight, so the cost of a window is an exact pro-rata sum.
package cost

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Source marks usage rows computed here.
const Source = "cloud_vm_log"

// Confidence of rows computed from our own log rather than a cloud bill.
const Confidence = "estimate"

// Billing states of a segment.
const (
	StateRunning = "running" // compute and disk billed
	StateOff     = "off"     // only the disk billed
)

// Rates are the prices a host is billed at.
type Rates struct {
	HourlyPrice         float64
	DiskPricePerGBMonth float64
	// BootDiskMonthly is billed while the VM exists (running or stopped).
	BootDiskMonthly float64
	PricingVersion  string
}

// Segments computes a host's usage from its log up to now. Only log
// entries that say what became of the VM move the billing state: running
// (compute and disks), off (disks only: the boot disk too unless the VM
// was deleted keeping its data disk), deprovisioned (nothing). Failed or
// transitional entries (error, stopping, ...) leave it as it was, since a
// failed stop does not stop the bill.
func Segments(h model.Host, log []model.LogEntry, r Rates, now time.Time) []store.UsageRecord {
	sort.SliceStable(log, func(i, j int) bool { return log[i].TS.Before(log[j].TS) })
	var out []store.UsageRecord
	vm, disk, boot := false, false, false
	diskGB := 0
	var since time.Time
	pricing := r.PricingVersion
	flush := func(until time.Time) {
		if (vm || disk) && until.After(since) {
			out = append(out, split(h, since, until, vm, boot, diskGB, r, pricing, now)...)
		}
		since = until
	}
	for _, e := range log {
		if e.PricingVersion != "" && pricing == "" {
			pricing = e.PricingVersion
		}
		var nextVM, nextDisk, nextBoot bool
		switch e.HostStatus {
		case model.StatusRunning:
			nextVM, nextDisk, nextBoot = true, true, true
		case model.StatusOff:
			// Off by a delete keeping the data disk: the VM and its boot
			// disk are gone; off otherwise (a stop): both are kept.
			nextVM, nextDisk, nextBoot = false, true, e.Action != string(model.ActionDelete)
		case model.StatusDeprovisioned:
			nextVM, nextDisk, nextBoot = false, false, false
		default:
			continue
		}
		gb := specDiskGB(e.Spec)
		if nextVM == vm && nextDisk == disk && nextBoot == boot && gb == diskGB {
			continue
		}
		flush(e.TS)
		vm, disk, boot, diskGB = nextVM, nextDisk, nextBoot, gb
	}
	flush(now)
	return out
}

func specDiskGB(raw json.RawMessage) int {
	var s model.HostSpec
	if len(raw) > 0 && json.Unmarshal(raw, &s) == nil && s.DiskGB > 0 {
		return s.DiskGB
	}
	return catalog.DefaultDiskGB
}

// split makes one usage row per UTC day of [from, to).
func split(h model.Host, from, to time.Time, vm, boot bool, diskGB int, r Rates, pricing string, now time.Time) []store.UsageRecord {
	var out []store.UsageRecord
	for start := from; start.Before(to); {
		y, m, d := start.UTC().Date()
		end := time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
		if end.After(to) {
			end = to
		}
		hours := end.Sub(start).Hours()
		u := store.UsageRecord{
			HostID: h.ID, Owner: h.Owner, Provider: h.Provider, PeriodStart: start, PeriodEnd: end, State: StateOff,
			StorageGBHours: float64(diskGB) * hours, DiskGB: diskGB, DiskPricePerGBMonth: r.DiskPricePerGBMonth,
			HourlyPrice: r.HourlyPrice, PricingVersion: pricing, Source: Source, Confidence: Confidence, ComputedAt: now,
		}
		if vm {
			u.State, u.ComputeHours = StateRunning, hours
			u.ComputeCost = hours * r.HourlyPrice
		}
		if boot {
			u.BootDiskCost = hours * r.BootDiskMonthly / catalog.HoursPerMonth
		}
		u.StorageCost = u.StorageGBHours*r.DiskPricePerGBMonth/catalog.HoursPerMonth + u.BootDiskCost
		u.Cost = u.ComputeCost + u.StorageCost
		out = append(out, u)
		start = end
	}
	return out
}

// Totals are usage and cost summed over a window.
type Totals struct {
	ComputeHours   float64 `json:"compute_hours"`
	StorageGBHours float64 `json:"storage_gb_hours"`
	ComputeCost    float64 `json:"compute_cost"`
	StorageCost    float64 `json:"storage_cost"`
	Total          float64 `json:"total"`
}

func (t *Totals) add(o Totals) {
	t.ComputeHours += o.ComputeHours
	t.StorageGBHours += o.StorageGBHours
	t.ComputeCost += o.ComputeCost
	t.StorageCost += o.StorageCost
	t.Total += o.Total
}

func (t Totals) rounded() Totals {
	r := func(f float64) float64 { return math.Round(f*1e6) / 1e6 }
	return Totals{r(t.ComputeHours), r(t.StorageGBHours), r(t.ComputeCost), r(t.StorageCost), r(t.Total)}
}

// Window sums the part of rows that falls in [from, to); a row that
// straddles an end counts pro rata (rows are homogeneous). A zero from
// or to is open.
func Window(rows []store.UsageRecord, from, to time.Time) Totals {
	var t Totals
	for _, u := range rows {
		s, e := u.PeriodStart, u.PeriodEnd
		if !from.IsZero() && s.Before(from) {
			s = from
		}
		if !to.IsZero() && e.After(to) {
			e = to
		}
		full := u.PeriodEnd.Sub(u.PeriodStart)
		if !e.After(s) || full <= 0 {
			continue
		}
		f := float64(e.Sub(s)) / float64(full)
		t.add(Totals{u.ComputeHours * f, u.StorageGBHours * f, u.ComputeCost * f, u.StorageCost * f, u.Cost * f})
	}
	return t
}

// Store is what the cost service needs of the state database.
type Store interface {
	GetHost(ctx context.Context, idOrName string) (model.Host, error)
	ListHosts(ctx context.Context, f store.HostFilter) ([]model.Host, error)
	ListLog(ctx context.Context, f store.LogFilter) ([]model.LogEntry, error)
	ReplaceUsage(ctx context.Context, source string, hostIDs []string, rows []store.UsageRecord) error
	ListUsage(ctx context.Context, f store.UsageFilter) ([]store.UsageRecord, error)
}

// Prices looks up a cached machine price, for hosts launched without a
// recorded price.
type Prices interface {
	Price(ctx context.Context, providerName, sku, region string, spot bool) (store.PriceRecord, error)
}

// Service computes and reports cost.
type Service struct {
	Store  Store
	Disk   catalog.DiskPricing
	Prices Prices // may be nil
	Now    func() time.Time
}

// RatesFor returns the prices h is billed at.
func (s *Service) RatesFor(ctx context.Context, h model.Host) Rates {
	r := Rates{HourlyPrice: h.HourlyPrice, DiskPricePerGBMonth: s.Disk.ForHost(h.Provider, h.Spec.DiskPricePerGBMonth, h.Spec.DiskPriceSource).PerGBMonth,
		BootDiskMonthly: h.Spec.BootDiskMonthly}
	if r.HourlyPrice == 0 && s.Prices != nil && h.Spec.MachineType != "" {
		sku := catalog.SKU(h.Spec.MachineType, h.Spec.GPUModel, h.Spec.GPUCount)
		if p, err := s.Prices.Price(ctx, h.Provider, sku, h.Region, h.Spec.Spot); err == nil {
			r.HourlyPrice, r.PricingVersion = p.UnitPrice, p.PricingVersion
		}
	}
	return r
}

// Refresh recomputes the usage rows of hosts from their logs and stores
// them in one transaction; it returns each host's rows.
func (s *Service) Refresh(ctx context.Context, hosts []model.Host) (map[string][]store.UsageRecord, error) {
	return s.refresh(ctx, hosts, s.now())
}

func (s *Service) refresh(ctx context.Context, hosts []model.Host, now time.Time) (map[string][]store.UsageRecord, error) {
	logs := map[string][]model.LogEntry{}
	if len(hosts) == 1 {
		log, err := s.Store.ListLog(ctx, store.LogFilter{HostID: hosts[0].ID})
		if err != nil {
			return nil, err
		}
		logs[hosts[0].ID] = log
	} else if len(hosts) > 1 {
		// One read of the whole log beats one query per host.
		all, err := s.Store.ListLog(ctx, store.LogFilter{})
		if err != nil {
			return nil, err
		}
		for _, e := range all {
			logs[e.HostID] = append(logs[e.HostID], e)
		}
	}
	out := make(map[string][]store.UsageRecord, len(hosts))
	ids := make([]string, 0, len(hosts))
	var rows []store.UsageRecord
	for _, h := range hosts {
		r := Segments(h, logs[h.ID], s.RatesFor(ctx, h), now)
		out[h.ID] = r
		ids = append(ids, h.ID)
		rows = append(rows, r...)
	}
	if err := s.Store.ReplaceUsage(ctx, Source, ids, rows); err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	return out, nil
}

// RefreshAll recomputes the usage of every host, deleted ones included
// (their rows stop growing once deprovisioned).
func (s *Service) RefreshAll(ctx context.Context) error {
	hs, err := s.Store.ListHosts(ctx, store.HostFilter{IncludeDeleted: true})
	if err != nil {
		return err
	}
	_, err = s.Refresh(ctx, hs)
	return err
}

// HostCost is one host's cost in a window.
type HostCost struct {
	HostID   string       `json:"host_id"`
	Name     string       `json:"name"`
	Owner    string       `json:"owner"`
	Provider string       `json:"provider"`
	Status   model.Status `json:"status"`
	Deleted  bool         `json:"deleted,omitempty"`
	Totals
	HourlyPrice         float64 `json:"hourly_price"`
	DiskGB              int     `json:"disk_gb"`
	DiskPricePerGBMonth float64 `json:"disk_price_gb_month"`
	BootDiskMonthly     float64 `json:"boot_disk_monthly,omitempty"`
	// MonthlyNow is what the host costs per month in its current state:
	// compute and disks while running, the disks alone while off.
	MonthlyNow     float64 `json:"monthly_now"`
	PricingVersion string  `json:"pricing_version,omitempty"`
}

// OwnerCost totals the hosts of one owner.
type OwnerCost struct {
	Owner string `json:"owner"`
	Hosts int    `json:"hosts"`
	Totals
}

// Report is the cost of hosts in [From, To).
type Report struct {
	From       time.Time   `json:"from"`
	To         time.Time   `json:"to"`
	Currency   string      `json:"currency"`
	Confidence string      `json:"confidence"`
	Hosts      []HostCost  `json:"hosts"`
	Owners     []OwnerCost `json:"owners"`
	Total      Totals      `json:"total"`
}

// ReportOptions select a report.
type ReportOptions struct {
	// Host is a name or id; empty reports every host.
	Host string
	// From starts the window (zero: from each host's creation).
	From time.Time
	// Include, when set, keeps only the hosts it accepts (a server
	// reports to each account the hosts it may see).
	Include func(model.Host) bool
}

// Report refreshes the usage of the selected hosts and totals it from
// o.From until now.
func (s *Service) Report(ctx context.Context, o ReportOptions) (Report, error) {
	now := s.now()
	var hs []model.Host
	if o.Host != "" {
		h, err := s.Store.GetHost(ctx, o.Host)
		if err != nil {
			return Report{}, err
		}
		hs = []model.Host{h}
		if o.Include != nil && !o.Include(h) {
			return Report{}, errkind.Errorf(errkind.Forbidden, "host %s belongs to %s; you may not see its cost", h.Name, h.Owner)
		}
	} else {
		all, err := s.Store.ListHosts(ctx, store.HostFilter{IncludeDeleted: true})
		if err != nil {
			return Report{}, err
		}
		for _, h := range all {
			if (h.DeletedAt == nil || o.From.IsZero() || h.DeletedAt.After(o.From)) && (o.Include == nil || o.Include(h)) {
				hs = append(hs, h)
			}
		}
	}
	rep := Report{From: o.From, To: now, Currency: "USD", Confidence: Confidence, Hosts: []HostCost{}, Owners: []OwnerCost{}}
	owners := map[string]*OwnerCost{}
	usage, err := s.refresh(ctx, hs, now)
	if err != nil {
		return Report{}, err
	}
	for _, h := range hs {
		rows := usage[h.ID]
		r := s.RatesFor(ctx, h)
		t := Window(rows, o.From, now)
		hc := HostCost{HostID: h.ID, Name: h.Name, Owner: h.Owner, Provider: h.Provider, Status: h.Status,
			Deleted: h.DeletedAt != nil, Totals: t.rounded(), HourlyPrice: r.HourlyPrice,
			DiskPricePerGBMonth: r.DiskPricePerGBMonth, BootDiskMonthly: r.BootDiskMonthly, PricingVersion: r.PricingVersion}
		if n := len(rows); n > 0 {
			last := rows[n-1]
			hc.DiskGB, hc.PricingVersion = last.DiskGB, last.PricingVersion
		}
		hc.MonthlyNow = MonthlyNow(rows, r, now)
		rep.Hosts = append(rep.Hosts, hc)
		oc := owners[h.Owner]
		if oc == nil {
			oc = &OwnerCost{Owner: h.Owner}
			owners[h.Owner] = oc
		}
		oc.Hosts++
		oc.Totals.add(t)
		rep.Total.add(t)
	}
	for _, oc := range owners {
		oc.Totals = oc.Totals.rounded()
		rep.Owners = append(rep.Owners, *oc)
	}
	sort.Slice(rep.Owners, func(i, j int) bool { return rep.Owners[i].Owner < rep.Owners[j].Owner })
	sort.SliceStable(rep.Hosts, func(i, j int) bool { return rep.Hosts[i].Total > rep.Hosts[j].Total })
	rep.Total = rep.Total.rounded()
	return rep, nil
}

// MonthlyNow is what a host whose usage up to now is rows costs per
// month in its current state: compute and disks while running, the disks
// alone while off, nothing once deprovisioned.
func MonthlyNow(rows []store.UsageRecord, r Rates, now time.Time) float64 {
	if len(rows) == 0 || !rows[len(rows)-1].PeriodEnd.Equal(now) {
		return 0
	}
	last := rows[len(rows)-1]
	monthly := float64(last.DiskGB) * r.DiskPricePerGBMonth
	if last.BootDiskCost > 0 {
		monthly += r.BootDiskMonthly
	}
	if last.State == StateRunning {
		monthly += r.HourlyPrice * catalog.HoursPerMonth
	}
	return catalog.Cents(monthly)
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}
