// Package backuptest starts real repository servers for backup tests, each
// a separate process on a loopback port that the test owns and stops: a
// restic REST server (`rclone serve restic`, the Debian package rclone)
// with its users in an htpasswd file, and an S3-compatible server (the
// s3server module beside this package, gofakes3 in memory).
package backuptest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Server is a running repository server.
type Server struct {
	// URL is its base, http://127.0.0.1:PORT.
	URL  string
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// Stop ends the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck // it may have exited
	<-s.done
}

// Need skips the test unless prog is installed.
func Need(t testing.TB, prog string) {
	t.Helper()
	if _, err := exec.LookPath(prog); err != nil {
		t.Skipf("%s is not installed (scripts/install-deps.sh installs it)", prog)
	}
}

// WriteHtpasswd writes a 0600 htpasswd file with user's bcrypt hash.
func WriteHtpasswd(path, user, password string) error {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(user+":"+string(h)+"\n"), 0o600)
}

// StartREST serves restic's REST protocol from dir on addr ("" picks a
// free loopback port), accepting only the users in htpasswd.
func StartREST(dir, htpasswd, addr string) (*Server, error) {
	if addr == "" {
		var err error
		if addr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command("rclone", "serve", "restic", "--addr", addr, "--htpasswd", htpasswd,
		"--config", "/dev/null", "-v", dir)
	s, err := start(cmd, addr)
	if err != nil {
		return nil, err
	}
	s.URL = "http://" + addr
	return s, nil
}

// StartS3 builds (once per test binary) and runs the S3-compatible
// server on a free loopback port.
func StartS3(binDir string) (*Server, error) {
	bin := filepath.Join(binDir, "s3server")
	if _, err := os.Stat(bin); err != nil {
		_, self, _, _ := runtime.Caller(0)
		build := exec.Command("go", "build", "-mod=mod", "-o", bin, ".")
		build.Dir = filepath.Join(filepath.Dir(self), "s3server")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build s3server: %v: %s", err, out)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s, err := start(exec.Command(bin, "-addr", addr), addr)
	if err != nil {
		return nil, err
	}
	s.URL = "http://" + addr
	return s, nil
}

// freeAddr finds a loopback port nobody listens on. Another process could
// take it before the server does; the server then fails to start, which
// start reports.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start runs cmd and waits until addr accepts connections.
func start(cmd *exec.Cmd, addr string) (*Server, error) {
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	s := &Server{Addr: addr, cmd: cmd, done: make(chan struct{})}
	var log strings.Builder
	logged := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if log.Len() < 4096 {
				log.WriteString(sc.Text() + "\n")
			}
		}
		close(logged)
	}()
	go func() { <-logged; cmd.Wait(); close(s.done) }() //nolint:errcheck // killed on purpose
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited before listening on %s: %s", cmd.Path, addr, log.String())
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("%s did not listen on %s within 30s: %s", cmd.Path, addr, log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
