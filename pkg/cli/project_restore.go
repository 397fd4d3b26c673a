package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// ProjectRestoreOptions are the inputs of `project restore`.
type ProjectRestoreOptions struct {
	Project  string
	Snapshot string
	Backup   string
	Path     string
	// ToScratch and To apply to --backup only.
	ToScratch bool
	To        string
	NoWait    bool
}

func newProjectRestoreCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectRestoreOptions{}
	cmd := projectCmd(f, as, &cobra.Command{
		Use:   "restore PROJECT --snapshot NAME|--backup ID|latest [--path PATH] [--to-scratch] [--to HOST]",
		Short: "Restore a file, a directory or the whole home from a snapshot or a backup",
		Long: `Put back PATH (relative to the project's home; without --path, the whole
home) as it was in a snapshot (--snapshot) or a backup (--backup ID, or latest),
replacing what is there now. On a btrfs host what was there before is kept in
a new snapshot named pre-restore-<time>, so a restore can itself be undone.

With --to-scratch a backup is written to /scratch/restore-<id> instead,
leaving the home alone. With --to HOST the whole project is restored from a
backup onto another host and moved there (stopped): the way to reach a
project whose host is broken or gone. Its copy on the old host is marked
stale (see ` + "`project show`" + `).`,
	}, o, &o.Project, runProjectRestore)
	cmd.Flags().StringVar(&o.Snapshot, "snapshot", "", "snapshot to restore from (see `project snapshots`)")
	cmd.Flags().StringVar(&o.Backup, "backup", "", "backup to restore from: an id from `project backups`, or latest")
	cmd.Flags().StringVar(&o.Path, "path", "", "file or directory in the home to restore (default: the whole home)")
	cmd.Flags().BoolVar(&o.ToScratch, "to-scratch", false, "with --backup: write to /scratch/restore-<id>, not the home")
	cmd.Flags().StringVar(&o.To, "to", "", "with --backup: restore the whole project onto this host and move it there")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	cmd.MarkFlagsMutuallyExclusive("snapshot", "backup")
	cmd.MarkFlagsOneRequired("snapshot", "backup")
	cmd.RegisterFlagCompletionFunc("to", completeHosts(f)) //nolint:errcheck
	return cmd
}

func runProjectRestore(ctx context.Context, f *Factory, as *asFlag, o *ProjectRestoreOptions) error {
	if o.Snapshot != "" && (o.ToScratch || o.To != "") {
		return usagef("--to-scratch and --to restore from a backup: use them with --backup, not --snapshot")
	}
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	var sub projects.Submitted
	if o.Backup != "" {
		var bs BackupService
		if _, bs, err = withBackups(ctx, f, as); err != nil {
			return err
		}
		sub, err = bs.RestoreBackup(ctx, c, o.Project, projects.RestoreBackupRequest{Backup: o.Backup, Path: o.Path, ToScratch: o.ToScratch, ToHost: o.To})
	} else {
		sub, err = ps.Restore(ctx, c, o.Project, o.Snapshot, o.Path)
	}
	if err != nil {
		return err
	}
	// The restore's progress names the snapshot that keeps what was there.
	return finishProject(ctx, f, sub, o.NoWait)
}
