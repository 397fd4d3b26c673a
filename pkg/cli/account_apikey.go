package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// APIKeyOptions are the inputs of `account api-key create|list|revoke`.
type APIKeyOptions struct {
	Name    string
	Expires time.Duration
	All     bool
	ID      string
}

// These are "API keys" under `account`, not `keys`: `keys list|rotate`
// manage the server's own signing keyring for connect tokens and SSH
// certificates, which no user holds. An API key is a user's credential
// for a server, like the SSH keys beside it under `account`.
func newAccountAPIKeyCmd(f *Factory, as *asFlag) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "api-key",
		Short: "API keys that identify you to a cocalc-hosts server",
		Long: `An API key identifies an account to a cocalc-hosts server (` + "`cocalc-hosts serve`" + `);
` + "`cocalc-hosts login`" + ` stores it. The key is shown once, when it is made; the
server keeps only its hash. (Not to be confused with ` + "`cocalc-hosts keys`" + `, the
server's signing keys for connect tokens and SSH certificates.)`,
		Args: noArgs,
	}
	for _, verb := range []string{"create", "list", "revoke"} {
		cmd.AddCommand(newAPIKeyVerbCmd(f, as, verb))
	}
	return cmd
}

func newAPIKeyVerbCmd(f *Factory, as *asFlag, verb string) *cobra.Command {
	o := &APIKeyOptions{}
	use, short, n := "create", "Make an API key and print it once", 0
	switch verb {
	case "list":
		use, short = "list", "List your API keys (never the keys themselves)"
	case "revoke":
		use, short, n = "revoke ID", "Revoke one of your API keys", 1
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(n, use),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n == 1 {
				o.ID = args[0]
			}
			return runAPIKey(cmd.Context(), f, as, verb, o)
		},
	}
	switch verb {
	case "create":
		cmd.Flags().StringVar(&o.Name, "name", "", "a name to tell the key apart (where it is used)")
		cmd.Flags().DurationVar(&o.Expires, "expires", 0, "the key expires after this long (such as 720h; default: never)")
	case "list":
		cmd.Flags().BoolVar(&o.All, "all", false, "every account's keys (admins)")
	}
	return cmd
}

func runAPIKey(ctx context.Context, f *Factory, as *asFlag, verb string, o *APIKeyOptions) error {
	c, err := caller(f, as)
	if err != nil {
		return err
	}
	svc, err := f.Accounts(ctx)
	if err != nil {
		return err
	}
	switch verb {
	case "create":
		if o.Expires < 0 {
			return usagef("--expires %s: give a positive duration", o.Expires)
		}
		var exp *time.Time
		if o.Expires > 0 {
			t := f.Now().Add(o.Expires).UTC().Truncate(time.Millisecond)
			exp = &t
		}
		k, err := svc.CreateKey(ctx, c, o.Name, exp)
		if err != nil {
			return err
		}
		return f.render(k, func(w *Out) error {
			fmt.Fprintln(w, k.Key)
			if f.IO.OutTTY {
				fmt.Fprintf(f.IO.ErrOut, "API key %s for %s: it is shown only now; `cocalc-hosts login --server URL` stores it\n", k.ID, k.Account)
			}
			return nil
		})
	case "revoke":
		// Not followed by the list: the key revoked may be the one this
		// command used.
		if err := svc.RevokeKey(ctx, c, o.ID); err != nil {
			return err
		}
		return f.render(map[string]string{"revoked": o.ID}, func(w *Out) error {
			fmt.Fprintf(w, "API key %s revoked\n", o.ID)
			return nil
		})
	}
	keys, err := svc.Keys(ctx, c, o.All)
	if err != nil {
		return err
	}
	return f.render(keys, func(w *Out) error { return apiKeyTable(w, keys, f.Now()) })
}

func apiKeyTable(w *Out, keys []model.APIKey, now time.Time) error {
	t := w.table("ID", "ACCOUNT", "NAME", "CREATED", "STATE")
	for _, k := range keys {
		state := "active"
		switch {
		case k.RevokedAt != nil:
			state = "revoked " + k.RevokedAt.Local().Format(time.DateTime)
		case !k.Usable(now):
			state = "expired " + k.ExpiresAt.Local().Format(time.DateTime)
		case k.ExpiresAt != nil:
			state = "expires " + k.ExpiresAt.Local().Format(time.DateTime)
		}
		t.row(k.ID, k.Account, orDash(k.Name), k.CreatedAt.Local().Format(time.DateTime), state)
	}
	return t.flush()
}
