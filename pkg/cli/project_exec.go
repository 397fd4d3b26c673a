package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/muesli/cancelreader"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// exitStatusError carries a command's own exit status out of `project
// exec` and `project shell`: the CLI exits with it, as ssh does.
type exitStatusError struct{ code int }

func (e *exitStatusError) Error() string   { return fmt.Sprintf("command exited with status %d", e.code) }
func (e *exitStatusError) ExitStatus() int { return e.code }

// ProjectExecOptions are the inputs of `project exec`.
type ProjectExecOptions struct {
	Project     string
	Command     []string
	Interactive bool
	Workdir     string
	Env         []string
}

// ExecResult is `project exec -o json`'s document.
type ExecResult struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

func newProjectExecCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectExecOptions{}
	cmd := &cobra.Command{
		Use:   "exec PROJECT [-i] [--workdir DIR] [--env K=V] -- COMMAND [ARGS...]",
		Short: "Run a command in a running project",
		Long: `Run a command in a running project, as the project's user in its home.
Its stdout and stderr stream to yours as they come, and cocalc-hosts exits with
the command's exit status (errors before the command runs use the documented
codes). With -i your stdin goes to the command. With -o json the output is
collected and printed as one document {exit_code, stdout, stderr}.`,
		Example: `  cocalc-hosts project exec $P -- python3 -c 'print(1+1)'
  tar -c data | cocalc-hosts project exec -i $P -- tar -x`,
		ValidArgsFunction: completeProjects(f, as),
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 || len(args) < 2 {
				return usagef("usage: %s PROJECT -- COMMAND [ARGS...] (the command goes after --)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Project, o.Command = args[0], args[1:]
			if err := resolveProject(cmd.Context(), f, as, &o.Project); err != nil {
				return err
			}
			return runProjectExec(cmd.Context(), f, as, o)
		},
	}
	cmd.Flags().BoolVarP(&o.Interactive, "interactive", "i", false, "pass stdin to the command")
	cmd.Flags().StringVarP(&o.Workdir, "workdir", "w", "", "directory to run in (default the home)")
	cmd.Flags().StringArrayVarP(&o.Env, "env", "e", nil, "set an environment variable K=V (repeatable)")
	return cmd
}

func runProjectExec(ctx context.Context, f *Factory, as *asFlag, o *ProjectExecOptions) error {
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return usagef("--env %q: want NAME=VALUE", e)
		}
	}
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	req := agentapi.ExecRequest{Command: o.Command, Stdin: o.Interactive, Env: o.Env, Workdir: o.Workdir}
	eio := agentapi.ExecIO{Stdout: f.IO.Out, Stderr: f.IO.ErrOut}
	if o.Interactive {
		eio.Stdin = f.IO.In
	}
	var out, errOut bytes.Buffer
	if f.jsonOutput() {
		eio.Stdout, eio.Stderr = &out, &errOut
	}
	code, err := ps.Exec(ctx, c, o.Project, req, eio)
	if err != nil {
		return err
	}
	// For people the command's output went straight to the terminal.
	err = f.render(ExecResult{ExitCode: code, Stdout: out.String(), Stderr: errOut.String()}, func(*Out) error { return nil })
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitStatusError{code: code}
	}
	return nil
}

// ProjectShellOptions are the inputs of `project shell`.
type ProjectShellOptions struct {
	Project string
}

func newProjectShellCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectShellOptions{}
	return projectCmd(f, as, &cobra.Command{
		Use:   "shell PROJECT",
		Short: "Open an interactive shell in a running project",
		Long: `Open a login shell (bash if the image has it, else sh) on a terminal in a
running project. It needs a terminal; scripts use ` + "`project exec`" + `. While a
shell is open the project counts as active and is not stopped for being idle.`,
	}, o, &o.Project, runProjectShell)
}

// shellCommand starts the best shell the image has.
var shellCommand = []string{"/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"}

func runProjectShell(ctx context.Context, f *Factory, as *asFlag, o *ProjectShellOptions) error {
	in, inOK := f.IO.In.(*os.File)
	out, outOK := f.IO.Out.(*os.File)
	if !f.IO.InTTY || !f.IO.OutTTY || !inOK || !outOK {
		return usagef("project shell needs a terminal on stdin and stdout; in scripts use `cocalc-hosts project exec %s -- COMMAND`", o.Project)
	}
	code, err := projectShell(ctx, f, as, o.Project, in, out)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitStatusError{code: code}
	}
	return nil
}

// projectShell runs a login shell in project on the terminal in/out (in
// raw mode while it runs) and returns its exit status.
func projectShell(ctx context.Context, f *Factory, as *asFlag, project string, in, out *os.File) (int, error) {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return 0, err
	}
	cols, rows, err := term.GetSize(int(out.Fd()))
	if err != nil {
		cols, rows = 80, 24
	}
	env := []string{}
	if t := os.Getenv("TERM"); t != "" {
		env = append(env, "TERM="+t)
	}
	req := agentapi.ExecRequest{Command: shellCommand, TTY: true, Stdin: true, Env: env, Rows: uint16(rows), Cols: uint16(cols)}
	resize := make(chan agentapi.WindowSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-sctx.Done():
				return
			case <-winch:
				if c, r, err := term.GetSize(int(out.Fd())); err == nil {
					select {
					case resize <- agentapi.WindowSize{Rows: uint16(r), Cols: uint16(c)}:
					default: // a newer size follows; the agent only needs the last
					}
				}
			}
		}
	}()
	// The session's reader of the terminal is cancelled when the shell
	// ends: left blocked in a read, it would take the next key pressed
	// in the dashboard that ran the shell.
	stdin, err := newTerminalInput(in)
	if err != nil {
		return 0, fmt.Errorf("project shell: terminal: %w", err)
	}
	defer stdin.Close()
	old, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		return 0, fmt.Errorf("project shell: terminal: %w", err)
	}
	defer term.Restore(int(in.Fd()), old) //nolint:errcheck
	return ps.Exec(sctx, c, project, req, agentapi.ExecIO{Stdin: stdin, Stdout: out, Resize: resize})
}

// terminalInput reads a terminal for a session that may end while one of
// its reads waits for a key. Close cancels that read and closes only once
// it has returned: closing the cancel reader under a waiting read loses
// the cancel signal (the kernel drops the closed pipe from the epoll set
// the read waits on), and the read then takes the next key typed, which
// belonged to whatever has the terminal next (the dashboard, back from a
// shell).
type terminalInput struct {
	r  cancelreader.CancelReader
	mu sync.Mutex // held while a read waits
}

func newTerminalInput(f *os.File) (*terminalInput, error) {
	r, err := cancelreader.NewReader(f)
	if err != nil {
		return nil, err
	}
	return &terminalInput{r: r}, nil
}

func (t *terminalInput) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.r.Read(p)
}

// Close ends a waiting read and the reads after it (they return
// cancelreader.ErrCanceled) and frees the reader.
func (t *terminalInput) Close() error {
	t.r.Cancel()
	t.mu.Lock() // the waiting read has seen the cancel
	defer t.mu.Unlock()
	return t.r.Close()
}
