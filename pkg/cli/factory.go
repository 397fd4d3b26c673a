// Package cli is the command layer of cocalc-hosts: one file per verb,
// each with an Options struct, a constructor that takes a Factory, and a
// run function that tests call directly. It is the only layer that
// prints; domain packages return values and progress events.
package cli

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/sagemathinc/cocalc-hosts/pkg/app"
	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/telemetry"
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

// Factory gives commands their dependencies: the terminal, the settings,
// and the application built from them (pkg/app), made on first use so
// that `--help` or `config path` never touches a database.
type Factory struct {
	IO  *IOStreams
	Now func() time.Time

	// Flags are the root's persistent flags (for config precedence).
	Flags *pflag.FlagSet
	// ConfigPath overrides the config file location (--config).
	ConfigPath string

	mu  sync.Mutex
	cfg *config.Settings
	app *app.App
	// closeTraces sends the spans left and stops tracing (nil: no traces).
	closeTraces func(context.Context) error
	remote      *client.Client
}

// NewFactory returns a factory on io.
func NewFactory(io *IOStreams) *Factory {
	return &Factory{IO: io, Now: time.Now}
}

// Config loads the configuration once: the config file, with the
// settings given as flags on the command line.
func (f *Factory) Config() (*config.Settings, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg == nil {
		flags := map[string]string{}
		if f.Flags != nil {
			// VisitAll: a subcommand parses these flags in its own set,
			// which marks the shared flag but not the root's set.
			f.Flags.VisitAll(func(fl *pflag.Flag) {
				if fl.Changed && (fl.Name == "db" || fl.Name == "account" || fl.Name == "output") {
					flags[fl.Name] = fl.Value.String()
				}
			})
		}
		c, err := config.Load(f.ConfigPath, flags)
		var le *config.LoadError
		if errors.As(err, &le) && le.File != "" {
			return nil, usagef("%v; fix it with `cocalc-hosts config set KEY VALUE`", err)
		}
		if err != nil {
			return nil, usageErr(err)
		}
		f.cfg = c
	}
	return f.cfg, nil
}

// ConfigFile is the config file's path, found without reading it (so
// that a file with a bad value can still be fixed with `config set`).
func (f *Factory) ConfigFile() (string, error) { return config.Path(f.ConfigPath) }

// App returns the application built from the configuration, once. With
// server.url set there is none: what only this process can do (open the
// database, reach hosts over SSH) is refused with the way out.
func (f *Factory) App() (*app.App, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	if cfg.Server.URL != "" {
		return nil, errkind.Errorf(errkind.Refused, "this command works only on the database directly, and server.url is set (%s): run it where the database is reachable, or `cocalc-hosts logout` to leave server mode", cfg.Server.URL)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.app == nil {
		// Traces of the jobs this process runs, when configured; the
		// exporter is made only then, as the App that runs them is.
		if cfg.OTel.Endpoint != "" {
			shutdown, err := telemetry.Setup(context.Background(), cfg.OTel.Endpoint, cfg.OTel.HeadersFile, Version)
			if err != nil {
				return nil, errkind.Wrap(errkind.Invalid, err)
			}
			f.closeTraces = shutdown
		}
		f.app = app.New(cfg, f.Now)
	}
	return f.app, nil
}

// Store opens the state database once.
func (f *Factory) Store(ctx context.Context) (store.Store, error) {
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	return a.Store(ctx)
}

// Remote returns the client of the server when server.url is set (nil
// otherwise): commands then call the server instead of the database.
func (f *Factory) Remote() (*client.Client, error) {
	cfg, err := f.Config()
	if err != nil || cfg.Server.URL == "" {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.remote == nil {
		key, err := readCredentials(cfg.Server.URL)
		if err != nil {
			return nil, err
		}
		c, err := client.New(cfg.Server.URL, key)
		if err != nil {
			return nil, err
		}
		if cfg.Server.CACert != "" {
			if err := c.TrustCA(cfg.Server.CACert); err != nil {
				return nil, err
			}
		}
		f.remote = c
	}
	return f.remote, nil
}

// owner is the account a new host is for: the configured account
// directly; through a server none, for the server to fill in the API
// key's account (this machine's login name is not who the key is).
func (f *Factory) owner() (string, error) {
	cfg, err := f.Config()
	if err != nil || cfg.Server.URL != "" {
		return "", err
	}
	return cfg.Account, nil
}

// Hosts returns the host service.
func (f *Factory) Hosts(ctx context.Context) (HostService, error) {
	if c, err := f.Remote(); c != nil || err != nil {
		return client.Hosts{C: c}, err
	}
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	return a.Hosts(ctx)
}

// Providers returns the set of providers, each opened on first use.
func (f *Factory) Providers(ctx context.Context) (*app.Providers, error) {
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	return a.Providers(ctx)
}

// localHosts is the host service of this process itself, for what only
// this process can do (reach a host's agent or SSH endpoint).
func (f *Factory) localHosts(ctx context.Context) (*hosts.Service, error) {
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	return a.Hosts(ctx)
}

// Backups returns the backup service.
func (f *Factory) Backups(ctx context.Context) (BackupService, error) {
	if c, err := f.Remote(); c != nil || err != nil {
		return client.Projects{C: c}, err
	}
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	return a.Projects(ctx)
}

// Ops returns the deployment's operations: cost, catalog, providers,
// reconcile.
func (f *Factory) Ops() (OpsService, error) {
	if c, err := f.Remote(); c != nil || err != nil {
		return client.Ops{C: c}, err
	}
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	return a.Ops(), nil
}

// Projects returns the project service.
func (f *Factory) Projects(ctx context.Context) (ProjectService, error) {
	if c, err := f.Remote(); c != nil || err != nil {
		return client.Projects{C: c}, err
	}
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	return a.Projects(ctx)
}

// Jobs runs queued jobs in this process (or, with a server, waits for
// the server's workers to run them).
func (f *Factory) Jobs() (JobRunner, error) {
	if c, err := f.Remote(); c != nil || err != nil {
		return client.Jobs{C: c}, err
	}
	return f.App()
}

// Watcher follows changes to hosts, projects and jobs.
func (f *Factory) Watcher() (Watcher, error) {
	if c, err := f.Remote(); c != nil || err != nil {
		return client.Events{C: c}, err
	}
	return f.App()
}

// Accounts returns the service of accounts, API keys and the audit log.
func (f *Factory) Accounts(ctx context.Context) (AccountService, error) {
	if c, err := f.Remote(); c != nil || err != nil {
		return client.Accounts{C: c}, err
	}
	a, err := f.App()
	if err != nil {
		return nil, err
	}
	return a.Accounts(ctx)
}

// Close releases what the factory opened.
func (f *Factory) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.app != nil {
		f.app.Close()
	}
	if f.closeTraces != nil {
		// Send the spans still batched, but do not hang an exiting
		// command on an unreachable collector.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.closeTraces(ctx) //nolint:errcheck // traces are best effort
		f.closeTraces = nil
	}
}
