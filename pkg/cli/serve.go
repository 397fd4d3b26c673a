package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
	"github.com/sagemathinc/cocalc-hosts/pkg/worker"
)

// ServeOptions are the inputs of `serve`.
type ServeOptions struct {
	Listen   string
	TLSCert  string
	TLSKey   string
	NoWorker bool
	// MetricsListen serves /metrics there, apart from the API.
	MetricsListen string
}

func newServeCmd(f *Factory) *cobra.Command {
	o := &ServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the API to clients with API keys (server mode)",
		Long: `Serve every operation as a JSON API under /api/v1 (described at
/api/v1/openapi.json), with /healthz and /readyz, for clients that log in
with an API key (` + "`cocalc-hosts login`" + `). Each request is authorized as the key's
account, rate-limited per account (server.rate_limit, server.burst) and,
when it changes something or is refused, written to the audit log.

The server also runs the queue's worker and its periodic duties, as
` + "`cocalc-hosts worker`" + ` does, unless --no-worker (then run workers apart).
Several servers may share one Postgres: all run jobs, and the one holding
the database's leader lock runs the periodic duties (another takes over
within seconds if it dies). On SIGTERM or Ctrl-C it stops taking
requests, lets those in flight finish, gives running jobs 20 s to end and
hands the rest back for another process to run at once.

Without --tls-cert/--tls-key it listens only on loopback: API keys must
not cross a network in clear (put a TLS proxy in front, or give a
certificate).

With --metrics-listen it serves Prometheus metrics at /metrics on a
second address, without a key (they are counts, and a key Prometheus
could use would be an admin's): the queue by action and state, the
oldest due job's wait, workers holding leases, hosts by provider and
status, and the outcomes, error kinds and times of the jobs this
server's worker ran. Keep that address to your monitoring network.`,
		Example: `  cocalc-hosts serve --listen 127.0.0.1:8443
  cocalc-hosts serve --listen 127.0.0.1:8443 --metrics-listen 10.0.0.5:9464
  cocalc-hosts serve --listen :8443 --tls-cert /etc/cocalc-hosts/tls.crt --tls-key /etc/cocalc-hosts/tls.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd.Context(), f, o) },
	}
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8443", "address to listen on (HOST:PORT; port 0 picks a free one)")
	cmd.Flags().StringVar(&o.TLSCert, "tls-cert", "", "TLS certificate file (PEM)")
	cmd.Flags().StringVar(&o.TLSKey, "tls-key", "", "TLS private key file (PEM, 0600)")
	cmd.Flags().BoolVar(&o.NoWorker, "no-worker", false, "only serve the API; run `cocalc-hosts worker` apart")
	cmd.Flags().StringVar(&o.MetricsListen, "metrics-listen", "", "also serve Prometheus metrics at /metrics on this address (HOST:PORT; no key)")
	return cmd
}

func runServe(ctx context.Context, f *Factory, o *ServeOptions) error {
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return usagef("give both --tls-cert and --tls-key, or neither")
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return usagef("--listen %q: want HOST:PORT, such as 127.0.0.1:8443", o.Listen)
	}
	if ip := net.ParseIP(host); o.TLSCert == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usagef("--listen %s without TLS would send API keys over the network in clear: listen on 127.0.0.1 (behind a TLS proxy), or give --tls-cert and --tls-key", o.Listen)
	}
	var tlsConf *tls.Config
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return usagef("--tls-cert/--tls-key: %v", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	a, err := f.App()
	if err != nil {
		return err
	}
	st, err := a.Store(ctx)
	if err != nil {
		return err
	}
	hs, err := a.Hosts(ctx)
	if err != nil {
		return err
	}
	ps, err := a.Projects(ctx)
	if err != nil {
		return err
	}
	accts, err := a.Accounts(ctx)
	if err != nil {
		return err
	}
	log := f.logger()
	hub := server.NewHub(f.Now)
	srv := &server.Server{Store: st, Hosts: hs, Projects: ps, Accounts: accts, Ops: a.Ops(), Now: f.Now, Log: log,
		RateLimit: cfg.Server.RateLimit, Burst: cfg.Server.Burst, Events: hub, Tunnels: a.Tunnels()}
	// The worker stops when wctx ends: after the requests (below).
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	var w *worker.Worker // nil with --no-worker
	var metrics *server.Metrics
	if !o.NoWorker {
		w, err = worker.New(wctx, a, worker.Options{
			Concurrency: cfg.Worker.Concurrency, Lease: cfg.Worker.Lease,
			ReconcileInterval: cfg.Worker.ReconcileInterval, CatalogInterval: cfg.Catalog.RefreshInterval,
			ProjectSyncInterval: cfg.Worker.ProjectSyncInterval, AccessInterval: cfg.Ingress.ACLTTL,
			OnJob: func(e queue.Event) {
				hub.Publish(e)
				metrics.Job(e)
				log.Info("job", "event", string(e.Kind), "job", e.JobID, "action", string(e.Action), "subject", e.Subject.String(), "attempt", e.Attempt, "err", e.Err)
			},
			OnDuty: func(e worker.Event) {
				switch {
				case e.Err != nil:
					log.Warn("duty", "duty", string(e.Duty), "err", e.Err.Error())
				case e.Duty == worker.Leadership:
					log.Info("leader", "leading", e.Leading, "worker", w.ID())
				}
			},
		})
		if err != nil {
			return err
		}
	}
	// Only a process with a worker may lead.
	metrics = server.NewMetrics(st, f.Now, func() bool { return w != nil && w.Leading() })
	a.ObserveProviderCalls(metrics.ProviderCall)
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return usagef("--listen %s: %v", o.Listen, err)
	}
	defer ln.Close()
	machine, _ := os.Hostname()
	srv.Name = fmt.Sprintf("serve on %s at %s (pid %d)", machine, ln.Addr(), os.Getpid())
	var metricsSrv *http.Server
	if o.MetricsListen != "" {
		mln, err := net.Listen("tcp", o.MetricsListen)
		if err != nil {
			return usagef("--metrics-listen %s: %v", o.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go metricsSrv.Serve(mln) //nolint:errcheck // ends with Close below
		defer metricsSrv.Close()
		fmt.Fprintf(f.IO.ErrOut, "cocalc-hosts serve: metrics on http://%s/metrics\n", mln.Addr())
	}
	scheme := "http"
	if tlsConf != nil {
		ln, scheme = tls.NewListener(ln, tlsConf), "https"
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	httpSrv.RegisterOnShutdown(srv.Shutdown)

	var wg sync.WaitGroup
	workerErr := make(chan error, 1)
	if w != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workerErr <- w.Run(wctx)
		}()
	}
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(ln) }()
	fmt.Fprintf(f.IO.ErrOut, "cocalc-hosts serve: listening on %s://%s (worker: %t)\n", scheme, ln.Addr(), !o.NoWorker)

	select {
	case err = <-served:
	case err = <-workerErr:
		if err == nil {
			err = errors.New("the worker stopped")
		}
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Stop taking requests and let those in flight finish; then the
	// worker (stopped by ctx) finishes or hands back its jobs.
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if serr := httpSrv.Shutdown(shutdown); serr != nil && err == nil {
		err = serr
	}
	stopWorker()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) || (err == nil && ctx.Err() != nil) {
		return nil
	}
	return err
}

// logger is the process's structured log on stderr: JSON when stderr is
// not a terminal (for journald and log collectors), text otherwise.
func (f *Factory) logger() *slog.Logger {
	if f.IO.OutTTY {
		return slog.New(slog.NewTextHandler(f.IO.ErrOut, nil))
	}
	return slog.New(slog.NewJSONHandler(f.IO.ErrOut, nil))
}
