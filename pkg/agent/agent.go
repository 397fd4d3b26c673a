// Package agent is the program that runs on every project host. It serves
// a small HTTP API on a unix socket only; whoever can open the socket (root,
// by its 0600 mode) may talk to it.
//
// The agent runs on machines that hold users' projects, so it must never
// hold control-plane secrets: it must not import pkg/store or anything else
// that carries database credentials.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/btrfs"
)

// Version is reported by the status API; the CLI sets it at startup.
var Version = "dev"

// Main runs the agent with the config at configPath until ctx is
// cancelled, then shuts down and removes its socket. It returns nil after
// a clean shutdown.
func Main(ctx context.Context, configPath string) error {
	cfg, err := agentapi.LoadConfig(configPath)
	if err != nil {
		return err
	}
	logger, closeLog, err := openLog(cfg.LogPath)
	if err != nil {
		return err
	}
	defer closeLog()

	if err := checkPool(cfg); err != nil {
		logger.Error("refusing to start", "err", err)
		return err
	}
	ln, err := listen(cfg.SocketPath)
	if err != nil {
		logger.Error("refusing to start", "err", err)
		return err
	}
	// Closing a UnixListener made by Listen unlinks the socket; the
	// explicit Remove covers the case where Serve closed it first.
	defer os.Remove(cfg.SocketPath)

	s := &server{cfg: cfg, started: time.Now(), log: logger, direct: newDirects()}
	defer s.direct.stop()
	s.metrics = newMetrics(s)
	if err := s.startProjects(ctx); err != nil {
		logger.Error("refusing to start", "err", err)
		return err
	}
	defer s.stopProjects()
	if s.backups, err = newBackups(s.proj, cfg.PoolPath); err != nil {
		logger.Error("refusing to start", "err", err)
		return err
	}
	if err := s.startAccess(); err != nil {
		logger.Error("refusing to start", "err", err)
		return err
	}
	s.startIngress()
	defer s.stopIngress()
	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("agent started", "version", Version, "host_id", cfg.HostID, "socket", cfg.SocketPath, "pid", os.Getpid(), "storage", cfg.StorageKind, "pool", cfg.PoolPath)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		logger.Error("server failed", "err", err)
		return fmt.Errorf("agent: serve on %s: %w", cfg.SocketPath, err)
	case <-ctx.Done():
	case <-s.selfStop:
		s.idleStopHost()
	}
	logger.Info("agent shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running after the grace period are cut off;
		// that is still a shutdown the caller asked for.
		logger.Warn("shutdown incomplete", "err", err)
		srv.Close()
	}
	logger.Info("agent stopped")
	return nil
}

func openLog(path string) (*slog.Logger, func(), error) {
	if path == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil)), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("agent log: %w", err)
	}
	return slog.New(slog.NewTextHandler(f, nil)), func() { f.Close() }, nil
}

// checkPool refuses to run on a btrfs host whose pool is not mounted:
// projects would otherwise land on the filesystem under the mount point,
// and vanish from view when the pool is mounted again.
func checkPool(cfg agentapi.Config) error {
	st, err := os.Stat(cfg.PoolPath)
	if err != nil {
		return fmt.Errorf("agent pool: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("agent pool %s is not a directory", cfg.PoolPath)
	}
	if cfg.StorageKind == agentapi.StorageBtrfs {
		ok, err := btrfs.IsBtrfs(cfg.PoolPath)
		if err != nil {
			return fmt.Errorf("agent pool: %w", err)
		}
		if !ok {
			return fmt.Errorf("agent pool %s is not a btrfs filesystem (not mounted?)", cfg.PoolPath)
		}
	}
	return nil
}

// listen opens the unix socket with mode 0600, replacing a stale socket
// left by an agent that died, but never one that a live agent answers on.
func listen(path string) (*net.UnixListener, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	// bind() creates the socket file with the umask applied; narrowing
	// the umask for that one call means the socket is never, even for an
	// instant, open to others. Nothing else runs yet, so changing the
	// process-wide umask cannot affect other files.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("agent socket: %s exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, agentapi.DialTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("agent socket: another agent is listening on %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agent socket: remove stale %s: %w", path, err)
	}
	return nil
}

type server struct {
	cfg     agentapi.Config
	started time.Time
	log     *slog.Logger
	// The project runtime (projects_http.go).
	proj     *runtime
	selfStop chan struct{}
	cancel   context.CancelFunc
	// Who may reach projects, and the listeners they use (ingress.go).
	access  *accessCache
	ingress *ingress
	// Backups of projects with restic (backup.go).
	backups *backups
	// Listeners of expected direct transfers (direct.go).
	direct *directs
	// Prometheus metrics (metrics.go).
	metrics *metrics
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.StatusPath, s.handleStatus)
	mux.Handle("GET "+agentapi.MetricsPath, s.metrics.handler())
	s.projectRoutes(mux)
	s.transferRoutes(mux)
	s.accessRoutes(mux)
	s.ingressCertRoutes(mux)
	s.backupRoutes(mux)
	return mux
}

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.status()
	if err != nil {
		s.log.Error("status", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(st); err != nil {
		s.log.Warn("write status", "err", err)
	}
}

func (s *server) status() (agentapi.Status, error) {
	storage := agentapi.Storage{Kind: s.cfg.StorageKind, Path: s.cfg.PoolPath}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.cfg.PoolPath, &fs); err != nil {
		return agentapi.Status{}, fmt.Errorf("statfs %s: %w", s.cfg.PoolPath, err)
	}
	storage.FreeBytes = fs.Bavail * uint64(fs.Bsize)
	storage.TotalBytes = fs.Blocks * uint64(fs.Bsize)
	switch {
	case s.cfg.StorageKind == agentapi.StorageDirectory:
		storage.Note = agentapi.DirectoryNote
	case uint32(fs.Type) != btrfs.SuperMagic:
		// Someone unmounted the pool under us; say so instead of
		// reporting the space of whatever is below the mount point.
		storage.Note = "pool is not mounted: the numbers are of the filesystem below it"
	}
	now := time.Now()
	var pm *agentapi.PodmanRuntime
	if s.proj != nil {
		rt := s.proj.podmanRT
		pm = &rt
	}
	return agentapi.Status{
		Podman:        pm,
		Version:       Version,
		HostID:        s.cfg.HostID,
		StartedAt:     s.started.UTC(),
		UptimeSeconds: now.Sub(s.started).Seconds(),
		Storage:       storage,
		PID:           os.Getpid(),
	}, nil
}
