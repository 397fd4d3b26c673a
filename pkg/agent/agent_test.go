package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/btrfs"
)

// testConfig writes a config for a plain-directory agent in a temp dir.
func testConfig(t *testing.T) (string, agentapi.Config) {
	t.Helper()
	dir := t.TempDir()
	pool := filepath.Join(dir, "pool")
	if err := os.Mkdir(pool, 0o700); err != nil {
		t.Fatal(err)
	}
	c := agentapi.Config{
		HostID:      "h1",
		SocketPath:  filepath.Join(dir, "agent.sock"),
		PoolPath:    pool,
		StorageKind: agentapi.StorageDirectory,
		LogPath:     filepath.Join(dir, "agent.log"),
	}
	path := filepath.Join(dir, "agent.json")
	if err := agentapi.WriteConfig(path, c); err != nil {
		t.Fatal(err)
	}
	return path, c
}

// runAgent starts Main and returns a function that stops it and returns
// Main's result.
func runAgent(t *testing.T, path string) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Main(ctx, path) }()
	var once bool
	var result error
	stop := func() error {
		if !once {
			once = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

// waitStatus polls the agent until it answers or the deadline passes.
func waitStatus(t *testing.T, socket string) agentapi.Status {
	t.Helper()
	c := agentapi.NewClient(socket)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStatusAndShutdown(t *testing.T) {
	path, cfg := testConfig(t)
	Version = "test-1"
	t.Cleanup(func() { Version = "dev" })
	stop := runAgent(t, path)

	st := waitStatus(t, cfg.SocketPath)
	if st.Version != "test-1" || st.HostID != "h1" || st.PID != os.Getpid() {
		t.Fatalf("status = %+v", st)
	}
	if st.Storage.Kind != agentapi.StorageDirectory || st.Storage.Path != cfg.PoolPath || st.Storage.Note != agentapi.DirectoryNote {
		t.Fatalf("storage = %+v", st.Storage)
	}
	if st.Storage.TotalBytes == 0 || st.Storage.FreeBytes > st.Storage.TotalBytes {
		t.Fatalf("storage sizes = %+v", st.Storage)
	}
	if st.StartedAt.IsZero() || st.UptimeSeconds < 0 {
		t.Fatalf("start/uptime = %v / %v", st.StartedAt, st.UptimeSeconds)
	}
	fi, err := os.Stat(cfg.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket mode %v, want socket 0600", fi.Mode())
	}

	// A second agent on the same socket must not steal it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Main(ctx, path); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Fatalf("second agent on a live socket: %v", err)
	}

	if err := stop(); err != nil {
		t.Fatalf("Main after cancel: %v", err)
	}
	if _, err := os.Lstat(cfg.SocketPath); !os.IsNotExist(err) {
		t.Fatalf("socket left after shutdown: %v", err)
	}
	log, _ := os.ReadFile(cfg.LogPath)
	if !strings.Contains(string(log), "agent stopped") {
		t.Fatalf("log lacks shutdown: %s", log)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path, cfg := testConfig(t)
	// A socket nobody listens on, as a killed agent leaves behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.SocketPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(cfg.SocketPath); err != nil {
		t.Fatalf("stale socket not in place: %v", err)
	}
	stop := runAgent(t, path)
	waitStatus(t, cfg.SocketPath)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesReadableConfig(t *testing.T) {
	path, _ := testConfig(t)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	err := Main(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Main with a group-readable config: %v", err)
	}
}

func TestRefusesUnmountedBtrfsPool(t *testing.T) {
	path, cfg := testConfig(t)
	cfg.StorageKind = agentapi.StorageBtrfs
	if err := agentapi.WriteConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	// On a temp dir that is itself btrfs the check rightly passes.
	if on, err := btrfs.IsBtrfs(cfg.PoolPath); err != nil {
		t.Fatal(err)
	} else if on {
		t.Skip("the temp dir is on btrfs")
	}
	err := Main(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "not a btrfs filesystem") {
		t.Fatalf("Main with an unmounted btrfs pool: %v", err)
	}
}

func TestRefusesNonSocketFile(t *testing.T) {
	path, cfg := testConfig(t)
	if err := os.WriteFile(cfg.SocketPath, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Main(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Main with a regular file at the socket path: %v", err)
	}
}

func TestWriteConfigValidates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.json")
	if err := agentapi.WriteConfig(p, agentapi.Config{HostID: "h"}); err == nil {
		t.Fatal("WriteConfig accepted an incomplete config")
	}
	_, cfg := testConfig(t)
	if err := agentapi.WriteConfig(p, cfg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v, %v", fi.Mode(), err)
	}
	got, err := agentapi.LoadConfig(p)
	if err != nil || got != cfg {
		t.Fatalf("LoadConfig = %+v, %v; want %+v", got, err, cfg)
	}
}
