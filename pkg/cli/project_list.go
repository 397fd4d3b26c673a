package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// ProjectListOptions are the inputs of `project list`.
type ProjectListOptions struct {
	Host    string
	All     bool
	Deleted bool
	Refresh bool
	Watch   bool
	// StaleBackups lists only projects whose newest backup is older.
	StaleBackups time.Duration
}

func newProjectListCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectListOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your projects",
		Long: `List your projects (with --all, every account's; admins only). The
states are the control plane's record; --refresh asks the running hosts first,
so projects their hosts stopped for being idle show as stopped.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProjectList(cmd.Context(), f, as, o)
		},
	}
	cmd.Flags().StringVar(&o.Host, "host", "", "only projects on this host")
	cmd.Flags().BoolVar(&o.All, "all", false, "every account's projects (admins)")
	cmd.Flags().BoolVar(&o.Deleted, "deleted", false, "include deleted projects")
	cmd.Flags().BoolVar(&o.Refresh, "refresh", false, "ask the hosts for each project's state")
	cmd.Flags().DurationVar(&o.StaleBackups, "stale-backups", 0, "only projects whose newest backup is older than this (or that have none), such as 24h")
	cmd.Flags().BoolVar(&o.Watch, "watch", false, "show the list again on each change (off a terminal: a JSON line per changed project) until interrupted")
	cmd.RegisterFlagCompletionFunc("host", completeHosts(f)) //nolint:errcheck
	return cmd
}

func runProjectList(ctx context.Context, f *Factory, as *asFlag, o *ProjectListOptions) error {
	if o.StaleBackups != 0 {
		return runStaleBackups(ctx, f, as, o)
	}
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	req := projects.ListRequest{Host: o.Host, All: o.All, Deleted: o.Deleted, Refresh: o.Refresh}
	if !o.Watch {
		return drawProjects(ctx, f, c, ps, req)
	}
	return runWatch(ctx, f, c, watchSpec{topic: store.TopicProjects,
		draw: func(ctx context.Context) error { return drawProjects(ctx, f, c, ps, req) },
		rows: func(ctx context.Context) ([]store.Event, error) {
			list, err := ps.List(ctx, c, req)
			out := make([]store.Event, len(list))
			for i := range list {
				out[i] = store.Event{Topic: store.TopicProjects, ID: list[i].ID, Project: &list[i]}
			}
			return out, err
		}})
}

func drawProjects(ctx context.Context, f *Factory, c projects.Caller, ps ProjectService, req projects.ListRequest) error {
	list, err := ps.List(ctx, c, req)
	if err != nil {
		return err
	}
	return f.render(list, func(w *Out) error {
		svc, err := f.Hosts(ctx)
		if err != nil {
			return err
		}
		names := map[string]string{}
		hs, err := svc.List(ctx, store.HostFilter{IncludeDeleted: true})
		if err != nil {
			return err
		}
		for _, h := range hs {
			names[h.ID] = h.Name
		}
		t := w.table("ID", "TITLE", "OWNER", "HOST", "STATE", "IMAGE", "MEMORY", "CPUS", "DISK", "LAST ACTIVITY")
		now := f.Now()
		for _, p := range list {
			act := "-"
			if p.LastActivity != nil {
				act = ago(now, *p.LastActivity)
			}
			t.row(p.ID, orDash(truncate(p.Title, 24)), p.Owner, orDash(names[p.HostID]), string(p.State), truncate(p.Image, 32),
				projects.FormatBytes(p.Limits.MemoryBytes), strconv.FormatFloat(p.Limits.CPUs, 'f', -1, 64),
				projects.FormatBytes(p.Limits.DiskBytes), act)
		}
		if err := t.flush(); err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(f.IO.ErrOut, "no projects; make one with `cocalc-hosts project create --host HOST`")
		}
		return nil
	})
}

// runStaleBackups lists the projects whose backups are older than asked.
func runStaleBackups(ctx context.Context, f *Factory, as *asFlag, o *ProjectListOptions) error {
	if o.StaleBackups < 0 || o.Host != "" || o.Deleted || o.Refresh || o.Watch {
		return usagef("--stale-backups takes a positive age such as 24h, and goes only with --all")
	}
	c, ps, err := withBackups(ctx, f, as)
	if err != nil {
		return err
	}
	list, err := ps.StaleBackups(ctx, c, o.All, o.StaleBackups)
	if err != nil {
		return err
	}
	return f.render(list, func(w *Out) error {
		t := w.table("ID", "TITLE", "OWNER", "STATE", "LAST BACKUP")
		for _, p := range list {
			last := "never"
			if p.LastBackup != nil {
				last = ago(f.Now(), *p.LastBackup)
			}
			t.row(p.ID, orDash(truncate(p.Title, 24)), p.Owner, string(p.State), last)
		}
		return t.flush()
	})
}
