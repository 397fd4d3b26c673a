package cli

import (
	"context"
	"fmt"
	"sort"
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

// ProjectRestoreOptions are the inputs of `project restore`.
type ProjectRestoreOptions struct {
	Project  string
	Snapshot string
	Path     string
	NoWait   bool
}

func newProjectRestoreCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectRestoreOptions{}
	cmd := projectCmd(f, as, &cobra.Command{
		Use:   "restore PROJECT --snapshot NAME [--path PATH]",
		Short: "Restore a file, a directory or the whole home from a snapshot",
		Long: `Put back PATH (relative to the project's home; without --path, the whole
home) as it was in a snapshot, replacing what is there now. What was there
before is kept in a new snapshot named pre-restore-<time>, so a restore can
itself be undone.`,
	}, o, &o.Project, runProjectRestore)
	cmd.Flags().StringVar(&o.Snapshot, "snapshot", "", "snapshot to restore from (see `project snapshots`)")
	cmd.Flags().StringVar(&o.Path, "path", "", "file or directory in the home to restore (default: the whole home)")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	cmd.MarkFlagRequired("snapshot") //nolint:errcheck
	return cmd
}

func runProjectRestore(ctx context.Context, f *Factory, as *asFlag, o *ProjectRestoreOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	sub, err := ps.Restore(ctx, c, o.Project, o.Snapshot, o.Path)
	if err != nil {
		return err
	}
	if err := finishProject(ctx, f, sub, o.NoWait); err != nil {
		return err
	}
	if o.NoWait || f.jsonOutput() {
		return nil
	}
	// Name the safety snapshot: the newest pre-restore one.
	if snaps, err := ps.Snapshots(ctx, c, sub.Project.ID); err == nil {
		sort.Slice(snaps, func(i, j int) bool { return snaps[i].Name < snaps[j].Name })
		for i := len(snaps) - 1; i >= 0; i-- {
			if strings.HasPrefix(snaps[i].Name, "pre-restore-") {
				fmt.Fprintf(f.IO.ErrOut, "what was there before the restore is in snapshot %s\n", snaps[i].Name)
				break
			}
		}
	}
	return nil
}
