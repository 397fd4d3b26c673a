package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/agent"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
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
			return agent.Main(cmd.Context(), configPath)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "agent config file (JSON, mode 0600)")
	// The root's --config names the CLI's config file; the agent's own
	// flag shadows it here.
	return cmd
}

// AgentHealth is what `show` reports about a running host's agent.
type AgentHealth struct {
	Reachable bool             `json:"reachable"`
	Error     string           `json:"error,omitempty"`
	Status    *agentapi.Status `json:"status,omitempty"`
	// LastContact is the last successful SSH contact with a remote host.
	LastContact *time.Time `json:"last_contact,omitempty"`
}

func (a *AgentHealth) String() string {
	if !a.Reachable {
		if a.LastContact != nil {
			return fmt.Sprintf("not answering (last contact %s): %s", a.LastContact.Local().Format("2006-01-02 15:04:05"), a.Error)
		}
		return "not answering: " + a.Error
	}
	s := a.Status
	return fmt.Sprintf("%s, up %s, %s free of %s on %s", s.Version, time.Duration(s.UptimeSeconds*float64(time.Second)).Round(time.Second),
		bytesHuman(s.Storage.FreeBytes), bytesHuman(s.Storage.TotalBytes), s.Storage.Kind)
}

// agentHealth asks a host's agent for its status, where this process can
// reach the agent's socket (local hosts).
func agentHealth(ctx context.Context, h model.Host) *AgentHealth {
	sock := h.Runtime.Meta["socket"]
	if sock == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := agentapi.NewClient(sock).Status(ctx)
	if err != nil {
		return &AgentHealth{Error: err.Error()}
	}
	return &AgentHealth{Reachable: true, Status: &st}
}

func bytesHuman(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
