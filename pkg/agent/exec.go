package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/creack/pty"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
)

// handleExec runs a command in a project over an upgraded connection (see
// agentapi.Exec for the framing). Errors found before the upgrade are
// ordinary error replies; the command's own failure is its exit code.
func (s *server) handleExec(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := storage.CheckID(id); err != nil {
		s.writeErr(w, r, err)
		return
	}
	req, err := agentapi.ParseExecHeaders(r.Header)
	if err != nil {
		s.writeErr(w, r, perr(agentapi.CodeInvalid, "%v", err))
		return
	}
	if len(req.Command) == 0 || req.Command[0] == "" {
		s.writeErr(w, r, perr(agentapi.CodeInvalid, "no command to run"))
		return
	}
	for _, a := range append(append([]string{}, req.Command...), req.Env...) {
		if strings.ContainsRune(a, 0) {
			s.writeErr(w, r, perr(agentapi.CodeInvalid, "command and environment must not contain NUL bytes"))
			return
		}
	}
	c, err := s.proj.container(r.Context(), id)
	if errors.Is(err, podman.ErrNotFound) || (err == nil && !c.Running()) {
		s.writeErr(w, r, perr(agentapi.CodeNotRunning, "project %s is not running; start it with `cocalc-hosts project start %s`", id, id))
		return
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		s.writeErr(w, r, errors.New("exec: this connection cannot be taken over"))
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		s.log.Error("exec hijack", "err", err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", agentapi.ExecUpgrade)
	if err := brw.Flush(); err != nil {
		return
	}
	s.proj.sessionStart(id)
	defer s.proj.sessionEnd(id)

	// The session ends when the command ends or the client goes away;
	// the hijacked connection is no longer tied to the request's context.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wmu sync.Mutex
	code, err := s.runExec(ctx, cancel, conn, brw.Reader, &wmu, c.Name, req)
	wmu.Lock()
	defer wmu.Unlock()
	if err != nil {
		b, _ := json.Marshal(agentapi.ErrorReply{Error: err.Error(), Code: codeOf(err)})
		agentapi.WriteFrame(conn, agentapi.FrameError, b) //nolint:errcheck
		return
	}
	agentapi.WriteFrame(conn, agentapi.FrameExit, agentapi.ExitPayload(code)) //nolint:errcheck
}

func (s *server) runExec(ctx context.Context, cancel context.CancelFunc, conn net.Conn, in *bufio.Reader, wmu *sync.Mutex, container string, req agentapi.ExecRequest) (int, error) {
	cmd := s.proj.execCommand(ctx, container, req)
	stdout := agentapi.FrameWriter{Mu: wmu, W: conn, Typ: agentapi.FrameStdout}
	stderr := agentapi.FrameWriter{Mu: wmu, W: conn, Typ: agentapi.FrameStderr}

	var stdin io.WriteCloser
	var ptm *os.File
	var copied chan struct{}
	if req.TTY {
		m, err := startWithPTY(cmd, agentapi.WindowSize{Rows: req.Rows, Cols: req.Cols})
		if err != nil {
			return -1, err
		}
		ptm, stdin = m, m
		defer m.Close()
		copied = make(chan struct{})
		go func() {
			defer close(copied)
			io.Copy(stdout, m) //nolint:errcheck // ends with EIO when the command exits
		}()
	} else {
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if req.Stdin {
			p, err := cmd.StdinPipe()
			if err != nil {
				return -1, err
			}
			stdin = p
		}
		if err := cmd.Start(); err != nil {
			return -1, fmt.Errorf("exec: %w", err)
		}
	}

	go func() {
		for {
			typ, p, err := agentapi.ReadFrame(in)
			if err != nil {
				// The client went away: end the command rather than leave it
				// writing into nothing.
				cancel()
				return
			}
			s.proj.touch(containerProject(container))
			switch typ {
			case agentapi.FrameStdin:
				if stdin != nil {
					stdin.Write(p) //nolint:errcheck // the command may have exited
				}
			case agentapi.FrameCloseStdin:
				if stdin != nil && ptm == nil {
					stdin.Close()
				}
			case agentapi.FrameResize:
				if ws, ok := agentapi.ParseResize(p); ok && ptm != nil {
					setWinsize(ptm, ws) //nolint:errcheck
				}
			}
		}
	}()

	err := cmd.Wait()
	if copied != nil {
		<-copied
	}
	return exitCode(ctx, err)
}

// exitCode is how a command that Wait returned err for ended: its exit
// status (128+signal when killed, as shells say), or an error when it
// could not run at all.
func exitCode(ctx context.Context, err error) (int, error) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil && ctx.Err() == nil {
		return -1, fmt.Errorf("exec: %w", err)
	}
	return 0, nil
}

// execCommand is the podman command that runs req in a project's
// container, as the project's user in its home.
func (r *runtime) execCommand(ctx context.Context, container string, req agentapi.ExecRequest) *exec.Cmd {
	workdir := req.Workdir
	if workdir == "" {
		workdir = ProjectHome
	}
	opts := podman.ExecOptions{
		User: fmt.Sprintf("%d:%d", ProjectUID, ProjectGID), Workdir: workdir,
		Env:         append([]string{"HOME=" + ProjectHome}, req.Env...),
		Interactive: req.Stdin || req.TTY, TTY: req.TTY,
	}
	if req.TTY {
		opts.Env = append(opts.Env, "TERM="+termOf(req.Env))
	}
	return r.pm.Command(ctx, podman.ExecArgs(container, opts, req.Command)...)
}

// startWithPTY starts cmd on a new terminal of size ws (80x24 if unset)
// and returns the terminal's master side.
func startWithPTY(cmd *exec.Cmd, ws agentapi.WindowSize) (*os.File, error) {
	m, sl, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("exec: terminal: %w", err)
	}
	if ws.Rows == 0 || ws.Cols == 0 {
		ws = agentapi.WindowSize{Rows: 24, Cols: 80}
	}
	setWinsize(m, ws) //nolint:errcheck
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sl, sl, sl
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = cmd.Start()
	// Our copy of the terminal's slave side must go, or reading the
	// master would never end when the command does.
	sl.Close()
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("exec: %w", err)
	}
	return m, nil
}

func containerProject(name string) string { return strings.TrimPrefix(name, ContainerPrefix) }

// termOf is the client's TERM, or xterm.
func termOf(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "TERM="); ok && v != "" {
			return v
		}
	}
	return "xterm-256color"
}

// sessionStart and sessionEnd count a project's open sessions: a project
// with a session open is active, whatever its CPU use.
func (r *runtime) sessionStart(id string) {
	r.touch(id)
	r.mu.Lock()
	r.activityOf(id).sessions++
	r.mu.Unlock()
}

func (r *runtime) sessionEnd(id string) {
	r.touch(id)
	r.mu.Lock()
	if a := r.activityOf(id); a.sessions > 0 {
		a.sessions--
	}
	r.mu.Unlock()
}

// setWinsize sets a terminal's size; the kernel tells its foreground
// process (podman, which tells the container's terminal) with SIGWINCH.
func setWinsize(f *os.File, ws agentapi.WindowSize) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
}
