package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/worker"
)

// WorkerOptions are the inputs of `worker`.
type WorkerOptions struct {
	Concurrency       int
	Drain             bool
	Lease             time.Duration
	ReconcileInterval time.Duration
	// ProjectSyncInterval is how often project states are read from the
	// hosts; negative means the config's worker.project_sync_interval.
	ProjectSyncInterval time.Duration
}

func newWorkerCmd(f *Factory) *cobra.Command {
	o := &WorkerOptions{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run queued host actions until stopped",
		Long: `Run queued host actions. Any number of workers may share one Postgres
database; each action runs once. A worker that dies leaves its job to be
taken over when its lease expires. With --drain the worker exits when no
job is queued or running. The worker also reconciles the database with the
providers every worker.reconcile_interval, refreshes expired catalogs and
recomputes usage every catalog.refresh_interval, records the states of
projects their hosts stopped (for being idle) every
worker.project_sync_interval, and refreshes the running hosts' access lists
every ingress.acl_ttl (none of these with --drain). Of the workers (and
servers) sharing a database, only the one holding its leader lock runs
these duties; the others only run jobs, and take the lock over within
seconds when its holder stops or dies.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWorker(cmd, f, o)
		},
	}
	cmd.Flags().IntVarP(&o.Concurrency, "concurrency", "j", 0, "jobs run at once (default worker.concurrency)")
	cmd.Flags().BoolVar(&o.Drain, "drain", false, "exit when the queue is empty")
	cmd.Flags().DurationVar(&o.Lease, "lease", 0, "job lease (default worker.lease)")
	cmd.Flags().DurationVar(&o.ReconcileInterval, "reconcile-interval", -1, "reconcile period, 0 to disable (default worker.reconcile_interval)")
	cmd.Flags().DurationVar(&o.ProjectSyncInterval, "project-sync-interval", -1, "project state sync period, 0 to disable (default worker.project_sync_interval)")
	return cmd
}

func runWorker(cmd *cobra.Command, f *Factory, o *WorkerOptions) error {
	ctx := cmd.Context()
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	if o.Concurrency == 0 {
		o.Concurrency = cfg.Worker.Concurrency
	}
	if o.Concurrency < 1 {
		return usagef("--concurrency must be at least 1, got %d", o.Concurrency)
	}
	if o.Lease == 0 {
		o.Lease = cfg.Worker.Lease
	}
	if o.Lease < time.Second {
		return usagef("--lease must be at least 1s, got %s", o.Lease)
	}
	if o.ReconcileInterval < 0 {
		o.ReconcileInterval = cfg.Worker.ReconcileInterval
	}
	if o.ProjectSyncInterval < 0 {
		o.ProjectSyncInterval = cfg.Worker.ProjectSyncInterval
	}
	a, err := f.App()
	if err != nil {
		return err
	}
	print := eventPrinter(f)
	w, err := worker.New(ctx, a, worker.Options{
		Concurrency: o.Concurrency, Lease: o.Lease, Drain: o.Drain,
		ReconcileInterval: o.ReconcileInterval, CatalogInterval: cfg.Catalog.RefreshInterval, ProjectSyncInterval: o.ProjectSyncInterval,
		AccessInterval: cfg.Ingress.ACLTTL, BackupInterval: min(cfg.Backup.Schedule, time.Minute),
		OnJob: func(e queue.Event) {
			if !f.jsonOutput() {
				switch e.Kind {
				case queue.EventClaimed:
					fmt.Fprintf(f.IO.ErrOut, "%s %s %s %s (job %s, attempt %d)\n", e.Time.Local().Format("15:04:05"), e.Action, e.Subject.Kind, shortID(e.Subject.ID), shortID(e.JobID), e.Attempt)
				case queue.EventDone:
					fmt.Fprintf(f.IO.ErrOut, "%s %s %s %s done\n", e.Time.Local().Format("15:04:05"), e.Action, e.Subject.Kind, shortID(e.Subject.ID))
				}
			}
			print(e)
		},
		OnDuty: func(e worker.Event) { printDutyEvent(f, e) },
	})
	if err != nil {
		return err
	}
	if !f.jsonOutput() {
		fmt.Fprintf(f.IO.ErrOut, "worker %s: %d at once, lease %s\n", w.ID(), w.Concurrency(), w.Lease())
	}
	err = w.Run(ctx)
	if ctx.Err() != nil && !o.Drain {
		return nil // stopped by a signal: a normal end for a worker
	}
	return err
}

// printDutyEvent renders what a worker's periodic duty did on stderr:
// errors and changes as lines, or as JSON lines with --output json.
func printDutyEvent(f *Factory, e worker.Event) {
	w := f.IO.ErrOut
	switch {
	case e.Err != nil:
		fmt.Fprintf(w, "%s: %v\n", e.Duty, e.Err)
	case e.Duty == worker.Leadership:
		switch {
		case f.jsonOutput():
			printJSONLine(w, map[string]any{"leader": e.Leading})
		case e.Leading:
			fmt.Fprintln(w, "leadership: this worker holds the leader lock: it runs the periodic duties")
		default:
			fmt.Fprintln(w, "leadership: another process holds the leader lock and runs the periodic duties; this worker runs jobs, and takes the duties over if that process stops")
		}
	case e.Reconcile != nil:
		if f.jsonOutput() {
			printJSONLine(w, e.Reconcile)
		}
	case e.IdleStop != nil:
		st := e.IdleStop
		switch {
		case f.jsonOutput():
			printJSONLine(w, map[string]any{"idle_stop": st})
		case st.Error != "":
			fmt.Fprintf(w, "idle stop: host %s: %s\n", st.Name, st.Error)
		default:
			fmt.Fprintf(w, "idle stop: host %s has been idle past its policy: stopping it (job %s)\n", st.Name, shortID(st.Job))
		}
	case e.Backups != nil:
		if rep := e.Backups; rep.Queued > 0 {
			if f.jsonOutput() {
				printJSONLine(w, map[string]any{"backups": rep})
			} else {
				fmt.Fprintf(w, "backups: %d scheduled backup(s) queued\n", rep.Queued)
			}
		}
	case e.Access != nil:
		rep := e.Access
		if f.jsonOutput() {
			if len(rep.Unreachable) > 0 {
				printJSONLine(w, map[string]any{"access_lists": rep})
			}
			return
		}
		for _, h := range rep.Unreachable {
			fmt.Fprintf(w, "access lists: host %s not reached (%s); it keeps its list for ingress.acl_max_stale\n", h.Name, h.Error)
		}
	case e.Certs != nil:
		if f.jsonOutput() {
			printJSONLine(w, map[string]any{"certificates": e.Certs})
			return
		}
		for _, h := range e.Certs.Issued {
			fmt.Fprintf(w, "certificates: host %s serves a new certificate for %s\n", h.Name, h.CertName)
		}
		for _, h := range e.Certs.Failed {
			fmt.Fprintf(w, "certificates: host %s got no certificate for %s (next try at %s; it serves its current one meanwhile): %s\n",
				h.Name, h.CertName, h.Retry.Local().Format("15:04"), h.Error)
		}
	case e.MovesCleaned > 0:
		if f.jsonOutput() {
			printJSONLine(w, map[string]any{"moves_cleaned": e.MovesCleaned})
			return
		}
		fmt.Fprintf(w, "move cleanup: the old copies of %d moved project(s) kept for moves.keep_source are being deleted\n", e.MovesCleaned)
	case e.ProjectSync != nil:
		rep := e.ProjectSync
		if f.jsonOutput() {
			if len(rep.Updated) > 0 || len(rep.Unreachable) > 0 {
				printJSONLine(w, rep)
			}
			return
		}
		for _, id := range rep.Updated {
			fmt.Fprintf(w, "project sync: project %s updated from its host\n", shortID(id))
		}
		for _, h := range rep.Unreachable {
			fmt.Fprintf(w, "project sync: host %s not reached, nothing changed: %s\n", h.Name, h.Error)
		}
	}
}
