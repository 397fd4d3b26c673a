package cli

import (
	"context"
	"io"

	"github.com/spf13/cobra"
)

// AgentMetricsOptions are the inputs of `agent-metrics`.
type AgentMetricsOptions struct {
	Host string
}

func newAgentMetricsCmd(f *Factory) *cobra.Command {
	o := &AgentMetricsOptions{}
	return hostVerbCmd(f, &cobra.Command{
		Use:   "agent-metrics HOST",
		Short: "Print a running host's agent metrics (Prometheus text format)",
		Long: `Ask a running host's agent for its Prometheus metrics and print them as
the agent serves them: projects running and on disk, the pool's free and
total bytes, memory available, total and promised to running projects,
CPUs and CPUs promised, and the podman commands that failed since the
agent started (cocalc_agent_podman_errors_total, by subcommand). With
-o json: {"host": NAME, "text": METRICS}.`,
	}, o, &o.Host, runAgentMetrics)
}

func runAgentMetrics(ctx context.Context, f *Factory, o *AgentMetricsOptions) error {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	m, err := svc.AgentMetrics(ctx, o.Host)
	if err != nil {
		return err
	}
	return f.render(m, func(w *Out) error {
		_, err := io.WriteString(w, m.Text)
		return err
	})
}
