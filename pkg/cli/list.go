package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// ListOptions are the inputs of `list`.
type ListOptions struct {
	Provider string
	All      bool
	Mine     bool
	Wide     bool
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
