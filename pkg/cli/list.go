package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// ListOptions are the inputs of `list`.
type ListOptions struct {
	Provider string
	All      bool
	Mine     bool
	Wide     bool
	Watch    bool
}

func newListCmd(f *Factory) *cobra.Command {
	o := &ListOptions{}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List hosts",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runList(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Provider, "cloud", "", "only hosts on this provider")
	cmd.Flags().BoolVarP(&o.All, "all", "a", false, "include deleted hosts")
	cmd.Flags().BoolVar(&o.Mine, "mine", false, "only hosts owned by your account")
	cmd.Flags().BoolVarP(&o.Wide, "wide", "w", false, "do not truncate errors")
	cmd.Flags().BoolVar(&o.Watch, "watch", false, "show the list again on each change (off a terminal: a JSON line per changed host) until interrupted")
	return cmd
}

func runList(ctx context.Context, f *Factory, o *ListOptions) error {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	// The table shows nothing of a host's spec or runtime: not decoding
	// them is most of what a large listing costs.
	filter := store.HostFilter{Provider: o.Provider, IncludeDeleted: o.All, Brief: f.exporter() == nil}
	if o.Mine {
		cfg, _ := f.Config()
		filter.Owner = cfg.Account
	}
	draw := func(ctx context.Context) error { return printHostList(ctx, f, svc, filter, o.Wide) }
	if !o.Watch {
		return draw(ctx)
	}
	full := filter
	full.Brief = false
	return runWatch(ctx, f, projects.Caller{}, watchSpec{topic: store.TopicHosts, draw: draw,
		rows: func(ctx context.Context) ([]store.Event, error) {
			hs, err := svc.List(ctx, full)
			return hostRows(hs), err
		}})
}

// printHostList prints the hosts filter selects as `list` does, each host
// rendered as it is read (only --jq and --template need them all first).
func printHostList(ctx context.Context, f *Factory, svc HostService, filter store.HostFilter, wide bool) error {
	e := f.exporter()
	if e != nil && (e.JQ != "" || e.Template != "") {
		hs, err := svc.List(ctx, filter)
		if err != nil {
			return err
		}
		if hs == nil {
			hs = []model.Host{}
		}
		return e.Write(f.IO.Out, hs)
	}
	if e != nil {
		var a hostArray
		if err := svc.Each(ctx, filter, a.add); err != nil {
			return err
		}
		return a.writeTo(f.IO.Out)
	}
	o := f.out()
	t := hostTable(o)
	now := f.Now()
	if err := svc.Each(ctx, filter, func(h *model.Host) error {
		hostRow(t, now, h, wide)
		return nil
	}); err != nil {
		return err
	}
	if err := t.flush(); err != nil {
		return err
	}
	return o.Flush()
}
