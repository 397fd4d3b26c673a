// Package pgtest starts a throwaway PostgreSQL cluster for tests: its own
// data directory, a unix socket and a loopback port, removed when the test
// binary exits. It never touches a system cluster.
//
// The server runs as a direct child of the test binary, never daemonized
// (no pg_ctl start): the kernel sends it SIGQUIT, Postgres's immediate
// shutdown, when the binary dies, so a test binary killed by its timeout
// or by a signal leaves no server behind.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// Cluster is a running throwaway Postgres.
type Cluster struct {
	Dir  string
	Port int
	bin  string
	// cred runs Postgres's programs as the postgres user when the tests
	// run as root (Postgres refuses to run as root); nil otherwise.
	cred *syscall.Credential
	// exited is closed when the server process has exited.
	exited chan struct{}
	proc   *os.Process
}

var (
	once    sync.Once
	shared  *Cluster
	initErr error
	dbSeq   atomic.Int64
)

// Shared starts (once per test binary) and returns the cluster. Call
// Stop from TestMain after m.Run.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	once.Do(func() { shared, initErr = Start() })
	if initErr != nil {
		tb.Fatalf("throwaway Postgres: %v (run scripts/install-deps.sh to install postgresql)", initErr)
	}
	return shared
}

// StopShared stops the cluster Shared started, if any.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

func findBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("initdb not found under /usr/lib/postgresql/*/bin or in PATH")
}

func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start makes and starts a new cluster.
func Start() (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	removeAbandoned()
	dir, err := os.MkdirTemp("", fmt.Sprintf("cocalc-hosts-pg-%d-", os.Getpid()))
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
	}
	initdb := c.command("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		if c.Port, err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if err = c.serve(); err == nil {
			return c, nil
		}
		if attempt == 3 {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start postgres: %v\n%s", err, c.Log())
		}
	}
}

// serve starts the server on c.Port and waits until it takes connections.
func (c *Cluster) serve() error {
	logFile, err := os.OpenFile(filepath.Join(c.Dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := c.command("postgres", "-D", filepath.Join(c.Dir, "data"), "-k", c.Dir, "-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1", "-F", "-c", "max_connections=300",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The parent-death signal is tied to the thread that forked the child,
	// not to the process: the goroutine that starts the server keeps its
	// thread locked, and so alive, until the server exits.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	started, exited := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait() //nolint:errcheck // the log says why it ended
		close(exited)
	}()
	if err := <-started; err != nil {
		return err
	}
	c.proc, c.exited = cmd.Process, exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("postgres exited during start-up")
		default:
		}
		if c.ping() == nil {
			return nil
		}
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("postgres did not take connections within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) ping() error {
	db, err := sql.Open("pgx", c.URL("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// command runs one of Postgres's programs, as the postgres user when the
// tests run as root.
func (c *Cluster) command(prog string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

// removeAbandoned removes the directories of clusters whose test binary
// is gone (killed before it could clean up); their servers went with it.
func removeAbandoned() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "cocalc-hosts-pg-*-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.Split(strings.TrimPrefix(filepath.Base(d), "cocalc-hosts-pg-"), "-")[0])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		os.RemoveAll(d)
	}
}

// Stop stops the cluster (immediate shutdown) and removes its files.
func (c *Cluster) Stop() {
	c.kill()
	os.RemoveAll(c.Dir)
}

func (c *Cluster) kill() {
	if c.proc != nil {
		c.proc.Signal(syscall.SIGQUIT) //nolint:errcheck // already gone is fine
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			c.proc.Kill() //nolint:errcheck
			<-c.exited
		}
	}
}

// Bin is the directory of the cluster's Postgres programs (pgbench, for
// benchmarks).
func (c *Cluster) Bin() string { return c.bin }

// URL returns a URL for database db as user postgres (no password: the
// cluster trusts local connections).
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// NewDatabase creates an empty database and returns its URL. It is dropped
// when tb ends.
func (c *Cluster) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	url, err := c.CreateDatabase(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		admin, err := sql.Open("pgx", c.URL("postgres"))
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") //nolint:errcheck
	})
	return url
}

// CreateDatabase creates the empty database name and returns its URL
// (benchmarks outside tests use it; the cluster's Stop removes it).
func (c *Cluster) CreateDatabase(name string) (string, error) {
	admin, err := sql.Open("pgx", c.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return c.URL(name), nil
}

// Main is a TestMain body for packages that use Shared.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	StopShared()
	return code
}

// Log returns the server log, for debugging failed tests.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "log"))
	return strings.TrimSpace(string(b))
}
