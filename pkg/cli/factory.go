// Package cli is the command layer of cocalc-hosts: one file per verb,
// each with an Options struct, a constructor that takes a Factory, and a
// run function that tests call directly. It is the only layer that
// prints; domain packages return values and progress events.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// IOStreams are the command's terminal.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// TTY reports whether Out (and In, for prompts) is a terminal.
	OutTTY bool
	InTTY  bool
}

// SystemIO returns the process's streams.
func SystemIO() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		OutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		InTTY:  term.IsTerminal(int(os.Stdin.Fd())),
	}
}

// Factory gives commands their dependencies, opened lazily so that
// `--help` or `config path` never touches a database.
type Factory struct {
	IO  *IOStreams
	Now func() time.Time

	// Flags are the root's persistent flags (for config precedence).
	Flags *pflag.FlagSet
	// ConfigPath overrides the config file location (--config).
	ConfigPath string

	mu        sync.Mutex
	cfg       *config.Config
	st        store.Store
	providers *providerSet
	// ssh is the SSH pool and bootstrap runner (sshkey.go), made on first use.
	ssh sshParts
}

// NewFactory returns a factory on io.
func NewFactory(io *IOStreams) *Factory {
	return &Factory{IO: io, Now: time.Now}
}

// Config loads the configuration once.
func (f *Factory) Config() (*config.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg == nil {
		c, err := config.Load(f.ConfigPath, f.Flags)
		if err != nil {
			return nil, usageErr(err)
		}
		f.cfg = c
	}
	return f.cfg, nil
}

// Store opens the state database once.
func (f *Factory) Store(ctx context.Context) (store.Store, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st != nil {
		return f.st, nil
	}
	busy, err := cfg.Duration("sqlite.busy_timeout")
	if err != nil {
		return nil, usageErr(err)
	}
	connect, err := cfg.Duration("postgres.connect_timeout")
	if err != nil {
		return nil, usageErr(err)
	}
	s, err := store.Open(ctx, cfg.String("db"), store.Options{BusyTimeout: busy, ConnectTimeout: connect})
	if err != nil {
		return nil, err
	}
	f.st = s
	return s, nil
}

// Hosts returns the host service.
func (f *Factory) Hosts(ctx context.Context) (*hosts.Service, error) {
	s, err := f.Store(ctx)
	if err != nil {
		return nil, err
	}
	cfg, _ := f.Config()
	ps, err := f.Providers(ctx)
	if err != nil {
		return nil, err
	}
	svc := hosts.New(s, ps)
	svc.Now = f.Now
	if err := configureHostExtras(svc, cfg, s); err != nil {
		return nil, err
	}
	if err := f.wireBootstrap(ctx, svc); err != nil {
		return nil, err
	}
	if n := cfg.Int("worker.max_attempts"); n > 0 {
		svc.MaxAttempts = n
	}
	if d, err := cfg.Duration("ready_timeout"); err != nil {
		return nil, usageErr(err)
	} else if d > 0 {
		svc.ReadyTimeout = d
	}
	return svc, nil
}

// Handler returns the queue handler for every kind of job: host actions,
// and the areas registered in handlers (e.g. "project").
func (f *Factory) Handler(ctx context.Context) (*queue.Mux, error) {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	m := &queue.Mux{Default: svc}
	for prefix, make := range jobHandlers {
		h, err := make(ctx, f)
		if err != nil {
			return nil, err
		}
		m.Handle(prefix, h)
	}
	return m, nil
}

// jobHandlers make queue handlers for action prefixes; files add to it
// from init functions (jobHandlers["project"] = ...).
var jobHandlers = map[string]func(context.Context, *Factory) (queue.Handler, error){}

// Providers returns the set of providers, opened on first use of each.
func (f *Factory) Providers(ctx context.Context) (*providerSet, error) {
	s, err := f.Store(ctx)
	if err != nil {
		return nil, err
	}
	cfg, _ := f.Config()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.providers == nil {
		stateDir, err := config.StateDir()
		if err != nil {
			return nil, err
		}
		runtimeDir, err := config.RuntimeDir()
		if err != nil {
			return nil, err
		}
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable for the agent: %w", err)
		}
		f.providers = &providerSet{cfg: cfg, st: s, stateDir: stateDir, runtimeDir: runtimeDir, exe: exe, open: map[string]provider.Provider{},
			onOpen: f.giveSSH}
	}
	return f.providers, nil
}

// Close releases what the factory opened.
func (f *Factory) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.providers != nil {
		f.providers.close()
	}
	f.ssh.close()
	if f.st != nil {
		f.st.Close()
		f.st = nil
	}
}

// providerSet opens providers with their configuration.
type providerSet struct {
	mu         sync.Mutex
	cfg        *config.Config
	st         store.Store
	stateDir   string
	runtimeDir string
	exe        string
	open       map[string]provider.Provider
	// onOpen completes a newly opened provider (hands the SSH pool to
	// providers that work over SSH).
	onOpen func(context.Context, provider.Provider) error
}

var _ hosts.Providers = (*providerSet)(nil)

func (ps *providerSet) Get(ctx context.Context, name string) (provider.Provider, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.open[name]; ok {
		return p, nil
	}
	dep, err := ps.st.Deployment(ctx)
	if err != nil {
		return nil, err
	}
	opts := ps.cfg.ProviderOptions(name)
	creds := opts["credentials"]
	delete(opts, "credentials")
	p, err := provider.Open(name, provider.Config{
		Deployment: dep, StateDir: filepath.Join(ps.stateDir, "providers", name), RuntimeDir: ps.runtimeDir, Options: opts,
		CredentialsFile: creds, State: ps.st.ProviderState(), AgentCommand: []string{ps.exe},
	})
	if err != nil {
		return nil, err
	}
	if ps.onOpen != nil {
		if err := ps.onOpen(ctx, p); err != nil {
			return nil, err
		}
	}
	ps.open[name] = p
	return p, nil
}

// Configured returns every provider that is usable here: those with
// settings in the config file and those that need none (local, sim).
func (ps *providerSet) Configured(ctx context.Context) (map[string]provider.Provider, error) {
	names := map[string]bool{}
	for _, n := range ps.cfg.ConfiguredProviders() {
		names[n] = true
	}
	// Providers in use by some host count as configured too.
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

func (ps *providerSet) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.open {
		if c, ok := p.(provider.Closer); ok {
			c.Close()
		}
	}
}
