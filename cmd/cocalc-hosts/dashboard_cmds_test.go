package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/charmbracelet/x/vt"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/ptytest"
)

// cmdTUI runs a full-screen program on a new terminal, emulated by a
// real terminal emulator (charmbracelet/x/vt) so that what is on the
// screen can be waited for, and plays a file of steps against it:
//
//	tui STEPSFILE PROG [ARGS...]
//
// Steps, one a line: `wait TEXT` (until the screen shows TEXT), `type
// TEXT` (typed as is), `key NAME` (enter, esc, tab, up, down, space,
// backspace, ctrl+u, ctrl+c, or one character), `signal TERM|INT`, and
// `exit CODE` (the status to expect; default 0). At the end it checks
// that the program left the terminal clean: main screen back, cursor
// shown, bracketed paste and mouse off, and the line discipline in
// cooked mode with echo. The screen as the last wait saw it goes to
// stdout, and all the program wrote (escape sequences and all) to
// $WORK/tui.raw.
func cmdTUI(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: tui STEPSFILE PROG [ARGS...]")
	}
	steps := strings.Split(ts.ReadFile(args[0]), "\n")
	const cols, rows = 110, 32
	m, s, ptsName, err := ptytest.Open()
	ts.Check(err)
	defer m.Close()
	ts.Check(ptytest.SetSize(m, cols, rows))
	before, err := ptytest.Modes(s)
	ts.Check(err)

	cmd := exec.Command(programPath(ts, args[1]), args[2:]...)
	cmd.Dir = ts.Getenv("WORK")
	var env []string
	for _, k := range []string{"PATH", "HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "WORK", "TMPDIR", "NO_COLOR"} {
		if v := ts.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	cmd.Env = append(env, "TERM=xterm-256color")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	ts.Check(cmd.Start())
	s.Close()

	term := newScreen(cols, rows, m)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	wantCode := 0
	seen := ""
	waitFor := func(text string) {
		defer func() { seen = term.text() }()
		// Generous: a step may be a whole action (a project's move) on a
		// loaded machine. A passing wait takes only as long as the step.
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(term.text(), text) {
			select {
			case err := <-exited:
				exited <- err
				ts.Fatalf("%s exited before the screen showed %q:\n%s", args[1], text, term.text())
			default:
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				ts.Fatalf("the screen never showed %q:\n%s", text, term.text())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, line := range steps {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch verb {
		case "wait":
			waitFor(arg)
		case "type":
			_, err := io.WriteString(m, arg)
			ts.Check(err)
		case "key":
			seq, ok := keySeqs[arg]
			if !ok && len([]rune(arg)) == 1 {
				seq, ok = arg, true
			}
			if !ok {
				ts.Fatalf("unknown key %q", arg)
			}
			_, err := io.WriteString(m, seq)
			ts.Check(err)
		case "signal":
			sig := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT}[arg]
			if sig == 0 {
				ts.Fatalf("unknown signal %q", arg)
			}
			ts.Check(cmd.Process.Signal(sig))
		case "exit":
			wantCode, err = strconv.Atoi(arg)
			ts.Check(err)
		default:
			ts.Fatalf("unknown step %q", line)
		}
		// Let the program read one input before the next: an escape
		// followed at once by a key reads as alt+key.
		time.Sleep(150 * time.Millisecond)
	}
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		ts.Fatalf("%s did not exit; the screen shows:\n%s", args[1], term.text())
	}
	term.wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	} else if werr != nil {
		ts.Fatalf("%s: %v", args[1], werr)
	}
	ts.Stdout().Write([]byte(seen)) //nolint:errcheck
	ts.Check(os.WriteFile(ts.MkAbs("tui.raw"), []byte(term.raw()), 0o600))
	if code != wantCode {
		ts.Fatalf("%s exited %d, want %d; the screen shows:\n%s", args[1], code, wantCode, term.text())
	}
	// A clean terminal: everything the program turned on is off again.
	raw := term.raw()
	for _, mode := range []string{"?1049", "?2004", "?1000", "?1002", "?1003", "?1006"} {
		on, off := strings.LastIndex(raw, "\x1b["+mode+"h"), strings.LastIndex(raw, "\x1b["+mode+"l")
		if on > off {
			ts.Fatalf("terminal mode %s left on", mode)
		}
	}
	if term.emu.IsAltScreen() {
		ts.Fatalf("the alternate screen is still shown")
	}
	if term.emu.CursorHidden() {
		ts.Fatalf("the cursor is left hidden")
	}
	sl, err := os.OpenFile(ptsName, os.O_RDWR|syscall.O_NOCTTY, 0)
	ts.Check(err)
	defer sl.Close()
	after, err := ptytest.Modes(sl)
	ts.Check(err)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		ts.Fatalf("terminal modes not restored: lflag %#x iflag %#x oflag %#x, were %#x %#x %#x",
			after.Lflag, after.Iflag, after.Oflag, before.Lflag, before.Iflag, before.Oflag)
	}
}

var keySeqs = map[string]string{
	"enter": "\r", "esc": "\x1b", "tab": "\t", "up": "\x1b[A", "down": "\x1b[B", "space": " ",
	"backspace": "\x7f", "ctrl+u": "\x15", "ctrl+c": "\x03",
}

// programPath finds a program on the script's PATH (testscript puts its
// own commands there).
func programPath(ts *testscript.TestScript, name string) string {
	for _, dir := range strings.Split(ts.Getenv("PATH"), ":") {
		if p := dir + "/" + name; fileExists(p) {
			return p
		}
	}
	p, err := exec.LookPath(name)
	ts.Check(err)
	return p
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// screen is a terminal emulator fed by a pty's output; its answers to
// the program's queries go back to the program, as a real terminal's do.
type screen struct {
	mu   sync.Mutex
	emu  *vt.Emulator
	all  strings.Builder
	done chan struct{}
}

func newScreen(cols, rows int, m *os.File) *screen {
	s := &screen{emu: vt.NewEmulator(cols, rows), done: make(chan struct{})}
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := s.emu.Read(buf)
			if n > 0 {
				m.Write(buf[:n]) //nolint:errcheck // the program may be gone
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			if n > 0 {
				s.mu.Lock()
				s.all.Write(buf[:n])
				s.emu.Write(buf[:n]) //nolint:errcheck
				s.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *screen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emu.String()
}

func (s *screen) raw() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all.String()
}

// wait waits for the program's last output (the pty reports EIO once the
// program and its children have closed it).
func (s *screen) wait() {
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}
