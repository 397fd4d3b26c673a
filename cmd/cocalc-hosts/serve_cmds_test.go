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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// The scripts run in a third mode against a real `cocalc-hosts serve` on
// Postgres, started for each script on a free port, with the script's own
// commands logged in to it with an API key. These scripts are left out,
// each for being about what only direct mode has:
var serveExcluded = map[string]string{
	"accounts.txtar":              "makes accounts and keys as whoever holds the database; server_mode.txtar does it through the server",
	"bad_input.txtar":             "checks --db and config-file errors, which a client of a server never reads",
	"catalog_clouds.txtar":        "adds providers with `providers add` (this machine's config file) and refreshes the catalog, which only admins may through a server",
	"catalog_create.txtar":        "configures providers with `providers add` and `config set`, which the server does not read back",
	"catalog_query.txtar":         "configures providers with `providers add` (this machine's config file, not the server's); server_mode.txtar queries the catalog through a server",
	"catalog_refresh.txtar":       "`catalog refresh` is an admin's through a server, and the script's account is not one",
	"cost_boot_disk.txtar":        "configures providers with `providers add`, which the server does not read back",
	"cost_report.txtar":           "writes cloud_vm_log history into the database itself (vmlog) and acts as several accounts with --account; server_mode.txtar and TestServedLikeDirect cover `cost` through a server",
	"dns_show.txtar":              "configures DNS with `config set` and runs `reconcile`, which works on the database",
	"project_access.txtar":        "acts as several accounts with --account, which a server replaces by API keys",
	"project_dashboard.txtar":     "the dashboard reads the database directly",
	"project_idle.txtar":          "runs `worker --project-sync-interval` beside the server's own worker",
	"project_ingress.txtar":       "rotates the signing keys (`keys rotate`) and builds images, which work on the database",
	"project_shell.txtar":         "`project shell` streams a terminal, which the API does not carry yet",
	"queue_worker.txtar":          "runs `worker --drain` beside the server's own worker",
	"reconcile.txtar":             "`reconcile` is an admin's through a server, and the script's account is not one",
	"project_basic.txtar":         "builds an image (`image build`) and runs `project exec`, which stream over the agent",
	"project_tour.txtar":          "builds an image (`image build`) and runs `project exec`, which stream over the agent",
	"project_start_fails.txtar":   "configures the local provider with `config set`, which the server does not read back, and builds an image",
	"project_backup.txtar":        "configures backups (an admin's through a server), builds images and runs `project exec`",
	"project_backup_remote.txtar": "configures backups (an admin's through a server), builds images and runs `project exec`",
	"project_move.txtar":          "acts as several accounts with --account, builds images and checks files with `project exec`, which work on the database or stream over the agent",
}

func TestScriptsServe(t *testing.T) { runScripts(t, "serve") }

// serveScripts are the scripts run against a server.
func serveScripts(all []string) []string {
	var out []string
	for _, f := range all {
		if serveExcluded[filepath.Base(f)] == "" {
			out = append(out, f)
		}
	}
	return out
}

// startServer moves the script's configuration (its database and
// providers) to the server, makes an account for the script's user with
// an API key, starts `cocalc-hosts serve` on a free loopback port, and
// logs the script in to it. The server is stopped (SIGTERM, then SIGKILL
// after a minute) when the script ends, before its hosts are cleaned up.
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
	run := func(stdin string, args ...string) ([]byte, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Dir, cmd.Stdin = env.Vars, work, strings.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("cocalc-hosts %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return out, nil
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
	srv := exec.Command(bin, "--config", serverCfg, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile)
	srv.Env, srv.Dir = env.Vars, work
	logFile, err := os.Create(filepath.Join(work, "serve.log"))
	if err != nil {
		return err
	}
	stderr, err := srv.StderrPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	addr, metricsURL := make(chan string, 1), make(chan string, 1)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`listening on (https://\S+)`)
		reMetrics := regexp.MustCompile(`metrics on (http://\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
			if m := reMetrics.FindStringSubmatch(sc.Text()); m != nil {
				metricsURL <- m[1]
			}
			fmt.Fprintln(logFile, sc.Text())
		}
		srv.Wait() //nolint:errcheck // its exit is judged below
		logFile.Close()
	}()
	env.Defer(func() {
		// The key must not be in the server's argv or environment, its
		// log, or the files the script's client keeps but credentials.json.
		secret := strings.TrimPrefix(key.Key, "chk_")
		var problems []string
		for _, f := range []string{fmt.Sprintf("/proc/%d/cmdline", srv.Process.Pid), fmt.Sprintf("/proc/%d/environ", srv.Process.Pid)} {
			if b, err := os.ReadFile(f); err != nil {
				env.T().Fatal(fmt.Sprintf("scan %s: %v", f, err))
			} else if bytes.Contains(b, []byte(secret)) {
				problems = append(problems, f)
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
		// A graceful stop: SIGTERM ends serve, with status 0.
		srv.Process.Signal(syscall.SIGTERM) //nolint:errcheck
		select {
		case <-exited:
			if code := srv.ProcessState.ExitCode(); code != 0 {
				problems = append(problems, fmt.Sprintf("(serve exited %d on SIGTERM)", code))
			}
		case <-time.After(time.Minute):
			srv.Process.Kill() //nolint:errcheck
			<-exited
			problems = append(problems, "(serve did not stop within a minute of SIGTERM)")
		}
		if b, _ := os.ReadFile(logFile.Name()); bytes.Contains(b, []byte(secret)) {
			problems = append(problems, "serve's log")
		} else if len(b) == 0 {
			problems = append(problems, "(serve's log is empty: the scan saw nothing)")
		}
		if len(problems) > 0 {
			env.T().Fatal("the API key appears in clear in, or serve failed: " + strings.Join(problems, ", "))
		}
	})
	var url string
	select {
	case url = <-addr:
	case <-exited:
		log, _ := os.ReadFile(logFile.Name())
		return fmt.Errorf("serve exited before listening: %s", log)
	case <-time.After(time.Minute):
		return errors.New("serve did not listen within a minute")
	}
	env.Setenv("SERVER_URL", url)
	select {
	case m := <-metricsURL: // printed before "listening"
		env.Setenv("METRICS_URL", m)
	default:
		return errors.New("serve --metrics-listen printed no metrics address")
	}
	if _, err := run(key.Key+"\n", "login", "--server", url, "--with-key", "--ca-cert", certFile); err != nil {
		return err
	}
	return nil
}

// selfSignedCert writes a certificate for 127.0.0.1 signed by its own key
// into dir, and returns the certificate's and the (0600) key's paths.
func selfSignedCert(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cocalc-hosts test server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
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
