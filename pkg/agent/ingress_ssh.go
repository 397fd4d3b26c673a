package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// The SSH ingress: users log in as <project_id> with a certificate from
// the control plane's CA or with a public key of an account that may use
// the project, and get a shell, commands, sftp and local port forwarding
// inside the project's container. A refusal says why, as an SSH banner.

// SFTPHelper is the command (and leading arguments) that serves sftp for
// a session: it is given the pid of the container's first process, and
// serves files as the project's user, confined to the container's root.
// The CLI sets it to this program's hidden `agent-sftp-server` command.
var SFTPHelper []string

// handshakeTimeout bounds a connection that has not logged in.
const handshakeTimeout = 30 * time.Second

func (g *ingress) startSSH(addr string) error {
	key, err := g.sshHostKey()
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: g.sshAuth, ServerVersion: "SSH-2.0-cocalc-hosts"}
	cfg.AddHostKey(key)
	g.mu.Lock()
	g.ssh, g.hostKey = ln, key
	g.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					g.s.log.Error("ssh ingress stopped", "err", err)
				}
				return
			}
			go g.serveSSH(c, cfg)
		}
	}()
	g.s.log.Info("ssh ingress listening", "addr", ln.Addr().String(), "host_key", ssh.FingerprintSHA256(key.PublicKey()))
	return nil
}

// Permissions extensions carrying who logged in.
const (
	permAccount = "cocalc-account"
	permProject = "cocalc-project"
)

func (g *ingress) sshAuth(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	project := meta.User()
	account, err := g.sshAccount(project, key)
	if err != nil {
		g.s.log.Info("ssh login refused", "user", project, "remote", meta.RemoteAddr().String(), "reason", tokens.ReasonOf(err), "err", err)
		return nil, &ssh.BannerError{Err: err, Message: "cocalc-hosts: " + err.Error() + "\n"}
	}
	perms := &ssh.Permissions{Extensions: map[string]string{permAccount: account, permProject: project}}
	if cert, ok := key.(*ssh.Certificate); ok {
		for _, ext := range []string{tokens.ExtPTY, tokens.ExtPortForward} {
			if _, ok := cert.Extensions[ext]; ok {
				perms.Extensions[ext] = ""
			}
		}
	} else {
		perms.Extensions[tokens.ExtPTY], perms.Extensions[tokens.ExtPortForward] = "", ""
	}
	return perms, nil
}

// sshAccount is the account key may log in to project as.
func (g *ingress) sshAccount(project string, key ssh.PublicKey) (string, error) {
	if !storage.ValidID(project) {
		return "", &tokens.Error{Reason: tokens.Malformed, Msg: fmt.Sprintf("log in as a project id (such as 3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13), not %q", project)}
	}
	view, err := g.s.access.current()
	if err != nil {
		return "", err
	}
	if cert, ok := key.(*ssh.Certificate); ok {
		account, err := view.verifier.CheckCert(cert, project)
		if err != nil {
			return "", err
		}
		return account, view.mayUse(account, project)
	}
	if accts := view.accountsForKey(key, project); len(accts) > 0 {
		return accts[0], nil
	}
	return "", &tokens.Error{Reason: tokens.Revoked, Msg: fmt.Sprintf("key %s is not a key of an account that may use project %s; use a certificate from `cocalc-hosts project ssh-config %s`",
		ssh.FingerprintSHA256(key), project, project)}
}

// sshConn is one logged-in connection.
type sshConn struct {
	g       *ingress
	sc      *ssh.ServerConn
	project string
	account string
	ctx     context.Context

	startOnce sync.Once
	startErr  error
}

func (g *ingress) serveSSH(nc net.Conn, cfg *ssh.ServerConfig) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(handshakeTimeout)) //nolint:errcheck
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	nc.SetDeadline(time.Time{}) //nolint:errcheck
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &sshConn{g: g, sc: sc, ctx: ctx, project: sc.Permissions.Extensions[permProject], account: sc.Permissions.Extensions[permAccount]}
	g.s.log.Info("ssh login", "project", c.project, "account", c.account, "remote", sc.RemoteAddr().String())
	go ssh.DiscardRequests(reqs) // remote forwarding and other global requests are refused
	var wg sync.WaitGroup
	for ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch ch.ChannelType() {
			case "session":
				c.session(ch)
			case "direct-tcpip":
				c.forward(ch)
			default:
				ch.Reject(ssh.UnknownChannelType, "not supported") //nolint:errcheck
			}
		}()
	}
	cancel()
	wg.Wait()
}

// ensureRunning starts the project on the first session of a login when
// it is stopped and the access list says how (the control plane records
// the start at its next sync).
func (c *sshConn) ensureRunning() error {
	c.startOnce.Do(func() {
		r := c.g.s.proj
		if _, err := r.projectNetns(c.ctx, c.project); err == nil || !isCode(err, agentapi.CodeNotRunning) {
			c.startErr = err
			return
		}
		view, err := c.g.s.access.current()
		if err != nil {
			c.startErr = err
			return
		}
		spec := view.startSpec(c.project)
		if spec == nil {
			c.startErr = fmt.Errorf("project %s is not running; start it with `cocalc-hosts project start %s`", c.project, c.project)
			return
		}
		r.log.Info("starting project for an ssh login", "project", c.project, "account", c.account)
		if _, err := r.Start(c.ctx, c.project, *spec); err != nil {
			c.startErr = fmt.Errorf("project %s is not running and could not be started: %w", c.project, err)
		}
	})
	return c.startErr
}

// ptyRequest is the payload of "pty-req" (RFC 4254 6.2).
type ptyRequest struct {
	Term             string
	Cols, Rows, W, H uint32
	Modes            string
}

type windowChange struct{ Cols, Rows, W, H uint32 }

// allowedEnv are the client variables a session takes (as sshd's
// AcceptEnv LANG LC_*).
func allowedEnv(name string) bool { return name == "LANG" || strings.HasPrefix(name, "LC_") }

// loginShell runs the image's bash, or sh, as a login shell.
var loginShell = []string{"/bin/sh", "-c", `if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi`}

func (c *sshConn) session(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	var (
		env     []string
		pty     *ptyRequest
		started bool
		mu      sync.Mutex
		ptm     *os.File
	)
	for req := range reqs {
		ok := false
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil && allowedEnv(kv.Name) && !strings.ContainsRune(kv.Value, 0) {
				env, ok = append(env, kv.Name+"="+kv.Value), true
			}
		case "pty-req":
			var p ptyRequest
			if _, allowed := c.sc.Permissions.Extensions[tokens.ExtPTY]; allowed && ssh.Unmarshal(req.Payload, &p) == nil && !started {
				pty, ok = &p, true
				env = append(env, "TERM="+p.Term)
			}
		case "window-change":
			var w windowChange
			if ssh.Unmarshal(req.Payload, &w) == nil {
				mu.Lock()
				if ptm != nil {
					setWinsize(ptm, agentapi.WindowSize{Rows: uint16(w.Rows), Cols: uint16(w.Cols)}) //nolint:errcheck
				}
				mu.Unlock()
			}
		case "shell", "exec", "subsystem":
			if started {
				break
			}
			var cmd []string
			subsystem := ""
			switch req.Type {
			case "shell":
				cmd = loginShell
			case "exec":
				var p struct{ Command string }
				if ssh.Unmarshal(req.Payload, &p) != nil || strings.ContainsRune(p.Command, 0) {
					break
				}
				cmd = []string{"/bin/sh", "-c", p.Command}
			case "subsystem":
				var p struct{ Name string }
				if ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
					break
				}
				subsystem = p.Name
			}
			if cmd == nil && subsystem == "" {
				break
			}
			started, ok = true, true
			go func() {
				code := c.run(ch, cmd, subsystem, env, pty, func(m *os.File) { mu.Lock(); ptm = m; mu.Unlock() })
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)})) //nolint:errcheck
				ch.Close()
			}()
		}
		if req.WantReply {
			req.Reply(ok, nil) //nolint:errcheck
		}
	}
}

// run runs one session's command (or the sftp server) and returns its
// exit status; errors before it runs go to the client's stderr.
func (c *sshConn) run(ch ssh.Channel, cmd []string, subsystem string, env []string, pty *ptyRequest, setPTY func(*os.File)) int {
	r := c.g.s.proj
	fail := func(err error) int {
		fmt.Fprintf(ch.Stderr(), "cocalc-hosts: %v\r\n", err)
		return 255
	}
	if err := c.ensureRunning(); err != nil {
		return fail(err)
	}
	r.sessionStart(c.project)
	defer r.sessionEnd(c.project)
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	var proc *exec.Cmd
	if subsystem == "sftp" {
		pid, err := r.projectNetns(ctx, c.project)
		if err != nil {
			return fail(err)
		}
		if len(SFTPHelper) == 0 {
			return fail(errors.New("sftp is not available on this host"))
		}
		proc = exec.CommandContext(ctx, SFTPHelper[0], append(SFTPHelper[1:], strconv.Itoa(pid))...)
		proc.Env = []string{}
	} else {
		req := agentapi.ExecRequest{Command: cmd, Env: env, TTY: pty != nil, Stdin: true}
		if pty != nil {
			req.Rows, req.Cols = uint16(pty.Rows), uint16(pty.Cols)
		}
		proc = r.execCommand(ctx, containerName(c.project), req)
	}
	if pty != nil && subsystem == "" {
		m, err := startWithPTY(proc, agentapi.WindowSize{Rows: uint16(pty.Rows), Cols: uint16(pty.Cols)})
		if err != nil {
			return fail(err)
		}
		defer m.Close()
		setPTY(m)
		go func() {
			io.Copy(m, ch) //nolint:errcheck
		}()
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			io.Copy(ch, m) //nolint:errcheck // ends with EIO when the command exits
		}()
		err = proc.Wait()
		<-copied
		code, _ := exitCode(ctx, err)
		return code
	}
	stdin, err := proc.StdinPipe()
	if err != nil {
		return fail(err)
	}
	proc.Stdout, proc.Stderr = ch, ch.Stderr()
	if err := proc.Start(); err != nil {
		return fail(err)
	}
	go func() {
		io.Copy(stdin, ch) //nolint:errcheck // the command may exit first
		stdin.Close()
	}()
	code, err := exitCode(ctx, proc.Wait())
	if err != nil {
		return fail(err)
	}
	return code
}

// forward is a local port forward (ssh -L) to a port on the project's
// loopback. Other destinations are refused: the forward leads into the
// project, not onto the network its container sees.
func (c *sshConn) forward(nch ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &p); err != nil {
		nch.Reject(ssh.ConnectionFailed, "bad request") //nolint:errcheck
		return
	}
	if _, ok := c.sc.Permissions.Extensions[tokens.ExtPortForward]; !ok {
		nch.Reject(ssh.Prohibited, "port forwarding is not permitted by this certificate") //nolint:errcheck
		return
	}
	switch p.Host {
	case "localhost", "127.0.0.1", "::1", "ip6-localhost":
	default:
		nch.Reject(ssh.Prohibited, "only ports on the project's own localhost can be forwarded") //nolint:errcheck
		return
	}
	if p.Port < 1 || p.Port > 65535 {
		nch.Reject(ssh.ConnectionFailed, "bad port") //nolint:errcheck
		return
	}
	if err := c.ensureRunning(); err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error()) //nolint:errcheck
		return
	}
	up, err := c.g.s.proj.dialProject(c.ctx, c.project, int(p.Port))
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error()) //nolint:errcheck
		return
	}
	defer up.Close()
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	c.g.s.proj.sessionStart(c.project)
	defer c.g.s.proj.sessionEnd(c.project)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, ch); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }() //nolint:errcheck
	go func() { io.Copy(ch, up); ch.CloseWrite(); done <- struct{}{} }()                //nolint:errcheck
	<-done
	<-done
}
