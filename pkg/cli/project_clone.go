package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// ProjectCloneOptions are the inputs of `project clone`.
type ProjectCloneOptions struct {
	Project string
	To      string
	Name    string
	NoWait  bool
}

func newProjectCloneCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectCloneOptions{}
	cmd := projectCmd(f, as, &cobra.Command{
		Use:   "clone PROJECT --to HOST [--name TITLE]",
		Short: "Copy a project's current files into a new project",
		Long: `Copy a project's current files into a new project (a new id, owned by you,
with the same image and limits) on HOST, which may be the project's own
host. Snapshots are not copied, and the source is not changed. The copy is
stopped when done.`,
	}, o, &o.Project, runProjectClone)
	cmd.Flags().StringVar(&o.To, "to", "", "host of the copy")
	cmd.Flags().StringVar(&o.Name, "name", "", `title of the copy (default "copy of TITLE")`)
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the copy")
	return cmd
}

func runProjectClone(ctx context.Context, f *Factory, as *asFlag, o *ProjectCloneOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	if o.To == "" {
		return usagef("project clone needs --to HOST (see `cocalc-hosts list`)")
	}
	sub, _, err := ps.Clone(ctx, c, projects.CloneRequest{Project: o.Project, To: o.To, Title: o.Name})
	if err != nil {
		return err
	}
	if err := finishProject(ctx, f, sub, o.NoWait); err != nil {
		return err
	}
	if !o.NoWait && !f.jsonOutput() {
		fmt.Fprintf(f.IO.ErrOut, "%s is a copy of %s\n", sub.Project.ID, o.Project)
	}
	return nil
}
