package cli

import (
	"context"

	"github.com/spf13/cobra"
)

// StartOptions are the inputs of `start`.
type StartOptions struct {
	Host   string
	NoWait bool
}

func newStartCmd(f *Factory, runF func(context.Context, *StartOptions) error) *cobra.Command {
	o := &StartOptions{}
	cmd := &cobra.Command{
		Use:               "start HOST",
		Short:             "Start a stopped host",
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
			sub, err := svc.Start(cmd.Context(), o.Host)
			if err != nil {
				return err
			}
			return finishSubmitted(cmd.Context(), f, sub, o.NoWait)
		},
	}
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	return cmd
}
