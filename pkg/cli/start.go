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

func newStartCmd(f *Factory) *cobra.Command {
	o := &StartOptions{}
	cmd := hostVerbCmd(f, &cobra.Command{
		Use:   "start HOST",
		Short: "Start a stopped host",
	}, o, &o.Host, runStart)
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	return cmd
}

func runStart(ctx context.Context, f *Factory, o *StartOptions) error {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	sub, err := svc.Start(ctx, o.Host)
	if err != nil {
		return err
	}
	return finishSubmitted(ctx, f, sub, o.NoWait)
}
