package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/fleet"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshboot"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// sshParts are the SSH pool and bootstrap runner, shared by the host
// service, the agent connector and the ssh provider, so that a process
// keeps one connection per host.
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
func (a *App) sshSetup(ctx context.Context) (*sshParts, error) {
	a.ssh.once.Do(func() { a.ssh.err = a.makeSSH(ctx) })
	return &a.ssh, a.ssh.err
}

// Bootstrapper is the runner that turns machines into project hosts over
// SSH, and pins, checks and re-pins their host keys.
func (a *App) Bootstrapper(ctx context.Context) (*sshboot.Bootstrapper, error) {
	parts, err := a.sshSetup(ctx)
	if err != nil {
		return nil, err
	}
	return parts.boot, nil
}

// FleetKey is the key pair the control plane logs in to hosts with, made
// on first use.
func (a *App) FleetKey(ctx context.Context) (*fleet.Identity, error) {
	parts, err := a.sshSetup(ctx)
	if err != nil {
		return nil, err
	}
	return fleet.LoadOrCreate(parts.keyPath)
}

func (a *App) makeSSH(ctx context.Context) error {
	cfg := a.cfg
	st, err := a.Store(ctx)
	if err != nil {
		return err
	}
	p := &a.ssh
	if p.keyPath = cfg.FleetKey; p.keyPath == "" {
		if p.keyPath, err = stateDir("fleet_ed25519"); err != nil {
			return err
		}
	}
	keyPath := p.keyPath
	fleetKey := func() (*fleet.Identity, error) { return fleet.LoadOrCreate(keyPath) }
	p.pool = sshpool.New(fleetKey, sshboot.StorePins{Store: st})
	p.pool.Tunnel = func(ctx context.Context, t sshpool.Target) (net.Conn, error) {
		c, err := a.tunnels.Dial(ctx, t.HostID, tunnel.TargetSSHD)
		if errors.Is(err, tunnel.ErrNotConnected) {
			where := "its tunnel goes to `cocalc-hosts serve`, so run this through that server (`cocalc-hosts login --server URL`), and check that `cocalc-hosts join` runs on the machine"
			if ht, herr := st.HostTunnel(ctx, t.HostID); herr == nil && ht.Holder != "" {
				where = fmt.Sprintf("its tunnel is held by %s: run this through that server (`cocalc-hosts login --server URL`)", ht.Holder)
			} else if herr == nil {
				where = "no server holds its tunnel now: check that `cocalc-hosts join` runs on the machine"
			}
			return nil, errkind.Errorf(errkind.Unavailable, "host %s is reverse-connected and has no tunnel to this process: %s", t.Name, where)
		}
		return c, err
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	cacheDir, err := stateDir("agent-cache")
	if err != nil {
		return err
	}
	src := &sshboot.AgentSource{Self: exe, ReleaseURL: cfg.Bootstrap.AgentURL, CacheDir: cacheDir,
		SHA256: maps.Clone(cfg.Bootstrap.AgentSHA256)}
	b := sshboot.New(p.pool, st, fleetKey, src)
	b.Now = a.now
	b.SSHWait, b.AgentWait = cfg.Bootstrap.SSHWait, cfg.Bootstrap.AgentWait
	b.IdleCheckInterval, b.SnapshotInterval = cfg.Bootstrap.IdleCheckInterval.String(), cfg.Bootstrap.SnapshotInterval.String()
	// Bootstrapped agents get their ingress ports and the access list
	// they start with.
	b.Ingress = sshboot.Ingress{HTTPSPort: cfg.Ingress.HTTPSPort, SSHPort: cfg.Ingress.SSHPort, SessionTTL: cfg.Ingress.SessionTTL.String()}
	b.AccessList = func(ctx context.Context, h model.Host) (*agentapi.AccessList, error) {
		ps, err := a.Projects(ctx)
		if err != nil {
			return nil, err
		}
		l, err := ps.AccessList(ctx, h, 0)
		if err != nil {
			return nil, err
		}
		return &l, nil
	}
	// Looked up when a host is bootstrapped, not now: opening a provider
	// hands it the SSH pool that this function is making.
	b.Provider = func(ctx context.Context, name string) (provider.Provider, error) {
		ps, err := a.Providers(ctx)
		if err != nil {
			return nil, err
		}
		return ps.Get(ctx, name)
	}
	files := cfg.Bootstrap.Secrets
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

// SSHUser is how a provider with Capabilities().SSH is handed the SSH
// pool (the provider package cannot name sshpool, which depends on it).
type SSHUser interface{ UseSSH(*sshpool.Pool) }

// giveSSH hands the SSH pool to providers that need it.
func (a *App) giveSSH(ctx context.Context, p provider.Provider) error {
	if !p.Capabilities().SSH {
		return nil
	}
	u, ok := p.(SSHUser)
	if !ok {
		return fmt.Errorf("provider %s says it works over SSH but has no UseSSH method", p.Name())
	}
	parts, err := a.sshSetup(ctx)
	if err != nil {
		return err
	}
	u.UseSSH(parts.pool)
	return nil
}
