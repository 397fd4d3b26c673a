// Package ssh is the "ssh" provider: bring your own server. It adopts a
// machine that already exists (on-prem, HPC, a VM made elsewhere), given
// by address, and the bootstrap runner turns it into a project host like
// any cloud VM. We cannot power such a machine on or off, so stop stops
// its agent and start starts it; delete uninstalls the agent and keeps the
// project pool (/btrfs) unless purged.
//
// Its instances are records in the control plane's provider state. The
// machine itself is reached through the control plane's SSH pool (with
// the fleet key and pinned host keys), which the CLI hands over with
// UseSSH.
package ssh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/bootstrap"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
)

// Name is the registered provider name.
const Name = "ssh"

// Region and InstanceType of every adopted machine: it is wherever it is,
// and whatever it is.
const (
	Region       = "ssh"
	InstanceType = "own-machine"
)

// OptionConnectWait is how long stop, start and delete wait for the
// machine to answer SSH (a Go duration; default 30s).
const OptionConnectWait = "connect_wait"

// Capabilities of the ssh provider.
var Capabilities = provider.Capabilities{
	// Stop stops the agent (the machine stays up; it is not ours to stop).
	Stop:      provider.StopReal,
	Bootstrap: true,
	Adopt:     true,
	Purge:     true,
	Forget:    true,
	SSH:       true,
}

func init() {
	provider.Register(provider.Registration{
		Name:         Name,
		Description:  "adopt a machine you already have, over SSH (--address USER@HOST[:PORT]); stop/start act on the agent, delete keeps /btrfs unless --purge",
		Capabilities: Capabilities,
		New:          New,
	})
}

var (
	_ provider.Provider = (*Provider)(nil)
)

// Provider adopts machines over SSH.
type Provider struct {
	cfg  provider.Config
	pool *sshpool.Pool
	wait time.Duration
}

// New makes the ssh provider.
func New(cfg provider.Config) (provider.Provider, error) {
	if cfg.State == nil {
		return nil, errors.New("ssh provider needs the state store")
	}
	if cfg.Deployment == "" {
		return nil, errors.New("ssh provider needs a deployment name")
	}
	p := &Provider{cfg: cfg, wait: 30 * time.Second}
	if s := cfg.Options[OptionConnectWait]; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("ssh provider option %s=%q: want a positive duration such as 30s", OptionConnectWait, s)
		}
		p.wait = d
	}
	return p, nil
}

// UseSSH gives the provider the control plane's SSH pool.
func (p *Provider) UseSSH(pool *sshpool.Pool) { p.pool = pool }

func (p *Provider) Name() string                        { return Name }
func (p *Provider) Capabilities() provider.Capabilities { return Capabilities }

// record is an adopted machine.
type record struct {
	Name      string            `json:"name"`
	HostID    string            `json:"host_id"`
	Labels    map[string]string `json:"labels"`
	Host      string            `json:"host"`
	Port      int               `json:"port"`
	User      string            `json:"user"`
	Reverse   bool              `json:"reverse,omitempty"`
	State     provider.State    `json:"state"`
	CreatedAt time.Time         `json:"created_at"`
}

// target is where the machine is reached. It is named by its host id,
// which every command accepts, since the provider does not know the
// host's name (errors say "cocalc-hosts ssh-key repin ID").
func (r record) target() sshpool.Target {
	return sshpool.Target{HostID: r.HostID, Name: r.HostID, Host: r.Host, Port: r.Port, User: r.User, Reverse: r.Reverse}
}

func (r record) instance() provider.Instance {
	labels := make(map[string]string, len(r.Labels))
	for k, v := range r.Labels {
		labels[k] = v
	}
	inst := provider.Instance{
		ID: r.Name, Name: r.Name, HostID: r.HostID, Region: Region, State: r.State,
		PublicIP: r.Host, SSHPort: r.Port, SSHUser: r.User, Labels: labels,
		Meta: map[string]string{"ssh": r.target().String()},
	}
	if r.Reverse {
		// Its address is as seen from the machine itself: nobody else
		// can use it.
		inst.PublicIP, inst.PrivateIP = "", r.Host
		inst.Meta["ssh"] += " (through its tunnel)"
	}
	return inst
}

func (p *Provider) errorf(kind errkind.Kind, op, format string, args ...any) error {
	return provider.Errorf(kind, Name, op, format, args...)
}

func refName(ref provider.Ref) string {
	switch {
	case ref.InstanceID != "":
		return ref.InstanceID
	case ref.Name != "":
		return ref.Name
	}
	return provider.InstanceName(ref.HostID)
}

func (p *Provider) load(ctx context.Context, op, name string) (record, error) {
	raw, err := p.cfg.State.Get(ctx, Name, name)
	if err != nil {
		if errkind.Is(err, errkind.NotFound) {
			return record{}, p.errorf(errkind.NotFound, op, "no adopted machine %s", name)
		}
		return record{}, err
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return record{}, fmt.Errorf("ssh provider: record %s: %w", name, err)
	}
	if r.Labels[provider.LabelDeployment] != p.cfg.Deployment {
		return record{}, p.errorf(errkind.NotFound, op, "no adopted machine %s in deployment %s", name, p.cfg.Deployment)
	}
	return r, nil
}

func (p *Provider) save(ctx context.Context, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return p.cfg.State.Put(ctx, Name, r.Name, b)
}

// Create adopts the machine at spec.Address: it only records it; the
// bootstrap makes it a host.
func (p *Provider) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	const op = "create"
	name := spec.Name
	if name == "" {
		name = provider.InstanceName(spec.HostID)
	}
	if spec.HostID == "" {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "instance %s: no host id", name)
	}
	if spec.GPUModel != "" || spec.GPUCount > 0 {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "adopted machines bring their own GPUs (the bootstrap sets up any NVIDIA GPU it finds); drop --gpu")
	}
	host, portStr, err := net.SplitHostPort(spec.Address)
	if err != nil || host == "" {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "the machine to adopt needs an address HOST:PORT, got %q (--address USER@HOST[:PORT])", spec.Address)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return provider.Instance{}, p.errorf(errkind.Invalid, op, "invalid port in %q", spec.Address)
	}
	user := spec.SSHUser
	if user == "" {
		user = "root"
	}
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[provider.LabelDeployment] = p.cfg.Deployment
	labels[provider.LabelHost] = spec.HostID
	r := record{Name: name, HostID: spec.HostID, Labels: labels, Host: host, Port: port, User: user, Reverse: spec.Reverse,
		State: provider.StateRunning, CreatedAt: time.Now().UTC()}

	all, err := p.records(ctx)
	if err != nil {
		return provider.Instance{}, err
	}
	for _, o := range all {
		if o.Name != name && o.Host == host && o.Port == port && !o.Reverse && !spec.Reverse {
			return provider.Instance{}, p.errorf(errkind.Invalid, op, "machine %s is already adopted as %s; a machine can be one host only", net.JoinHostPort(host, portStr), o.Name)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return provider.Instance{}, err
	}
	stored, err := p.cfg.State.PutIfAbsent(ctx, Name, name, b)
	if err != nil {
		return provider.Instance{}, err
	}
	if !stored {
		existing, err := p.load(ctx, op, name)
		if err != nil {
			return provider.Instance{}, err
		}
		if existing.HostID != spec.HostID {
			return provider.Instance{}, p.errorf(errkind.Invalid, op, "instance %s already belongs to host %s", name, existing.HostID)
		}
		return existing.instance(), nil
	}
	return r.instance(), nil
}

// agentctl runs the agentctl script on the machine as root. It is sent
// along rather than run from the machine, so that it works whatever the
// machine has installed (or not yet).
func (p *Provider) agentctl(ctx context.Context, op string, r record, args ...string) error {
	if p.pool == nil {
		return p.errorf(errkind.Refused, op, "no SSH connection pool was given to the ssh provider")
	}
	t := r.target()
	if _, err := p.pool.Wait(ctx, t, p.wait, nil); err != nil {
		var ue *sshpool.UnreachableError
		if errors.As(err, &ue) && op == "delete" {
			return p.errorf(errkind.Invalid, op, "%v; to drop the host without touching the machine, run `cocalc-hosts delete --forget`", ue)
		}
		return err
	}
	var tail []string
	err := p.pool.Script(ctx, t, "agentctl", bootstrap.AgentCtl, args, nil, func(l string) {
		tail = append(tail, l)
		if len(tail) > 5 {
			tail = tail[1:]
		}
	})
	var ee *sshpool.ExitError
	if errors.As(err, &ee) {
		hint := ""
		if op == "delete" {
			hint = "; fix that and retry, or drop the host without touching the machine: `cocalc-hosts delete --forget`"
		}
		return p.errorf(errkind.Invalid, op, "agentctl %s on %s failed: %s%s", strings.Join(args, " "), t, strings.Join(tail, " | "), hint)
	}
	return err
}

// Start starts the machine's agent, if it is installed (otherwise the
// bootstrap that follows every start installs it).
func (p *Provider) Start(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	r, err := p.load(ctx, "start", refName(ref))
	if err != nil {
		return provider.Instance{}, err
	}
	if err := p.agentctl(ctx, "start", r, "start-if-installed"); err != nil {
		return provider.Instance{}, err
	}
	r.State = provider.StateRunning
	if err := p.save(ctx, r); err != nil {
		return provider.Instance{}, err
	}
	return r.instance(), nil
}

// Stop stops the machine's agent; the machine, its pool and any project
// containers stay.
func (p *Provider) Stop(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	r, err := p.load(ctx, "stop", refName(ref))
	if err != nil {
		return provider.Instance{}, err
	}
	if r.State != provider.StateStopped {
		if err := p.agentctl(ctx, "stop", r, "stop"); err != nil {
			return provider.Instance{}, err
		}
		r.State = provider.StateStopped
		if err := p.save(ctx, r); err != nil {
			return provider.Instance{}, err
		}
	}
	return r.instance(), nil
}

// Delete uninstalls the agent and forgets the machine; its pool and
// data stay (Purge erases them too).
func (p *Provider) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	if keepDisk {
		return p.errorf(errkind.Refused, "delete", "an adopted machine keeps its disk anyway; delete without --keep-disk")
	}
	return p.remove(ctx, ref, "uninstall")
}

// Purge uninstalls the agent and erases the project pool: its loop file
// is deleted, a data disk is wiped.
func (p *Provider) Purge(ctx context.Context, ref provider.Ref) error {
	return p.remove(ctx, ref, "uninstall", "--purge")
}

// Forget drops the machine without touching it.
func (p *Provider) Forget(ctx context.Context, ref provider.Ref) error {
	name := refName(ref)
	if _, err := p.load(ctx, "delete", name); err != nil {
		return err
	}
	return p.cfg.State.Delete(ctx, Name, name)
}

func (p *Provider) remove(ctx context.Context, ref provider.Ref, args ...string) error {
	name := refName(ref)
	r, err := p.load(ctx, "delete", name)
	if err != nil {
		return err
	}
	if err := p.agentctl(ctx, "delete", r, args...); err != nil {
		return err
	}
	p.pool.Forget(r.target())
	return p.cfg.State.Delete(ctx, Name, name)
}

// Status reports the machine as recorded: running unless stopped by us.
// Whether it answers is the host's health (last contact), not its state.
func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	r, err := p.load(ctx, "status", refName(ref))
	if err != nil {
		return provider.Instance{}, err
	}
	return r.instance(), nil
}

func (p *Provider) records(ctx context.Context) ([]record, error) {
	all, err := p.cfg.State.List(ctx, Name)
	if err != nil {
		return nil, err
	}
	var out []record
	for _, raw := range all {
		var r record
		if json.Unmarshal(raw, &r) != nil || r.Labels[provider.LabelDeployment] != p.cfg.Deployment {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// List returns the adopted machines of this deployment.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	rs, err := p.records(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]provider.Instance, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.instance())
	}
	return out, nil
}

// Catalog has one entry: the machine you bring, at no charge from us.
func (p *Provider) Catalog(context.Context) ([]provider.CatalogEntry, error) {
	return []provider.CatalogEntry{{
		Provider: Name, Region: Region, InstanceType: InstanceType, Available: true,
		PricingSource: "your own machine",
	}}, nil
}
