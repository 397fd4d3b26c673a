package cli

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"
)

// ProjectOpenOptions are the inputs of `project open`.
type ProjectOpenOptions struct {
	Project string
	Port    int
	Browser bool
}

func newProjectOpenCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectOpenOptions{}
	cmd := &cobra.Command{
		Use:   "open PROJECT --port N [--browser]",
		Short: "Print a URL that reaches a port inside a project, through its host",
		Long: `Print a URL that reaches port N inside the project's container (a Jupyter
server, a web app) through its host's HTTPS ingress, directly, without the
control plane in between. The URL carries a connect token that is valid for
tokens.ttl; a browser that opens it gets a session cookie for that project
port on that host, and the token is dropped from the address. The link works
once: open a new one for another browser.

The server sees the full path /PROJECT/port/N/...: configure its base URL
(for Jupyter: --ServerApp.base_url=/PROJECT/port/N/). A host without a DNS
name and ACME certificate uses a self-signed certificate: its SHA-256 is
printed so you can check what your browser shows. A reverse-connected host
(create --reverse) is reached through the server: the URL is on the
server's address, and the server forwards it over the host's tunnel.`,
		Example: `  cocalc-hosts project open $P --port 8888
  cocalc-hosts project open $P --port 8888 --browser`,
		ValidArgsFunction: completeProjects(f, as),
		Args:              oneProject,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Project = args[0]
			if err := resolveProject(cmd.Context(), f, as, &o.Project); err != nil {
				return err
			}
			return runProjectOpen(cmd.Context(), f, as, o)
		},
	}
	cmd.Flags().IntVar(&o.Port, "port", 0, "the port inside the project (1-65535)")
	cmd.Flags().BoolVar(&o.Browser, "browser", false, "open the URL in a browser")
	cmd.MarkFlagRequired("port") //nolint:errcheck
	return cmd
}

func runProjectOpen(ctx context.Context, f *Factory, as *asFlag, o *ProjectOpenOptions) error {
	if o.Port < 1 || o.Port > 65535 {
		return usagef("--port %d: use a port between 1 and 65535", o.Port)
	}
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	op, err := ps.Open(ctx, c, o.Project, o.Port)
	if err != nil {
		return err
	}
	if op.Reverse {
		if op.URL, err = throughServer(f, op.URL); err != nil {
			return err
		}
	}
	if o.Browser {
		if err := openBrowser(op.URL); err != nil {
			return err
		}
	}
	return f.render(op, func(w *Out) error {
		fmt.Fprintln(w, op.URL)
		cert := fmt.Sprintf("host %s's certificate is self-signed, with SHA-256 %s", op.Host, op.TLSCertSHA256)
		switch {
		case op.Reverse:
			cert = fmt.Sprintf("host %s is reverse-connected: the link goes through the server", op.Host)
		case op.TLSIssuer != "":
			cert = fmt.Sprintf("host %s's certificate for %s is from %s", op.Host, op.Address, op.TLSIssuer)
		}
		fmt.Fprintf(f.IO.ErrOut, "valid until %s; %s\n", op.ExpiresAt.Local().Format("15:04:05"), cert)
		return nil
	})
}

// throughServer is link (to a reverse-connected host's ingress) on the
// server that holds the host's tunnel: the same path and token, sent to
// the server, which forwards it over the tunnel.
func throughServer(f *Factory, link string) (string, error) {
	c, err := f.Remote()
	if err != nil {
		return "", err
	}
	if c == nil {
		return "", usagef("the project's host is reverse-connected: it is reached through the server that holds its tunnel; run `cocalc-hosts login --server URL` first")
	}
	u, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("the link the server gave: %w", err)
	}
	base, err := url.Parse(c.URL())
	if err != nil {
		return "", err
	}
	u.Scheme, u.Host = base.Scheme, base.Host
	return u.String(), nil
}

// openBrowser hands url to the desktop's opener, never through a shell.
func openBrowser(url string) error {
	opener := "xdg-open"
	if runtime.GOOS == "darwin" {
		opener = "open"
	}
	path, err := exec.LookPath(opener)
	if err != nil {
		return fmt.Errorf("--browser: %s is not installed; open the printed URL yourself", opener)
	}
	cmd := exec.Command(path, url)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("--browser: %w", err)
	}
	go cmd.Wait() //nolint:errcheck
	return nil
}
