package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// unhealthyError makes `status` exit ExitUnhealthy after printing what is
// wrong (the report is the output; the error adds one line on stderr).
type unhealthyError struct{ n int }

func (e *unhealthyError) Error() string {
	return fmt.Sprintf("%d problem(s) found; exit status %d", e.n, ExitUnhealthy)
}
func (e *unhealthyError) ExitStatus() int { return ExitUnhealthy }

// StatusOptions are the inputs of `status`.
type StatusOptions struct {
	MinFree float64
	Failed  time.Duration
}

func newStatusCmd(f *Factory) *cobra.Command {
	o := &StatusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "The deployment's health on one screen",
		Long: `Summarize the deployment's health: the database (or server) answering,
the queue (queued and running jobs, the job due longest), the workers seen
holding leases, the hosts by status, and the problems: jobs that failed
lately, hosts in error or missing at their cloud, running hosts whose agent
does not answer or has less than --min-free percent of its disk or memory
free, and projects without a backup for two backup periods (when backups
are scheduled). Each running host's agent is asked, at most 10 s each.

Exits 0 when there is no problem and 14 when there is one (see
` + "`cocalc-hosts help exit-codes`" + `), so it can gate scripts and monitors. Through
a server, only admins may ask.`,
		Example: `  cocalc-hosts status
  cocalc-hosts status --min-free 20 --failed-since 1h -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd, f, o) },
	}
	cmd.Flags().Float64Var(&o.MinFree, "min-free", 10, "report running hosts with less than this percentage of disk or memory free")
	cmd.Flags().DurationVar(&o.Failed, "failed-since", 24*time.Hour, "report jobs that failed within this long")
	return cmd
}

func runStatus(cmd *cobra.Command, f *Factory, o *StatusOptions) error {
	if o.MinFree <= 0 || o.MinFree > 100 {
		return usagef("--min-free %g: want a percentage above 0 and at most 100, such as 10", o.MinFree)
	}
	if o.Failed <= 0 {
		return usagef("--failed-since %s: want a positive duration, such as 24h", o.Failed)
	}
	ops, err := f.Ops()
	if err != nil {
		return err
	}
	h, err := ops.Status(cmd.Context(), model.HealthRequest{MinFreePercent: o.MinFree, FailedSince: f.Now().Add(-o.Failed)})
	if err != nil {
		return err
	}
	err = f.render(h, func(w *Out) error {
		state := "healthy"
		if !h.Healthy {
			state = fmt.Sprintf("UNHEALTHY (%d problem(s))", len(h.Problems))
		}
		fmt.Fprintf(w, "status:    %s\n", state)
		where := h.Backend + " database"
		if c, _ := f.Remote(); c != nil {
			where = "the server, on its " + where
		}
		fmt.Fprintf(w, "reached:   %s\n", where)
		fmt.Fprintf(w, "queue:     %d queued, %d running", h.Queued, h.Running)
		if h.OldestDue != nil {
			fmt.Fprintf(w, "; oldest due: %s job %s on %s, waiting %s", h.OldestDue.Action, h.OldestDue.ID, h.OldestDue.Subject,
				(time.Duration(h.OldestWait) * time.Second).String())
		}
		fmt.Fprintln(w)
		var ws []string
		for _, s := range h.Workers {
			ws = append(ws, fmt.Sprintf("%s (%d job(s))", s.Worker, s.Jobs))
		}
		if len(ws) == 0 {
			ws = []string{"none holding a lease"}
		}
		fmt.Fprintf(w, "workers:   %s\n", strings.Join(ws, ", "))
		if h.Leader {
			fmt.Fprintln(w, "leader:    a worker or server holds the leader lock and runs reconcile, catalog refresh and the other periodic duties")
		} else {
			fmt.Fprintln(w, "leader:    none: no worker or server runs the periodic duties (reconcile, catalog refresh, …); start `cocalc-hosts worker` or `serve`")
		}
		var hs []string
		for _, st := range model.AllStatuses {
			if n := h.Hosts[st]; n > 0 {
				hs = append(hs, fmt.Sprintf("%d %s", n, st))
			}
		}
		if len(hs) == 0 {
			hs = []string{"none"}
		}
		fmt.Fprintf(w, "hosts:     %s\n", strings.Join(hs, ", "))
		fmt.Fprintf(w, "failed:    %d job(s) since %s\n", h.FailedJobs, f.Now().Add(-o.Failed).UTC().Format(time.RFC3339))
		for _, j := range h.Failed {
			fmt.Fprintf(w, "  %s %s on %s: %s\n", j.ID, j.Action, j.Subject, firstLine(j.LastError))
		}
		if len(h.Problems) > 0 {
			fmt.Fprintln(w, "problems:")
			for _, p := range h.Problems {
				fmt.Fprintf(w, "  %-17s %s\n", p.Kind, p.Message)
			}
		}
		return nil
	})
	if err == nil && !h.Healthy {
		err = &unhealthyError{n: len(h.Problems)}
	}
	return err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
