package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// AccountAdminOptions are the inputs of `account create|list|disable|enable`.
type AccountAdminOptions struct {
	Account string
	Admin   bool
}

func newAccountAdminCmd(f *Factory, as *asFlag, verb string) *cobra.Command {
	o := &AccountAdminOptions{}
	use, short, n := verb+" ACCOUNT", "", 1
	switch verb {
	case "create":
		use, short = "create ACCOUNT", "Create an account (admins; anyone for the first admin)"
	case "list":
		use, short, n = "list", "List accounts (admins)", 0
	case "disable":
		short = "Disable an account: the server refuses all its API keys (admins)"
	case "enable":
		short = "Enable a disabled account again (admins)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(n, use),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n == 1 {
				o.Account = args[0]
			}
			return runAccountAdmin(cmd.Context(), f, as, verb, o)
		},
	}
	if verb == "create" {
		cmd.Long = `Create an account. On a new deployment, whoever holds the database makes the
first admin (` + "`account create NAME --admin`" + `) and an API key for it
(` + "`account api-key create --as NAME`" + ` as that admin, or as NAME itself with
--account NAME); from then on admins create accounts, here or through a
server.`
		cmd.Flags().BoolVar(&o.Admin, "admin", false, "make the account an admin")
	}
	return cmd
}

func runAccountAdmin(ctx context.Context, f *Factory, as *asFlag, verb string, o *AccountAdminOptions) error {
	c, err := caller(f, as)
	if err != nil {
		return err
	}
	svc, err := f.Accounts(ctx)
	if err != nil {
		return err
	}
	var list []model.Account
	switch verb {
	case "create":
		a, err := svc.Create(ctx, c, o.Account, o.Admin)
		if err != nil {
			return err
		}
		list = []model.Account{a}
	case "disable", "enable":
		a, err := svc.SetDisabled(ctx, c, o.Account, verb == "disable")
		if err != nil {
			return err
		}
		list = []model.Account{a}
	default:
		if list, err = svc.List(ctx, c); err != nil {
			return err
		}
		return f.render(list, func(w *Out) error { return accountTable(w, list) })
	}
	return f.render(list[0], func(w *Out) error {
		fmt.Fprintf(w, "account %s: %s\n", list[0].ID, accountState(list[0]))
		return nil
	})
}

func accountState(a model.Account) string {
	switch {
	case a.Disabled:
		return "disabled"
	case a.Admin:
		return "admin"
	}
	return "active"
}

func accountTable(w *Out, list []model.Account) error {
	t := w.table("ACCOUNT", "STATE", "CREATED")
	for _, a := range list {
		t.row(a.ID, accountState(a), a.CreatedAt.Local().Format(time.DateTime))
	}
	return t.flush()
}
