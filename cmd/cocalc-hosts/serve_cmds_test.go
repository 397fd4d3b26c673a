package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// The scripts run in a third mode against a real `cocalc-hosts serve` on
// Postgres, started for each script on a free port, with the script's own
// commands logged in to it with an API key; `--account NAME` acts with
// NAME's own key (serveAccount), and `operator ...` runs as the server's
// operator (operatorExec). These scripts are left out, each with its
// reason: they are about what only direct mode has:
var serveExcluded = map[string]string{
	"accounts.txtar":     "makes accounts and keys as whoever holds the database; server_mode.txtar does it through the server",
	"bad_input.txtar":    "checks --db and config-file errors, which a client of a server never reads",
	"cost_report.txtar":  "creates hosts with --no-wait and writes their cloud_vm_log history itself (vmlog) while no worker runs; a server's worker would run those creates and add to the history the totals are computed from",
	"project_idle.txtar": "runs `worker --project-sync-interval` beside the server's own worker",
	"queue_worker.txtar": "runs `worker --drain` beside the server's own worker",
}

func TestScriptsServe(t *testing.T) { runScripts(t, "serve") }

// startServer moves the script's configuration (its database and
// providers) to the server's ($OPERATOR_CONFIG), makes an account for the
// script's user with an API key, starts `cocalc-hosts serve` on a free
// loopback port, and logs the script in to it. The server is stopped
// (SIGTERM, then SIGKILL after a minute) when the script ends, before its
// hosts are cleaned up.
func startServer(env *testscript.Env) error {
	work := env.WorkDir
	bin, err := scriptBinary(env)
	if err != nil {
		return err
	}
	clientCfg := filepath.Join(work, "config", "cocalc-hosts", "config.yaml")
	serverCfg := filepath.Join(work, "server.yaml")
	if err := os.Rename(clientCfg, serverCfg); err != nil {
		return err
	}
	env.Setenv("OPERATOR_CONFIG", serverCfg)
	run := func(stdin string, args ...string) ([]byte, error) {
		return runBinary(bin, env.Vars, work, stdin, args...)
	}
	me, err := user.Current()
	if err != nil {
		return err
	}
	// An admin made by whoever holds the database, who makes the script's
	// account (not an admin: the script's rights are those of direct mode)
	// and its key.
	for _, args := range [][]string{
		{"--config", serverCfg, "--account", "ops", "account", "create", "ops", "--admin"},
		{"--config", serverCfg, "--account", "ops", "account", "create", me.Username},
	} {
		if _, err := run("", args...); err != nil {
			return err
		}
	}
	out, err := run("", "--config", serverCfg, "--account", me.Username, "account", "api-key", "create", "--name", "testscript", "-o", "json")
	if err != nil {
		return err
	}
	var key struct{ Key string }
	if err := json.Unmarshal(out, &key); err != nil || key.Key == "" {
		return fmt.Errorf("api-key create printed %q: %v", out, err)
	}

	// Served over TLS with a self-signed certificate, as the README's
	// serve command does; the client trusts it through login --ca-cert.
	certFile, keyFile, err := selfSignedCert(work)
	if err != nil {
		return err
	}
	env.Setenv("SERVER_CA", certFile)
	logFile, err := os.Create(filepath.Join(work, "serve.log"))
	if err != nil {
		return err
	}
	srv := &testServer{bin: bin, vars: env.Vars, work: work, args: []string{"--config", serverCfg, "serve",
		"--tls-cert", certFile, "--tls-key", keyFile}, log: logFile}
	env.Values[testServerKey{}] = srv
	env.Defer(func() {
		// The key must not be in the server's argv or environment, its
		// log, or the files the script's client keeps but credentials.json.
		secret := strings.TrimPrefix(key.Key, "chk_")
		problems := srv.problems
		if srv.down != nil {
			problems = append(problems, fmt.Sprintf("(serve did not start again: %v)", srv.down))
		} else {
			for _, f := range []string{fmt.Sprintf("/proc/%d/cmdline", srv.cmd.Process.Pid), fmt.Sprintf("/proc/%d/environ", srv.cmd.Process.Pid)} {
				if b, err := os.ReadFile(f); err != nil {
					env.T().Fatal(fmt.Sprintf("scan %s: %v", f, err))
				} else if bytes.Contains(b, []byte(secret)) {
					problems = append(problems, f)
				}
			}
		}
		for _, v := range env.Vars {
			if strings.Contains(v, secret) {
				problems = append(problems, "the scripts' environment")
			}
		}
		for _, f := range []string{serverCfg, filepath.Join(work, "config", "cocalc-hosts", "config.yaml")} {
			if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(secret)) {
				problems = append(problems, f)
			}
		}
		if srv.down == nil {
			problems = append(problems, srv.stop()...)
		}
		logFile.Close()
		if b, _ := os.ReadFile(logFile.Name()); bytes.Contains(b, []byte(secret)) {
			problems = append(problems, "serve's log")
		} else if len(b) == 0 {
			problems = append(problems, "(serve's log is empty: the scan saw nothing)")
		} else if tb, ok := env.T().(testing.TB); ok && tb.Failed() {
			// The script's directory goes with it: what the server said
			// is the only trace of a failure on its side.
			env.T().Log("serve's log, last lines:\n" + string(b[max(len(b)-4096, 0):]))
		}
		if len(problems) > 0 {
			env.T().Fatal("the API key appears in clear in, or serve failed: " + strings.Join(problems, ", "))
		}
	})
	if srv.down = srv.start("127.0.0.1:0", "127.0.0.1:0"); srv.down != nil {
		return srv.down
	}
	// The script talks to the server through a proxy that checks every
	// exchange against the API document.
	proxy, err := newSpecProxy(work, srv.url, certFile, keyFile)
	if err != nil {
		return err
	}
	env.Defer(func() {
		if v := proxy.violations(); len(v) > 0 {
			env.T().Fatal("exchanges that break the API document:\n  " + strings.Join(v, "\n  "))
		}
	})
	env.Setenv("SERVER_URL", proxy.http.URL)
	env.Setenv("METRICS_URL", srv.metricsURL)
	if _, err := run(key.Key+"\n", "login", "--server", proxy.http.URL, "--with-key", "--ca-cert", certFile); err != nil {
		return err
	}
	return nil
}

// runBinary runs cocalc-hosts with args in dir and returns its stdout; a
// failure says what it printed on stderr.
func runBinary(bin string, vars []string, dir, stdin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir, cmd.Stdin = vars, dir, strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("cocalc-hosts %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// testServerKey finds a serve script's server among its values.
type testServerKey struct{}

// testServer is the `cocalc-hosts serve` a script runs against. An
// operator restarts it after changing its configuration, on the same
// addresses, so the script's clients stay logged in.
type testServer struct {
	bin, work  string
	vars, args []string
	log        *os.File // serve's stderr, over all its runs

	cmd             *exec.Cmd
	exited          chan struct{}
	url, metricsURL string
	problems        []string // of the runs stopped so far
	down            error    // why serve did not start again, if it did not
}

var (
	reListening = regexp.MustCompile(`listening on (https://\S+)`)
	reMetrics   = regexp.MustCompile(`metrics on (http://\S+)`)
)

// start runs serve on listen (and its metrics on metrics) until it says
// where it listens.
func (s *testServer) start(listen, metrics string) error {
	cmd := exec.Command(s.bin, append(slices.Clone(s.args), "--listen", listen, "--metrics-listen", metrics)...)
	cmd.Env, cmd.Dir = s.vars, s.work
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	exited := s.exited
	addr, metricsURL := make(chan string, 1), make(chan string, 1)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := reListening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
			if m := reMetrics.FindStringSubmatch(sc.Text()); m != nil {
				metricsURL <- m[1]
			}
			fmt.Fprintln(s.log, sc.Text())
		}
		cmd.Wait() //nolint:errcheck // its exit is judged by stop
	}()
	select {
	case url := <-addr:
		s.url = url
	case <-exited:
		log, _ := os.ReadFile(s.log.Name())
		return fmt.Errorf("serve exited %d before listening: %s", cmd.ProcessState.ExitCode(), log)
	case <-time.After(time.Minute):
		return errors.New("serve did not listen within a minute")
	}
	select {
	case m := <-metricsURL: // printed before "listening"
		s.metricsURL = m
	default:
		return errors.New("serve --metrics-listen printed no metrics address")
	}
	return nil
}

// stop ends serve gracefully (SIGTERM, status 0) and says what went wrong.
func (s *testServer) stop() []string {
	s.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
	select {
	case <-s.exited:
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			return []string{fmt.Sprintf("(serve exited %d on SIGTERM)", code)}
		}
	case <-time.After(time.Minute):
		s.cmd.Process.Kill() //nolint:errcheck
		<-s.exited
		return []string{"(serve did not stop within a minute of SIGTERM)"}
	}
	return nil
}

// restart stops serve and starts it again on the same addresses, as an
// operator does after changing its configuration. A configuration serve
// refuses leaves it down (its error kept in down) until the next change.
func (s *testServer) restart() error {
	if s.down == nil {
		s.problems = append(s.problems, s.stop()...)
	}
	s.down = s.start(strings.TrimPrefix(s.url, "https://"), strings.TrimSuffix(strings.TrimPrefix(s.metricsURL, "http://"), "/metrics"))
	return s.down
}

// operatorExec runs cocalc-hosts ARGS as the deployment's operator: in
// direct mode that is whoever holds the database, so the script's own
// command; against a server it is the server's configuration
// ($OPERATOR_CONFIG) on the server's machine, and when the command changed
// that file, serve is restarted to read it, as an operator would.
func operatorExec(ts *testscript.TestScript, args []string) error {
	if ts.Getenv("BACKEND") != "serve" {
		return ts.Exec("cocalc-hosts", args...)
	}
	cfg := ts.Getenv("OPERATOR_CONFIG")
	before, _ := os.ReadFile(cfg)
	err := ts.Exec("cocalc-hosts", append([]string{"--config", cfg}, args...)...)
	if after, _ := os.ReadFile(cfg); !bytes.Equal(before, after) {
		if err := ts.Value(testServerKey{}).(*testServer).restart(); err != nil {
			ts.Logf("serve is down until the operator's next change: %v", err)
		}
	}
	return err
}

// cmdOperator is exec for operatorExec: operator ARGS...
func cmdOperator(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: operator ARGS...")
	}
	err := operatorExec(ts, args)
	if err != nil && !neg {
		ts.Logf("stderr: %s", ts.ReadFile("stderr"))
		ts.Fatalf("operator %s: %v", strings.Join(args, " "), err)
	}
	if err == nil && neg {
		ts.Fatalf("operator %s: unexpected success", strings.Join(args, " "))
	}
}

// serveAccount makes `cocalc-hosts --account NAME ...` of a script
// against a server act as NAME with NAME's own API key, as a user of the
// server would: the flag is taken off the command line, and the command
// runs with NAME's client configuration ($WORK/accounts/NAME), logged in
// with a key the operator made for NAME on first use. The server then
// enforces NAME's rights by identity. A command with --config (the
// operator's) is left as it is. It runs in the cocalc-hosts of the
// scripts (this test binary), never in the shipped one.
func serveAccount() error {
	serverCfg, work := os.Getenv("OPERATOR_CONFIG"), os.Getenv("WORK")
	if os.Getenv("BACKEND") != "serve" || serverCfg == "" || work == "" {
		return nil
	}
	args := os.Args[1:]
	account, at, n := "", -1, 0
	for i, a := range args {
		if a == "--" {
			break
		}
		if a == "--config" || strings.HasPrefix(a, "--config=") {
			return nil
		}
		if a == "--account" && i+1 < len(args) {
			account, at, n = args[i+1], i, 2
		} else if v, ok := strings.CutPrefix(a, "--account="); ok {
			account, at, n = v, i, 1
		}
	}
	if at < 0 {
		return nil
	}
	os.Args = append(append([]string{os.Args[0]}, args[:at]...), args[at+n:]...)
	dir := filepath.Join(work, "accounts", account)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lock, err := os.Create(filepath.Join(work, "accounts", ".lock"))
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	if err := os.Setenv("XDG_CONFIG_HOME", dir); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "cocalc-hosts", "credentials.json")); err == nil {
		return nil
	}
	vars := os.Environ()
	run := func(stdin string, args ...string) ([]byte, error) {
		return runBinary(os.Args[0], vars, work, stdin, args...)
	}
	if _, err := run("", "--config", serverCfg, "--account", "ops", "account", "create", account); err != nil && !strings.Contains(err.Error(), "account "+account+" exists") {
		return err
	}
	out, err := run("", "--config", serverCfg, "--account", account, "account", "api-key", "create", "--name", "testscript", "--jq", ".key")
	if err != nil {
		return err
	}
	_, err = run(string(out), "login", "--server", os.Getenv("SERVER_URL"), "--with-key", "--ca-cert", os.Getenv("SERVER_CA"))
	return err
}

// selfSignedCert writes a certificate for 127.0.0.1 (and extra) signed by
// its own key into dir, and returns the certificate's and the (0600) key's
// paths.
func selfSignedCert(dir string, extra ...net.IP) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cocalc-hosts test server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: append([]net.IP{net.IPv4(127, 0, 0, 1)}, extra...), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// scriptBinary is the cocalc-hosts that testscript puts on the scripts'
// PATH (this test binary, run as cocalc-hosts).
func scriptBinary(env *testscript.Env) (string, error) {
	for _, dir := range filepath.SplitList(env.Getenv("PATH")) {
		p := filepath.Join(dir, "cocalc-hosts")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("cocalc-hosts is not on the scripts' PATH")
}
