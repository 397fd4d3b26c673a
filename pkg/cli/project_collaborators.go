package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// ProjectCollaboratorsOptions are the inputs of `project collaborators`.
type ProjectCollaboratorsOptions struct {
	Project string
	Account string
}

// ProjectCollaboratorsResult is its JSON.
type ProjectCollaboratorsResult struct {
	Project       string   `json:"project"`
	Collaborators []string `json:"collaborators"`
	Warnings      []string `json:"warnings,omitempty"`
}

func newProjectCollaboratorsCmd(f *Factory, as *asFlag) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "collaborators",
		Short: "Choose who besides its owner may use a project (open, ssh)",
		Long: `Collaborators of a project may reach it through its host's ingress
(` + "`project open`, `project ssh`" + `). The owner (or an admin) adds and removes them.
The host is told at once; if it cannot be reached, the worker tells it within
ingress.acl_ttl, and from then on the host refuses a removed collaborator,
whatever tokens or certificates they still hold.`,
		Args: noArgs,
	}
	for _, verb := range []string{"add", "rm", "list"} {
		cmd.AddCommand(newProjectCollaboratorsVerbCmd(f, as, verb))
	}
	return cmd
}

func newProjectCollaboratorsVerbCmd(f *Factory, as *asFlag, verb string) *cobra.Command {
	o := &ProjectCollaboratorsOptions{}
	use, short, n := verb+" PROJECT ACCOUNT", "", 2
	switch verb {
	case "add":
		short = "Let ACCOUNT use PROJECT"
	case "rm":
		short = "Stop ACCOUNT from using PROJECT"
	case "list":
		use, short, n = "list PROJECT", "List PROJECT's collaborators", 1
	}
	return &cobra.Command{
		Use:               use,
		Short:             short,
		Args:              exactArgs(n, use),
		ValidArgsFunction: completeProjects(f, as),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Project = args[0]
			if err := resolveProject(cmd.Context(), f, as, &o.Project); err != nil {
				return err
			}
			if n == 2 {
				o.Account = args[1]
			}
			return runProjectCollaborators(cmd.Context(), f, as, verb, o)
		},
	}
}

func runProjectCollaborators(ctx context.Context, f *Factory, as *asFlag, verb string, o *ProjectCollaboratorsOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	res := ProjectCollaboratorsResult{Project: o.Project}
	var warn string
	switch verb {
	case "add":
		warn, err = ps.AddProjectCollaborator(ctx, c, o.Project, o.Account)
	case "rm":
		warn, err = ps.RemoveProjectCollaborator(ctx, c, o.Project, o.Account)
	}
	if err != nil {
		return err
	}
	if warn != "" {
		res.Warnings = []string{warn}
		fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", warn)
	}
	if res.Collaborators, err = ps.ProjectCollaborators(ctx, c, o.Project); err != nil {
		return err
	}
	return f.render(res, func(w *Out) error {
		if len(res.Collaborators) == 0 {
			fmt.Fprintf(w, "%s: no collaborators\n", o.Project)
			return nil
		}
		fmt.Fprintf(w, "%s: %s\n", o.Project, strings.Join(res.Collaborators, ", "))
		return nil
	})
}
