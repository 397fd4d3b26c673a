package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// SigningKey is one generation of signing keys as `keys` prints it.
type SigningKey struct {
	KID         string     `json:"kid"`
	CreatedAt   time.Time  `json:"created_at"`
	Current     bool       `json:"current"`
	RetiredAt   *time.Time `json:"retired_at,omitempty"`
	AcceptUntil *time.Time `json:"accept_until,omitempty"`
}

// KeysResult is the JSON of `keys list` and `keys rotate`.
type KeysResult struct {
	Path string       `json:"path"`
	Keys []SigningKey `json:"keys"`
	// Push says which hosts learned of a rotation at once.
	Push *projects.PushReport `json:"push,omitempty"`
}

func newKeysCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Show or rotate the keys that sign connect tokens and SSH certificates",
		Long: `The control plane signs connect tokens (` + "`project open`" + `) and SSH certificates
(` + "`project ssh`, `project ssh-config`" + `) with Ed25519 keys kept in tokens.signing_keys
(a 0600 file, made on first use). Hosts get only the public halves, with every
access list. Rotating makes a new key that signs from then on; the old one
stays accepted for --grace (by default the longest life of a token or
certificate), after which hosts refuse what it signed, browser sessions made
with it included.`,
		Args: noArgs,
	}
	cmd.AddCommand(newKeysListCmd(f), newKeysRotateCmd(f))
	return cmd
}

func newKeysListCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the signing keys (making the first one if there is none)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := f.signingKeysPath()
			if err != nil {
				return err
			}
			kr, err := tokens.LoadOrCreate(path, f.Now())
			if err != nil {
				return err
			}
			return printKeys(f, KeysResult{Path: path, Keys: signingKeys(kr)})
		},
	}
}

// KeysRotateOptions are the inputs of `keys rotate`.
type KeysRotateOptions struct {
	// Grace is how long the old key stays accepted; negative means the
	// longest life of a token or certificate.
	Grace time.Duration
}

func newKeysRotateCmd(f *Factory) *cobra.Command {
	o := &KeysRotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new signing key; the old one is accepted for --grace",
		Long: `Make a new signing key and tell the running hosts. Tokens and certificates
signed by the old key keep working for --grace, then hosts refuse them. Use
--grace 0 when the old key may have leaked.`,
		Example: `  cocalc-hosts keys rotate
  cocalc-hosts keys rotate --grace 0     # the old key leaked: refuse its tokens now`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeysRotate(cmd.Context(), f, o)
		},
	}
	cmd.Flags().DurationVar(&o.Grace, "grace", -1, "how long the old key stays accepted (default: tokens.ttl or tokens.ssh_cert_validity, whichever is longer)")
	return cmd
}

func runKeysRotate(ctx context.Context, f *Factory, o *KeysRotateOptions) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	grace := o.Grace
	if grace < 0 {
		grace = max(cfg.Tokens.TTL, cfg.Tokens.SSHCertValidity)
	}
	if grace > tokens.MaxTTL {
		return usagef("--grace %s: at most %s", grace, tokens.MaxTTL)
	}
	path, err := f.signingKeysPath()
	if err != nil {
		return err
	}
	if _, err := tokens.LoadOrCreate(path, f.Now()); err != nil {
		return err
	}
	kr, err := tokens.Rotate(path, f.Now(), grace)
	if err != nil {
		return err
	}
	res := KeysResult{Path: path, Keys: signingKeys(kr)}
	a, err := f.App()
	if err != nil {
		return err
	}
	ps, err := a.Projects(ctx)
	if err != nil {
		return err
	}
	rep, err := ps.PushAllAccess(ctx)
	if err != nil {
		return err
	}
	res.Push = &rep
	for _, h := range rep.Unreachable {
		fmt.Fprintf(f.IO.ErrOut, "warning: host %s was not told yet (%s); the worker tells it within ingress.acl_ttl\n", h.Name, h.Error)
	}
	return printKeys(f, res)
}

func signingKeys(kr *tokens.Keyring) []SigningKey {
	out := []SigningKey{}
	for _, k := range kr.Keys() {
		out = append(out, SigningKey{KID: k.KID, CreatedAt: k.CreatedAt, Current: k.Current(), RetiredAt: k.RetiredAt, AcceptUntil: k.AcceptUntil})
	}
	return out
}

func printKeys(f *Factory, res KeysResult) error {
	return f.render(res, func(w *Out) error {
		t := w.table("KID", "CREATED", "STATE", "ACCEPTED UNTIL")
		for _, k := range res.Keys {
			state, until := "current", "-"
			if !k.Current {
				state = "retired"
			}
			if k.AcceptUntil != nil {
				until = k.AcceptUntil.Local().Format(time.RFC3339)
				if !f.Now().Before(*k.AcceptUntil) {
					state = "rotated out"
				}
			}
			t.row(k.KID, k.CreatedAt.Local().Format(time.RFC3339), state, until)
		}
		return t.flush()
	})
}

// signingKeysPath is the keyring that signs connect tokens and SSH
// certificates (tokens.signing_keys).
func (f *Factory) signingKeysPath() (string, error) {
	a, err := f.App()
	if err != nil {
		return "", err
	}
	return a.SigningKeysPath()
}
