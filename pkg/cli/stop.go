package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
)

// StopOptions are the inputs of `stop`.
type StopOptions struct {
	Host        string
	Deprovision bool
	NoWait      bool
}

func newStopCmd(f *Factory) *cobra.Command {
	o := &StopOptions{}
	cmd := hostVerbCmd(f, &cobra.Command{
		Use:   "stop HOST",
		Short: "Stop a host, keeping its data",
		Long: `Stop a host. Compute billing ends; the data disk is kept (and still billed).

On providers that cannot stop a VM (see the "stop" capability in
` + "`cocalc-hosts providers`" + `), use --deprovision: the VM is deleted and the data
disk kept where the provider has one.`,
	}, o, &o.Host, runStop)
	cmd.Flags().BoolVar(&o.Deprovision, "deprovision", false, "delete the VM, keeping the data disk where possible")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	return cmd
}

func runStop(ctx context.Context, f *Factory, o *StopOptions) error {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	sub, err := svc.Stop(ctx, o.Host, hosts.StopOptions{Deprovision: o.Deprovision})
	if err != nil {
		return err
	}
	return finishStop(ctx, f, sub, o.NoWait)
}
