// Package sim is a simulated cloud. Its instances are records in the
// control plane's own store (Config.State), so every process sharing one
// database sees the same cloud, and creating a "VM" costs a row insert.
//
// Faults are injected on request (see optionKeys): transient errors, rate
// limits, hanging calls, capacity errors, and the nastiest one a real cloud
// produces — a Create that returns an error after it made the VM.
//
// By default the sim never makes a second VM for one name: Create is a
// PutIfAbsent on the instance name, so tests can assert "exactly one VM
// per host" by reading the records (Records) and their creation counters.
// With duplicate_names it behaves like Lambda and Hyperstack instead:
// every Create makes a new VM with its own id, records are keyed by that
// id, and only the caller's own idempotency (look up by label, keep the id
// of the first reply) prevents duplicates.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// Name is the sim provider's registered name; it is also the namespace of
// its records in the StateStore.
const Name = "sim"

// diskPrefix marks records of data disks kept after their VM was deleted.
// Instance names cannot contain "/", so the two kinds of keys never clash.
const diskPrefix = "disk/"

// defaultDiskGB is the data disk size when the spec gives none.
const defaultDiskGB = 10

var capabilities = provider.Capabilities{
	Stop:           provider.StopReal,
	DiskResize:     true,
	GPU:            true,
	Zones:          true,
	Spot:           true,
	PersistentDisk: true,
	Simulated:      true,
}

func init() {
	provider.Register(provider.Registration{
		Name:         Name,
		Description:  "simulated cloud kept in the state database, with optional fault injection (for tests and demos)",
		Capabilities: capabilities,
		New:          func(cfg provider.Config) (provider.Provider, error) { return New(cfg) },
	})
}

var (
	_ provider.Provider    = (*Provider)(nil)
	_ provider.DiskResizer = (*Provider)(nil)
)

// Provider is the simulated cloud as one process sees it.
type Provider struct {
	state      provider.StateStore
	deployment string
	opts       options

	mu  sync.Mutex // guards rng: the fault draws
	rng *mrand.Rand

	// now is the clock; tests of state transitions replace it.
	now func() time.Time
	// onCall is told of each simulated API call (provider.Config.OnCall).
	onCall func(op string, took time.Duration, err error)
}

// New makes a sim provider from cfg. It needs cfg.State, where the
// simulated instances live, and cfg.Deployment, which labels them.
func New(cfg provider.Config) (*Provider, error) {
	if cfg.State == nil {
		return nil, fmt.Errorf("the sim provider keeps its instances in the state database, but Config.State is nil")
	}
	if cfg.Deployment == "" {
		return nil, fmt.Errorf("Config.Deployment is empty: the sim provider labels instances with it so List returns only this deployment's")
	}
	o, err := parseOptions(cfg.Options)
	if err != nil {
		return nil, err
	}
	seed := o.seed
	if !o.hasSeed {
		seed = mrand.Uint64()
	}
	return &Provider{
		state: cfg.State, deployment: cfg.Deployment, opts: o, onCall: cfg.OnCall,
		rng: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now: time.Now,
	}, nil
}

func (p *Provider) Name() string                        { return Name }
func (p *Provider) Capabilities() provider.Capabilities { return capabilities }

// Record is a simulated VM as stored under its instance name.
type Record struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	HostID      string            `json:"host_id"`
	Labels      map[string]string `json:"labels,omitempty"`
	Region      string            `json:"region"`
	Zone        string            `json:"zone"`
	MachineType string            `json:"machine_type"`
	DiskGB      int               `json:"disk_gb"`
	DataDisk    string            `json:"data_disk"`
	GPUModel    string            `json:"gpu_model,omitempty"`
	GPUCount    int               `json:"gpu_count,omitempty"`
	Spot        bool              `json:"spot,omitempty"`
	Image       string            `json:"image,omitempty"`
	PrivateIP   string            `json:"private_ip"`
	// State is the state as last written: pending, running or stopped.
	// A pending record is running from ReadyAt on; the transition is
	// computed on read so no process has to be around to perform it.
	State        provider.State `json:"state"`
	StateChanged time.Time      `json:"state_changed"`
	ReadyAt      time.Time      `json:"ready_at,omitzero"`
	CreatedAt    time.Time      `json:"created_at"`
	// Creations counts how many times a VM was really made under this
	// name since the record appeared. Anything but 1 is a sim bug, and
	// fault tests assert it.
	Creations int `json:"creations"`
}

// StateAt is the record's state at now.
func (r Record) StateAt(now time.Time) provider.State {
	if r.State == provider.StatePending && !now.Before(r.ReadyAt) {
		return provider.StateRunning
	}
	return r.State
}

// Disk is a data disk kept after its VM was deleted with keepDisk. A later
// Create with the same instance name attaches it again.
type Disk struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"` // the instance name it belongs to
	Region     string    `json:"region"`
	Zone       string    `json:"zone"`
	SizeGB     int       `json:"size_gb"`
	DetachedAt time.Time `json:"detached_at"`
}

// Records returns every simulated VM in state, of every deployment, keyed
// by instance name (by instance id in duplicate_names mode). Tests use it
// to check that no host got two VMs.
func Records(ctx context.Context, state provider.StateStore) (map[string]Record, error) {
	all, err := state.List(ctx, Name)
	if err != nil {
		return nil, fmt.Errorf("list sim records: %w", err)
	}
	out := make(map[string]Record, len(all))
	for k, v := range all {
		if strings.HasPrefix(k, diskPrefix) {
			continue
		}
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("sim record %q is corrupt: %w", k, err)
		}
		out[k] = r
	}
	return out, nil
}

// ---- the API

func (p *Provider) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	const op = "create"
	if err := p.call(ctx, op); err != nil {
		return provider.Instance{}, err
	}
	if err := validName(op, spec.Name); err != nil {
		return provider.Instance{}, err
	}
	disk, kept, err := p.getDisk(ctx, op, spec.Name)
	if err != nil {
		return provider.Instance{}, err
	}
	rec, recErr := p.newRecord(spec)
	// Idempotency first: an instance that exists is returned as it is,
	// even if the spec changed or its region has since run out of capacity.
	// A cloud whose names are not unique does not look. When nothing could
	// refuse the create, the PutIfAbsent below looks instead (one call less).
	if !p.opts.duplicateNames && (kept || recErr != nil || p.opts.capacityRegions[rec.Region]) {
		if r, err := p.get(ctx, op, spec.Name); err == nil {
			return p.instance(r), nil
		} else if !errkind.Is(err, errkind.NotFound) {
			return provider.Instance{}, err
		}
	}
	if recErr != nil {
		return provider.Instance{}, recErr
	}
	if p.opts.capacityRegions[rec.Region] {
		return provider.Instance{}, provider.Errorf(errkind.Capacity, Name, op,
			"no capacity for %s in %s (simulated); try another region or later", rec.MachineType, rec.Region)
	}
	if kept {
		// A zonal disk can only be attached in its own zone.
		if (spec.Region != "" && spec.Region != disk.Region) || (spec.Zone != "" && spec.Zone != disk.Zone) {
			return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
				"the kept data disk %s of %s is in %s; create the instance there or delete the disk", disk.ID, spec.Name, disk.Zone)
		}
		rec.Region, rec.Zone, rec.DataDisk = disk.Region, disk.Zone, disk.ID
		rec.DiskGB = max(rec.DiskGB, disk.SizeGB)
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("sim create %s: %w", spec.Name, err)
	}
	key := p.key(rec)
	stored, err := p.state.PutIfAbsent(ctx, Name, key, raw)
	if err != nil {
		return provider.Instance{}, p.storeErr(op, err)
	}
	if !stored {
		// Another process created it between our get and put: theirs wins.
		r, err := p.get(ctx, op, key)
		if err != nil {
			return provider.Instance{}, err
		}
		return p.instance(r), nil
	}
	if kept {
		if err := p.state.Delete(ctx, Name, diskPrefix+spec.Name); err != nil {
			return provider.Instance{}, p.storeErr(op, err)
		}
	}
	if p.chance(p.opts.ghostRate) {
		return provider.Instance{}, provider.Errorf(errkind.Transient, Name, op,
			"simulated 500 Internal Server Error (the instance %s was created anyway)", spec.Name)
	}
	return p.instance(rec), nil
}

func (p *Provider) Start(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "start"
	return p.update(ctx, op, ref, func(r *Record, now time.Time) (bool, error) {
		if r.StateAt(now) != provider.StateStopped {
			return false, nil // pending or running: already what was asked
		}
		p.boot(r, now)
		return true, nil
	})
}

func (p *Provider) Stop(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "stop"
	return p.update(ctx, op, ref, func(r *Record, now time.Time) (bool, error) {
		if r.StateAt(now) == provider.StateStopped {
			return false, nil
		}
		r.State, r.StateChanged, r.ReadyAt = provider.StateStopped, now, time.Time{}
		return true, nil
	})
}

// ResizeDisk grows the data disk; the sim, like most clouds, can do it
// while the VM runs, and cannot shrink a disk.
func (p *Provider) ResizeDisk(ctx context.Context, ref provider.Ref, sizeGB int) (provider.Instance, error) {
	const op = "resize"
	return p.update(ctx, op, ref, func(r *Record, _ time.Time) (bool, error) {
		switch {
		case sizeGB < r.DiskGB:
			return false, provider.Errorf(errkind.Invalid, Name, op,
				"the data disk of %s is %d GB; disks can only grow, not shrink to %d GB", r.Name, r.DiskGB, sizeGB)
		case sizeGB == r.DiskGB:
			return false, nil
		}
		r.DiskGB = sizeGB
		return true, nil
	})
}

// Delete removes the instance. With keepDisk its data disk stays behind
// for a later Create of the same name. Deleting a missing instance is a
// NotFound error (callers treat it as done), except that deleting without
// keepDisk also removes a disk kept earlier, and then succeeds.
func (p *Provider) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	const op = "delete"
	if err := p.call(ctx, op); err != nil {
		return err
	}
	key, r, err := p.find(ctx, op, ref)
	name := firstNonEmpty(r.Name, refName(ref))
	if errkind.Is(err, errkind.NotFound) {
		if keepDisk {
			return err
		}
		_, kept, derr := p.getDisk(ctx, op, name)
		if derr != nil {
			return derr
		}
		if !kept {
			return err
		}
		return p.storeErr(op, p.state.Delete(ctx, Name, diskPrefix+name))
	}
	if err != nil {
		return err
	}
	if keepDisk {
		// Write the disk before removing the VM, so a failure in between
		// leaves both (a retry finishes) rather than neither.
		d := Disk{ID: r.DataDisk, Name: name, Region: r.Region, Zone: r.Zone, SizeGB: r.DiskGB, DetachedAt: p.now().UTC()}
		raw, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("sim delete %s: %w", name, err)
		}
		if err := p.state.Put(ctx, Name, diskPrefix+name, raw); err != nil {
			return p.storeErr(op, err)
		}
		return p.storeErr(op, p.state.Delete(ctx, Name, key))
	}
	if err := p.state.Delete(ctx, Name, key); err != nil {
		return p.storeErr(op, err)
	}
	return p.storeErr(op, p.state.Delete(ctx, Name, diskPrefix+name))
}

func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "status"
	if err := p.call(ctx, op); err != nil {
		return provider.Instance{}, err
	}
	_, r, err := p.find(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instance(r), nil
}

// List returns this deployment's instances, sorted by name.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	const op = "list"
	if err := p.call(ctx, op); err != nil {
		return nil, err
	}
	recs, err := Records(ctx, p.state)
	if err != nil {
		return nil, p.storeErr(op, err)
	}
	out := make([]provider.Instance, 0, len(recs))
	for _, r := range recs {
		if r.Labels[provider.LabelDeployment] == p.deployment {
			out = append(out, p.instance(r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (p *Provider) Catalog(ctx context.Context) ([]provider.CatalogEntry, error) {
	if err := p.call(ctx, "catalog"); err != nil {
		return nil, err
	}
	return p.catalog(), nil
}

// ---- helpers

// update is the read-modify-write behind Start, Stop and ResizeDisk. The
// StateStore has no compare-and-swap, so a Delete racing with it from
// another process could be undone; the queue runs one job per host at a
// time, which keeps that from happening through the control plane.
func (p *Provider) update(ctx context.Context, op string, ref provider.Ref, change func(r *Record, now time.Time) (bool, error)) (provider.Instance, error) {
	if err := p.call(ctx, op); err != nil {
		return provider.Instance{}, err
	}
	key, r, err := p.find(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	changed, err := change(&r, p.now().UTC())
	if err != nil || !changed {
		return p.instance(r), err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("sim %s %s: %w", op, r.Name, err)
	}
	if err := p.state.Put(ctx, Name, key, raw); err != nil {
		return provider.Instance{}, p.storeErr(op, err)
	}
	return p.instance(r), nil
}

// boot puts r into pending, or straight into running when boot_time is 0.
func (p *Provider) boot(r *Record, now time.Time) {
	r.StateChanged = now
	if p.opts.bootTime <= 0 {
		r.State, r.ReadyAt = provider.StateRunning, time.Time{}
		return
	}
	r.State, r.ReadyAt = provider.StatePending, now.Add(p.opts.bootTime)
}

func (p *Provider) newRecord(spec provider.CreateSpec) (Record, error) {
	const op = "create"
	invalid := func(format string, args ...any) (Record, error) {
		return Record{}, provider.Errorf(errkind.Invalid, Name, op, format, args...)
	}
	region := spec.Region
	if region == "" && spec.Zone != "" {
		region = regionOfZone(spec.Zone)
	}
	if region == "" {
		region = defaultRegion
	}
	zones, ok := regions[region]
	if !ok {
		return invalid("unknown region %q (regions: %s)", region, strings.Join(regionNames(), ", "))
	}
	mtName := spec.MachineType
	if mtName == "" {
		mtName = "sim-small"
		if spec.GPUModel != "" {
			mtName = ""
			for _, m := range machineTypes {
				if m.gpuModel == spec.GPUModel {
					mtName = m.name
					break
				}
			}
			if mtName == "" {
				return invalid("no machine type has GPU %q", spec.GPUModel)
			}
		}
	}
	mt, ok := findMachineType(mtName)
	if !ok {
		return invalid("unknown machine type %q (types: %s)", mtName, strings.Join(machineTypeNames(), ", "))
	}
	if spec.GPUModel != "" && spec.GPUModel != mt.gpuModel {
		return invalid("machine type %s has no %s GPU", mt.name, spec.GPUModel)
	}
	if spec.GPUCount > max(mt.gpuCount, 0) {
		return invalid("machine type %s has %d GPUs, not %d", mt.name, mt.gpuCount, spec.GPUCount)
	}
	zone := spec.Zone
	if zone == "" {
		for _, z := range zones {
			if mt.inZone(z) {
				zone = z
				break
			}
		}
	}
	if zone == "" {
		return invalid("machine type %s is not offered in region %s (only in %s)", mt.name, region, strings.Join(mt.zones, ", "))
	}
	if !contains(zones, zone) {
		return invalid("zone %q is not in region %s (zones: %s)", spec.Zone, region, strings.Join(zones, ", "))
	}
	if !mt.inZone(zone) {
		return invalid("machine type %s is not offered in %s (only %s)", mt.name, zone, strings.Join(mt.zones, ", "))
	}
	if spec.DiskGB < 0 {
		return invalid("negative disk size %d GB", spec.DiskGB)
	}
	disk := spec.DiskGB
	if disk == 0 {
		disk = defaultDiskGB
	}
	labels := make(map[string]string, len(spec.Labels)+2)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	hostID := firstNonEmpty(labels[provider.LabelHost], spec.HostID, provider.HostIDFromName(spec.Name))
	// Our deployment label is the provider's to set: List filters on it,
	// so an instance labelled otherwise would be lost to us.
	labels[provider.LabelDeployment] = p.deployment
	if hostID != "" {
		labels[provider.LabelHost] = hostID
	}
	now := p.now().UTC()
	id := "sim-" + randomHex(8)
	r := Record{
		ID: id, Name: spec.Name, HostID: hostID, Labels: labels, Region: region, Zone: zone,
		MachineType: mt.name, DiskGB: disk, DataDisk: "simdisk-" + randomHex(8),
		GPUModel: mt.gpuModel, GPUCount: mt.gpuCount, Spot: spec.Spot, Image: spec.Image,
		PrivateIP: ipFrom(id, false), CreatedAt: now, Creations: 1,
	}
	p.boot(&r, now)
	return r, nil
}

// instance is the provider's view of r now.
func (p *Provider) instance(r Record) provider.Instance {
	st := r.StateAt(p.now())
	inst := provider.Instance{
		ID: r.ID, Name: r.Name, HostID: r.HostID, Region: r.Region, Zone: r.Zone, State: st,
		PrivateIP: r.PrivateIP, DataDisk: r.DataDisk, Labels: r.Labels,
		Meta: map[string]string{"machine_type": r.MachineType, "disk_gb": strconv.Itoa(r.DiskGB)},
	}
	// Like an ephemeral public address, it exists only while running.
	if st == provider.StateRunning {
		inst.PublicIP = ipFrom(r.ID, true)
	}
	return inst
}

// key is where r is stored: its name, or its id when names are not unique.
func (p *Provider) key(r Record) string {
	if p.opts.duplicateNames {
		return r.ID
	}
	return r.Name
}

// find returns the record ref points at and its key. Names identify
// instances unless duplicate_names is on; then the instance id does, and
// a ref without one is looked up by name among this deployment's
// instances, which fails when the name is not unique.
func (p *Provider) find(ctx context.Context, op string, ref provider.Ref) (string, Record, error) {
	if p.opts.duplicateNames && ref.InstanceID != "" {
		if strings.HasPrefix(ref.InstanceID, diskPrefix) {
			return "", Record{}, provider.Errorf(errkind.NotFound, Name, op, "no instance with id %q", ref.InstanceID)
		}
		r, err := p.get(ctx, op, ref.InstanceID)
		return ref.InstanceID, r, err
	}
	name := refName(ref)
	if err := validName(op, name); err != nil {
		return "", Record{}, err
	}
	if !p.opts.duplicateNames {
		r, err := p.get(ctx, op, name)
		return name, r, err
	}
	recs, err := Records(ctx, p.state)
	if err != nil {
		return "", Record{}, p.storeErr(op, err)
	}
	var keys []string
	for k, r := range recs {
		if r.Name == name && r.Labels[provider.LabelDeployment] == p.deployment {
			keys = append(keys, k)
		}
	}
	switch len(keys) {
	case 0:
		return "", Record{}, provider.Errorf(errkind.NotFound, Name, op, "no instance %q", name)
	case 1:
		return keys[0], recs[keys[0]], nil
	}
	sort.Strings(keys)
	return "", Record{}, provider.Errorf(errkind.Conflict, Name, op,
		"%d instances are named %q (%s); address one by its instance id", len(keys), name, strings.Join(keys, ", "))
}

func (p *Provider) get(ctx context.Context, op, key string) (Record, error) {
	raw, err := p.state.Get(ctx, Name, key)
	if errkind.Is(err, errkind.NotFound) {
		return Record{}, provider.Errorf(errkind.NotFound, Name, op, "no instance %q", key)
	}
	if err != nil {
		return Record{}, p.storeErr(op, err)
	}
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return Record{}, provider.Errorf(errkind.Invalid, Name, op, "record of instance %q is corrupt: %v", key, err)
	}
	return r, nil
}

func (p *Provider) getDisk(ctx context.Context, op, name string) (Disk, bool, error) {
	raw, err := p.state.Get(ctx, Name, diskPrefix+name)
	if errkind.Is(err, errkind.NotFound) {
		return Disk{}, false, nil
	}
	if err != nil {
		return Disk{}, false, p.storeErr(op, err)
	}
	var d Disk
	if err := json.Unmarshal(raw, &d); err != nil {
		return Disk{}, false, provider.Errorf(errkind.Invalid, Name, op, "record of the kept disk of %q is corrupt: %v", name, err)
	}
	return d, true, nil
}

// storeErr classifies a failure of the state database as transient: to a
// caller it is the simulated cloud's API failing, and a retry may work.
func (p *Provider) storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return provider.Errorf(errkind.Transient, Name, op, "state store: %w", err)
}

// call simulates the network and server side of one API call: latency,
// then the configured faults, each drawn independently.
func (p *Provider) call(ctx context.Context, op string) (err error) {
	if p.onCall != nil {
		start := time.Now()
		defer func() { p.onCall(op, time.Since(start), err) }()
	}
	if err := sleep(ctx, p.opts.latency); err != nil {
		return provider.Errorf(errkind.Transient, Name, op, "%w", err)
	}
	if err := ctx.Err(); err != nil {
		return provider.Errorf(errkind.Transient, Name, op, "%w", err)
	}
	if p.chance(p.opts.errorRate) {
		return provider.Errorf(errkind.Transient, Name, op, "simulated 503 Service Unavailable")
	}
	if p.chance(p.opts.rateLimitRate) {
		e := provider.Errorf(errkind.RateLimited, Name, op, "simulated 429 Too Many Requests; retry after %s", p.opts.retryAfter)
		e.RetryAfter = p.opts.retryAfter
		return e
	}
	if p.chance(p.opts.timeoutRate) {
		if err := sleep(ctx, p.opts.timeout); err != nil {
			return provider.Errorf(errkind.Transient, Name, op, "simulated hang: %w", err)
		}
		return provider.Errorf(errkind.Transient, Name, op, "simulated timeout after %s", p.opts.timeout)
	}
	return nil
}

// chance draws once when 0 < rate < 1, so a seed reproduces the same
// faults as long as the configured rates and call order are the same.
func (p *Provider) chance(rate float64) bool {
	switch {
	case rate <= 0:
		return false
	case rate >= 1:
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Float64() < rate
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// nameRE is what every cloud we support accepts as an instance name; the
// sim enforces it so names that would fail on a real cloud fail here too.
// Lengths are checked apart: a counted repetition such as {0,62}
// compiles into that many copies at every command's start-up.
var nameRE = lazyre.New(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

func validName(op, name string) error {
	if len(name) > 63 || !nameRE().MatchString(name) {
		return provider.Errorf(errkind.Invalid, Name, op,
			"invalid instance name %q: use 1-63 lowercase letters, digits and hyphens, starting with a letter", name)
	}
	return nil
}

// refName is the instance name a ref points at; the sim identifies
// instances by name, as InstanceName makes them unique per host.
func refName(ref provider.Ref) string {
	if ref.Name == "" && ref.HostID != "" {
		return provider.InstanceName(ref.HostID)
	}
	return ref.Name
}

func regionOfZone(zone string) string {
	for r, zs := range regions {
		if contains(zs, zone) {
			return r
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// firstNonEmpty returns the first non-empty string.
func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// ipFrom derives a stable fake address from id, so every process reports
// the same IP for an instance without storing it: 10.0.0.0/8 for private
// addresses, 100.64.0.0/10 for "public" ones.
func ipFrom(id string, public bool) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	s := h.Sum32()
	b, c, d := byte(s>>16), byte(s>>8), max(byte(s), 1)
	if public {
		return fmt.Sprintf("100.%d.%d.%d", 64+b&63, c, d)
	}
	return fmt.Sprintf("10.%d.%d.%d", b, c, d)
}
