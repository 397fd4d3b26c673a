// Package local is the "local" provider: each host is real and runs on
// this machine. A host is a directory under <StateDir>/local-hosts holding
// its storage pool (a btrfs filesystem on a sparse loop file, or a plain
// directory where btrfs is unavailable) and a detached agent process that
// serves the host API on a unix socket.
//
// Nothing is kept in memory: every method reads the host's directory, so a
// provider object made by another CLI invocation sees the same hosts, and
// agents outlive the process that started them.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/btrfs"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// Name is the registered provider name.
const Name = "local"

// Region is the only region of this provider.
const Region = "local"

// InstanceType is the only machine type: this machine.
const InstanceType = "local"

// MinDiskGB is the smallest pool size, and the default one unless
// OptionPoolGB sets another. btrfs cannot reclaim metadata chunks on tiny
// filesystems, so smaller pools fill up long before their data does. (The
// pool is a sparse file: it takes the space its data takes.)
const MinDiskGB = 4

// Options keys (the provider's section of the config file).
const (
	// OptionStorage is "auto" (default: btrfs when available, else a
	// plain directory), "btrfs" (fail when unavailable) or "directory".
	OptionStorage = "storage"
	// OptionAgentStartTimeout is how long Create and Start wait for a new
	// agent to answer, as a Go duration ("15s").
	OptionAgentStartTimeout = "agent_start_timeout"
	// OptionPoolGB is the size in GB of a new host's pool when `create`
	// gives no --disk (default MinDiskGB, at least MinDiskGB).
	OptionPoolGB = "pool_gb"
)

const (
	hostsDirName = "local-hosts"
	gib          = int64(1) << 30
)

// Capabilities of the local provider.
var Capabilities = provider.Capabilities{
	Stop:           provider.StopReal,
	DiskResize:     true,
	PersistentDisk: true,
	ThisMachine:    true,
}

func init() {
	provider.Register(provider.Registration{
		Name:         Name,
		Description:  "project hosts on this machine: a btrfs loop pool (or plain directory) and an agent process per host",
		Capabilities: Capabilities,
		New:          New,
	})
}

var (
	_ provider.Provider    = (*Provider)(nil)
	_ provider.DiskResizer = (*Provider)(nil)
	_ provider.DiskSizer   = (*Provider)(nil)
)

// Provider runs hosts on this machine.
type Provider struct {
	cfg          provider.Config
	root         string // <StateDir>/local-hosts
	storage      string // "auto", agentapi.StorageBtrfs or agentapi.StorageDirectory
	startTimeout time.Duration
	stopTimeout  time.Duration
	poolGB       int            // a new pool's size when the spec gives none
	proj         projectOptions // project_options.go
}

// New makes the local provider from cfg.
func New(cfg provider.Config) (provider.Provider, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("local provider needs a state directory")
	}
	if cfg.Deployment == "" {
		// List tells our hosts from others' by this label.
		return nil, errors.New("local provider needs a deployment name")
	}
	root, err := filepath.Abs(filepath.Join(cfg.StateDir, hostsDirName))
	if err != nil {
		return nil, fmt.Errorf("local provider state directory: %w", err)
	}
	p := &Provider{cfg: cfg, root: root, storage: "auto", startTimeout: 15 * time.Second, stopTimeout: 10 * time.Second, poolGB: MinDiskGB}
	switch s := cfg.Options[OptionStorage]; s {
	case "", "auto":
	case agentapi.StorageBtrfs, agentapi.StorageDirectory:
		p.storage = s
	default:
		return nil, fmt.Errorf("local provider option %s=%q: want auto, btrfs or directory", OptionStorage, s)
	}
	if p.proj, err = parseProjectOptions(cfg.Options, cfg.RuntimeDir); err != nil {
		return nil, err
	}
	if s := cfg.Options[OptionAgentStartTimeout]; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("local provider option %s=%q: want a positive duration such as 15s", OptionAgentStartTimeout, s)
		}
		p.startTimeout = d
	}
	if s := cfg.Options[OptionPoolGB]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < MinDiskGB {
			return nil, fmt.Errorf("local provider option %s=%q: want a whole number of GB, at least %d", OptionPoolGB, s, MinDiskGB)
		}
		p.poolGB = n
	}
	return p, nil
}

// DataDiskGB is the size of a new host's pool: the spec's, or the
// configured one when the spec gives none.
func (p *Provider) DataDiskGB(requested int) int {
	if requested == 0 {
		return p.poolGB
	}
	return requested
}

// Name returns "local".
func (p *Provider) Name() string { return Name }

// Capabilities says what the local provider can do.
func (p *Provider) Capabilities() provider.Capabilities { return Capabilities }

// record is a host's instance.json.
type record struct {
	Name      string            `json:"name"`
	HostID    string            `json:"host_id"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"created_at"`
	Storage   string            `json:"storage"` // agentapi.StorageBtrfs or agentapi.StorageDirectory
	DiskGB    int               `json:"disk_gb"`
	// DiskOnly marks a host deleted with keepDisk: the "VM" is gone (it
	// is NotFound and not listed) but its pool stays for a later Create
	// of the same name to attach again.
	DiskOnly bool `json:"disk_only,omitempty"`
}

// paths are the files of one host.
type paths struct {
	dir, record, image, pool, config, socket, log, pid string
}

func (p *Provider) paths(name string) paths {
	dir := filepath.Join(p.root, name)
	// Unix socket paths are limited to 107 bytes, which a state directory
	// under a long home can exceed: sockets go in the short runtime
	// directory when there is one.
	socket := filepath.Join(dir, "agent.sock")
	if p.cfg.RuntimeDir != "" {
		socket = filepath.Join(p.cfg.RuntimeDir, name+".sock")
	}
	return paths{
		dir:    dir,
		record: filepath.Join(dir, "instance.json"),
		image:  filepath.Join(dir, "pool.img"),
		pool:   filepath.Join(dir, "pool"),
		config: filepath.Join(dir, "agent.json"),
		socket: socket,
		log:    filepath.Join(dir, "agent.log"),
		pid:    filepath.Join(dir, "agent.pid"),
	}
}

// validName keeps names usable as one path component and as a VM name on
// real clouds: at most 63 bytes, checked apart from nameRE (a counted
// repetition compiles into that many copies at every command's start-up).
func validName(name string) bool { return len(name) <= 63 && nameRE().MatchString(name) }

var nameRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (p *Provider) errorf(kind errkind.Kind, op, format string, args ...any) error {
	return provider.Errorf(kind, Name, op, format, args...)
}

// refName returns the instance name a Ref points at.
func (p *Provider) refName(op string, ref provider.Ref) (string, error) {
	name := ref.InstanceID // our instance ids are the names
	if name == "" {
		name = ref.Name
	}
	if name == "" && ref.HostID != "" {
		name = provider.InstanceName(ref.HostID)
	}
	if !validName(name) {
		return "", p.errorf(errkind.Invalid, op, "invalid instance name %q", name)
	}
	return name, nil
}

// load reads the record of name. A missing directory, a half-made one
// without a record, a host of another deployment, or (unless diskOnly) a
// host deleted keeping its disk is NotFound.
func (p *Provider) load(op, name string, diskOnly bool) (record, paths, error) {
	ps := p.paths(name)
	b, err := os.ReadFile(ps.record)
	if errors.Is(err, os.ErrNotExist) {
		return record{}, ps, p.errorf(errkind.NotFound, op, "no local host %s", name)
	}
	if err != nil {
		return record{}, ps, fmt.Errorf("read local host %s: %w", name, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, ps, fmt.Errorf("read local host %s: %s: %w", name, ps.record, err)
	}
	if r.Labels[provider.LabelDeployment] != p.cfg.Deployment {
		return record{}, ps, p.errorf(errkind.NotFound, op, "no local host %s in deployment %s", name, p.cfg.Deployment)
	}
	if r.DiskOnly && !diskOnly {
		return record{}, ps, p.errorf(errkind.NotFound, op, "local host %s was deleted; only its disk is kept", name)
	}
	return r, ps, nil
}

func (p *Provider) save(ps paths, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("save local host %s: %w", r.Name, err)
	}
	if err := secrets.Write(ps.record, append(b, '\n')); err != nil {
		return fmt.Errorf("save local host %s: %w", r.Name, err)
	}
	return nil
}

// Create makes the host spec.Name and starts its agent, or completes and
// starts the one that already exists under that name.
func (p *Provider) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	const op = "create"
	name := spec.Name
	if name == "" && spec.HostID != "" {
		name = provider.InstanceName(spec.HostID)
	}
	if !validName(name) {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "invalid instance name %q", name)
	}
	if spec.HostID == "" {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "instance %s: no host id", name)
	}
	if spec.DiskGB < 0 {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "disk size %d GB is negative", spec.DiskGB)
	}
	if spec.Region != "" && spec.Region != Region {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "region %q: the local provider has only %q", spec.Region, Region)
	}
	if spec.GPUCount > 0 || spec.GPUModel != "" {
		return provider.Instance{}, p.errorf(errkind.Refused, op, "the local provider has no GPUs")
	}
	if len(p.cfg.AgentCommand) == 0 {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "no agent command configured")
	}
	ps := p.paths(name)
	if len(ps.socket) > 107 {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "socket path %s is too long for a unix socket; set a shorter runtime directory (XDG_RUNTIME_DIR)", ps.socket)
	}

	unlock, err := p.lock(ctx, name)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("create %s: %w", name, err)
	}
	defer unlock()

	r, ps, err := p.load(op, name, true)
	switch {
	case err == nil:
		if r.HostID != spec.HostID {
			return provider.Instance{}, p.errorf(errkind.Invalid, op, "instance %s already belongs to host %s, not %s", name, r.HostID, spec.HostID)
		}
		if r.DiskOnly {
			// Attach the disk kept by Delete(keepDisk): the host comes
			// back with its data.
			r.DiskOnly = false
			if err := p.save(ps, r); err != nil {
				return provider.Instance{}, err
			}
		}
	case errkind.Is(err, errkind.NotFound):
		if r, err = p.newRecord(name, spec); err != nil {
			return provider.Instance{}, err
		}
		if err := os.MkdirAll(ps.dir, 0o700); err != nil {
			return provider.Instance{}, fmt.Errorf("create %s: %w", name, err)
		}
		// If another deployment's record were here, load would have said
		// NotFound too; do not take over its directory.
		if _, err := os.Stat(ps.record); err == nil {
			return provider.Instance{}, p.errorf(errkind.Invalid, op, "instance name %s is used by another deployment in %s", name, p.root)
		}
		// The record goes first so that a crash below leaves a host
		// that the next Create recognizes and completes.
		if err := p.save(ps, r); err != nil {
			return provider.Instance{}, err
		}
	default:
		return provider.Instance{}, err
	}

	if err := p.ensurePool(ctx, op, r, ps, true); err != nil {
		return provider.Instance{}, err
	}
	if err := p.startAgent(ctx, r, ps); err != nil {
		return provider.Instance{}, err
	}
	return p.instance(r, ps, provider.StateRunning), nil
}

func (p *Provider) newRecord(name string, spec provider.CreateSpec) (record, error) {
	kind, err := p.storageKind()
	if err != nil {
		return record{}, err
	}
	disk := spec.DiskGB
	if disk == 0 {
		disk = p.poolGB
	}
	disk = max(disk, MinDiskGB)
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[provider.LabelDeployment] = p.cfg.Deployment
	labels[provider.LabelHost] = spec.HostID
	return record{
		Name:      name,
		HostID:    spec.HostID,
		Labels:    labels,
		CreatedAt: time.Now().UTC(),
		Storage:   kind,
		DiskGB:    disk,
	}, nil
}

func (p *Provider) storageKind() (string, error) {
	switch p.storage {
	case agentapi.StorageDirectory:
		return agentapi.StorageDirectory, nil
	case agentapi.StorageBtrfs:
		if !btrfs.Available() {
			return "", p.errorf(errkind.Refused, "create", "storage=btrfs, but btrfs is not usable here (needs root, btrfs-progs and kernel support)")
		}
		return agentapi.StorageBtrfs, nil
	}
	if btrfs.Available() {
		return agentapi.StorageBtrfs, nil
	}
	return agentapi.StorageDirectory, nil
}

// ensurePool makes the pool ready for the agent. With create, a missing
// pool is made (completing a half-made host); without, it is an error,
// because an empty new pool in place of a vanished one would hide data
// loss.
func (p *Provider) ensurePool(ctx context.Context, op string, r record, ps paths, create bool) error {
	switch r.Storage {
	case agentapi.StorageDirectory:
		if create {
			if err := os.MkdirAll(ps.pool, 0o700); err != nil {
				return fmt.Errorf("%s %s: pool: %w", op, r.Name, err)
			}
			return nil
		}
		if _, err := os.Stat(ps.pool); err != nil {
			return fmt.Errorf("%s %s: pool: %w", op, r.Name, err)
		}
		return nil
	case agentapi.StorageBtrfs:
		if !btrfs.Available() {
			return p.errorf(errkind.Refused, op, "host %s has a btrfs pool, but btrfs is not usable here", r.Name)
		}
		if create {
			if err := btrfs.CreateLoopPool(ctx, ps.image, ps.pool, int64(r.DiskGB)*gib); err != nil {
				return fmt.Errorf("%s %s: %w", op, r.Name, err)
			}
			return nil
		}
		// After a reboot the image is still there but nothing mounts it.
		if err := btrfs.Mount(ctx, ps.image, ps.pool); err != nil {
			return fmt.Errorf("%s %s: %w", op, r.Name, err)
		}
		return nil
	}
	return fmt.Errorf("%s %s: unknown storage kind %q in %s", op, r.Name, r.Storage, ps.record)
}

// Start starts the host's agent, mounting its pool again if needed.
func (p *Provider) Start(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "start"
	name, err := p.refName(op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	if len(p.cfg.AgentCommand) == 0 {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "no agent command configured")
	}
	unlock, err := p.lock(ctx, name)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("start %s: %w", name, err)
	}
	defer unlock()
	r, ps, err := p.load(op, name, false)
	if err != nil {
		return provider.Instance{}, err
	}
	if err := p.ensurePool(ctx, op, r, ps, false); err != nil {
		return provider.Instance{}, err
	}
	if err := p.startAgent(ctx, r, ps); err != nil {
		return provider.Instance{}, err
	}
	return p.instance(r, ps, provider.StateRunning), nil
}

// Stop stops the host's agent and releases its pool: a stopped host holds
// no mount and no loop device, as a stopped VM holds no disk (Start mounts
// it again). The pool's data stay.
func (p *Provider) Stop(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "stop"
	name, err := p.refName(op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	unlock, err := p.lock(ctx, name)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("stop %s: %w", name, err)
	}
	defer unlock()
	r, ps, err := p.load(op, name, false)
	if err != nil {
		return provider.Instance{}, err
	}
	if err := p.reviveToStop(ctx, r, ps); err != nil {
		return provider.Instance{}, fmt.Errorf("stop %s: %w", name, err)
	}
	if err := p.stopAgent(ctx, ps); err != nil {
		return provider.Instance{}, fmt.Errorf("stop %s: %w", name, err)
	}
	if r.Storage == agentapi.StorageBtrfs {
		if err := btrfs.Unmount(ctx, ps.pool); err != nil {
			return provider.Instance{}, fmt.Errorf("stop %s: %w", name, err)
		}
	}
	return p.instance(r, ps, provider.StateStopped), nil
}

// Delete stops the host. Without keepDisk it removes everything: the
// mount, the loop device and the directory (also of a host deleted earlier
// keeping its disk). With keepDisk the pool image (or directory) stays:
// the instance is gone (NotFound, not listed), and a Create of the same
// name attaches the kept pool again, as clouds reattach a kept disk.
func (p *Provider) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	const op = "delete"
	name, err := p.refName(op, ref)
	if err != nil {
		return err
	}
	unlock, err := p.lock(ctx, name)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	defer unlock()
	r, ps, loadErr := p.load(op, name, true)
	if errkind.Is(loadErr, errkind.NotFound) {
		if _, serr := os.Stat(ps.record); serr == nil {
			return nil // another deployment's host: not ours to delete
		}
		if _, serr := os.Stat(ps.dir); errors.Is(serr, os.ErrNotExist) {
			return nil // already gone
		}
		// A half-made host without a record: clean it up like a whole one.
	} else if loadErr != nil {
		return loadErr
	}

	if loadErr == nil {
		// Best effort: a host whose agent cannot start any more must still
		// be deletable.
		_ = p.reviveToStop(ctx, r, ps)
	}
	if err := p.stopAgent(ctx, ps); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	// Release the mount and loop device in both cases: with keepDisk the
	// disk is detached, as a cloud VM's would be, and Create mounts it
	// again.
	if err := btrfs.Unmount(ctx, ps.pool); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if keepDisk {
		if loadErr != nil { // half-made, without a record: nothing to keep
			return nil
		}
		if !r.DiskOnly {
			r.DiskOnly = true
			if err := p.save(ps, r); err != nil {
				return err
			}
		}
		return nil
	}
	if err := btrfs.DetachLoops(ctx, ps.image); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	// Never RemoveAll across a mount: that would delete a pool's data
	// that some failure above left attached.
	if btrfs.IsMounted(ps.pool) {
		return fmt.Errorf("delete %s: pool %s is still mounted", name, ps.pool)
	}
	if err := os.RemoveAll(ps.dir); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// Status reports the host: running when its agent answers, pending when
// the agent process lives but does not answer (yet), stopped otherwise.
func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "status"
	name, err := p.refName(op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	r, ps, err := p.load(op, name, false)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instance(r, ps, p.state(ctx, r, ps)), nil
}

func (p *Provider) state(ctx context.Context, r record, ps paths) provider.State {
	if _, err := p.ping(ctx, r, ps); err == nil {
		return provider.StateRunning
	}
	if _, alive := agentProcess(ps); alive {
		return provider.StatePending
	}
	return provider.StateStopped
}

// ping asks the host's agent for its status and checks that the agent
// that answers is this host's.
func (p *Provider) ping(ctx context.Context, r record, ps paths) (agentapi.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := agentapi.NewClient(ps.socket).Status(ctx)
	if err != nil {
		return agentapi.Status{}, err
	}
	if st.HostID != r.HostID {
		return agentapi.Status{}, fmt.Errorf("agent on %s serves host %q, not %q", ps.socket, st.HostID, r.HostID)
	}
	return st, nil
}

// List returns the hosts of this deployment.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	entries, err := os.ReadDir(p.root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list local hosts: %w", err)
	}
	var out []provider.Instance
	for _, e := range entries {
		if !e.IsDir() || !validName(e.Name()) {
			continue
		}
		r, ps, err := p.load("list", e.Name(), false)
		if errkind.Is(err, errkind.NotFound) {
			continue // another deployment's, deleted keeping its disk, or half-made
		}
		if err != nil {
			return nil, fmt.Errorf("list local hosts: %w", err)
		}
		out = append(out, p.instance(r, ps, p.state(ctx, r, ps)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ResizeDisk grows the host's btrfs pool to sizeGB GiB, online. For a
// plain-directory pool it only records the new size.
func (p *Provider) ResizeDisk(ctx context.Context, ref provider.Ref, sizeGB int) (provider.Instance, error) {
	const op = "resize"
	name, err := p.refName(op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	unlock, err := p.lock(ctx, name)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("resize %s: %w", name, err)
	}
	defer unlock()
	r, ps, err := p.load(op, name, false)
	if err != nil {
		return provider.Instance{}, err
	}
	if sizeGB < r.DiskGB {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "cannot shrink %s from %d GB to %d GB", name, r.DiskGB, sizeGB)
	}
	if sizeGB > r.DiskGB && r.Storage == agentapi.StorageDirectory {
		// A plain directory has no size of its own (it has the free
		// space of the filesystem it is on); the size is only recorded,
		// so that the host's spec and its instance agree.
		r.DiskGB = sizeGB
		if err := p.save(ps, r); err != nil {
			return provider.Instance{}, err
		}
	}
	if sizeGB > r.DiskGB {
		// The filesystem can only grow while mounted; a host whose pool
		// is not (after a reboot) is mounted just for this.
		wasMounted := btrfs.IsMounted(ps.pool)
		if err := btrfs.Mount(ctx, ps.image, ps.pool); err != nil {
			return provider.Instance{}, fmt.Errorf("resize %s: %w", name, err)
		}
		gerr := btrfs.Grow(ctx, ps.image, ps.pool, int64(sizeGB)*gib)
		if !wasMounted {
			if err := btrfs.Unmount(ctx, ps.pool); err != nil && gerr == nil {
				gerr = err
			}
		}
		if gerr != nil {
			return provider.Instance{}, fmt.Errorf("resize %s: %w", name, gerr)
		}
		r.DiskGB = sizeGB
		if err := p.save(ps, r); err != nil {
			return provider.Instance{}, err
		}
	}
	return p.instance(r, ps, p.state(ctx, r, ps)), nil
}

// Catalog offers one machine type: this machine, for free.
func (p *Provider) Catalog(ctx context.Context) ([]provider.CatalogEntry, error) {
	total, err := totalMemory()
	if err != nil {
		return nil, fmt.Errorf("local catalog: %w", err)
	}
	mem := float64(total) / float64(gib)
	return []provider.CatalogEntry{{
		Provider:      Name,
		Region:        Region,
		InstanceType:  InstanceType,
		VCPUs:         runtime.NumCPU(),
		MemoryGiB:     float64(int(mem*10+0.5)) / 10,
		HourlyPrice:   0,
		Available:     true,
		PricingSource: "local machine",
	}}, nil
}

func (p *Provider) instance(r record, ps paths, state provider.State) provider.Instance {
	labels := make(map[string]string, len(r.Labels))
	for k, v := range r.Labels {
		labels[k] = v
	}
	meta := map[string]string{
		"storage": r.Storage,
		"dir":     ps.dir,
		"pool":    ps.pool,
		"socket":  ps.socket,
		"disk_gb": strconv.Itoa(r.DiskGB),
	}
	disk := ps.pool
	if r.Storage == agentapi.StorageBtrfs {
		disk = ps.image
	} else {
		meta["storage_note"] = agentapi.DirectoryNote
	}
	return provider.Instance{
		ID:       r.Name,
		Name:     r.Name,
		HostID:   r.HostID,
		Region:   Region,
		State:    state,
		DataDisk: disk,
		DiskGB:   r.DiskGB,
		Labels:   labels,
		Meta:     meta,
	}
}

// lock serializes changes to one host across goroutines and processes
// (the CLI and a server may act at once), so that two Creates never start
// two agents. Locks live outside host directories, which Delete removes.
func (p *Provider) lock(ctx context.Context, name string) (func(), error) {
	dir := filepath.Join(p.root, ".locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// agentConfig is what the host's agent is started with.
func agentConfig(r record, ps paths) agentapi.Config {
	return agentapi.Config{
		HostID:      r.HostID,
		SocketPath:  ps.socket,
		PoolPath:    ps.pool,
		StorageKind: r.Storage,
		LogPath:     ps.log,
		// A local host's ingress is for this machine only, on ports the
		// agent picks (it reports them with every access list push).
		Ingress: agentapi.IngressConfig{HTTPSAddr: "127.0.0.1:0", SSHAddr: "127.0.0.1:0", TLSNames: "127.0.0.1,localhost"},
	}
}
