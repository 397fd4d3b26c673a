package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// ProjectLifecycleOptions are the inputs of `project start|stop|restart`.
type ProjectLifecycleOptions struct {
	Project string
	NoWait  bool
}

var lifecycleShort = map[string]string{
	"start":   "Start a project's container",
	"stop":    "Stop a project's container (its files stay)",
	"restart": "Stop and start a project's container",
}

func newProjectLifecycleCmd(f *Factory, as *asFlag, verb string) *cobra.Command {
	o := &ProjectLifecycleOptions{}
	run := func(ctx context.Context, f *Factory, as *asFlag, o *ProjectLifecycleOptions) error {
		return runProjectLifecycle(ctx, f, as, verb, o)
	}
	cmd := projectCmd(f, as, &cobra.Command{
		Use:   verb + " PROJECT",
		Short: lifecycleShort[verb],
	}, o, &o.Project, run)
	if verb == "start" {
		cmd.Long = `Start a project's container on its host. The host must be running (a host
that is off is refused with the command that starts it) and have memory
headroom for the project's limit.`
	}
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the action")
	return cmd
}

func runProjectLifecycle(ctx context.Context, f *Factory, as *asFlag, verb string, o *ProjectLifecycleOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	act := map[string]func(context.Context, projects.Caller, string) (projects.Submitted, error){
		"start": ps.Start, "stop": ps.Stop, "restart": ps.Restart,
	}[verb]
	sub, err := act(ctx, c, o.Project)
	if err != nil {
		return err
	}
	return finishProject(ctx, f, sub, o.NoWait)
}
