// Package app is the composition root of the control plane. It builds
// cocalc-hosts once from its settings: the state database, the providers,
// the SSH pool and bootstrap runner, the catalog and DNS, the host,
// project and cost services, and the queue's job handlers. Commands (and
// the daemons in pkg/worker) take the parts they need from an App; no
// other package wires parts together.
//
// Every part is made on first use, so a command that needs none of them
// (`--help`, `config path`) opens nothing.
package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/accounts"
	"github.com/sagemathinc/cocalc-hosts/pkg/acmecert"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/dns"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// App is one control plane process's application, built from settings.
type App struct {
	cfg *config.Settings
	now func() time.Time

	mu        sync.Mutex
	st        store.Store
	providers *Providers
	// onProviderCall is handed to the providers when they are made.
	onProviderCall ProviderCallObserver
	ssh            sshParts
	hosts          *hosts.Service
	projects       *projects.Service
	// tunnels are the tunnels of reverse-connected hosts that `serve`
	// takes; the SSH pool reaches those hosts through them.
	tunnels *tunnel.Registry
}

// New returns the application configured by cfg; now is its clock (nil:
// time.Now).
func New(cfg *config.Settings, now func() time.Time) *App {
	if now == nil {
		now = time.Now
	}
	return &App{cfg: cfg, now: now, tunnels: tunnel.NewRegistry()}
}

// Tunnels are the tunnels reverse-connected hosts keep to this process
// (only `serve` takes them).
func (a *App) Tunnels() *tunnel.Registry { return a.tunnels }

// Settings are what the application was built from.
func (a *App) Settings() *config.Settings { return a.cfg }

// Now is the application's clock.
func (a *App) Now() time.Time { return a.now() }

// Store opens the state database once.
func (a *App) Store(ctx context.Context) (store.Store, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.storeLocked(ctx)
}

func (a *App) storeLocked(ctx context.Context) (store.Store, error) {
	if a.st != nil {
		return a.st, nil
	}
	s, err := store.Open(ctx, a.cfg.DB, store.Options{BusyTimeout: a.cfg.SQLiteBusyTimeout, ConnectTimeout: a.cfg.PostgresConnectTimeout})
	if err != nil {
		return nil, err
	}
	a.st = s
	return s, nil
}

// Hosts returns the host service, with its catalog, DNS, bootstrap runner
// and agent connector.
func (a *App) Hosts(ctx context.Context) (*hosts.Service, error) {
	a.mu.Lock()
	if a.hosts != nil {
		defer a.mu.Unlock()
		return a.hosts, nil
	}
	a.mu.Unlock()
	st, err := a.Store(ctx)
	if err != nil {
		return nil, err
	}
	ps, err := a.Providers(ctx)
	if err != nil {
		return nil, err
	}
	svc := hosts.New(st, ps)
	svc.Now, svc.DefaultProvider = a.now, a.cfg.DefaultCloud
	if svc.Catalog, err = a.catalogCache(st); err != nil {
		return nil, err
	}
	if svc.DNS, err = a.dnsRecords(); err != nil {
		return nil, err
	}
	parts, err := a.sshSetup(ctx)
	if err != nil {
		return nil, err
	}
	svc.Bootstrap = parts.boot
	svc.Agents = hosts.RemoteAgents{Remote: parts.boot}
	svc.MaxAttempts, svc.ReadyTimeout = a.cfg.Worker.MaxAttempts, a.cfg.ReadyTimeout
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hosts == nil {
		a.hosts = svc
	}
	return a.hosts, nil
}

// dnsRecords is the DNS publisher when dns.domain is set, else nil.
func (a *App) dnsRecords() (hosts.DNSRecords, error) {
	d, err := a.cloudflare()
	if d == nil || err != nil {
		return nil, err
	}
	return d, nil
}

// cloudflare is the configured zone (dns.*), or nil without dns.domain:
// it publishes hosts' names and answers their ACME challenges.
func (a *App) cloudflare() (*dns.Cloudflare, error) {
	c := a.cfg.DNS
	if c.Domain == "" {
		return nil, nil
	}
	d, err := dns.New(dns.Config{Domain: c.Domain, ZoneID: c.ZoneID, TokenFile: c.TokenFile, Endpoint: c.Endpoint, MaxRetries: -1})
	if err != nil {
		return nil, errkind.Wrap(errkind.Invalid, err)
	}
	return d, nil
}

// catalogCache is the machine catalog with the configured TTLs and disk
// prices.
func (a *App) catalogCache(st store.Store) (*catalog.Cache, error) {
	c := catalog.New(st)
	c.Now = a.now
	c.TTL.MachineTypes, c.TTL.Capacity = a.cfg.Catalog.MachineTypesTTL, a.cfg.Catalog.CapacityTTL
	c.Disk = catalog.DiskPricing{}
	for name, p := range a.cfg.DiskPrices {
		c.Disk[name] = catalog.DiskPrice{PerGBMonth: p, Source: "config pricing.disk_gb_month." + name}
	}
	return c, nil
}

// Catalog is the host service's machine catalog.
func (a *App) Catalog(ctx context.Context) (*catalog.Cache, error) {
	svc, err := a.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	return svc.CatalogCache(), nil
}

// Projects returns the project service, reaching agents through the host
// service.
func (a *App) Projects(ctx context.Context) (*projects.Service, error) {
	svc, err := a.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.projects == nil {
		ps := projects.New(svc.Store, svc)
		ps.Now = a.now
		ps.MaxAttempts = a.cfg.Worker.MaxAttempts
		ps.KeepSource = a.cfg.Moves.KeepSource
		ps.RelayMoves = a.cfg.Moves.Relay
		ps.Ingress = projects.IngressSettings{TokenTTL: a.cfg.Tokens.TTL, CertValidity: a.cfg.Tokens.SSHCertValidity,
			MaxStale: a.cfg.Ingress.ACLMaxStale}
		path, err := a.SigningKeysPath()
		if err != nil {
			return nil, err
		}
		ps.Keys = func() (*tokens.Keyring, error) { return tokens.LoadOrCreate(path, a.now()) }
		if ps.Certs, err = a.certIssuer(); err != nil {
			return nil, err
		}
		b := a.cfg.Backup
		ps.Backup = projects.BackupSettings{ConfigTTL: b.ConfigTTL, Schedule: b.Schedule,
			Keep: agentapi.BackupForgetRequest{KeepLast: b.KeepLast, KeepDaily: b.KeepDaily, KeepWeekly: b.KeepWeekly, KeepMonthly: b.KeepMonthly}}
		a.projects = ps
	}
	return a.projects, nil
}

// certIssuer gets hosts CA certificates when ingress.acme_directory is
// set, answering DNS-01 through the DNS that names the hosts.
func (a *App) certIssuer() (projects.CertIssuer, error) {
	in := a.cfg.Ingress
	if in.ACMEDirectory == "" {
		return nil, nil
	}
	d, err := a.cloudflare()
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, errkind.New(errkind.Invalid, "ingress.acme_directory needs DNS: certificates are for hosts' public names under dns.domain, proved with TXT records there; set dns.domain, dns.zone_id and dns.token_file, or unset ingress.acme_directory")
	}
	key := in.ACMEAccountKey
	if key == "" {
		if key, err = stateDir("acme_account.pem"); err != nil {
			return nil, err
		}
	}
	return &acmecert.Issuer{Directory: in.ACMEDirectory, Email: in.ACMEEmail, AccountKeyFile: key, DNS: d}, nil
}

// SigningKeysPath is the keyring that signs connect tokens and SSH
// certificates: tokens.signing_keys, or signing_keys.json in the state
// directory.
func (a *App) SigningKeysPath() (string, error) {
	if p := a.cfg.Tokens.SigningKeys; p != "" {
		return p, nil
	}
	return stateDir("signing_keys.json")
}

// Cost reports cost with the configured disk prices.
func (a *App) Cost(ctx context.Context) (*cost.Service, error) {
	svc, err := a.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	cache := svc.CatalogCache()
	return &cost.Service{Store: svc.Store, Disk: cache.Disk, Prices: cache, Now: a.now}, nil
}

// Handler routes every kind of job: host actions by default, and
// "project.*" actions to the project service. This is the one place a
// new kind of job is registered.
func (a *App) Handler(ctx context.Context) (queue.Handler, error) {
	svc, err := a.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	ps, err := a.Projects(ctx)
	if err != nil {
		return nil, err
	}
	m := &queue.Mux{Default: svc}
	m.Handle("project", projects.Handler{S: ps})
	m.Handle("move", projects.MoveCleanupHandler{S: ps})
	m.Handle("backup", projects.BackupHandler{S: ps})
	return m, nil
}

// RunJob works job in this process until it is done or failed (or waits
// for the worker that has it), telling onEvent what happens.
func (a *App) RunJob(ctx context.Context, job model.Job, onEvent func(queue.Event)) (model.Job, error) {
	st, err := a.Store(ctx)
	if err != nil {
		return job, err
	}
	h, err := a.Handler(ctx)
	if err != nil {
		return job, err
	}
	w := queue.NewWorker(st, h)
	w.Lease = a.cfg.Worker.Lease
	w.OnEvent = onEvent
	return w.Wait(ctx, job.ID)
}

// ReconcileOptions choose what a reconcile pass may change.
type ReconcileOptions = reconcile.Pass

// Reconcile compares the database with what every configured provider
// runs (see pkg/reconcile), publishing DNS for hosts it changes.
func (a *App) Reconcile(ctx context.Context, o ReconcileOptions) (reconcile.Report, error) {
	st, err := a.Store(ctx)
	if err != nil {
		return reconcile.Report{}, err
	}
	ps, err := a.Providers(ctx)
	if err != nil {
		return reconcile.Report{}, err
	}
	provs, err := ps.Configured(ctx)
	if err != nil {
		return reconcile.Report{}, err
	}
	svc, err := a.Hosts(ctx)
	if err != nil {
		return reconcile.Report{}, err
	}
	return reconcile.Run(ctx, reconcile.Options{Store: st, Providers: provs, DryRun: o.DryRun,
		DeleteOrphans: o.DeleteOrphans, Now: a.now,
		BeforeWrite: func(ctx context.Context, h *model.Host) { svc.SyncDNS(ctx, h, func(string) {}) }})
}

// Accounts returns the service of accounts, API keys and the audit log.
func (a *App) Accounts(ctx context.Context) (*accounts.Service, error) {
	st, err := a.Store(ctx)
	if err != nil {
		return nil, err
	}
	return accounts.New(st, a.now), nil
}

// Close releases what the application opened.
func (a *App) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.providers != nil {
		a.providers.close()
	}
	a.ssh.close()
	if a.st != nil {
		a.st.Close()
		a.st = nil
	}
}

// executable is this program, which local hosts run as their agent and
// which the bootstrap installs on hosts of the same platform.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable for the agent: %w", err)
	}
	return exe, nil
}

// stateDir is where the application keeps files next to the database.
func stateDir(sub ...string) (string, error) {
	d, err := config.StateDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{d}, sub...)...), nil
}
