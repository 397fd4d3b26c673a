package cli

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
)

// DeleteOptions are the inputs of `delete`.
type DeleteOptions struct {
	Host     string
	KeepDisk bool
	Yes      bool
	NoWait   bool
	// Purge and Forget are for adopted machines (--cloud ssh).
	Purge  bool
	Forget bool
}

func newDeleteCmd(f *Factory) *cobra.Command {
	o := &DeleteOptions{}
	cmd := hostVerbCmd(f, &cobra.Command{
		Use:   "delete HOST",
		Short: "Delete a host and its VM",
		Long: `Delete a host: its VM and, unless --keep-disk, its data disk. With
--keep-disk the host stays (status off) and ` + "`start`" + ` makes a new VM on the kept
disk. On a terminal you are asked to confirm; otherwise pass --yes.

An adopted machine (--cloud ssh) is the user's: delete uninstalls the agent
and keeps the project pool (/btrfs) and its data unless --purge. --forget
drops a host whose machine is gone or unreachable without touching it.`,
	}, o, &o.Host, runDelete)
	cmd.Flags().BoolVar(&o.KeepDisk, "keep-disk", false, "keep the data disk (host becomes off)")
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	cmd.Flags().BoolVar(&o.Purge, "purge", false, "adopted machines: also erase the project pool (/btrfs) and its data")
	cmd.Flags().BoolVar(&o.Forget, "forget", false, "adopted machines: drop the host without touching the machine")
	return cmd
}

func runDelete(ctx context.Context, f *Factory, o *DeleteOptions) error {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	h, err := svc.Get(ctx, o.Host)
	if err != nil {
		return err
	}
	if !o.Yes {
		if !f.IO.InTTY || !f.IO.OutTTY {
			return usagef("refusing to delete host %s without confirmation: pass --yes", h.Name)
		}
		what := "its VM and its data disk"
		if o.KeepDisk {
			what = "its VM (the data disk is kept)"
		}
		fmt.Fprintf(f.IO.ErrOut, "Delete host %s (%s, %s)? This destroys %s.\nType the host name to confirm: ", h.Name, h.Provider, h.Status, what)
		line, _ := bufio.NewReader(f.IO.In).ReadString('\n')
		if strings.TrimSpace(line) != h.Name {
			return usagef("not confirmed; host %s left as it was", h.Name)
		}
	}
	sub, err := svc.Delete(ctx, h.ID, hosts.DeleteOptions{KeepDisk: o.KeepDisk, Purge: o.Purge, Forget: o.Forget})
	if err != nil {
		return err
	}
	return finishSubmitted(ctx, f, sub, o.NoWait)
}
