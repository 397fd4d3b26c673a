package cli

import (
	"context"
	"time"

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
	Interval time.Duration
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
	cmd.Flags().DurationVar(&o.Interval, "interval", 0, "with --watch, also read the changes this often (e.g. 10s) even when none is announced")
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
	if o.Interval != 0 && (!o.Watch || o.Interval < 0) {
		return usagef("--interval %s: give a positive duration together with --watch", o.Interval)
	}
	if !o.Watch {
		return draw(ctx)
	}
	full := filter
	full.Brief = false
	// After the first read, only hosts updated since the newest seen (less
	// watchSkew, for writes that commit late) are read again, deleted ones
	// and those of other owners and clouds included, so that a host gone
	// from the listing is seen going.
	var newest time.Time
	note := func(h *model.Host) {
		if h.UpdatedAt.After(newest) {
			newest = h.UpdatedAt
		}
	}
	return runWatch(ctx, f, projects.Caller{}, watchSpec{topic: store.TopicHosts, draw: draw, every: o.Interval,
		rows: func(ctx context.Context) ([]store.Event, error) {
			hs, err := svc.List(ctx, full)
			for i := range hs {
				note(&hs[i])
			}
			return hostRows(hs), err
		},
		changed: func(ctx context.Context) ([]store.Event, error) {
			var out []store.Event
			err := svc.Each(ctx, store.HostFilter{IncludeDeleted: true, UpdatedSince: newest.Add(-watchSkew)}, func(h *model.Host) error {
				note(h)
				if (h.DeletedAt != nil && !full.IncludeDeleted) || (full.Provider != "" && h.Provider != full.Provider) || (full.Owner != "" && h.Owner != full.Owner) {
					out = append(out, store.Event{Topic: store.TopicHosts, ID: h.ID, Deleted: true})
					return nil
				}
				c := *h
				out = append(out, store.Event{Topic: store.TopicHosts, ID: c.ID, Host: &c})
				return nil
			})
			return out, err
		}})
}

// watchSkew is how far back of the newest update seen `list --watch`
// reads again: a write stamped before another may commit after it.
const watchSkew = 2 * time.Second

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
