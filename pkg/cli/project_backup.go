package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// ProjectBackupOptions are the inputs of `project backup`.
type ProjectBackupOptions struct {
	Project string
	NoWait  bool
}

func newProjectBackupCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectBackupOptions{}
	cmd := projectCmd(f, as, &cobra.Command{
		Use:   "backup PROJECT",
		Short: "Back up a project's home to the backup repository",
		Long: `Back up a project's home with restic to its repository (see ` + "`cocalc-hosts backup config`" + `),
tagged with the project and host ids. On a btrfs host the backup is read from
a read-only snapshot, so it is one moment of the home. ` + "`worker`" + ` also backs up
every project each backup.schedule and applies the backup.keep_* retention.`,
	}, o, &o.Project, runProjectBackup)
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	return cmd
}

func runProjectBackup(ctx context.Context, f *Factory, as *asFlag, o *ProjectBackupOptions) error {
	c, ps, err := withBackups(ctx, f, as)
	if err != nil {
		return err
	}
	sub, err := ps.StartBackup(ctx, c, o.Project)
	if err != nil {
		return err
	}
	return finishProject(ctx, f, sub, o.NoWait)
}

// ProjectBackupsOptions are the inputs of `project backups`.
type ProjectBackupsOptions struct {
	Project string
}

func newProjectBackupsCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectBackupsOptions{}
	return projectCmd(f, as, &cobra.Command{
		Use:   "backups PROJECT",
		Short: "List a project's backups",
		Long: `List a project's backups, oldest first, as its host's repository has them
(or, when its host is not running, as last recorded).`,
	}, o, &o.Project, runProjectBackups)
}

func runProjectBackups(ctx context.Context, f *Factory, as *asFlag, o *ProjectBackupsOptions) error {
	c, ps, err := withBackups(ctx, f, as)
	if err != nil {
		return err
	}
	bs, err := ps.Backups(ctx, c, o.Project)
	if err != nil {
		return err
	}
	return f.render(bs, func(w *Out) error {
		t := w.table("ID", "TIME", "HOST", "FILES", "SIZE")
		for _, b := range bs {
			files, size := "-", "-"
			if b.Bytes > 0 || b.Files > 0 {
				files, size = fmt.Sprint(b.Files), projects.FormatBytes(b.Bytes)
			}
			t.row(b.ShortID, b.Time.Local().Format("2006-01-02 15:04:05")+" ("+ago(f.Now(), b.Time)+")", b.HostName, files, size)
		}
		if err := t.flush(); err != nil {
			return err
		}
		if len(bs) == 0 {
			fmt.Fprintf(f.IO.ErrOut, "no backups; make one with `cocalc-hosts project backup %s`\n", o.Project)
		}
		return nil
	})
}

// withBackups returns the caller and the backup service.
func withBackups(ctx context.Context, f *Factory, as *asFlag) (projects.Caller, BackupService, error) {
	c, err := caller(f, as)
	if err != nil {
		return projects.Caller{}, nil, err
	}
	bs, err := f.Backups(ctx)
	if err != nil {
		return projects.Caller{}, nil, err
	}
	return c, bs, nil
}
