package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// LoginOptions are the inputs of `login`.
type LoginOptions struct {
	Server  string
	WithKey bool
	CACert  string
}

// LoginResult is `login`'s JSON.
type LoginResult struct {
	Server  string `json:"server"`
	Account string `json:"account"`
	Admin   bool   `json:"admin"`
	KeyID   string `json:"key_id"`
}

// credentials is the 0600 file that holds the API key for server.url.
type credentials struct {
	Server string `json:"server"`
	Key    string `json:"key"`
}

func credentialsPath() (string, error) {
	d, err := config.ConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "credentials.json"), nil
}

// readCredentials returns the stored key for the server at url.
func readCredentials(url string) (string, error) {
	path, err := credentialsPath()
	if err != nil {
		return "", err
	}
	data, err := secrets.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", errkind.Errorf(errkind.Auth, "not logged in to %s (server.url): run `cocalc-hosts login --server %s`", url, url)
	}
	if err != nil {
		return "", err
	}
	var c credentials
	if err := json.Unmarshal(data, &c); err != nil {
		return "", errkind.Errorf(errkind.Invalid, "%s is not a credentials file (%v); run `cocalc-hosts login --server %s` again", path, err, url)
	}
	if c.Server != url {
		return "", errkind.Errorf(errkind.Auth, "the stored API key is for %s, but server.url is %s: run `cocalc-hosts login --server %s`", c.Server, url, url)
	}
	return c.Key, nil
}

func newLoginCmd(f *Factory) *cobra.Command {
	o := &LoginOptions{}
	cmd := &cobra.Command{
		Use:   "login --server URL",
		Short: "Use a cocalc-hosts server with an API key",
		Long: `Log in to a cocalc-hosts server (` + "`cocalc-hosts serve`" + `): the API key is asked for
(or read from standard input with --with-key), checked with the server, and
stored in credentials.json (mode 0600) next to the config file, which gets
server.url. From then on every command talks to that server, as the key's
account, instead of to a database. The key is never taken from an argument
or the environment, which other users and shell histories can see.`,
		Example: `  cocalc-hosts login --server https://hosts.example.com:8443
  cocalc-hosts login --server https://hosts.example.com:8443 --with-key < key.txt
  cocalc-hosts login --server https://10.0.0.5:8443 --ca-cert ca.pem   # a private CA`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLogin(cmd.Context(), f, o) },
	}
	cmd.Flags().StringVar(&o.Server, "server", "", "the server's address, https://HOST:PORT")
	cmd.Flags().BoolVar(&o.WithKey, "with-key", false, "read the API key from standard input")
	cmd.Flags().StringVar(&o.CACert, "ca-cert", "", "trust the certificates in this PEM file (a private CA or the server's self-signed certificate); kept as server.ca_cert")
	return cmd
}

func runLogin(ctx context.Context, f *Factory, o *LoginOptions) error {
	if o.Server == "" {
		return usagef("give the server with --server URL")
	}
	url := strings.TrimRight(o.Server, "/")
	key, err := readKey(f, o.WithKey)
	if err != nil {
		return err
	}
	c, err := client.New(url, key)
	if err != nil {
		return usagef("--server: %v", strings.TrimPrefix(err.Error(), "server.url "))
	}
	caCert := o.CACert
	if caCert == "" {
		if cfg, _ := f.Config(); cfg != nil {
			caCert = cfg.Server.CACert
		}
	} else if caCert, err = filepath.Abs(caCert); err != nil {
		return usagef("--ca-cert: %v", err)
	}
	if caCert != "" {
		if err := c.TrustCA(caCert); err != nil {
			return err
		}
	}
	who, err := c.Whoami(ctx)
	if err != nil {
		return err
	}
	path, err := credentialsPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, _ := json.Marshal(credentials{Server: url, Key: key})
	if err := secrets.Write(path, data); err != nil {
		return fmt.Errorf("store the API key: %w", err)
	}
	cfgFile, err := f.ConfigFile()
	if err != nil {
		return err
	}
	if err := config.Set(cfgFile, "server.url", url); err != nil {
		return err
	}
	if o.CACert != "" {
		if err := config.Set(cfgFile, "server.ca_cert", caCert); err != nil {
			return err
		}
	}
	res := LoginResult{Server: url, Account: who.Account, Admin: who.Admin, KeyID: who.KeyID}
	return f.render(res, func(w *Out) error {
		fmt.Fprintf(w, "Logged in to %s as %s (key %s)\n", url, who.Account, who.KeyID)
		return nil
	})
}

// readKey reads the key from standard input: without echo on a terminal,
// else its first line.
func readKey(f *Factory, withKey bool) (string, error) {
	var key string
	switch {
	case !withKey && f.IO.InTTY:
		fmt.Fprint(f.IO.ErrOut, "API key: ")
		fd, ok := f.IO.In.(interface{ Fd() uintptr })
		if !ok {
			return "", usagef("cannot read the key without echo: pass it on standard input with --with-key")
		}
		b, err := term.ReadPassword(int(fd.Fd()))
		fmt.Fprintln(f.IO.ErrOut)
		if err != nil {
			return "", err
		}
		key = string(b)
	case !withKey:
		return "", usagef("standard input is not a terminal: pass the key on standard input with --with-key")
	default:
		line, err := bufio.NewReader(io.LimitReader(f.IO.In, 4096)).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", err
		}
		key = line
	}
	key = strings.TrimSpace(key)
	if key == "" {
		return "", usagef("no API key given; make one with `cocalc-hosts account api-key create`")
	}
	return key, nil
}

func newLogoutCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the server's API key and use the database directly again",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runLogout(f) },
	}
}

func runLogout(f *Factory) error {
	path, err := credentialsPath()
	if err != nil {
		return err
	}
	removed := true
	if err := os.Remove(path); errors.Is(err, os.ErrNotExist) {
		removed = false
	} else if err != nil {
		return err
	}
	cfgFile, err := f.ConfigFile()
	if err != nil {
		return err
	}
	cfg, _ := f.Config()
	if cfg != nil && cfg.Server.URL != "" || removed {
		if err := config.Set(cfgFile, "server.url", ""); err != nil {
			return err
		}
	}
	return f.render(map[string]bool{"logged_out": removed}, func(w *Out) error {
		if !removed {
			fmt.Fprintln(w, "Not logged in; commands use the database directly")
			return nil
		}
		fmt.Fprintln(w, "Logged out; commands use the database directly")
		return nil
	})
}
