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

func newStopCmd(f *Factory, runF func(context.Context, *StopOptions) error) *cobra.Command {
	o := &StopOptions{}
	cmd := &cobra.Command{
		Use:   "stop HOST",
		Short: "Stop a host, keeping its data",
		Long: `Stop a host. Compute billing ends; the data disk is kept (and still billed).

On providers that cannot stop a VM (see the "stop" capability in
` + "`cocalc-hosts providers`" + `), use --deprovision: the VM is deleted and the data
disk kept where the provider has one.`,
		Args:              oneHost,
		ValidArgsFunction: completeHosts(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Host = args[0]
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			svc, err := f.Hosts(cmd.Context())
			if err != nil {
				return err
			}
			sub, err := svc.Stop(cmd.Context(), o.Host, hosts.StopOptions{Deprovision: o.Deprovision})
			if err != nil {
				return err
			}
			return finishStop(cmd.Context(), f, sub, o.NoWait, o.Deprovision)
		},
	}
	cmd.Flags().BoolVar(&o.Deprovision, "deprovision", false, "delete the VM, keeping the data disk where possible")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	return cmd
}
