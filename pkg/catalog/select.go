// Package catalog is the normalized machine catalog of every configured
// cloud: cached in the state database with a TTL per kind of data
// (machine types and prices change rarely, capacity changes by the
// minute), queried across clouds, and used to pick the cheapest machine
// that meets every minimum a user asked for.
package catalog

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// Entry is one machine type in one place, as every cloud reports it.
type Entry = provider.CatalogEntry

// Query is what a user asks for. Zero values ask for nothing: a zero
// query matches every available machine.
type Query struct {
	// Providers limits the search to these clouds; empty means every
	// cloud whose catalog is given.
	Providers   []string `json:"providers,omitempty"`
	Region      string   `json:"region,omitempty"`
	Zone        string   `json:"zone,omitempty"`
	MachineType string   `json:"machine_type,omitempty"`
	GPUModel    string   `json:"gpu_model,omitempty"`
	// GPUCount is a minimum; with GPUModel and no count, one GPU.
	GPUCount  int     `json:"gpu_count,omitempty"`
	CPUs      int     `json:"cpus,omitempty"`
	MemoryGiB float64 `json:"memory_gib,omitempty"`
	// MaxPrice bounds the hourly price (0: no bound).
	MaxPrice float64 `json:"max_price,omitempty"`
	// Spot prices machines at their spot price and drops those without one.
	Spot bool `json:"spot,omitempty"`
	// IncludeUnavailable keeps machines the cloud reports out of capacity.
	IncludeUnavailable bool `json:"include_unavailable,omitempty"`
}

// NormalizeGPU lowercases a GPU model and drops a vendor prefix, so that
// "NVIDIA-L4", "nvidia l4" and "L4" all mean "l4", the catalog's spelling.
func NormalizeGPU(model string) string {
	m := strings.ToLower(strings.TrimSpace(model))
	for _, p := range []string{"nvidia-", "nvidia ", "nvidia_"} {
		m = strings.TrimPrefix(m, p)
	}
	return m
}

func (q Query) gpuModel() string { return NormalizeGPU(q.GPUModel) }

func (q Query) gpuCount() int {
	if q.GPUModel != "" && q.GPUCount == 0 {
		return 1
	}
	return q.GPUCount
}

// Price is what the entry costs per hour under q: its spot price for spot
// queries, else its on-demand price.
func (q Query) Price(e Entry) float64 {
	if q.Spot {
		return e.SpotPrice
	}
	return e.HourlyPrice
}

// memoryEpsilon absorbs float noise in GiB figures computed from MiB or
// bytes; it is far below any real difference between machine types.
const memoryEpsilon = 1e-6

// constraint is one requirement of a query, checked on its own so that an
// empty result can be explained by the requirement that ruled it out.
type constraint struct {
	flag string // how the user said it, e.g. "--ram 64"
	// fix is what to change when this requirement rules everything out.
	fix string
	ok  func(Entry) bool
	// best describes what the rows that fail come closest to, for the
	// "no machine" message, e.g. "the most memory is 32 GiB".
	best func([]Entry) string
}

// scope and minimums split a query: scope (cloud, region, zone, machine
// type) says where to look and is validated by name; minimums say what a
// machine must have.
func (q Query) scope() []constraint {
	var cs []constraint
	if len(q.Providers) > 0 {
		cs = append(cs, constraint{flag: "--cloud " + strings.Join(q.Providers, ","), ok: func(e Entry) bool { return slices.Contains(q.Providers, e.Provider) }})
	}
	if q.Region != "" {
		cs = append(cs, constraint{flag: "--region " + q.Region, ok: func(e Entry) bool { return e.Region == q.Region }})
	}
	if q.Zone != "" {
		cs = append(cs, constraint{flag: "--zone " + q.Zone, ok: func(e Entry) bool { return e.Zone == q.Zone }})
	}
	if q.MachineType != "" {
		cs = append(cs, constraint{flag: "--machine-type " + q.MachineType, ok: func(e Entry) bool { return e.InstanceType == q.MachineType }})
	}
	return cs
}

func (q Query) minimums() []constraint {
	var cs []constraint
	if m := q.gpuModel(); m != "" {
		cs = append(cs, constraint{flag: "--gpu " + m, fix: "choose another --gpu", ok: func(e Entry) bool { return e.GPUModel == m },
			best: func(es []Entry) string {
				if ms := distinct(es, gpuOf); len(ms) > 0 {
					return "GPU models there: " + strings.Join(ms, ", ")
				}
				return "no GPUs there"
			}})
	}
	if n := q.gpuCount(); n > 0 {
		cs = append(cs, constraint{flag: fmt.Sprintf("--gpus %d", n), fix: "lower --gpus", ok: func(e Entry) bool { return e.GPUCount >= n },
			best: func(es []Entry) string {
				return fmt.Sprintf("the most GPUs is %d", maxOf(es, func(e Entry) float64 { return float64(e.GPUCount) }))
			}})
	}
	if q.CPUs > 0 {
		cs = append(cs, constraint{flag: fmt.Sprintf("--cpu %d", q.CPUs), fix: "lower --cpu", ok: func(e Entry) bool { return e.VCPUs >= q.CPUs },
			best: func(es []Entry) string {
				return fmt.Sprintf("the most vCPUs is %d", maxOf(es, func(e Entry) float64 { return float64(e.VCPUs) }))
			}})
	}
	if q.MemoryGiB > 0 {
		cs = append(cs, constraint{flag: "--ram " + trimFloat(q.MemoryGiB), fix: "lower --ram", ok: func(e Entry) bool { return e.MemoryGiB+memoryEpsilon >= q.MemoryGiB },
			best: func(es []Entry) string {
				return "the most memory is " + trimFloat(maxFloat(es, func(e Entry) float64 { return e.MemoryGiB })) + " GiB"
			}})
	}
	if q.Spot {
		cs = append(cs, constraint{flag: "--spot", fix: "drop --spot", ok: func(e Entry) bool { return e.SpotPrice > 0 },
			best: func([]Entry) string { return "none has a spot price" }})
	}
	if q.MaxPrice > 0 {
		cs = append(cs, constraint{flag: fmt.Sprintf("--max-price %s", trimFloat(q.MaxPrice)), fix: "raise --max-price", ok: func(e Entry) bool { return q.Price(e) <= q.MaxPrice },
			best: func(es []Entry) string {
				return fmt.Sprintf("the cheapest costs $%s/hour", trimFloat(minFloat(es, q.Price)))
			}})
	}
	if !q.IncludeUnavailable {
		cs = append(cs, constraint{flag: "capacity", fix: "try another region or cloud, or later", ok: func(e Entry) bool { return e.Available },
			best: func([]Entry) string { return "every one of them is out of capacity now" }})
	}
	return cs
}

// Matches returns the entries that meet every requirement of q, cheapest
// first. Ties are broken by provider, region, zone and type, so the order
// (and so the choice) is deterministic.
func Matches(entries []Entry, q Query) []Entry {
	cs := append(q.scope(), q.minimums()...)
	var out []Entry
	for _, e := range entries {
		if all(cs, e) {
			out = append(out, e)
		}
	}
	SortByPrice(out, q)
	return out
}

// SortByPrice orders entries cheapest first under q.
func SortByPrice(es []Entry, q Query) {
	slices.SortStableFunc(es, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(q.Price(a), q.Price(b)), cmp.Compare(a.Provider, b.Provider),
			cmp.Compare(a.Region, b.Region), cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.InstanceType, b.InstanceType))
	})
}

func all(cs []constraint, e Entry) bool {
	for _, c := range cs {
		if !c.ok(e) {
			return false
		}
	}
	return true
}

// Select returns the cheapest entry that meets every requirement of q, and
// the other matches in order (the candidates to fall back to when the
// first has no capacity after all). With no match it returns an
// *InvalidQueryError for a name that does not exist (with the nearest
// valid names) or a *NoMatchError that names the minimum ruling
// everything out.
func Select(entries []Entry, q Query) (Entry, []Entry, error) {
	if err := Validate(entries, q); err != nil {
		return Entry{}, nil, err
	}
	m := Matches(entries, q)
	if len(m) == 0 {
		return Entry{}, nil, explain(entries, q)
	}
	return m[0], m[1:], nil
}

// InvalidQueryError is a query naming a cloud, region, zone, machine type
// or GPU model that no catalog has.
type InvalidQueryError struct {
	What    string // "region", "GPU model", ...
	Value   string
	Where   string // "sim", "any configured cloud"
	Nearest []string
	Known   int
}

func (e *InvalidQueryError) Error() string {
	msg := fmt.Sprintf("%s has no %s %q", e.Where, e.What, e.Value)
	switch {
	case len(e.Nearest) == 0:
		return msg + fmt.Sprintf("; it has no %ss at all", e.What)
	case e.Known <= len(e.Nearest):
		all := slices.Clone(e.Nearest)
		slices.Sort(all)
		return msg + fmt.Sprintf(" (%ss: %s)", e.What, strings.Join(all, ", "))
	}
	return msg + fmt.Sprintf(" (nearest: %s; see `cocalc-hosts catalog` for all %d)", strings.Join(e.Nearest, ", "), e.Known)
}

// NoMatchError says why no machine meets a query.
type NoMatchError struct {
	Where string // the scope searched, e.g. "sim in region sim-east1"
	// Blocking is the requirement that rules everything out ("--ram 512");
	// empty when the scope itself (say a machine type in a region that
	// does not offer it) lists nothing. Alone says whether it does so by
	// itself; Given are the requirements that together with it leave
	// nothing.
	Blocking string
	Alone    bool
	Given    []string
	Detail   string
	Fix      string
}

func (e *NoMatchError) Error() string {
	switch {
	case e.Blocking == "":
		return fmt.Sprintf("no machine is offered at %s; see `cocalc-hosts catalog` for what is", e.Where)
	case e.Blocking == "capacity":
		with := ""
		if len(e.Given) > 0 {
			with = " with " + strings.Join(e.Given, " ")
		}
		return fmt.Sprintf("every machine at %s%s is out of capacity now; %s", e.Where, with, e.Fix)
	case e.Alone || len(e.Given) == 0:
		return fmt.Sprintf("no machine at %s meets %s (%s); %s", e.Where, e.Blocking, e.Detail, e.Fix)
	}
	return fmt.Sprintf("no machine at %s with %s also meets %s (%s); %s, or relax %s",
		e.Where, strings.Join(e.Given, " "), e.Blocking, e.Detail, e.Fix, strings.Join(flagNames(e.Given), ", "))
}

func flagNames(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.Fields(s)[0]
	}
	return out
}

// Validate checks the names in q (clouds, region, zone, machine type,
// GPU model) against the catalogs, suggesting the nearest valid names.
func Validate(entries []Entry, q Query) error {
	where := "any configured cloud"
	if len(q.Providers) == 1 {
		where = q.Providers[0]
	}
	in := entries
	if len(q.Providers) > 0 {
		in = filter(entries, func(e Entry) bool { return slices.Contains(q.Providers, e.Provider) })
	}
	check := func(what, value string, of func(Entry) string) error {
		if value == "" {
			return nil
		}
		known := distinct(in, of)
		if slices.Contains(known, value) {
			return nil
		}
		return &InvalidQueryError{What: what, Value: value, Where: where, Nearest: Nearest(value, known, 3), Known: len(known)}
	}
	if err := check("region", q.Region, func(e Entry) string { return e.Region }); err != nil {
		return err
	}
	if q.Region != "" {
		in = filter(in, func(e Entry) bool { return e.Region == q.Region })
		where += " in region " + q.Region
	}
	if err := check("zone", q.Zone, func(e Entry) string { return e.Zone }); err != nil {
		return err
	}
	if err := check("machine type", q.MachineType, func(e Entry) string { return e.InstanceType }); err != nil {
		return err
	}
	return check("GPU model", q.gpuModel(), gpuOf)
}

// explain finds the requirement that leaves no machine. Minimums are
// applied in the order users think of them (GPU, count, CPU, RAM, price,
// capacity); the first that empties the set is blamed, and the message
// says whether it rules everything out by itself or only with the ones
// before it.
func explain(entries []Entry, q Query) error {
	where := describeScope(q)
	in := filter(entries, func(e Entry) bool { return all(q.scope(), e) })
	if len(in) == 0 {
		return &NoMatchError{Where: where}
	}
	var given []string
	cur := in
	for _, c := range q.minimums() {
		next := filter(cur, c.ok)
		if len(next) > 0 {
			cur = next
			if c.flag != "capacity" {
				given = append(given, c.flag)
			}
			continue
		}
		alone := len(filter(in, c.ok)) == 0
		detail := ""
		if c.best != nil {
			pool := cur
			if alone {
				pool = in
			}
			detail = c.best(pool)
		}
		if alone {
			given = nil
		}
		return &NoMatchError{Where: where, Blocking: c.flag, Alone: alone, Given: given, Detail: detail, Fix: c.fix}
	}
	// Unreachable when called after Matches found nothing: some
	// requirement must have failed.
	return &NoMatchError{Where: where}
}

func describeScope(q Query) string {
	var parts []string
	switch len(q.Providers) {
	case 0:
		parts = append(parts, "any configured cloud")
	default:
		parts = append(parts, strings.Join(q.Providers, "/"))
	}
	if q.Region != "" {
		parts = append(parts, "in region "+q.Region)
	}
	if q.Zone != "" {
		parts = append(parts, "in zone "+q.Zone)
	}
	if q.MachineType != "" {
		parts = append(parts, "of type "+q.MachineType)
	}
	return strings.Join(parts, " ")
}

func filter(es []Entry, keep func(Entry) bool) []Entry {
	var out []Entry
	for _, e := range es {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func gpuOf(e Entry) string { return e.GPUModel }

// distinct returns the sorted distinct non-empty values of of(e).
func distinct(es []Entry, of func(Entry) string) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range es {
		if v := of(e); v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

func maxOf(es []Entry, f func(Entry) float64) int { return int(maxFloat(es, f)) }

func maxFloat(es []Entry, f func(Entry) float64) float64 {
	m := 0.0
	for _, e := range es {
		m = math.Max(m, f(e))
	}
	return m
}

func minFloat(es []Entry, f func(Entry) float64) float64 {
	m := math.Inf(1)
	for _, e := range es {
		m = math.Min(m, f(e))
	}
	if math.IsInf(m, 1) {
		return 0
	}
	return m
}

func trimFloat(f float64) string {
	s := fmt.Sprintf("%.4f", f)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
