package cli

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// ProjectDeleteOptions are the inputs of `project delete`.
type ProjectDeleteOptions struct {
	Project string
	Purge   bool
	Yes     bool
	NoWait  bool
}

func newProjectDeleteCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectDeleteOptions{}
	cmd := projectCmd(f, as, &cobra.Command{
		Use:   "delete PROJECT [--purge]",
		Short: "Delete a project",
		Long: `Delete a project: its container is stopped and it leaves your list, but its
files stay on the host (and count against the host's disk) until you delete it
with --purge, which destroys its home, snapshots and scratch for good and
removes its record. On a terminal you are asked to confirm; otherwise pass
--yes.`,
	}, o, &o.Project, runProjectDelete)
	cmd.Flags().BoolVar(&o.Purge, "purge", false, "destroy the project's files and record for good")
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	return cmd
}

func runProjectDelete(ctx context.Context, f *Factory, as *asFlag, o *ProjectDeleteOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	// Show first: it checks the id and the caller's right to the project
	// before anything is asked or queued.
	d, err := ps.Show(ctx, c, o.Project)
	if err != nil {
		return err
	}
	if !o.Yes {
		if !f.IO.InTTY || !f.IO.OutTTY {
			return usagef("refusing to delete project %s without confirmation: pass --yes", d.ID)
		}
		what := "It is stopped and hidden; its files stay on the host until purged."
		if o.Purge {
			what = "This DESTROYS its home, snapshots and scratch."
		}
		fmt.Fprintf(f.IO.ErrOut, "Delete project %s (%s, on %s)? %s\nType the first 8 characters of its id to confirm: ",
			d.ID, orDash(d.Title), d.HostName, what)
		line, _ := bufio.NewReader(f.IO.In).ReadString('\n')
		if strings.TrimSpace(line) != d.ID[:8] {
			return usagef("not confirmed; project %s left as it was", d.ID)
		}
	}
	sub, err := ps.Delete(ctx, c, d.ID, o.Purge)
	if err != nil {
		return err
	}
	return finishProject(ctx, f, sub, o.NoWait)
}
