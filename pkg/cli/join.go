package cli

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/bootstrap"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// JoinOptions are the inputs of `join`.
type JoinOptions struct {
	Server         string
	CACert         string
	CredentialFile string
	SSHD           string
	// AgentConfig is where the agent's configuration (and so its ingress
	// ports) is read from.
	AgentConfig string
}

func newJoinCmd(f *Factory) *cobra.Command {
	o := &JoinOptions{AgentConfig: bootstrap.AgentConfig}
	cmd := &cobra.Command{
		Use:   "join --server URL --credential-file FILE [--ca-cert FILE]",
		Short: "Keep a reverse-connected machine's tunnel to the server (run on the machine)",
		Long: `Run on a machine that the control plane cannot dial, after
` + "`cocalc-hosts create --cloud ssh --reverse`" + ` gave its credential: this
keeps one outbound connection to the server (reconnecting with backoff),
over which the server logs in to this machine's SSH server (--sshd) with
the fleet key — to bootstrap it and reach its agent, as for any adopted
machine — and relays users to the agent's HTTPS and SSH ingress.

Authorize the fleet key for root first (` + "`cocalc-hosts ssh-key`" + ` prints it).
The credential is read from a file of mode 0600, never from the command
line. Run this under your init system so that it outlives your login.`,
		Example: `  install -m 600 /dev/stdin /etc/cocalc-hosts/tunnel.cred   # paste the credential, then Ctrl-D
  cocalc-hosts join --server https://cp.example.org:8443 --ca-cert ca.pem --credential-file /etc/cocalc-hosts/tunnel.cred`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runJoin(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Server, "server", "", "the server's address, https://HOST[:PORT]")
	fl.StringVar(&o.CACert, "ca-cert", "", "trust the certificates in this PEM file (a private CA or the server's self-signed certificate)")
	fl.StringVar(&o.CredentialFile, "credential-file", "", "file (mode 0600) holding the host's credential from `create --reverse`")
	fl.StringVar(&o.SSHD, "sshd", "127.0.0.1:22", "this machine's SSH server, which the control plane logs in to")
	return cmd
}

func runJoin(ctx context.Context, f *Factory, o *JoinOptions) error {
	if o.Server == "" || o.CredentialFile == "" {
		return usagef("join needs --server URL and --credential-file FILE (the credential `create --reverse` printed)")
	}
	credential := func() (string, error) {
		b, err := secrets.Read(o.CredentialFile)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	cred, err := credential()
	if err != nil {
		return usagef("--credential-file: %v", err)
	}
	if _, err := tunnel.HostOf(cred); err != nil {
		return usagef("--credential-file %s: %v; give the credential `create --reverse` printed", o.CredentialFile, err)
	}
	c, err := client.New(o.Server, "")
	if err != nil {
		return usagef("--server: %v", err)
	}
	if o.CACert != "" {
		if err := c.TrustCA(o.CACert); err != nil {
			return usagef("--ca-cert: %v", err)
		}
	}
	dial := func(addr func() (string, error)) func(context.Context) (net.Conn, error) {
		return func(ctx context.Context) (net.Conn, error) {
			a, err := addr()
			if err != nil {
				return nil, err
			}
			return (&net.Dialer{}).DialContext(ctx, "tcp", a)
		}
	}
	// The agent's ingress ports are in its configuration, which the
	// bootstrap writes (and an upgrade may change): read it per stream.
	ingress := func(which func(agentapi.IngressConfig) string) func() (string, error) {
		return func() (string, error) {
			cfg, err := agentapi.LoadConfig(o.AgentConfig)
			if err != nil {
				return "", err
			}
			addr := which(cfg.Ingress)
			if addr == "" {
				return "", fmt.Errorf("the agent has no such ingress")
			}
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return "", err
			}
			return net.JoinHostPort("127.0.0.1", port), nil
		}
	}
	t := c.Tunnel(credential, map[string]func(context.Context) (net.Conn, error){
		tunnel.TargetSSHD:  dial(func() (string, error) { return o.SSHD, nil }),
		tunnel.TargetHTTPS: dial(ingress(func(i agentapi.IngressConfig) string { return i.HTTPSAddr })),
		tunnel.TargetSSH:   dial(ingress(func(i agentapi.IngressConfig) string { return i.SSHAddr })),
	})
	t.OnState = func(up bool, err error) {
		if up {
			fmt.Fprintf(f.IO.ErrOut, "cocalc-hosts join: tunnel to %s is up\n", o.Server)
			return
		}
		fmt.Fprintf(f.IO.ErrOut, "cocalc-hosts join: %s; retrying\n", strings.TrimSpace(err.Error()))
	}
	t.OnStreamError = func(target string, err error) {
		fmt.Fprintf(f.IO.ErrOut, "cocalc-hosts join: the server asked for %s: %v\n", target, err)
	}
	t.Run(ctx)
	return nil
}
