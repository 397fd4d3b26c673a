package hosts

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/telemetry"
)

// Bootstrapper turns plain machines into project hosts over SSH
// (pkg/sshboot implements it). Every provider whose Capabilities().Bootstrap
// is set goes through it after its VM runs: one bootstrap path for all.
type Bootstrapper interface {
	// Access returns what a new instance of h needs so that we can log
	// in: the fleet public key to authorize and, for providers that
	// install host keys (injectHostKey), a host key pair for the VM whose
	// public half is pinned before the VM exists.
	Access(ctx context.Context, h model.Host, injectHostKey bool) (authorizedKey string, hostKey *provider.HostKey, err error)
	// Bootstrap makes h (its Runtime holds the SSH endpoint) a project
	// host and returns once its agent answers. Running it again on a
	// bootstrapped host changes nothing.
	Bootstrap(ctx context.Context, h model.Host, jobID string, progress func(string)) (BootResult, error)
	// Upgrade installs this control plane's agent on h and restarts it.
	Upgrade(ctx context.Context, h model.Host, jobID string, progress func(string)) (BootResult, error)
	// Forget drops what is kept for a deleted host: its pinned host key
	// and its connection.
	Forget(ctx context.Context, h model.Host) error
	// AgentClient reaches h's agent through SSH.
	AgentConnector
}

// BootResult is what a bootstrap learned about the host.
type BootResult struct {
	AgentVersion string
	AgentSHA256  string
	// Platform is GOOS/GOARCH of the host.
	Platform string
	// HostKey is the pinned SSH host key.
	HostKey        string
	AgentPID       int
	AgentStartedAt time.Time
}

// RemoteAgents reaches agents of hosts with an SSH endpoint through
// Remote, and the others (local hosts) on this machine.
type RemoteAgents struct{ Remote AgentConnector }

func (r RemoteAgents) AgentClient(ctx context.Context, h model.Host) (*agentapi.Client, error) {
	if h.Runtime.SSHHost == "" || r.Remote == nil {
		return LocalAgents{}.AgentClient(ctx, h)
	}
	return r.Remote.AgentClient(ctx, h)
}

// ReverseAddress is where the control plane logs in to a reverse-connected
// machine, as seen from the machine: `join` relays the tunnel's SSH
// streams to its own SSH server there.
const ReverseAddress = "root@localhost:22"

// Address is a parsed --address USER@HOST[:PORT].
type Address struct {
	User string
	Host string
	Port int
}

func (a Address) String() string {
	return a.User + "@" + net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

var (
	// userRE and hostRE leave the length (at most 32 and 253) to their
	// caller: a counted repetition compiles into that many copies at
	// start-up.
	userRE   = lazyre.New(`^[a-z_][a-z0-9_.-]*$`)
	hostRE   = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9.-]*$`)
	deviceRE = lazyre.New(`^/dev/[A-Za-z0-9/_.:+-]+$`)
)

// ParseAddress parses USER@HOST[:PORT] (an IPv6 host in brackets). The
// user defaults to root and the port to 22.
func ParseAddress(s string) (Address, error) {
	a := Address{User: "root", Port: 22}
	rest := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		a.User, rest = s[:i], s[i+1:]
	}
	host, port := rest, ""
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") {
		host = rest[1 : len(rest)-1]
	}
	bad := func(why string) (Address, error) {
		return Address{}, invalid("invalid --address %q: %s; use USER@HOST[:PORT], e.g. root@203.0.113.7 or ubuntu@gpu1.example.org:2222", s, why)
	}
	if len(a.User) > 32 || !userRE().MatchString(a.User) {
		return bad(fmt.Sprintf("%q is not a user name", a.User))
	}
	if host == "" || (net.ParseIP(host) == nil && (len(host) > 253 || !hostRE().MatchString(host))) {
		return bad(fmt.Sprintf("%q is not a host name or IP address", host))
	}
	a.Host = host
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("port %q is not 1-65535", port))
		}
		a.Port = n
	}
	return a, nil
}

// checkBootstrapSpec checks the SSH parts of a create request: an
// address exactly for providers that adopt machines, a data disk only
// where the user names one, and one host per machine.
func (s *Service) checkBootstrapSpec(ctx context.Context, req *CreateRequest) error {
	p, err := s.Providers.Get(ctx, req.Provider)
	if err != nil {
		return err
	}
	adopts := p.Capabilities().Adopt
	if req.Spec.Reverse {
		switch {
		case !adopts:
			return invalid("--reverse is for machines you adopt (--cloud ssh); provider %s makes its own", p.Name())
		case req.Spec.Address != "":
			return invalid("--reverse takes no --address: the machine dials out, and the control plane logs in as root through its tunnel")
		}
		// As seen from the machine: `join` relays the tunnel to its
		// own SSH server.
		req.Spec.Address = ReverseAddress
	}
	switch {
	case adopts && req.Spec.Address == "":
		return invalid("provider %s adopts an existing machine: give its address with --address USER@HOST[:PORT]", p.Name())
	case !adopts && req.Spec.Address != "":
		return invalid("--address is only for providers that adopt existing machines (ssh); provider %s makes its own", p.Name())
	case !adopts && req.Spec.DataDiskDevice != "":
		return invalid("--data-disk is only for adopted machines (--cloud ssh); provider %s attaches its own data disk", p.Name())
	}
	if req.Spec.DataDiskDevice != "" && !deviceRE().MatchString(req.Spec.DataDiskDevice) {
		return invalid("invalid --data-disk %q: give a device path such as /dev/vdb or /dev/disk/by-id/...", req.Spec.DataDiskDevice)
	}
	if !adopts {
		return nil
	}
	a, err := ParseAddress(req.Spec.Address)
	if err != nil {
		return err
	}
	req.Spec.Address = a.String()
	hs, err := s.Store.ListHosts(ctx, store.HostFilter{Provider: req.Provider})
	if err != nil {
		return err
	}
	for _, h := range hs {
		if req.Spec.Reverse || h.Spec.Reverse {
			continue
		}
		if o, err := ParseAddress(h.Spec.Address); err == nil && o.Host == a.Host && o.Port == a.Port {
			return errkind.Errorf(errkind.Conflict, "machine %s is already host %s, and a machine can be one host only; delete that host first",
				net.JoinHostPort(a.Host, strconv.Itoa(a.Port)), h.Name)
		}
	}
	return nil
}

// prepareBootstrap fills the SSH access of a new instance's spec.
func (s *Service) prepareBootstrap(ctx context.Context, p provider.Provider, h model.Host, spec *provider.CreateSpec) error {
	if h.Spec.Address != "" {
		a, err := ParseAddress(h.Spec.Address)
		if err != nil {
			return err
		}
		spec.Address = net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
		spec.SSHUser = a.User
		spec.Reverse = h.Spec.Reverse
	}
	if !p.Capabilities().Bootstrap {
		return nil
	}
	if s.Bootstrap == nil {
		return provider.Errorf(errkind.Refused, p.Name(), "create", "hosts of this provider are bootstrapped over SSH, but no bootstrap runner is configured")
	}
	key, hk, err := s.Bootstrap.Access(ctx, h, p.Capabilities().InjectHostKey)
	if err != nil {
		return err
	}
	spec.SSHAuthorizedKey, spec.HostKey = key, hk
	return nil
}

// bootstrapInstance runs the bootstrap on a running instance of a
// provider that needs it, and returns the instance with what the
// bootstrap learned in its Meta. Other providers' instances pass through.
func (s *Service) bootstrapInstance(ctx context.Context, p provider.Provider, h *model.Host, inst provider.Instance, jobID string, upgrade bool, progress func(string)) (provider.Instance, error) {
	if !p.Capabilities().Bootstrap {
		return inst, nil
	}
	if s.Bootstrap == nil {
		return inst, provider.Errorf(errkind.Refused, p.Name(), "bootstrap", "no bootstrap runner is configured")
	}
	applyRuntime(h, inst)
	applySSHRuntime(h, inst)
	// Recorded now, so that a failed bootstrap still shows where the
	// host is (show, ssh-key repin) and the next attempt starts from it.
	h.UpdatedAt = s.Now()
	if err := s.Store.UpdateHost(ctx, *h); err != nil {
		return inst, err
	}
	var res BootResult
	var err error
	bctx, end := telemetry.Start(ctx, "bootstrap", attribute.Bool("upgrade", upgrade))
	if upgrade {
		res, err = s.Bootstrap.Upgrade(bctx, *h, jobID, progress)
	} else {
		res, err = s.Bootstrap.Bootstrap(bctx, *h, jobID, progress)
	}
	end(err)
	if err != nil {
		return inst, err
	}
	h.Runtime.SSHHostKey = res.HostKey
	meta := map[string]string{}
	for k, v := range inst.Meta {
		meta[k] = v
	}
	for k, v := range h.Runtime.Meta {
		if _, ok := meta[k]; !ok {
			meta[k] = v
		}
	}
	meta["agent_version"] = res.AgentVersion
	meta["agent_platform"] = res.Platform
	meta["storage"] = agentapi.StorageBtrfs
	inst.Meta = meta
	return inst, nil
}

// applySSHRuntime records where the bootstrap runner reaches the host.
func applySSHRuntime(h *model.Host, inst provider.Instance) {
	host := inst.PublicIP
	if host == "" {
		host = inst.PrivateIP
	}
	if host != "" {
		h.Runtime.SSHHost = host
	}
	h.Runtime.SSHPort = inst.SSHPort
	if h.Runtime.SSHPort == 0 {
		h.Runtime.SSHPort = 22
	}
	switch {
	case inst.SSHUser != "":
		h.Runtime.SSHUser = inst.SSHUser
	case h.Runtime.SSHUser == "":
		h.Runtime.SSHUser = "root"
	}
	h.Runtime.DataDiskDevice = inst.DataDiskDevice
	if h.Spec.DataDiskDevice != "" {
		h.Runtime.DataDiskDevice = h.Spec.DataDiskDevice
	}
}

// deleteInstance deletes h's instance as the delete payload asks: purge
// also erases data a provider otherwise keeps, forget drops the machine
// without touching it. The host's SSH pin goes with it.
func (s *Service) deleteInstance(ctx context.Context, p provider.Provider, h model.Host, ref provider.Ref, pl deletePayload) error {
	var err error
	switch {
	case pl.Forget:
		f, ok := p.(provider.Forgetter)
		if !ok {
			return provider.Errorf(errkind.Refused, p.Name(), "delete", "cannot forget a machine; delete it without --forget")
		}
		err = f.Forget(ctx, ref)
	case pl.Purge:
		if pp, ok := p.(provider.Purger); ok {
			err = pp.Purge(ctx, ref)
		} else {
			err = p.Delete(ctx, ref, false) // deleting the VM deletes its disk
		}
	default:
		err = p.Delete(ctx, ref, pl.KeepDisk)
	}
	if errkind.Is(err, errkind.NotFound) {
		err = nil // already gone: that is what we wanted
	}
	if err == nil && !pl.KeepDisk && p.Capabilities().Bootstrap && s.Bootstrap != nil {
		err = s.Bootstrap.Forget(ctx, h)
	}
	return err
}

// Upgrade enqueues installing this control plane's agent on a running
// host and restarting it.
func (s *Service) Upgrade(ctx context.Context, idOrName string) (Submitted, error) {
	h, err := s.CheckUpgrade(ctx, idOrName)
	if err != nil {
		return Submitted{}, err
	}
	return s.submit(ctx, h, model.ActionUpgrade, nil)
}

// CheckUpgrade refuses what Upgrade would refuse, queueing nothing.
func (s *Service) CheckUpgrade(ctx context.Context, idOrName string) (model.Host, error) {
	h, caps, err := s.liveCaps(ctx, idOrName)
	if err != nil {
		return h, err
	}
	if !caps.Bootstrap {
		return h, refused("host %s (provider %s) runs its agent from this program directly; restart it with `cocalc-hosts stop %s && cocalc-hosts start %s` instead of upgrade",
			h.Name, h.Provider, h.Name, h.Name)
	}
	if h.Status != model.StatusRunning {
		return h, refused("host %s is %s; upgrade needs it running (`cocalc-hosts start %s` installs the current agent anyway)", h.Name, h.Status, h.Name)
	}
	return h, nil
}

// IsBootstrapped reports whether h's provider bootstraps its hosts over SSH.
func (s *Service) IsBootstrapped(ctx context.Context, h model.Host) (bool, error) {
	caps, err := s.capabilities(ctx, h)
	if err != nil {
		return false, err
	}
	return caps.Bootstrap, nil
}

// checkDeleteOptions refuses delete options that contradict each other
// or that h's provider cannot honour.
func (s *Service) checkDeleteOptions(ctx context.Context, h model.Host, o DeleteOptions) error {
	switch {
	case o.Purge && o.KeepDisk:
		return invalid("--purge erases the data and --keep-disk keeps it; choose one")
	case o.Forget && (o.Purge || o.KeepDisk):
		return invalid("--forget leaves the machine untouched; it cannot be combined with --purge or --keep-disk")
	}
	if !o.Forget {
		return nil
	}
	p, err := s.Providers.Get(ctx, h.Provider)
	if err != nil {
		return err
	}
	if !p.Capabilities().Forget {
		return invalid("provider %s cannot forget a host without deleting its VM; drop --forget", h.Provider)
	}
	return nil
}

// SSHEndpoint returns h's runtime with its SSH endpoint filled in: as
// recorded, or, for a host whose bootstrap never got far enough to record
// it, as its provider reports it now.
func (s *Service) SSHEndpoint(ctx context.Context, h model.Host) (model.Host, error) {
	if h.Runtime.SSHHost != "" {
		return h, nil
	}
	p, err := s.Providers.Get(ctx, h.Provider)
	if err != nil {
		return h, err
	}
	if !p.Capabilities().Bootstrap {
		return h, invalid("host %s (provider %s) is not reached over SSH", h.Name, h.Provider)
	}
	inst, err := p.Status(ctx, refOf(h))
	if err != nil {
		return h, err
	}
	applySSHRuntime(&h, inst)
	if h.Runtime.SSHHost == "" {
		return h, fmt.Errorf("host %s has no address yet (instance %s)", h.Name, inst.State)
	}
	return h, nil
}
