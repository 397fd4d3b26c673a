package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/ptytest"
	"github.com/sagemathinc/cocalc-hosts/providers/local"
)

// projectScriptSetup prepares scripts named project_*: their local hosts
// get a podman store of their own under $WORK/podman, the podman settings
// this machine needs (a containers.conf, see machine.md; project_tour goes
// without, as the README does), the shared cache
// of built root filesystems (so `image build` imports instead of
// rebuilding), and a quick activity check. Containers and the store go
// away when the script ends, before its pools are released.
func projectScriptSetup(env *testscript.Env) error {
	name := filepath.Base(env.T().(testing.TB).Name())
	if !strings.HasPrefix(name, "project_") {
		return nil
	}
	work := env.WorkDir
	conf := filepath.Join(work, "containers.conf")
	if err := os.WriteFile(conf, []byte(podmantest.ContainersConf), 0o644); err != nil {
		return err
	}
	store := filepath.Join(work, "podman")
	cfgDir := filepath.Join(work, "config", "cocalc-hosts")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(cfgDir, "config.yaml"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	// project_tour runs the README's steps as a new user would, on the
	// agent's own podman settings (probed at its start): no override.
	override := "    containers_conf: " + conf + "\n"
	if name == "project_tour" {
		override = ""
	}
	fmt.Fprintf(f, "providers:\n  local:\n%s    podman_store: %s\n    image_cache_dir: %s\n    idle_check_interval: 250ms\n    snapshot_interval: \"0\"\n",
		override, store, podmantest.CacheDir)
	if err := f.Close(); err != nil {
		return err
	}
	env.Setenv("PODMAN_STORE", store)
	env.Defer(func() {
		// Agents left by a failed script would keep using the store (their
		// activity check runs podman): stop them first.
		killAgents(work)
		cleanupPodmanStore(conf, store)
	})
	return nil
}

// killAgents kills the agents of the script's local hosts.
func killAgents(work string) {
	pids, _ := filepath.Glob(filepath.Join(work, "state", "cocalc-hosts", "providers", "local", "local-hosts", "*", "agent.pid"))
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if pid, err := firstInt(string(b)); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
			for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

func cleanupPodmanStore(conf, dir string) {
	if _, err := os.Stat(dir); err != nil {
		return
	}
	rt, err := config.RuntimeDir()
	if err != nil {
		return
	}
	pc := local.PodmanStore(dir, rt)
	pc.ContainersConf = conf
	p, err := podman.New(pc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p.Run(ctx, "rm", "-a", "-f", "-t", "0") //nolint:errcheck
	p.Run(ctx, "rmi", "-a", "-f")           //nolint:errcheck
	podmantest.UnmountUnder(dir)
	podmantest.UnmountUnder(pc.RunRoot)
	os.RemoveAll(dir)
	os.RemoveAll(pc.RunRoot)
}

// cmdJSONEnv sets an environment variable from the JSON of the last
// command's stdout: jsonenv NAME PATH (PATH as in jsonfield).
func cmdJSONEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: jsonenv NAME PATH")
	}
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &v); err != nil {
		ts.Fatalf("stdout is not JSON: %v", err)
	}
	for _, key := range strings.Split(strings.Trim(args[1], "."), ".") {
		if key == "" {
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			v = x[key]
		case []any:
			i, err := strconv.Atoi(key)
			if err != nil || i >= len(x) {
				ts.Fatalf("%s: no element %q", args[1], key)
			}
			v = x[i]
		default:
			ts.Fatalf("%s: cannot index %T with %q", args[1], v, key)
		}
	}
	if v == nil {
		ts.Fatalf("%s: no value", args[1])
	}
	ts.Setenv(args[0], fmt.Sprint(v))
}

// cmdEventually runs a program again and again until it succeeds or the
// time is up: eventually DURATION PROG [ARGS...]. Its last stdout and
// stderr can be checked afterwards.
func cmdEventually(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: eventually DURATION PROG [ARGS...]")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	deadline := time.Now().Add(d)
	for {
		err := ts.Exec(args[1], args[2:]...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not succeed within %s: %v\nstderr: %s", strings.Join(args[1:], " "), d, err, ts.ReadFile("stderr"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cmdPtyRun runs a program on a new terminal and types the lines of a
// file into it, one at a time: ptyrun INPUTFILE PROG [ARGS...]. What the
// terminal showed becomes stdout; the program must exit with status 0
// (use `exits`-style checks on the output instead of the status).
func cmdPtyRun(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: ptyrun INPUTFILE PROG [ARGS...]")
	}
	input := ts.ReadFile(args[0])
	m, s, _, err := ptytest.Open()
	ts.Check(err)
	defer m.Close()
	unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}) //nolint:errcheck
	prog, err := exec.LookPath(args[1])
	if err != nil {
		// testscript puts its programs in a directory on the script's PATH.
		prog = filepath.Join(filepath.Dir(strings.Split(ts.Getenv("PATH"), ":")[0]), args[1])
		for _, dir := range strings.Split(ts.Getenv("PATH"), ":") {
			if _, err := os.Stat(filepath.Join(dir, args[1])); err == nil {
				prog = filepath.Join(dir, args[1])
				break
			}
		}
	}
	cmd := exec.Command(prog, args[2:]...)
	cmd.Dir = ts.Getenv("WORK")
	var env []string
	for _, k := range []string{"PATH", "HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "WORK", "TMPDIR"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	cmd.Env = append(env, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	ts.Check(cmd.Start())
	s.Close()
	var out strings.Builder
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	// Wait for the shell to be there before typing, then type line by
	// line, waiting for each to be echoed.
	for _, line := range strings.SplitAfter(input, "\n") {
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#wait ") {
			want := strings.TrimSpace(strings.TrimPrefix(line, "#wait "))
			waitUntil(ts, seen, want)
			continue
		}
		io.WriteString(m, line) //nolint:errcheck
		time.Sleep(100 * time.Millisecond)
	}
	werr := make(chan error, 1)
	go func() { werr <- cmd.Wait() }()
	select {
	case err = <-werr:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		ts.Fatalf("%s did not exit; terminal showed:\n%s", args[1], seen())
	}
	<-done
	ts.Logf("terminal:\n%s", seen())
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	// Keep the output for stdout checks.
	ts.Check(os.WriteFile(ts.MkAbs("pty.out"), []byte(seen()), 0o600))
	if (code == 0) == neg {
		ts.Fatalf("%s exited %d", args[1], code)
	}
}

func waitUntil(ts *testscript.TestScript, seen func() string, want string) {
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(seen(), want) {
		if time.Now().After(deadline) {
			ts.Fatalf("terminal never showed %q:\n%s", want, seen())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
