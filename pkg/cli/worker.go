package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
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

func newWorkerCmd(f *Factory, runF func(context.Context, *WorkerOptions) error) *cobra.Command {
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
every ingress.acl_ttl (none of these with --drain).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(cmd.Context(), o)
			}
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
		o.Concurrency = cfg.Int("worker.concurrency")
	}
	if o.Concurrency < 1 {
		return usagef("--concurrency must be at least 1, got %d", o.Concurrency)
	}
	if o.Lease == 0 {
		if o.Lease, err = cfg.Duration("worker.lease"); err != nil {
			return usageErr(err)
		}
	}
	if o.Lease < time.Second {
		return usagef("--lease must be at least 1s, got %s", o.Lease)
	}
	if o.ReconcileInterval < 0 {
		if o.ReconcileInterval, err = cfg.Duration("worker.reconcile_interval"); err != nil {
			return usageErr(err)
		}
	}
	if o.ProjectSyncInterval < 0 {
		if o.ProjectSyncInterval, err = cfg.Duration("worker.project_sync_interval"); err != nil {
			return usageErr(err)
		}
	}
	st, err := f.Store(ctx)
	if err != nil {
		return err
	}
	h, err := f.Handler(ctx)
	if err != nil {
		return err
	}
	w := queue.NewWorker(st, h)
	w.Concurrency, w.Lease = o.Concurrency, o.Lease
	print := eventPrinter(f)
	w.OnEvent = func(e queue.Event) {
		if !f.jsonOutput() {
			switch e.Kind {
			case queue.EventClaimed:
				fmt.Fprintf(f.IO.ErrOut, "%s %s %s %s (job %s, attempt %d)\n", e.Time.Local().Format("15:04:05"), e.Action, e.Subject.Kind, shortID(e.Subject.ID), shortID(e.JobID), e.Attempt)
			case queue.EventDone:
				fmt.Fprintf(f.IO.ErrOut, "%s %s %s %s done\n", e.Time.Local().Format("15:04:05"), e.Action, e.Subject.Kind, shortID(e.Subject.ID))
			}
		}
		print(e)
	}
	if !o.Drain && o.ReconcileInterval > 0 {
		go reconcileLoop(ctx, f, o.ReconcileInterval)
	}
	if !o.Drain {
		go catalogLoop(ctx, f) // refreshes expired catalogs and usage
	}
	if !o.Drain && o.ProjectSyncInterval > 0 {
		go projectSyncLoop(ctx, f, o.ProjectSyncInterval)
	}
	if !o.Drain {
		if every, err := cfg.Duration("ingress.acl_ttl"); err != nil {
			return usageErr(err)
		} else if every > 0 {
			go accessLoop(ctx, f, every)
		}
	}
	if !f.jsonOutput() {
		fmt.Fprintf(f.IO.ErrOut, "worker %s: %d at once, lease %s\n", w.ID, w.Concurrency, w.Lease)
	}
	err = w.Run(ctx, o.Drain)
	if ctx.Err() != nil && !o.Drain {
		return nil // stopped by a signal: a normal end for a worker
	}
	return err
}

func reconcileLoop(ctx context.Context, f *Factory, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rep, err := reconcileOnce(ctx, f, ReconcileOptions{})
			if err != nil {
				fmt.Fprintf(f.IO.ErrOut, "reconcile: %v\n", err)
				continue
			}
			if f.jsonOutput() {
				printJSONLine(f.IO.ErrOut, rep)
			}
		}
	}
}

// projectSyncLoop records what the hosts report about their projects, so
// that a project its host stopped for being idle shows as stopped, and
// stops the hosts the control plane stops when idle.
func projectSyncLoop(ctx context.Context, f *Factory, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var ps *projects.Service
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ps == nil {
				var err error
				if ps, err = projectsService(ctx, f); err != nil {
					fmt.Fprintf(f.IO.ErrOut, "project sync: %v\n", err)
					continue
				}
			}
			idleStopOnce(ctx, f)
			rep, err := ps.SyncAll(ctx)
			if err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(f.IO.ErrOut, "project sync: %v\n", err)
				}
				continue
			}
			if f.jsonOutput() {
				if len(rep.Updated) > 0 || len(rep.Unreachable) > 0 {
					printJSONLine(f.IO.ErrOut, rep)
				}
				continue
			}
			for _, id := range rep.Updated {
				fmt.Fprintf(f.IO.ErrOut, "project sync: project %s updated from its host\n", shortID(id))
			}
			for _, h := range rep.Unreachable {
				fmt.Fprintf(f.IO.ErrOut, "project sync: host %s not reached, nothing changed: %s\n", h.Name, h.Error)
			}
		}
	}
}

// idleStopOnce stops the hosts idle past their policy that the control
// plane stops (see hosts.StopIdleHosts); the worker's queue then runs
// the stops.
func idleStopOnce(ctx context.Context, f *Factory) {
	svc, err := f.Hosts(ctx)
	if err != nil {
		fmt.Fprintf(f.IO.ErrOut, "idle stop: %v\n", err)
		return
	}
	stops, err := svc.StopIdleHosts(ctx)
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(f.IO.ErrOut, "idle stop: %v\n", err)
	}
	for _, st := range stops {
		switch {
		case f.jsonOutput():
			printJSONLine(f.IO.ErrOut, map[string]any{"idle_stop": st})
		case st.Error != "":
			fmt.Fprintf(f.IO.ErrOut, "idle stop: host %s: %s\n", st.Name, st.Error)
		default:
			fmt.Fprintf(f.IO.ErrOut, "idle stop: host %s has been idle past its policy: stopping it (job %s)\n", st.Name, shortID(st.Job))
		}
	}
}
