package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// ProjectSnapshotOptions are the inputs of `project snapshot`.
type ProjectSnapshotOptions struct {
	Project string
	Name    string
	NoWait  bool
}

func newProjectSnapshotCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectSnapshotOptions{}
	cmd := projectCmd(f, as, &cobra.Command{
		Use:   "snapshot PROJECT [--name NAME]",
		Short: "Take a read-only snapshot of a project's home",
		Long: `Take a read-only snapshot of a project's home. The project sees its snapshots
in ~/.snapshots, and they count against its disk quota. Hosts also take
scheduled snapshots (auto-…) of active projects and prune them (24 hourly,
7 daily, 4 weekly); snapshots you make are kept until the project is purged.`,
	}, o, &o.Project, runProjectSnapshot)
	cmd.Flags().StringVar(&o.Name, "name", "", "snapshot name (default snap-<UTC time>)")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	return cmd
}

func runProjectSnapshot(ctx context.Context, f *Factory, as *asFlag, o *ProjectSnapshotOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	sub, name, err := ps.Snapshot(ctx, c, o.Project, o.Name)
	if err != nil {
		return err
	}
	if !f.jsonOutput() && !o.NoWait {
		defer func() {
			if err == nil {
				fmt.Fprintf(f.IO.ErrOut, "snapshot %s of project %s taken\n", name, sub.Project.ID)
			}
		}()
	}
	err = finishProject(ctx, f, sub, o.NoWait)
	return err
}

// ProjectSnapshotsOptions are the inputs of `project snapshots`.
type ProjectSnapshotsOptions struct {
	Project string
}

func newProjectSnapshotsCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectSnapshotsOptions{}
	return projectCmd(f, as, &cobra.Command{
		Use:   "snapshots PROJECT",
		Short: "List a project's snapshots",
	}, o, &o.Project, runProjectSnapshots)
}

func runProjectSnapshots(ctx context.Context, f *Factory, as *asFlag, o *ProjectSnapshotsOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	snaps, err := ps.Snapshots(ctx, c, o.Project)
	if err != nil {
		return err
	}
	return f.render(snaps, func(w *Out) error {
		t := w.table("NAME", "CREATED", "KIND")
		for _, s := range snaps {
			kind := "manual"
			switch {
			case s.Auto:
				kind = "scheduled"
			case strings.HasPrefix(s.Name, "pre-restore-"):
				kind = "before a restore"
			}
			t.row(s.Name, s.CreatedAt.Local().Format("2006-01-02 15:04:05")+" ("+ago(f.Now(), s.CreatedAt)+")", kind)
		}
		return t.flush()
	})
}
