package nebius

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	billing "github.com/nebius/gosdk/proto/nebius/billing/v1alpha1"
	capacity "github.com/nebius/gosdk/proto/nebius/capacity/v1"
	common "github.com/nebius/gosdk/proto/nebius/common/v1"
	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// PricingSourceCalculator names prices from the billing calculator.
const PricingSourceCalculator = "nebius billing/v1alpha1 CalculatorService.Estimate"

// hoursPerMonth turns the calculator's hourly disk cost into a monthly
// one; it is pkg/catalog.HoursPerMonth, which providers cannot import
// (they sit below pkg/catalog, which imports pkg/store).
const hoursPerMonth = 730

// machine is one preset of one platform: what Nebius calls a machine
// type. We write it PLATFORM/PRESET, e.g. gpu-h100-sxm/1gpu-16vcpu-200gb.
type machine struct {
	platform *compute.Platform
	preset   *compute.Preset
}

func (m machine) name() string {
	return m.platform.GetMetadata().GetName() + "/" + m.preset.GetName()
}
func (m machine) gpus() int { return int(m.preset.GetResources().GetGpuCount()) }

// gpuModelRE takes the GPU model out of a platform name: gpu-h100-sxm →
// h100, gpu-l40s-a → l40s. Nebius names every GPU platform this way.
var gpuModelRE = lazyre.New(`^gpu-([a-z0-9]+)(?:-|$)`)

func gpuModel(platform string) string {
	if m := gpuModelRE().FindStringSubmatch(platform); m != nil {
		return m[1]
	}
	return ""
}

// gpuMemoryGiB is the memory of one GPU. Nebius reports it per platform,
// in the vendor's "GB" (80 for an H100), which is what users mean by GPU
// memory, so it is reported as is.
func gpuMemoryGiB(pl *compute.Platform, ps *compute.Preset) float64 {
	if v := pl.GetSpec().GetGpuMemoryGigabytes(); v > 0 {
		return float64(v)
	}
	if v := pl.GetSpec().GetGpuMemoryGibibytes(); v > 0 { //nolint:staticcheck // older API versions set only this
		return float64(v)
	}
	if n := ps.GetResources().GetGpuCount(); n > 0 && ps.GetResources().GetGpuMemoryGibibytes() > 0 { //nolint:staticcheck // as above
		return float64(ps.GetResources().GetGpuMemoryGibibytes()) / float64(n) //nolint:staticcheck // as above
	}
	return 0
}

func (p *Provider) listPlatforms(ctx context.Context, op string) ([]*compute.Platform, error) {
	var out []*compute.Platform
	token := ""
	for {
		var resp *compute.ListPlatformsResponse
		if err := p.do(ctx, op, func(ctx context.Context) error {
			var err error
			resp, err = p.platforms.List(ctx, &compute.ListPlatformsRequest{ParentId: p.opts.projectID, PageSize: 100, PageToken: token})
			return err
		}); err != nil {
			return nil, err
		}
		out = append(out, resp.GetItems()...)
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// machines validates the platform payload and flattens it into presets.
// Anything malformed rejects the whole payload: a partial catalog would
// make "cheapest" choices silently wrong.
func machines(plats []*compute.Platform) ([]machine, error) {
	if len(plats) == 0 {
		return nil, fmt.Errorf("the platform list is empty")
	}
	var out []machine
	seen := map[string]bool{}
	for i, pl := range plats {
		pn := pl.GetMetadata().GetName()
		if pn == "" {
			return nil, fmt.Errorf("platform %d has no name", i)
		}
		if len(pl.GetSpec().GetPresets()) == 0 {
			return nil, fmt.Errorf("platform %s has no presets", pn)
		}
		for _, ps := range pl.GetSpec().GetPresets() {
			r := ps.GetResources()
			m := machine{platform: pl, preset: ps}
			switch {
			case ps.GetName() == "":
				return nil, fmt.Errorf("platform %s has a preset without a name", pn)
			case seen[m.name()]:
				return nil, fmt.Errorf("preset %s is listed twice", m.name())
			case r == nil:
				return nil, fmt.Errorf("preset %s has no resources", m.name())
			case r.GetVcpuCount() <= 0 || r.GetMemoryGibibytes() <= 0:
				return nil, fmt.Errorf("preset %s has %d vCPUs and %d GiB of memory", m.name(), r.GetVcpuCount(), r.GetMemoryGibibytes())
			case r.GetGpuCount() < 0:
				return nil, fmt.Errorf("preset %s has %d GPUs", m.name(), r.GetGpuCount())
			case r.GetGpuCount() > 0 && gpuModel(pn) == "":
				return nil, fmt.Errorf("preset %s has %d GPUs but platform %s names no GPU model", m.name(), r.GetGpuCount(), pn)
			}
			seen[m.name()] = true
			out = append(out, m)
		}
	}
	return out, nil
}

// Catalog lists every preset of every platform of the project, with
// prices from the billing calculator (or the price table, if configured).
func (p *Provider) Catalog(ctx context.Context) ([]provider.CatalogEntry, error) {
	const op = "catalog"
	plats, err := p.listPlatforms(ctx, op)
	if err != nil {
		return nil, err
	}
	ms, err := machines(plats)
	if err != nil {
		return nil, malformed("platforms of project %s: %v", p.opts.projectID, err)
	}
	rows := make([]provider.CatalogEntry, len(ms))
	for i, m := range ms {
		r := m.preset.GetResources()
		rows[i] = provider.CatalogEntry{
			Provider: Name, Region: p.opts.region, InstanceType: m.name(),
			VCPUs: int(r.GetVcpuCount()), MemoryGiB: float64(r.GetMemoryGibibytes()),
			GPUCount: int(r.GetGpuCount()), Available: true,
		}
		if m.gpus() > 0 {
			rows[i].GPUModel = gpuModel(m.platform.GetMetadata().GetName())
			rows[i].GPUMemoryGiB = gpuMemoryGiB(m.platform, m.preset)
		}
	}
	avail, err := p.availability(ctx, op)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		if a, ok := avail[rows[i].InstanceType]; ok {
			rows[i].Available = a
		}
	}
	if p.opts.priceTable != "" {
		return p.pricesFromTable(rows)
	}
	return p.pricesFromCalculator(ctx, op, ms, rows)
}

// availability asks the capacity advisor which presets the region can
// start on demand now. Presets it says nothing fresh about count as
// available (we cannot know better); an account without access to the
// advisor gets a catalog without availability rather than none.
func (p *Provider) availability(ctx context.Context, op string) (map[string]bool, error) {
	out := map[string]bool{}
	token := ""
	for {
		var resp *capacity.ListResourceAdviceResponse
		err := p.do(ctx, op, func(ctx context.Context) error {
			var err error
			resp, err = p.advice.List(ctx, &capacity.ListResourceAdviceRequest{ParentId: p.opts.projectID, PageSize: 100, PageToken: token})
			return err
		})
		switch errkind.Of(err) {
		case errkind.Auth, errkind.Refused, errkind.NotFound:
			return map[string]bool{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("capacity advice: %w", err)
		}
		for _, a := range resp.GetItems() {
			ci := a.GetSpec().GetComputeInstance()
			od := a.GetStatus().GetOnDemand()
			if ci == nil || od == nil || od.GetDataState() != capacity.ResourceAdviceStatus_Availability_DATA_STATE_FRESH {
				continue
			}
			if r := a.GetSpec().GetRegion(); r != "" && r != p.opts.region {
				continue
			}
			out[ci.GetPlatform()+"/"+ci.GetPreset().GetName()] = od.GetAvailable() > 0
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// pricesFromCalculator asks the billing calculator for each preset's
// hourly price, for its preemptible price where the platform allows
// preemptible instances, and once for the data disk every host gets.
// Requests run opts.concurrency at a time.
func (p *Provider) pricesFromCalculator(ctx context.Context, op string, ms []machine, rows []provider.CatalogEntry) ([]provider.CatalogEntry, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		i    int
		spot bool
		disk string // "data" or "boot": a disk, not a machine
	}
	var diskGBMonth, bootGBMonth float64
	jobs := []job{{disk: "data"}}
	if bootDiskType != p.opts.diskType {
		jobs = append(jobs, job{disk: "boot"})
	}
	for i, m := range ms {
		jobs = append(jobs, job{i: i})
		if m.platform.GetStatus().GetAllowedForPreemptibles() {
			jobs = append(jobs, job{i: i, spot: true})
		}
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, p.opts.concurrency)
	)
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var price float64
			var err error
			switch j.disk {
			case "data":
				price, err = p.estimateDisk(ctx, op, p.opts.diskType, p.opts.dataDiskGB, "data")
			case "boot":
				price, err = p.estimateDisk(ctx, op, bootDiskType, p.opts.bootDiskGB, "boot")
			default:
				price, err = p.estimate(ctx, op, ms[j.i], j.spot)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			switch {
			case j.disk == "data":
				diskGBMonth = price
			case j.disk == "boot":
				bootGBMonth = price
			case j.spot:
				rows[j.i].SpotPrice = price
			default:
				rows[j.i].HourlyPrice = price
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if bootDiskType == p.opts.diskType {
		bootGBMonth = diskGBMonth
	}
	bootMonthly := math.Round(bootGBMonth*float64(p.opts.bootDiskGB)*1e6) / 1e6
	h := sha256.New()
	fmt.Fprintf(h, "disk %s %.9f boot %.9f\n", p.opts.diskType, diskGBMonth, bootMonthly)
	for i := range rows {
		rows[i].PricingSource = PricingSourceCalculator
		rows[i].DiskPricePerGBMonth = diskGBMonth
		rows[i].BootDiskMonthly = bootMonthly
		fmt.Fprintf(h, "%s %s %.9f %.9f\n", rows[i].Region, rows[i].InstanceType, rows[i].HourlyPrice, rows[i].SpotPrice)
	}
	// The calculator has no price-list version; a digest of the prices
	// changes exactly when a price does.
	version := "calculator-" + hex.EncodeToString(h.Sum(nil))[:12]
	for i := range rows {
		rows[i].PricingVersion = version
	}
	return rows, nil
}

func (p *Provider) estimate(ctx context.Context, op string, m machine, spot bool) (float64, error) {
	// The estimate is for the instance as Create would make it (the API
	// requires a network interface; a public address may cost extra).
	// Disks are priced separately by Nebius and are not part of it.
	spec := &compute.InstanceSpec{
		Resources:         &compute.ResourcesSpec{Platform: m.platform.GetMetadata().GetName(), Size: &compute.ResourcesSpec_Preset{Preset: m.preset.GetName()}},
		NetworkInterfaces: []*compute.NetworkInterfaceSpec{p.networkInterface()},
	}
	if spot {
		spec.Preemptible = &compute.PreemptibleSpec{OnPreemption: compute.PreemptibleSpec_STOP, Priority: 1}
		spec.RecoveryPolicy = compute.InstanceRecoveryPolicy_FAIL
	}
	req := &billing.EstimateRequest{ResourceSpec: &billing.ResourceSpec{ResourceSpec: &billing.ResourceSpec_ComputeInstanceSpec{
		ComputeInstanceSpec: &compute.CreateInstanceRequest{
			Metadata: &common.ResourceMetadata{ParentId: p.opts.projectID},
			Spec:     spec,
		},
	}}}
	what := m.name()
	if spot {
		what += " (preemptible)"
	}
	return p.hourlyCost(ctx, op, req, what)
}

// hourlyCost asks the calculator for req's positive hourly total; any
// other answer is malformed.
func (p *Provider) hourlyCost(ctx context.Context, op string, req *billing.EstimateRequest, what string) (float64, error) {
	var resp *billing.EstimateResponse
	if err := p.do(ctx, op, func(ctx context.Context) error {
		var err error
		resp, err = p.calculator.Estimate(ctx, req)
		return err
	}); err != nil {
		return 0, fmt.Errorf("price of %s: %w", what, err)
	}
	total := resp.GetHourlyCost().GetGeneral().GetTotal()
	if total == nil {
		return 0, malformed("billing calculator: no hourly cost for %s", what)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(total.GetCost()), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, malformed("billing calculator: hourly cost %q for %s is not a positive number", total.GetCost(), what)
	}
	return v, nil
}

// estimateDisk prices a disk Create makes (role "data": option disk_type,
// the default data_disk_gb size; "boot": the boot disk) and returns USD
// per GB-month: hourly cost / size × hoursPerMonth. Nebius sizes disks in
// GiB; a host's disk size in GB is passed as GiB, so the price is per
// GiB-month used as per GB.
func (p *Provider) estimateDisk(ctx context.Context, op string, typ compute.DiskSpec_DiskType, size int, role string) (float64, error) {
	req := &billing.EstimateRequest{ResourceSpec: &billing.ResourceSpec{ResourceSpec: &billing.ResourceSpec_ComputeDiskSpec{
		ComputeDiskSpec: &compute.CreateDiskRequest{
			Metadata: &common.ResourceMetadata{ParentId: p.opts.projectID},
			Spec:     &compute.DiskSpec{Size: &compute.DiskSpec_SizeGibibytes{SizeGibibytes: int64(size)}, Type: typ},
		},
	}}}
	what := fmt.Sprintf("a %d GiB %s %s disk", size, diskTypeName(typ), role)
	hourly, err := p.hourlyCost(ctx, op, req, what)
	if err != nil {
		return 0, err
	}
	return math.Round(hourly/float64(size)*hoursPerMonth*1e6) / 1e6, nil
}

// diskTypeName is the option value (network_ssd) of a disk type.
func diskTypeName(t compute.DiskSpec_DiskType) string {
	for name, v := range diskTypes {
		if v == t {
			return name
		}
	}
	return t.String()
}

// malformed is a payload we refuse; the catalog cache keeps what it had.
func malformed(format string, args ...any) error {
	return provider.Errorf(errkind.Invalid, Name, "catalog", "malformed response: "+format, args...)
}

// ---- price table

// PriceTable is the file option price_table points to: prices per
// preset, versioned by the operator, for accounts where the billing
// calculator is unavailable or prices are negotiated.
//
//	{"version": "2026-03-01", "currency": "USD", "disk_gb_month": 0.071,
//	 "disk_gb_month_by_region": {"us-central1": 0.075}, "prices": [
//	  {"platform": "gpu-h100-sxm", "preset": "1gpu-16vcpu-200gb", "hourly": 2.95, "preemptible": 1.25},
//	  {"region": "eu-north1", "platform": "cpu-d3", "preset": "4vcpu-16gb", "hourly": 0.1}]}
//
// A row without region applies to every region. Presets the table does
// not price are left out of the catalog.
//
// disk_gb_month (optional) is the USD price per GB-month of the data
// disk the provider creates (its disk_type option); an entry for the
// provider's region in disk_gb_month_by_region wins over it. Without
// either, rows carry no disk price and the default applies.
type PriceTable struct {
	Version             string             `json:"version"`
	Currency            string             `json:"currency"`
	DiskGBMonth         float64            `json:"disk_gb_month,omitempty"`
	DiskGBMonthByRegion map[string]float64 `json:"disk_gb_month_by_region,omitempty"`
	Prices              []PriceEntry       `json:"prices"`
}

// diskPrice is the table's data-disk price for region, or 0.
func (t PriceTable) diskPrice(region string) float64 {
	if v, ok := t.DiskGBMonthByRegion[region]; ok {
		return v
	}
	return t.DiskGBMonth
}

// PriceEntry is one row of a PriceTable.
type PriceEntry struct {
	Region      string  `json:"region,omitempty"`
	Platform    string  `json:"platform"`
	Preset      string  `json:"preset"`
	Hourly      float64 `json:"hourly"`
	Preemptible float64 `json:"preemptible,omitempty"`
}

func loadPriceTable(path string) (PriceTable, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return PriceTable{}, fmt.Errorf("price table: %w", err)
	}
	var t PriceTable
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return PriceTable{}, fmt.Errorf("price table %s: %v", path, err)
	}
	switch {
	case t.Version == "":
		return PriceTable{}, fmt.Errorf("price table %s has no version; add \"version\" (e.g. the date the prices were taken)", path)
	case t.Currency != "" && t.Currency != "USD":
		return PriceTable{}, fmt.Errorf("price table %s is in %s; prices must be in USD", path, t.Currency)
	case len(t.Prices) == 0:
		return PriceTable{}, fmt.Errorf("price table %s has no prices", path)
	}
	if !validDiskPrice(t.DiskGBMonth) {
		return PriceTable{}, fmt.Errorf("price table %s: disk_gb_month %v must be a non-negative number of USD per GB-month", path, t.DiskGBMonth)
	}
	for region, v := range t.DiskGBMonthByRegion {
		if region == "" || !validDiskPrice(v) {
			return PriceTable{}, fmt.Errorf("price table %s: disk_gb_month_by_region[%q] = %v; want a region and a non-negative USD per GB-month", path, region, v)
		}
	}
	for i, e := range t.Prices {
		if e.Platform == "" || e.Preset == "" || !(e.Hourly > 0) || e.Preemptible < 0 || math.IsInf(e.Hourly, 0) {
			return PriceTable{}, fmt.Errorf("price table %s: row %d needs platform, preset, a positive hourly price and a non-negative preemptible price", path, i)
		}
	}
	return t, nil
}

func validDiskPrice(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }

func (p *Provider) pricesFromTable(rows []provider.CatalogEntry) ([]provider.CatalogEntry, error) {
	t, err := loadPriceTable(p.opts.priceTable)
	if err != nil {
		return nil, provider.Errorf(errkind.Invalid, Name, "catalog", "%v", err)
	}
	price := map[string]PriceEntry{}
	for _, e := range t.Prices {
		key := e.Platform + "/" + e.Preset
		if e.Region == p.opts.region {
			price[key] = e // a region's own row wins over a general one
		} else if _, ok := price[key]; !ok && e.Region == "" {
			price[key] = e
		}
	}
	var out []provider.CatalogEntry
	for _, r := range rows {
		e, ok := price[r.InstanceType]
		if !ok {
			continue
		}
		r.HourlyPrice, r.SpotPrice = e.Hourly, e.Preemptible
		r.DiskPricePerGBMonth = t.diskPrice(p.opts.region)
		// The table's disk price is taken for the boot disk too.
		r.BootDiskMonthly = math.Round(r.DiskPricePerGBMonth*float64(p.opts.bootDiskGB)*1e6) / 1e6
		r.PricingSource = "price table " + p.opts.priceTable
		r.PricingVersion = t.Version
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, provider.Errorf(errkind.Invalid, Name, "catalog",
			"price table %s prices none of the %d presets of project %s (region %s)", p.opts.priceTable, len(rows), p.opts.projectID, p.opts.region)
	}
	return out, nil
}

// ---- choosing a machine for Create

// resolveMachine picks the platform and preset for spec: the machine type
// it names (PLATFORM/PRESET), or for a GPU request the smallest preset
// with enough GPUs of that model, or the smallest preset of the default
// platform.
func (p *Provider) resolveMachine(ctx context.Context, op string, spec provider.CreateSpec) (machine, error) {
	invalid := func(format string, args ...any) (machine, error) {
		return machine{}, provider.Errorf(errkind.Invalid, Name, op, format, args...)
	}
	if spec.Region != "" && spec.Region != p.opts.region {
		return invalid("region %q: this nebius provider manages project %s in region %s", spec.Region, p.opts.projectID, p.opts.region)
	}
	if spec.Zone != "" {
		return invalid("zone %q: Nebius has no zones; leave the zone empty", spec.Zone)
	}
	if spec.GPUCount < 0 {
		return invalid("negative GPU count %d", spec.GPUCount)
	}
	plats, err := p.listPlatforms(ctx, op)
	if err != nil {
		return machine{}, err
	}
	ms, err := machines(plats)
	if err != nil {
		return machine{}, malformed("platforms of project %s: %v", p.opts.projectID, err)
	}
	wantModel := strings.ToLower(spec.GPUModel)
	var m machine
	switch {
	case spec.MachineType != "":
		pl, ps, ok := strings.Cut(spec.MachineType, "/")
		if !ok || pl == "" || ps == "" {
			return invalid("machine type %q: want PLATFORM/PRESET, e.g. gpu-h100-sxm/1gpu-16vcpu-200gb (see `cocalc-hosts catalog --cloud nebius`)", spec.MachineType)
		}
		found := false
		var presets []string
		for _, c := range ms {
			if c.platform.GetMetadata().GetName() == pl {
				presets = append(presets, c.preset.GetName())
				if c.preset.GetName() == ps {
					m, found = c, true
				}
			}
		}
		if !found {
			if len(presets) == 0 {
				return invalid("machine type %q: project %s has no platform %s (platforms: %s)", spec.MachineType, p.opts.projectID, pl, strings.Join(platformNames(ms), ", "))
			}
			return invalid("machine type %q: platform %s has no preset %s (presets: %s)", spec.MachineType, pl, ps, strings.Join(presets, ", "))
		}
		if wantModel != "" && gpuModel(pl) != wantModel {
			return invalid("machine type %s has no %s GPU", m.name(), wantModel)
		}
		if spec.GPUCount > m.gpus() {
			return invalid("machine type %s has %d GPUs, not %d", m.name(), m.gpus(), spec.GPUCount)
		}
	case wantModel != "":
		need := max(spec.GPUCount, 1)
		var cands []machine
		models := map[string]bool{}
		for _, c := range ms {
			gm := gpuModel(c.platform.GetMetadata().GetName())
			if gm != "" {
				models[gm] = true
			}
			if gm == wantModel && c.gpus() >= need && (!spec.Spot || c.platform.GetStatus().GetAllowedForPreemptibles()) {
				cands = append(cands, c)
			}
		}
		if len(cands) == 0 {
			return invalid("no preset with %d %s GPU(s)%s in project %s (GPU models: %s)", need, wantModel, spotNote(spec.Spot), p.opts.projectID, strings.Join(sortedKeys(models), ", "))
		}
		m = smallest(cands)
	case spec.GPUCount > 0:
		return invalid("%d GPUs asked for without a GPU model; name the model (e.g. h100)", spec.GPUCount)
	default:
		var cands []machine
		for _, c := range ms {
			if c.platform.GetMetadata().GetName() == p.opts.platform {
				cands = append(cands, c)
			}
		}
		if len(cands) == 0 {
			return invalid("default platform %s (option platform) is not offered in project %s (platforms: %s)", p.opts.platform, p.opts.projectID, strings.Join(platformNames(ms), ", "))
		}
		m = smallest(cands)
	}
	if spec.Spot && !m.platform.GetStatus().GetAllowedForPreemptibles() {
		return invalid("platform %s does not allow preemptible (spot) instances", m.platform.GetMetadata().GetName())
	}
	return m, nil
}

// smallest orders by GPUs, then vCPUs, then memory.
func smallest(ms []machine) machine {
	sort.SliceStable(ms, func(i, j int) bool {
		a, b := ms[i].preset.GetResources(), ms[j].preset.GetResources()
		if a.GetGpuCount() != b.GetGpuCount() {
			return a.GetGpuCount() < b.GetGpuCount()
		}
		if a.GetVcpuCount() != b.GetVcpuCount() {
			return a.GetVcpuCount() < b.GetVcpuCount()
		}
		return a.GetMemoryGibibytes() < b.GetMemoryGibibytes()
	})
	return ms[0]
}

func platformNames(ms []machine) []string {
	set := map[string]bool{}
	for _, m := range ms {
		set[m.platform.GetMetadata().GetName()] = true
	}
	return sortedKeys(set)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func spotNote(spot bool) string {
	if spot {
		return " that allows preemptible instances"
	}
	return ""
}
