package app

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Providers opens providers by name with their configuration, each once.
type Providers struct {
	mu         sync.Mutex
	cfg        *config.Settings
	st         store.Store
	stateDir   string
	runtimeDir string
	exe        string
	open       map[string]provider.Provider
	// onOpen completes a newly opened provider (hands the SSH pool to
	// providers that work over SSH).
	onOpen func(context.Context, provider.Provider) error
	// onCall is told of each call a provider makes to its cloud's API;
	// read at each call, so that it reaches providers opened before it
	// was set.
	onCall atomic.Pointer[ProviderCallObserver]
}

// ProviderCallObserver is told of each call a provider makes to its
// cloud's API (provider.Config.OnCall, with the provider's name).
type ProviderCallObserver func(provider, op string, took time.Duration, err error)

// ObserveProviderCalls has obs told of every cloud API call of the
// providers opened from now on (`serve` counts them for /metrics).
func (a *App) ObserveProviderCalls(obs ProviderCallObserver) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onProviderCall = obs
	if a.providers != nil {
		a.providers.onCall.Store(&obs)
	}
}

var _ hosts.Providers = (*Providers)(nil)

// Providers returns the set of providers, each opened on first use.
func (a *App) Providers(ctx context.Context) (*Providers, error) {
	st, err := a.Store(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.providers == nil {
		stateDir, err := stateDir("providers")
		if err != nil {
			return nil, err
		}
		runtimeDir, err := config.RuntimeDir()
		if err != nil {
			return nil, err
		}
		exe, err := executable()
		if err != nil {
			return nil, err
		}
		a.providers = &Providers{cfg: a.cfg, st: st, stateDir: stateDir, runtimeDir: runtimeDir, exe: exe,
			open: map[string]provider.Provider{}, onOpen: a.giveSSH}
		if a.onProviderCall != nil {
			a.providers.onCall.Store(&a.onProviderCall)
		}
	}
	return a.providers, nil
}

// Get opens the provider called name (once).
func (ps *Providers) Get(ctx context.Context, name string) (provider.Provider, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.open[name]; ok {
		return p, nil
	}
	opts := ps.cfg.ProviderOptions(name)
	creds := opts["credentials"]
	delete(opts, "credentials")
	p, err := ps.OpenWith(ctx, name, opts, creds)
	if err != nil {
		return nil, err
	}
	ps.open[name] = p
	return p, nil
}

// OpenWith opens a new instance of provider name with the given options
// and credentials file instead of the configured ones (to check them
// before they are saved). The caller closes it.
func (ps *Providers) OpenWith(ctx context.Context, name string, opts map[string]string, creds string) (provider.Provider, error) {
	dep, err := ps.st.Deployment(ctx)
	if err != nil {
		return nil, err
	}
	onCall := func(op string, took time.Duration, err error) {
		if obs := ps.onCall.Load(); obs != nil {
			(*obs)(name, op, took, err)
		}
	}
	p, err := provider.Open(name, provider.Config{
		Deployment: dep, StateDir: filepath.Join(ps.stateDir, name), RuntimeDir: ps.runtimeDir, Options: opts,
		CredentialsFile: creds, State: ps.st.ProviderState(), AgentCommand: []string{ps.exe}, OnCall: onCall,
	})
	if err != nil {
		// Unknown, or not made from these settings: bad options or an
		// unreadable credentials file.
		return nil, errkind.Wrap(errkind.Invalid, err)
	}
	if ps.onOpen != nil {
		if err := ps.onOpen(ctx, p); err != nil {
			if c, ok := p.(provider.Closer); ok {
				c.Close()
			}
			return nil, err
		}
	}
	return p, nil
}

// Configured returns every provider that is usable here: those with
// settings in the config file, and those some host uses.
func (ps *Providers) Configured(ctx context.Context) (map[string]provider.Provider, error) {
	names := map[string]bool{}
	for _, n := range ps.cfg.ConfiguredProviders() {
		names[n] = true
	}
	hs, err := ps.st.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		names[h.Provider] = true
	}
	out := map[string]provider.Provider{}
	for n := range names {
		p, err := ps.Get(ctx, n)
		if err != nil {
			return nil, err
		}
		out[n] = p
	}
	return out, nil
}

func (ps *Providers) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.open {
		if c, ok := p.(provider.Closer); ok {
			c.Close()
		}
	}
}
