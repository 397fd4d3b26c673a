package cli

import (
	"context"
	"os"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/tui"
)

// DashboardOptions are the inputs of `dashboard`.
type DashboardOptions struct {
	Refresh time.Duration
	Timeout time.Duration
	Theme   string
	Mouse   bool
}

func newDashboardCmd(f *Factory) *cobra.Command {
	o := &DashboardOptions{}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Hosts, projects, costs, logs and actions in one terminal screen",
		Long: `An interactive dashboard that keeps itself up to date:

  1 Hosts     status, $/hour, cost this month, projects, age and last error;
              sort with o/O, filter with /; enter shows a host's details
              (spec, addresses, agent health and headroom, what it costs
              stopped, recent cloud_vm_log)
  2 Projects  all, or those of the selected host (a toggles)
  3 Logs      cloud_vm_log and the boot log of the selected host, following
  4 Catalog   machines across clouds, cheapest first, filtered as you type;
              enter creates a host on the selected machine

Actions go through the queue, as the CLI verbs do, with their progress on
screen: s start, x stop, D delete (type the host's name), U upgrade the
agent, n new project; on projects s/x/R start, stop, restart, S snapshot,
b back up now, m move and c clone to another host (with a bar of the bytes
sent, the rate and the time left), and e a shell (the dashboard steps aside
until it ends). Whatever costs or destroys is confirmed first, showing what
it costs or deletes. ? lists every key.

It works directly and, with server.url set, through a server. It follows
the database's changes (through a server, its event stream): while they
come the top line says live, and the hosts and projects are read whole
only once a minute (for the costs); without them it reads every --refresh
and the top line says how old what you see is. Each read has --timeout. NO_COLOR (or --theme mono) shows it without colour.
Needs a terminal; scripts use ` + "`list -o json`" + `.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDashboard(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&o.Refresh, "refresh", 2*time.Second, "how often to read again what the view shows (and the hosts and projects, without change events)")
	fl.DurationVar(&o.Timeout, "timeout", 10*time.Second, "how long one read (of the database, an agent or a cloud) may take")
	fl.StringVar(&o.Theme, "theme", "auto", "colors: auto (none when NO_COLOR is set), color or mono")
	fl.BoolVar(&o.Mouse, "mouse", false, "use the mouse: the wheel scrolls, a click selects")
	return cmd
}

func runDashboard(ctx context.Context, f *Factory, o *DashboardOptions) error {
	if o.Refresh < 100*time.Millisecond {
		return usagef("--refresh %s is too short; use 100ms or more", o.Refresh)
	}
	if o.Timeout < 100*time.Millisecond {
		return usagef("--timeout %s is too short; use 100ms or more", o.Timeout)
	}
	theme := tui.ColorTheme()
	switch o.Theme {
	case "auto":
		// https://no-color.org: set and not empty means no colour.
		if os.Getenv("NO_COLOR") != "" {
			theme = tui.MonoTheme()
		}
	case "color":
	case "mono":
		theme = tui.MonoTheme()
	default:
		return usagef("--theme %q: use auto, color or mono", o.Theme)
	}
	if f.jsonOutput() {
		return usagef("dashboard is interactive and has no JSON output; use `cocalc-hosts list -o json`")
	}
	if !f.IO.OutTTY || !f.IO.InTTY {
		return usagef("dashboard needs a terminal; use `cocalc-hosts list` (or `list -o json`) in scripts")
	}
	src, err := newDashboardSource(ctx, f)
	if err != nil {
		return err
	}
	m := tui.New(src, tui.Options{Refresh: o.Refresh, Timeout: o.Timeout, Theme: theme, Mouse: o.Mouse, Context: ctx, Now: f.Now})
	// Bubble Tea restores the terminal on every way out: q, ctrl+c, a
	// cancelled context (SIGTERM and SIGINT cancel it: Main handles them,
	// so Bubble Tea's own handler is off), and a panic in the dashboard or
	// in one of its reads.
	final, err := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(f.IO.In), tea.WithOutput(f.IO.Out),
		tea.WithoutSignalHandler()).Run()
	if ctx.Err() != nil {
		// Only actions still running stay queued for a worker; with
		// none, there is nothing to say about queued work.
		if fm, ok := final.(tui.Model); ok && fm.Running() == 0 {
			return &interruptedError{msg: "interrupted"}
		}
		return ctx.Err()
	}
	return err
}
