package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sagemathinc/cocalc-hosts/pkg/cli"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
)

// stopPostgres runs the tests, then stops the throwaway cluster.
type stopPostgres struct{ m *testing.M }

func (s stopPostgres) Run() int {
	// Here the binary runs the tests (not a script's cocalc-hosts): its
	// flags are the test flags.
	flag.Parse()
	takeOverParallel()
	code := s.m.Run()
	pgtest.StopShared()
	return code
}

func TestMain(m *testing.M) {
	testscript.Main(stopPostgres{m}, map[string]func(){
		"cocalc-hosts": func() {
			if err := serveAccount(); err != nil {
				fmt.Fprintln(os.Stderr, "testscript: --account against a server:", err)
				os.Exit(1)
			}
			os.Exit(cli.Main())
		},
	})
}

// The same scripts run on the embedded SQLite default and on Postgres.
func TestScriptsSQLite(t *testing.T) { runScripts(t, "sqlite") }

func TestScriptsPostgres(t *testing.T) { runScripts(t, "postgres") }

func runScripts(t *testing.T, backend string) {
	// The backends' scripts share the package's -parallel slots (each
	// script takes one in its Setup) rather than running one backend after
	// the other.
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Files:               modeScripts(scriptFiles(t), backend),
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			scriptSlot(env)
			work := env.WorkDir
			env.Setenv("HOME", filepath.Join(work, "home"))
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(work, "config"))
			env.Setenv("XDG_STATE_HOME", filepath.Join(work, "state"))
			env.Setenv("BACKEND", backend)
			// The config file of the deployment's operator (see operatorExec):
			// the script's own in direct mode, the server's against one.
			env.Setenv("OPERATOR_CONFIG", filepath.Join(work, "config", "cocalc-hosts", "config.yaml"))
			if err := os.MkdirAll(filepath.Join(work, "home"), 0o700); err != nil {
				return err
			}
			if backend == "postgres" || backend == "serve" {
				url := pgtest.Shared(env.T().(testing.TB)).NewDatabase(env.T().(testing.TB))
				env.Setenv("PGURL", url)
				cfgDir := filepath.Join(work, "config", "cocalc-hosts")
				if err := os.MkdirAll(cfgDir, 0o700); err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(cfgDir, "config.yaml"), []byte("db: "+url+"\n"), 0o600); err != nil {
					return err
				}
			}
			env.Defer(func() { cleanupLocalHosts(work) })
			if err := projectScriptSetup(env); err != nil {
				return err
			}
			if backend == "serve" {
				return startServer(env)
			}
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "postgres", "sqlite", "serve":
				// Against a server, the database is Postgres.
				return cond == backend || (cond == "postgres" && backend == "serve"), nil
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"jsonfield":      cmdJSONField,
			"jsonenv":        cmdJSONEnv,
			"eventually":     cmdEventually,
			"ptyrun":         cmdPtyRun,
			"tui":            cmdTUI,
			"exits":          cmdExits,
			"chmod":          cmdChmod,
			"pidalive":       cmdPidAlive,
			"sim-orphan":     cmdSimOrphan,
			"sim-vanish":     cmdSimVanish,
			"sim-stop":       cmdSimStop,
			"vmlog":          cmdVMLog,
			"cloudflare":     cmdCloudflare,
			"dnsrecord":      cmdDNSRecord,
			"lambdafake":     cmdLambdaFake,
			"hyperstackfake": cmdHyperstackFake,
			"lambdareqs":     cmdLambdaRequests,
			"lambdacapacity": cmdLambdaCapacity,
			"ingressget":     cmdIngressGet,
			"restserver":     cmdRESTServer,
			"s3server":       cmdS3Server,
			"backupcache":    cmdBackupCache,
			"nodata":         cmdNoData,
			"operator":       cmdOperator,
		},
	})
}

// longScriptModes are the modes CI runs the longest scripts in, each in
// fewer than the three (-all-modes: in all): in all three, the
// end-to-end package takes CI past its 30 minutes on 2 cores. Each runs
// on SQLite directly and against a server (on Postgres), so that CI runs
// every script against a server and on both databases; Postgres directly
// differs from the server's Postgres only above the store, which
// every other script and the store suite hold to one contract. The three
// longest run in one mode: the dashboard on SQLite (a newcomer's), a
// move and remote backups against a server (as teams run them).
//
//	go test ./cmd/cocalc-hosts -run 'TestScripts' -timeout 90m -args -all-modes
var longScriptModes = map[string][]string{
	"project_dashboard.txtar":     {"sqlite"},
	"project_move.txtar":          {"serve"},
	"project_backup_remote.txtar": {"serve"},
	"project_access.txtar":        {"sqlite", "serve"},
	"project_basic.txtar":         {"sqlite", "serve"},
	"project_backup.txtar":        {"sqlite", "serve"},
	"project_ingress.txtar":       {"sqlite", "serve"},
	"project_start_fails.txtar":   {"sqlite", "serve"},
	"project_shell.txtar":         {"sqlite", "serve"},
}

var allModes = flag.Bool("all-modes", false, "run the longest scripts in all three modes (see longScriptModes)")

// modeScripts are the scripts run in mode: "sqlite" or "postgres"
// (directly), or "serve" (against a server).
func modeScripts(all []string, mode string) []string {
	var out []string
	for _, f := range all {
		name := filepath.Base(f)
		if mode == "serve" && serveExcluded[name] != "" {
			continue
		}
		if modes, long := longScriptModes[name]; long && !*allModes && !slices.Contains(modes, mode) {
			continue
		}
		out = append(out, f)
	}
	return out
}

func scriptFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "script", "*.txtar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata/script: %v", err)
	}
	return files
}

// cmdJSONField checks a field of the JSON on the last command's stdout:
//
//	jsonfield PATH WANT
//
// PATH is dot-separated keys and array indexes (".status", ".0.name",
// ".job.state"), or "length" / "PATH.length" for an array's length.
func cmdJSONField(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: jsonfield PATH WANT")
	}
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &v); err != nil {
		ts.Fatalf("stdout is not JSON: %v", err)
	}
	for _, key := range strings.Split(strings.Trim(args[0], "."), ".") {
		if key == "" {
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			v = x[key]
		case []any:
			if key == "length" {
				v = float64(len(x))
				continue
			}
			i, err := strconv.Atoi(key)
			if err != nil || i >= len(x) {
				ts.Fatalf("%s: no element %q in array of %d", args[0], key, len(x))
			}
			v = x[i]
		default:
			ts.Fatalf("%s: cannot index %T with %q", args[0], v, key)
		}
	}
	got := fmt.Sprint(v)
	if f, ok := v.(float64); ok {
		got = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if (got == args[1]) == neg {
		ts.Fatalf("%s = %q, want %s%q", args[0], got, map[bool]string{true: "not ", false: ""}[neg], args[1])
	}
}

// cmdExits runs a program (or operator ARGS...) and checks its exit code:
// exits CODE PROG ARGS...
// Its stdout and stderr can be checked afterwards like exec's.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	if args[1] == "operator" {
		err = operatorExec(ts, args[2:])
	} else {
		err = ts.Exec(args[1], args[2:]...)
	}
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Logf("stderr: %s", ts.ReadFile("stderr"))
		ts.Fatalf("%s exited %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

// cmdChmod sets a file's mode: chmod MODE FILE (octal).
func cmdChmod(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: chmod MODE FILE")
	}
	mode, err := strconv.ParseUint(args[0], 8, 32)
	ts.Check(err)
	ts.Check(os.Chmod(ts.MkAbs(args[1]), os.FileMode(mode)))
}

// firstInt parses the first field of s (pid files hold "PID STARTTIME").
func firstInt(s string) (int, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty pid file")
	}
	return strconv.Atoi(f[0])
}

// cmdPidAlive checks whether the process in a pid file is running.
func cmdPidAlive(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: pidalive PIDFILE")
	}
	pid, err := firstInt(ts.ReadFile(args[0]))
	ts.Check(err)
	// A zombie (exited, not yet reaped by its new parent) is not alive.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	alive := err == nil && !strings.Contains(string(stat[strings.LastIndexByte(string(stat), ')')+1:]), " Z ")
	if alive == neg {
		ts.Fatalf("process %d alive = %v", pid, alive)
	}
}

// cleanupLocalHosts stops agents and unmounts pools that a failed script
// left behind, so a failing test does not leak processes or loop devices.
func cleanupLocalHosts(work string) {
	pids, _ := filepath.Glob(filepath.Join(work, "state", "cocalc-hosts", "providers", "local", "local-hosts", "*", "agent.pid"))
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if pid, err := firstInt(string(b)); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
		}
	}
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer mounts.Close()
	var mine []string
	sc := bufio.NewScanner(mounts)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 && strings.HasPrefix(f[4], work+"/") {
			mine = append(mine, f[4])
		}
	}
	for i := len(mine) - 1; i >= 0; i-- {
		for range 20 {
			if exec.Command("umount", mine[i]).Run() == nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // the killed agent may still hold it for a moment
		}
	}
}
