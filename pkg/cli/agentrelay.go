package cli

import (
	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
)

// newAgentRelayCmd is run on project hosts, through sudo, by a control
// plane whose SSH login user is not root: the agent's socket is root's
// (mode 0600), so sshd cannot forward it for that user, and this command
// carries one connection over the SSH session's stdin and stdout instead.
func newAgentRelayCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:    "agent-relay SOCKET",
		Short:  "Join stdin and stdout to the agent's unix socket (used over SSH)",
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("agent-relay needs the agent's socket path")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return sshpool.ServeRelay(cmd.Context(), args[0], f.IO.In, f.IO.Out)
		},
	}
}
