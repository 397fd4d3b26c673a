package cli

import (
	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/agent"
)

// newAgentSFTPCmd is run by the agent (as root) for an sftp session of
// its SSH ingress: it serves sftp on stdin and stdout as the project's
// user, inside the container of the project whose first process is PID.
func newAgentSFTPCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:    "agent-sftp-server PID",
		Short:  "Serve sftp inside a project's container (run by the agent)",
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("agent-sftp-server needs the pid of the container's first process")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return agent.ServeSFTP(args[0]) },
	}
}
