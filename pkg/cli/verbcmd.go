package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// hostVerbCmd completes cmd as a `VERB HOST` command: exactly one host
// argument, completed from the store, put in *host before the command runs.
func hostVerbCmd[O any](f *Factory, cmd *cobra.Command, o *O, host *string,
	run func(context.Context, *Factory, *O) error) *cobra.Command {
	cmd.Args = oneHost
	cmd.ValidArgsFunction = completeHosts(f)
	cmd.RunE = oneArgRunE(o, host, func(ctx context.Context, o *O) error { return run(ctx, f, o) })
	return cmd
}

// projectCmd completes cmd as a `project VERB PROJECT` command, as
// hostVerbCmd does for hosts: the project argument goes in *project.
func projectCmd[O any](f *Factory, as *asFlag, cmd *cobra.Command, o *O, project *string,
	run func(context.Context, *Factory, *asFlag, *O) error) *cobra.Command {
	cmd.Args = oneProject
	cmd.ValidArgsFunction = completeProjects(f, as)
	cmd.RunE = oneArgRunE(o, project, func(ctx context.Context, o *O) error {
		if err := resolveProject(ctx, f, as, project); err != nil {
			return err
		}
		return run(ctx, f, as, o)
	})
	return cmd
}

// exactArgs wants exactly n arguments; otherwise it shows the usage line
// use under the parent command.
func exactArgs(n int, use string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("usage: %s %s", cmd.Parent().CommandPath(), use)
		}
		return nil
	}
}

func oneArgRunE[O any](o *O, arg *string, run func(context.Context, *O) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		*arg = args[0]
		return run(cmd.Context(), o)
	}
}

// withProjects returns who runs the command and the project service, which
// every project command needs first.
func withProjects(ctx context.Context, f *Factory, as *asFlag) (projects.Caller, ProjectService, error) {
	c, err := caller(f, as)
	if err != nil {
		return projects.Caller{}, nil, err
	}
	ps, err := f.Projects(ctx)
	if err != nil {
		return projects.Caller{}, nil, err
	}
	return c, ps, nil
}
