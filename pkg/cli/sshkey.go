package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/fleet"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshboot"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
)

func init() { register("ops", newSSHKeyCmd) }

// SSHKeyOptions are the inputs of `ssh-key`.
type SSHKeyOptions struct{}

// FleetKey is what `ssh-key` prints.
type FleetKey struct {
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	Path        string `json:"path"`
}

func newSSHKeyCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh-key",
		Short: "Print the fleet SSH public key (to authorize on machines to adopt)",
		Long: `Print the fleet SSH public key, making the key pair on first use. cocalc-hosts
logs in to every host with this key; clouds get it automatically. To adopt a
machine of your own, append this line to ~USER/.ssh/authorized_keys there and
run ` + "`cocalc-hosts create --cloud ssh --address USER@HOST`" + `.

The private key is ssh.fleet_key (default: fleet_ed25519 in the state
directory), mode 0600.`,
		Example: `  cocalc-hosts ssh-key | ssh root@203.0.113.7 'cat >> ~/.ssh/authorized_keys'
  cocalc-hosts ssh-key repin gpu1 --fingerprint SHA256:...`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSSHKey(cmd.Context(), f) },
	}
	cmd.AddCommand(newRepinCmd(f))
	return cmd
}

func runSSHKey(ctx context.Context, f *Factory) error {
	parts, err := f.sshSetup(ctx)
	if err != nil {
		return err
	}
	id, err := fleet.LoadOrCreate(parts.keyPath)
	if err != nil {
		return err
	}
	if f.jsonOutput() {
		return printJSON(f.IO.Out, FleetKey{PublicKey: id.AuthorizedKey(), Fingerprint: id.Fingerprint(), Path: id.Path})
	}
	fmt.Fprintln(f.IO.Out, id.AuthorizedKey())
	return nil
}

// RepinOptions are the inputs of `ssh-key repin`.
type RepinOptions struct {
	Host        string
	Fingerprint string
}

func newRepinCmd(f *Factory) *cobra.Command {
	o := &RepinOptions{}
	cmd := hostVerbCmd(f, &cobra.Command{
		Use:   "repin HOST",
		Short: "Accept a host's new SSH host key (after a reinstall)",
		Long: `Pin the SSH host key that HOST offers now, replacing the pinned one. cocalc-hosts
refuses to talk to a host whose key changed, because that is also what an
attacker in between looks like. Read the machine's fingerprint on its console
(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and pass it with
--fingerprint: the key is pinned only if it matches.`,
	}, o, &o.Host, nil, runRepin)
	cmd.Flags().StringVar(&o.Fingerprint, "fingerprint", "", "the expected SHA256 fingerprint of the new key")
	return cmd
}

func runRepin(ctx context.Context, f *Factory, o *RepinOptions) error {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	h, err := svc.Get(ctx, o.Host)
	if err != nil {
		return err
	}
	if ok, err := svc.IsBootstrapped(ctx, h); err != nil {
		return err
	} else if !ok {
		return usagef("host %s (provider %s) is not reached over SSH; it has no host key to pin", h.Name, h.Provider)
	}
	h, err = svc.SSHEndpoint(ctx, h)
	if err != nil {
		return err
	}
	parts, err := f.sshSetup(ctx)
	if err != nil {
		return err
	}
	ch, err := parts.boot.Repin(ctx, h, o.Fingerprint)
	if err != nil {
		return err
	}
	if f.jsonOutput() {
		return printJSON(f.IO.Out, ch)
	}
	switch {
	case !ch.Changed:
		fmt.Fprintf(f.IO.Out, "%s: host key %s was already pinned\n", h.Name, ch.New)
	case ch.Old == "":
		fmt.Fprintf(f.IO.Out, "%s: pinned host key %s\n", h.Name, ch.New)
	default:
		fmt.Fprintf(f.IO.Out, "%s: pinned host key %s (was %s)\n", h.Name, ch.New, ch.Old)
	}
	return nil
}

// sshParts are the factory's SSH pool and bootstrap runner, shared by
// the host service, the agent connector and the ssh provider, so that a
// process keeps one connection per host.
type sshParts struct {
	once    sync.Once
	err     error
	keyPath string
	pool    *sshpool.Pool
	boot    *sshboot.Bootstrapper
}

func (p *sshParts) close() {
	if p.pool != nil {
		p.pool.Close()
	}
}

// sshSetup makes the SSH parts once. The fleet key itself is made only
// when something first needs it.
func (f *Factory) sshSetup(ctx context.Context) (*sshParts, error) {
	f.ssh.once.Do(func() { f.ssh.err = f.makeSSH(ctx) })
	return &f.ssh, f.ssh.err
}

func (f *Factory) makeSSH(ctx context.Context) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	st, err := f.Store(ctx)
	if err != nil {
		return err
	}
	stateDir, err := config.StateDir()
	if err != nil {
		return err
	}
	p := &f.ssh
	p.keyPath = cfg.String("ssh.fleet_key")
	if p.keyPath == "" {
		p.keyPath = filepath.Join(stateDir, "fleet_ed25519")
	}
	keyPath := p.keyPath
	fleetKey := func() (*fleet.Identity, error) { return fleet.LoadOrCreate(keyPath) }
	p.pool = sshpool.NewLazy(fleetKey, sshboot.StorePins{Store: st})
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable for the agent: %w", err)
	}
	src := &sshboot.AgentSource{
		Self: exe, ReleaseURL: cfg.String("bootstrap.agent_url"), CacheDir: filepath.Join(stateDir, "agent-cache"),
		SHA256: map[string]string{},
	}
	for _, plat := range []string{"linux/amd64", "linux/arm64"} {
		src.SHA256[plat] = cfg.String(sshboot.ConfigKey(plat))
	}
	b := sshboot.New(p.pool, st, fleetKey, src)
	b.Now = f.Now
	if b.SSHWait, err = cfg.Duration("bootstrap.ssh_wait"); err != nil {
		return usageErr(err)
	}
	if b.AgentWait, err = cfg.Duration("bootstrap.agent_wait"); err != nil {
		return usageErr(err)
	}
	if d, err := cfg.Duration("bootstrap.idle_check_interval"); err != nil || d <= 0 {
		return usagef("config bootstrap.idle_check_interval: %q is not a positive duration (like 30s)", cfg.String("bootstrap.idle_check_interval"))
	}
	if d, err := cfg.Duration("bootstrap.snapshot_interval"); err != nil || d < 0 {
		return usagef("config bootstrap.snapshot_interval: %q is not a duration (like 1h, or 0 for no scheduled snapshots)", cfg.String("bootstrap.snapshot_interval"))
	}
	b.IdleCheckInterval, b.SnapshotInterval = cfg.String("bootstrap.idle_check_interval"), cfg.String("bootstrap.snapshot_interval")
	if err := configureBootIngress(f, b, cfg); err != nil {
		return err
	}
	// Looked up when a host is bootstrapped, not now: opening a provider
	// hands it the SSH pool that this function is making.
	b.Provider = func(ctx context.Context, name string) (provider.Provider, error) {
		ps, err := f.Providers(ctx)
		if err != nil {
			return nil, err
		}
		return ps.Get(ctx, name)
	}
	files, err := parseSecretFiles(cfg.String("bootstrap.secrets"))
	if err != nil {
		return usageErr(err)
	}
	if len(files) > 0 {
		b.Secrets = func(context.Context) (map[string][]byte, error) {
			out := map[string][]byte{}
			for name, path := range files {
				data, err := secrets.Read(path)
				if err != nil {
					return nil, fmt.Errorf("bootstrap.secrets %s: %w", name, err)
				}
				out[name] = data
			}
			return out, nil
		}
	}
	p.boot = b
	return nil
}

// parseSecretFiles parses NAME=FILE[,NAME=FILE...].
func parseSecretFiles(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, path, ok := strings.Cut(item, "=")
		if !ok || name == "" || path == "" || strings.ContainsAny(name, "/ ") {
			return nil, fmt.Errorf("bootstrap.secrets: %q is not NAME=FILE", item)
		}
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("bootstrap.secrets: %s=%s: give the file as an absolute path", name, path)
		}
		out[name] = path
	}
	return out, nil
}

// wireBootstrap gives the host service the bootstrap runner and the SSH
// agent connector.
func (f *Factory) wireBootstrap(ctx context.Context, svc *hosts.Service) error {
	parts, err := f.sshSetup(ctx)
	if err != nil {
		return err
	}
	svc.Bootstrap = parts.boot
	svc.Agents = hosts.RemoteAgents{Remote: parts.boot}
	return nil
}

// sshUser is a provider that works on its machines over SSH.
type sshUser interface{ UseSSH(*sshpool.Pool) }

// giveSSH hands the SSH pool to providers that need it.
func (f *Factory) giveSSH(ctx context.Context, p provider.Provider) error {
	u, ok := p.(sshUser)
	if !ok {
		return nil
	}
	parts, err := f.sshSetup(ctx)
	if err != nil {
		return err
	}
	u.UseSSH(parts.pool)
	return nil
}

// hostAgentHealth asks h's agent for its status through the host service
// (directly for local hosts, over the host's SSH connection for remote
// ones, with the time of the last successful contact: the host's health).
// Hosts without an agent this process can reach (sim) have none.
func (f *Factory) hostAgentHealth(ctx context.Context, h model.Host) *AgentHealth {
	remote := h.Runtime.SSHHost != ""
	if !remote && h.Runtime.Meta["socket"] == "" {
		return nil
	}
	health := &AgentHealth{}
	if remote {
		defer func() {
			if st, err := f.Store(ctx); err == nil {
				if pin, err := st.GetHostKey(ctx, h.ID); err == nil {
					health.LastContact = pin.LastContactAt
				}
			}
		}()
	}
	svc, err := f.Hosts(ctx)
	if err != nil {
		health.Error = err.Error()
		return health
	}
	c, err := svc.AgentClient(ctx, h)
	if err != nil {
		health.Error = err.Error()
		return health
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := c.Status(sctx)
	if err != nil {
		health.Error = err.Error()
		return health
	}
	health.Reachable, health.Status = true, &st
	return health
}
