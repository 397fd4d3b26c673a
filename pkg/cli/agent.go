package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/agent"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
)

func newAgentCmd(f *Factory) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Run the host agent (on a project host)",
		Long: `Run the host agent. Providers start it on each host; you do not normally
run it by hand. It serves its API only on a unix socket and never holds
database credentials. Its config file must be mode 0600.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usagef("agent needs --config FILE")
			}
			agent.Version = Version
			// The agent's SSH ingress runs this program's
			// agent-sftp-server for each sftp session.
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own executable for sftp: %w", err)
			}
			agent.SFTPHelper = []string{exe, "agent-sftp-server"}
			return agent.Main(cmd.Context(), configPath)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "agent config file (JSON, mode 0600)")
	// The root's --config names the CLI's config file; the agent's own
	// flag shadows it here.
	return cmd
}

// AgentHealth is what `show` reports about a running host's agent.
type AgentHealth = hosts.AgentHealth

// agentLine is an agent's health in one line.
func agentLine(a *AgentHealth) string {
	if !a.Reachable {
		if a.LastContact != nil {
			return fmt.Sprintf("not answering (last contact %s): %s", a.LastContact.Local().Format("2006-01-02 15:04:05"), a.Error)
		}
		return "not answering: " + a.Error
	}
	s := a.Status
	return fmt.Sprintf("version %s, up %s, %s free of %s on %s", s.Version, time.Duration(s.UptimeSeconds*float64(time.Second)).Round(time.Second),
		humanize.IBytes(s.Storage.FreeBytes), humanize.IBytes(s.Storage.TotalBytes), s.Storage.Kind)
}
