package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// SSHKeyOptions are the inputs of `ssh-key`.
type SSHKeyOptions struct{}

// FleetKey is what `ssh-key` prints.
type FleetKey struct {
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	Path        string `json:"path"`
}

func newSSHKeyCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh-key",
		Short: "Print the fleet SSH public key (to authorize on machines to adopt)",
		Long: `Print the fleet SSH public key, making the key pair on first use. cocalc-hosts
logs in to every host with this key; clouds get it automatically. To adopt a
machine of your own, append this line to ~USER/.ssh/authorized_keys there and
run ` + "`cocalc-hosts create --cloud ssh --address USER@HOST`" + `.

The private key is ssh.fleet_key (default: fleet_ed25519 in the state
directory), mode 0600.`,
		Example: `  cocalc-hosts ssh-key | ssh root@203.0.113.7 'cat >> ~/.ssh/authorized_keys'
  cocalc-hosts ssh-key repin gpu1 --fingerprint SHA256:...`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSSHKey(cmd.Context(), f) },
	}
	cmd.AddCommand(newRepinCmd(f))
	return cmd
}

func runSSHKey(ctx context.Context, f *Factory) error {
	a, err := f.App()
	if err != nil {
		return err
	}
	id, err := a.FleetKey(ctx)
	if err != nil {
		return err
	}
	return f.render(FleetKey{PublicKey: id.AuthorizedKey(), Fingerprint: id.Fingerprint(), Path: id.Path}, func(w *Out) error {
		fmt.Fprintln(w, id.AuthorizedKey())
		return nil
	})
}

// RepinOptions are the inputs of `ssh-key repin`.
type RepinOptions struct {
	Host        string
	Fingerprint string
}

func newRepinCmd(f *Factory) *cobra.Command {
	o := &RepinOptions{}
	cmd := hostVerbCmd(f, &cobra.Command{
		Use:   "repin HOST",
		Short: "Accept a host's new SSH host key (after a reinstall)",
		Long: `Pin the SSH host key that HOST offers now, replacing the pinned one. cocalc-hosts
refuses to talk to a host whose key changed, because that is also what an
attacker in between looks like. Read the machine's fingerprint on its console
(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and pass it with
--fingerprint: the key is pinned only if it matches.`,
	}, o, &o.Host, runRepin)
	cmd.Flags().StringVar(&o.Fingerprint, "fingerprint", "", "the expected SHA256 fingerprint of the new key")
	return cmd
}

func runRepin(ctx context.Context, f *Factory, o *RepinOptions) error {
	svc, err := f.localHosts(ctx)
	if err != nil {
		return err
	}
	h, err := svc.Get(ctx, o.Host)
	if err != nil {
		return err
	}
	if ok, err := svc.IsBootstrapped(ctx, h); err != nil {
		return err
	} else if !ok {
		return usagef("host %s (provider %s) is not reached over SSH; it has no host key to pin", h.Name, h.Provider)
	}
	h, err = svc.SSHEndpoint(ctx, h)
	if err != nil {
		return err
	}
	a, err := f.App()
	if err != nil {
		return err
	}
	boot, err := a.Bootstrapper(ctx)
	if err != nil {
		return err
	}
	ch, err := boot.Repin(ctx, h, o.Fingerprint)
	if err != nil {
		return err
	}
	return f.render(ch, func(w *Out) error {
		switch {
		case !ch.Changed:
			fmt.Fprintf(w, "%s: host key %s was already pinned\n", h.Name, ch.New)
		case ch.Old == "":
			fmt.Fprintf(w, "%s: pinned host key %s\n", h.Name, ch.New)
		default:
			fmt.Fprintf(w, "%s: pinned host key %s (was %s)\n", h.Name, ch.New, ch.Old)
		}
		return nil
	})
}
