package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// AccountKeysOptions are the inputs of `account ssh-keys`.
type AccountKeysOptions struct {
	// File holds the public key ("-" for stdin); Fingerprint picks the
	// key to remove.
	File        string
	Fingerprint string
}

// AccountKeysResult is the JSON of every `account ssh-keys` subcommand.
type AccountKeysResult struct {
	Keys     []model.SSHKey `json:"keys"`
	Warnings []string       `json:"warnings,omitempty"`
}

func newAccountCmd(f *Factory) *cobra.Command {
	as := &asFlag{}
	cmd := &cobra.Command{
		Use:   "account",
		Short: "Accounts, their API keys for a server, and your SSH public keys",
		Args:  noArgs,
	}
	as.add(cmd)
	keys := &cobra.Command{
		Use:   "ssh-keys",
		Short: "Public keys that log you in to your projects' SSH ingress",
		Long: `With a public key recorded here you may log in to the SSH ingress of every
project you may use (as user PROJECT_ID) with your own key, without a
certificate from ` + "`project ssh-config`" + `. The hosts of your projects are told at
once, or by the worker within ingress.acl_ttl.`,
		Example: `  cocalc-hosts account ssh-keys add ~/.ssh/id_ed25519.pub
  ssh -p 2222 $P@HOST`,
		Args: noArgs,
	}
	for _, verb := range []string{"add", "rm", "list"} {
		keys.AddCommand(newAccountKeysVerbCmd(f, as, verb))
	}
	cmd.AddCommand(keys, newAccountAPIKeyCmd(f, as))
	for _, verb := range []string{"create", "list", "disable", "enable"} {
		cmd.AddCommand(newAccountAdminCmd(f, as, verb))
	}
	return cmd
}

func newAccountKeysVerbCmd(f *Factory, as *asFlag, verb string) *cobra.Command {
	o := &AccountKeysOptions{}
	use, short, n := "add FILE", "Record the public key in FILE (- for stdin)", 1
	switch verb {
	case "rm":
		use, short = "rm FINGERPRINT", "Remove the key with FINGERPRINT (SHA256:..., see list)"
	case "list":
		use, short, n = "list", "List your keys", 0
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(n, use),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch verb {
			case "add":
				o.File = args[0]
			case "rm":
				o.Fingerprint = args[0]
			}
			return runAccountKeys(cmd.Context(), f, as, verb, o)
		},
	}
}

func runAccountKeys(ctx context.Context, f *Factory, as *asFlag, verb string, o *AccountKeysOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	var res AccountKeysResult
	switch verb {
	case "add":
		line, err := readKeyFile(f, o.File)
		if err != nil {
			return err
		}
		if _, res.Warnings, err = ps.AddSSHKey(ctx, c, line); err != nil {
			return err
		}
	case "rm":
		if res.Warnings, err = ps.RemoveSSHKey(ctx, c, o.Fingerprint); err != nil {
			return err
		}
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", w)
	}
	if res.Keys, err = ps.SSHKeys(ctx, c); err != nil {
		return err
	}
	return f.render(res, func(w *Out) error {
		t := w.table("FINGERPRINT", "TYPE", "COMMENT", "ADDED")
		for _, k := range res.Keys {
			typ, _, _ := strings.Cut(k.PublicKey, " ")
			t.row(k.Fingerprint, typ, orDash(k.Comment), k.CreatedAt.Local().Format(time.DateTime))
		}
		return t.flush()
	})
}

// readKeyFile reads one public key line from path or stdin ("-").
func readKeyFile(f *Factory, path string) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(f.IO.In, 64<<10))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", usagef("read the public key: %v", err)
	}
	if strings.Contains(string(b), "PRIVATE KEY") {
		return "", usagef("%s is a private key; give the public one (the .pub file)", path)
	}
	return strings.TrimSpace(string(b)), nil
}
