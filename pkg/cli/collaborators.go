package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// CollaboratorsOptions are the inputs of `collaborators add|rm|list`.
type CollaboratorsOptions struct {
	Host    string
	Account string
}

// CollaboratorsResult is the JSON of every collaborators subcommand.
type CollaboratorsResult struct {
	Host          string   `json:"host"`
	HostID        string   `json:"host_id"`
	Owner         string   `json:"owner"`
	Shared        bool     `json:"shared"`
	Collaborators []string `json:"collaborators"`
}

func newCollaboratorsCmd(f *Factory) *cobra.Command {
	as := &asFlag{}
	cmd := &cobra.Command{
		Use:   "collaborators",
		Short: "Choose who may place projects on your hosts",
		Long: `Collaborators of a host may create projects on it. The host's owner (or an
admin) adds and removes them; removing one leaves their projects where they
are.` + asHelp,
		Args: noArgs,
	}
	as.add(cmd)
	for _, verb := range []string{"add", "rm", "list"} {
		cmd.AddCommand(newCollaboratorsVerbCmd(f, as, verb))
	}
	return cmd
}

func newCollaboratorsVerbCmd(f *Factory, as *asFlag, verb string) *cobra.Command {
	o := &CollaboratorsOptions{}
	use, short, n := verb+" HOST ACCOUNT", "", 2
	switch verb {
	case "add":
		short = "Let ACCOUNT place projects on HOST"
	case "rm":
		short = "Stop ACCOUNT from placing projects on HOST"
	case "list":
		use, short, n = "list HOST", "List HOST's collaborators", 1
	}
	cmd := &cobra.Command{
		Use:               use,
		Short:             short,
		Args:              exactArgs(n, use),
		ValidArgsFunction: completeHosts(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Host = args[0]
			if n == 2 {
				o.Account = args[1]
			}
			return runCollaborators(cmd.Context(), f, as, verb, o)
		},
	}
	return cmd
}

func runCollaborators(ctx context.Context, f *Factory, as *asFlag, verb string, o *CollaboratorsOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		_, err = ps.AddCollaborator(ctx, c, o.Host, o.Account)
	case "rm":
		_, err = ps.RemoveCollaborator(ctx, c, o.Host, o.Account)
	}
	if err != nil {
		return err
	}
	h, list, err := ps.Collaborators(ctx, c, o.Host)
	if err != nil {
		return err
	}
	return f.render(CollaboratorsResult{Host: h.Name, HostID: h.ID, Owner: h.Owner, Shared: h.Shared, Collaborators: list}, func(w *Out) error {
		switch verb {
		case "add":
			fmt.Fprintf(f.IO.ErrOut, "%s may now place projects on %s\n", o.Account, h.Name)
		case "rm":
			fmt.Fprintf(f.IO.ErrOut, "%s may no longer place projects on %s (their projects there stay)\n", o.Account, h.Name)
		}
		t := w.table("ACCOUNT", "ROLE")
		t.row(h.Owner, "owner")
		for _, a := range list {
			t.row(a, "collaborator")
		}
		if h.Shared {
			t.row("(everyone)", "shared pool")
		}
		return t.flush()
	})
}
