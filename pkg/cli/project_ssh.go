package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
)

// renewBefore is how close to its end a certificate is renewed.
const renewBefore = 5 * time.Minute

// sshClient is this machine's side of the SSH ingress, in the state
// directory: one key pair (0600), a certificate per project, and the
// known_hosts of the hosts' ingress, keyed by host id.
type sshClient struct {
	dir        string
	key        string
	knownHosts string
}

func newSSHClient() (sshClient, error) {
	sd, err := config.StateDir()
	if err != nil {
		return sshClient{}, err
	}
	dir := filepath.Join(sd, "ssh")
	return sshClient{dir: dir, key: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts")}, nil
}

func (c sshClient) certPath(project string) string {
	return filepath.Join(c.dir, "certs", project+"-cert.pub")
}

// hostAlias names a host's ingress in known_hosts, so that its address
// may change.
func hostAlias(hostID string) string { return "cocalc-host-" + hostID }

// publicKey loads the key pair, making it on first use.
func (c sshClient) publicKey() (ssh.PublicKey, error) {
	b, err := secrets.Read(c.key)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, gerr
		}
		block, merr := ssh.MarshalPrivateKey(priv, "cocalc-hosts project ssh")
		if merr != nil {
			return nil, merr
		}
		b = pem.EncodeToMemory(block)
		if err := os.MkdirAll(filepath.Join(c.dir, "certs"), 0o700); err != nil {
			return nil, err
		}
		if err := secrets.Write(c.key, b); err != nil {
			return nil, fmt.Errorf("ssh key %s: %w", c.key, err)
		}
	} else if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", c.key, err)
	}
	// The public half beside it, as ssh-keygen leaves it (for
	// `account ssh-keys add`).
	if _, err := os.Stat(c.key + ".pub"); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(c.key+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644); err != nil {
			return nil, err
		}
	}
	return s.PublicKey(), nil
}

// valid reports whether project's certificate is good for a while yet.
func (c sshClient) valid(project string, now time.Time) bool {
	b, err := os.ReadFile(c.certPath(project))
	if err != nil {
		return false
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	cert, ok := k.(*ssh.Certificate)
	return err == nil && ok && now.Add(renewBefore).Before(time.Unix(int64(cert.ValidBefore), 0))
}

// fetch gets a new certificate for project and records the host's key.
func (c sshClient) fetch(ctx context.Context, f *Factory, as *asFlag, project string) (projects.SSHAccess, error) {
	pub, err := c.publicKey()
	if err != nil {
		return projects.SSHAccess{}, err
	}
	cl, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return projects.SSHAccess{}, err
	}
	acc, err := ps.SSHCertificate(ctx, cl, project, pub)
	if err != nil {
		return acc, err
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "certs"), 0o700); err != nil {
		return acc, err
	}
	if err := secrets.Write(c.certPath(acc.Project), []byte(acc.Certificate)); err != nil {
		return acc, err
	}
	return acc, c.pinHost(acc.HostID, acc.SSHHostKey)
}

// pinHost replaces host's line in known_hosts.
func (c sshClient) pinHost(hostID, key string) error {
	alias := hostAlias(hostID)
	var keep []string
	if b, err := os.ReadFile(c.knownHosts); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" && !strings.HasPrefix(l, alias+" ") {
				keep = append(keep, l)
			}
		}
	}
	keep = append(keep, alias+" "+key)
	return secrets.Write(c.knownHosts, []byte(strings.Join(keep, "\n")+"\n"))
}

// options are the ssh options that log in to acc's project.
func (c sshClient) options(acc projects.SSHAccess) []string {
	return []string{"-i", c.key, "-o", "CertificateFile=" + c.certPath(acc.Project), "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + c.knownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=" + hostAlias(acc.HostID),
		"-p", strconv.Itoa(acc.SSHPort), "-l", acc.User}
}

// ProjectSSHOptions are the inputs of `project ssh`.
type ProjectSSHOptions struct {
	Project string
	Command []string
}

func newProjectSSHCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectSSHOptions{}
	cmd := &cobra.Command{
		Use:   "ssh PROJECT [-- COMMAND [ARGS...]]",
		Short: "Log in to a project with OpenSSH, through its host's SSH ingress",
		Long: `Log in to a project (or run a command in it) with your ssh program, directly
on its host's SSH ingress. cocalc-hosts signs a short-lived certificate for a
key of its own (in the state directory) and checks the host's key; the login
starts the project if it is stopped. cocalc-hosts exits with ssh's status.
For scp, sftp, rsync and editors, use ` + "`project ssh-config`" + `.`,
		Example: `  cocalc-hosts project ssh $P
  cocalc-hosts project ssh $P -- nvidia-smi`,
		ValidArgsFunction: completeProjects(f, as),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || (cmd.ArgsLenAtDash() != -1 && cmd.ArgsLenAtDash() != 1) || (cmd.ArgsLenAtDash() == -1 && len(args) != 1) {
				return usagef("usage: %s PROJECT [-- COMMAND [ARGS...]]", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Project, o.Command = args[0], args[1:]
			if err := resolveProject(cmd.Context(), f, as, &o.Project); err != nil {
				return err
			}
			return runProjectSSH(cmd.Context(), f, as, o)
		},
	}
	return cmd
}

func runProjectSSH(ctx context.Context, f *Factory, as *asFlag, o *ProjectSSHOptions) error {
	bin, err := exec.LookPath("ssh")
	if err != nil {
		return errors.New("the ssh program is not installed (Debian: apt-get install openssh-client)")
	}
	c, err := newSSHClient()
	if err != nil {
		return err
	}
	acc, err := c.fetch(ctx, f, as, o.Project)
	if err != nil {
		return err
	}
	args := c.options(acc)
	if acc.Reverse {
		self, err := selfCommand(f, as)
		if err != nil {
			return err
		}
		args = append(args, "-o", "ProxyCommand="+relayCommand(self, acc))
	}
	args = append(args, acc.Address)
	if len(o.Command) > 0 {
		args = append(append(args, "--"), o.Command...)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f.IO.In, f.IO.Out, f.IO.ErrOut
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &exitStatusError{code: ee.ExitCode()}
	}
	return err
}

// ProjectSSHConfigOptions are the inputs of `project ssh-config`.
type ProjectSSHConfigOptions struct {
	Project string
	Name    string
}

// SSHConfig is `project ssh-config -o json`'s document.
type SSHConfig struct {
	projects.SSHAccess
	Name   string `json:"name"`
	Config string `json:"config"`
}

func newProjectSSHConfigCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectSSHConfigOptions{}
	cmd := &cobra.Command{
		Use:   "ssh-config PROJECT [--name NAME]",
		Short: "Print an OpenSSH config block for a project (ssh, scp, sftp, rsync, VS Code)",
		Long: `Print a block for ~/.ssh/config that reaches the project as NAME (default
cocalc-<first 8 characters of its id>) through its host's SSH ingress, with a
certificate for a key of cocalc-hosts' own. Every use of NAME first runs
` + "`cocalc-hosts project ssh-cert`" + ` (a Match exec line), which renews the
certificate when it is about to expire, so plain ssh, scp, sftp, rsync -e ssh
and VS Code Remote-SSH keep working.`,
		Example: `  cocalc-hosts project ssh-config $P >> ~/.ssh/config
  ssh cocalc-3f1c9a52; scp notes.txt cocalc-3f1c9a52:; rsync -a data/ cocalc-3f1c9a52:data/`,
		ValidArgsFunction: completeProjects(f, as),
		Args:              oneProject,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Project = args[0]
			if err := resolveProject(cmd.Context(), f, as, &o.Project); err != nil {
				return err
			}
			return runProjectSSHConfig(cmd.Context(), f, as, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "the Host name to use in ssh (default cocalc-ID8)")
	return cmd
}

func runProjectSSHConfig(ctx context.Context, f *Factory, as *asFlag, o *ProjectSSHConfigOptions) error {
	if o.Name != "" && strings.ContainsAny(o.Name, " \t\"'*?!,") {
		return usagef("--name %q: use letters, digits, dots and dashes", o.Name)
	}
	c, err := newSSHClient()
	if err != nil {
		return err
	}
	acc, err := c.fetch(ctx, f, as, o.Project)
	if err != nil {
		return err
	}
	name := o.Name
	if name == "" {
		name = "cocalc-" + shortID(acc.Project)
	}
	self, err := selfCommand(f, as)
	if err != nil {
		return err
	}
	renew := strings.Join(append(self, "project", "ssh-cert", acc.Project, "--quiet"), " ")
	var b strings.Builder
	fmt.Fprintf(&b, "# cocalc-hosts: project %s on host %s\n", acc.Project, acc.Host)
	fmt.Fprintf(&b, "Match originalhost %s exec \"%s\"\n", name, renew)
	fmt.Fprintf(&b, "Host %s\n", name)
	fmt.Fprintf(&b, "    HostName %s\n    Port %d\n    User %s\n", acc.Address, acc.SSHPort, acc.User)
	if acc.Reverse {
		fmt.Fprintf(&b, "    ProxyCommand %s\n", relayCommand(self, acc))
	}
	fmt.Fprintf(&b, "    IdentityFile %s\n    CertificateFile %s\n    IdentitiesOnly yes\n", c.key, c.certPath(acc.Project))
	fmt.Fprintf(&b, "    UserKnownHostsFile %s\n    HostKeyAlias %s\n    StrictHostKeyChecking yes\n", c.knownHosts, hostAlias(acc.HostID))
	b.WriteString("Match all\n")
	return f.render(SSHConfig{SSHAccess: acc, Name: name, Config: b.String()}, func(w *Out) error {
		w.WriteString(b.String())
		return nil
	})
}

// relayCommand is the ProxyCommand that reaches a reverse-connected
// host's SSH ingress through the server.
func relayCommand(self []string, acc projects.SSHAccess) string {
	return strings.Join(append(self, "relay", acc.HostID, "ssh"), " ")
}

// selfCommand is this program with the global flags it was given, as a
// shell command line for ssh's Match exec.
func selfCommand(f *Factory, as *asFlag) ([]string, error) {
	// The name it was run by, found on PATH as ssh will find it; the
	// executable behind a link only when that fails.
	exe, err := exec.LookPath(os.Args[0])
	if err == nil {
		exe, err = filepath.Abs(exe)
	}
	if err != nil {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	out := []string{sshpool.ShellQuote(exe)}
	if f.ConfigPath != "" {
		abs, _ := filepath.Abs(f.ConfigPath)
		out = append(out, "--config", sshpool.ShellQuote(abs))
	}
	for _, name := range []string{"db", "account"} {
		if fl := f.Flags.Lookup(name); fl != nil && fl.Changed {
			out = append(out, "--"+name, sshpool.ShellQuote(fl.Value.String()))
		}
	}
	if as.as != "" {
		out = append(out, "--as", sshpool.ShellQuote(as.as))
	}
	return out, nil
}

// ProjectSSHCertOptions are the inputs of `project ssh-cert`.
type ProjectSSHCertOptions struct {
	Project string
	Renew   bool
	Quiet   bool
}

// SSHCert is `project ssh-cert -o json`'s document.
type SSHCert struct {
	Project     string `json:"project"`
	Key         string `json:"key"`
	Certificate string `json:"certificate"`
	Renewed     bool   `json:"renewed"`
}

func newProjectSSHCertCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectSSHCertOptions{}
	cmd := &cobra.Command{
		Use:   "ssh-cert PROJECT [--renew] [--quiet]",
		Short: "Renew the SSH certificate for a project when it is about to expire",
		Long: `Make sure cocalc-hosts' SSH certificate for the project is valid for at least
five more minutes, signing a new one otherwise (or always, with --renew). The
block of ` + "`project ssh-config`" + ` runs it before every connection.`,
		ValidArgsFunction: completeProjects(f, as),
		Args:              oneProject,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Project = args[0]
			if err := resolveProject(cmd.Context(), f, as, &o.Project); err != nil {
				return err
			}
			return runProjectSSHCert(cmd.Context(), f, as, o)
		},
	}
	cmd.Flags().BoolVar(&o.Renew, "renew", false, "sign a new certificate even if the current one is still valid")
	cmd.Flags().BoolVarP(&o.Quiet, "quiet", "q", false, "print nothing")
	return cmd
}

func runProjectSSHCert(ctx context.Context, f *Factory, as *asFlag, o *ProjectSSHCertOptions) error {
	if err := projects.CheckID(o.Project); err != nil {
		return err
	}
	c, err := newSSHClient()
	if err != nil {
		return err
	}
	res := SSHCert{Project: o.Project, Key: c.key, Certificate: c.certPath(o.Project)}
	if o.Renew || !c.valid(o.Project, f.Now()) {
		if _, err := c.fetch(ctx, f, as, o.Project); err != nil {
			return err
		}
		res.Renewed = true
	}
	if o.Quiet {
		return nil
	}
	return f.render(res, func(w *Out) error {
		fmt.Fprintln(w, res.Certificate)
		return nil
	})
}
