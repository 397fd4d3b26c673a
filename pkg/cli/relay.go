package cli

import (
	"io"

	"github.com/spf13/cobra"
)

// newRelayCmd joins stdin and stdout to a reverse-connected host's
// ingress through the server: the ProxyCommand of `project ssh` and
// `project ssh-config` for such a host.
func newRelayCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:    "relay HOST https|ssh",
		Short:  "Join stdin and stdout to a reverse-connected host's ingress, through the server (ssh's ProxyCommand)",
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("relay needs a host and a target (https or ssh)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.Remote()
			if err != nil {
				return err
			}
			if c == nil {
				return usagef("relay goes through the server that holds the host's tunnel: run `cocalc-hosts login --server URL` first")
			}
			conn, err := c.Relay(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			defer conn.Close()
			done := make(chan struct{})
			go func() { io.Copy(conn, f.IO.In); close(done) }() //nolint:errcheck // ends with stdin
			io.Copy(f.IO.Out, conn)                             //nolint:errcheck // ends with the connection
			return nil
		},
	}
}
