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
	draw := func(ctx context.Context) error {
		hs, err := svc.List(ctx, filter)
		if err != nil {
			return err
		}
		if hs == nil {
			hs = []model.Host{}
		}
		return f.render(hs, func(w *Out) error {
			return printHostTable(w, f.Now(), hs, o.Wide)
		})
	}
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
