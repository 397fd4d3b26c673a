package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// AdminOptions are the inputs of `admin` subcommands.
type AdminOptions struct {
	Target string
}

// AdminResult is the JSON of the admin subcommands.
type AdminResult struct {
	Admins []string `json:"admins,omitempty"`
	Host   string   `json:"host,omitempty"`
	Shared *bool    `json:"shared,omitempty"`
}

func newAdminCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Admins and the shared pool of hosts",
		Long: `Admins may act for other accounts (--as), list every project, and put hosts
in the shared pool, on which every account may place projects.

While a deployment has no admin, anyone with access to its database may grant
the first one (cocalc-hosts admin grant ACCOUNT); after that only admins may
grant or revoke.`,
		Args: noArgs,
	}
	verbs := []struct{ use, short string }{
		{"grant ACCOUNT", "Make ACCOUNT an admin"},
		{"revoke ACCOUNT", "Take ACCOUNT's admin rights away"},
		{"list", "List the admins"},
		{"share HOST", "Put HOST in the shared pool"},
		{"unshare HOST", "Take HOST out of the shared pool"},
	}
	for _, v := range verbs {
		cmd.AddCommand(newAdminVerbCmd(f, v.use, v.short))
	}
	return cmd
}

func newAdminVerbCmd(f *Factory, use, short string) *cobra.Command {
	o := &AdminOptions{}
	verb, _, hasArg := strings.Cut(use, " ")
	n := 0
	if hasArg {
		n = 1
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(n, use),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n == 1 {
				o.Target = args[0]
			}
			return runAdmin(cmd.Context(), f, verb, o)
		},
	}
	if verb == "share" || verb == "unshare" {
		cmd.ValidArgsFunction = completeHosts(f)
	}
	return cmd
}

func runAdmin(ctx context.Context, f *Factory, verb string, o *AdminOptions) error {
	c, ps, err := withProjects(ctx, f, &asFlag{})
	if err != nil {
		return err
	}
	switch verb {
	case "grant", "revoke":
		if err := ps.SetAdmin(ctx, c, o.Target, verb == "grant"); err != nil {
			return err
		}
		fallthrough
	case "list":
		admins, err := ps.Admins(ctx)
		if err != nil {
			return err
		}
		return f.render(AdminResult{Admins: admins}, func(o *Out) error {
			for _, a := range admins {
				fmt.Fprintln(o, a)
			}
			if len(admins) == 0 {
				fmt.Fprintln(f.IO.ErrOut, "no admins; grant the first with `cocalc-hosts admin grant ACCOUNT`")
			}
			return nil
		})
	case "share", "unshare":
		h, err := ps.SetShared(ctx, c, o.Target, verb == "share")
		if err != nil {
			return err
		}
		return f.render(AdminResult{Host: h.Name, Shared: &h.Shared}, func(o *Out) error {
			if h.Shared {
				fmt.Fprintf(o, "%s: in the shared pool; every account may place projects on it\n", h.Name)
			} else {
				fmt.Fprintf(o, "%s: not shared; only its owner and collaborators may place projects on it\n", h.Name)
			}
			return nil
		})
	}
	return usagef("unknown admin command %q", verb)
}
