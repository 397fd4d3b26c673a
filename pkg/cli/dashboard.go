package cli

import (
	"context"
	"fmt"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tui"
)

func init() { register("hosts", newDashboardCmd) }

// DashboardOptions are the inputs of `dashboard`.
type DashboardOptions struct {
	Refresh time.Duration
}

func newDashboardCmd(f *Factory) *cobra.Command {
	o := &DashboardOptions{}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Watch and start or stop hosts in an interactive terminal dashboard",
		Long: `An interactive view of your hosts that refreshes itself: status, cloud,
place, hourly price and the last action or error of each; enter shows the
selected host's details, s starts it and x stops it (after a y), running the
action here as ` + "`start`/`stop`" + ` do. Needs a terminal; scripts use ` + "`list -o json`" + `.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDashboard(cmd.Context(), f, o)
		},
	}
	cmd.Flags().DurationVar(&o.Refresh, "refresh", 2*time.Second, "how often to reload the hosts")
	return cmd
}

func runDashboard(ctx context.Context, f *Factory, o *DashboardOptions) error {
	if f.jsonOutput() {
		return usagef("dashboard is interactive and has no JSON output; use `cocalc-hosts list -o json`")
	}
	if !f.IO.OutTTY || !f.IO.InTTY {
		return usagef("dashboard needs a terminal; use `cocalc-hosts list` (or `list -o json`) in scripts")
	}
	if o.Refresh < 100*time.Millisecond {
		return usagef("--refresh %s is too short; use 100ms or more", o.Refresh)
	}
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	p := tea.NewProgram(tui.New(&dashboardSource{f: f, svc: svc}, o.Refresh),
		tea.WithContext(ctx), tea.WithInput(f.IO.In), tea.WithOutput(f.IO.Out))
	_, err = p.Run()
	return err
}

// dashboardSource is the dashboard's view of the store and host service.
type dashboardSource struct {
	f   *Factory
	svc *hosts.Service
}

func (s *dashboardSource) Hosts(ctx context.Context) ([]model.Host, error) {
	return s.svc.Store.ListHosts(ctx, store.HostFilter{})
}

func (s *dashboardSource) Start(ctx context.Context, id string) (string, error) {
	return s.run(ctx, id, s.svc.Start)
}

func (s *dashboardSource) Stop(ctx context.Context, id string) (string, error) {
	return s.run(ctx, id, func(ctx context.Context, id string) (hosts.Submitted, error) {
		return s.svc.Stop(ctx, id, hosts.StopOptions{})
	})
}

// run submits an action and works its job here, as the CLI verbs do;
// the screen belongs to the dashboard, so progress is not printed.
func (s *dashboardSource) run(ctx context.Context, id string, submit func(context.Context, string) (hosts.Submitted, error)) (string, error) {
	sub, err := submit(ctx, id)
	if err != nil {
		return "", err
	}
	if sub.Job == nil {
		return sub.Note, nil
	}
	job, err := runJob(ctx, s.f, *sub.Job, func(queue.Event) {})
	if err != nil {
		return "", err
	}
	if job.State == model.JobFailed {
		return "", fmt.Errorf("failed after %d attempt(s): %s", job.Attempts, job.LastError)
	}
	h, err := s.svc.Store.GetHost(ctx, id)
	if err != nil {
		return "", err
	}
	return string(h.Status), nil
}
