// Package podmantest gives tests a real podman with a store of its own and
// a project image built from Debian packages (no registry is reachable from
// test machines). The image's root filesystem is built once with mmdebstrap
// and cached in CacheDir between test runs; each test process imports it
// into its own store, which is removed when the process ends.
package podmantest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
)

// CacheDir keeps built root filesystems between test runs, keyed by their
// package list (see podman.BuildSpec.Key).
const CacheDir = "/var/cache/cocalc-hosts-test"

// Image is the test project image's name.
const Image = "localhost/cocalc-test-base:latest"

// ContainersConf are the podman settings this test machine needs (see
// machine.md): runc and cgroupfs because crun fails in cgroups hybrid
// mode, and bounded ulimits because the hard RLIMIT_NOFILE is 20000.
// Hosts whose podman works out of the box need no such file.
const ContainersConf = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
`

// Env is a podman store for this test process.
type Env struct {
	Dir    string
	Config podman.Config
	Podman *podman.Podman
	Image  string
}

var (
	once    sync.Once
	shared  *Env
	initErr error
)

// Shared returns the process's podman environment, making it on first
// use. Tests are skipped when not root and fail when podman is missing.
func Shared(tb testing.TB) *Env {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root for podman with cgroup limits and bind mounts of btrfs pools")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		tb.Fatal("podman is not installed; run scripts/install-deps.sh")
	}
	once.Do(func() { shared, initErr = setup() })
	if initErr != nil {
		tb.Fatal(initErr)
	}
	return shared
}

func setup() (*Env, error) {
	dir, err := os.MkdirTemp("", "cocalc-podman-test-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte(ContainersConf), 0o644); err != nil {
		return nil, err
	}
	cfg := podman.Config{
		ContainersConf: conf,
		Root:           filepath.Join(dir, "root"),
		RunRoot:        filepath.Join(dir, "run"),
		TmpDir:         filepath.Join(dir, "tmp"),
	}
	for _, d := range []string{cfg.Root, cfg.RunRoot, cfg.TmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	p, err := podman.New(cfg)
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Config: cfg, Podman: p, Image: Image}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var log strings.Builder
	if _, err := p.BuildImage(ctx, Image, podman.DefaultBuildSpec, CacheDir, false, &log); err != nil {
		e.cleanup()
		return nil, fmt.Errorf("test image: %w\n%s", err, log.String())
	}
	return e, nil
}

// RemoveContainers removes, when tb ends, the containers whose labels
// match every filter ("key=value"). Register it after making a pool that
// the containers mount, so it runs before the pool is released.
func (e *Env) RemoveContainers(tb testing.TB, labels ...string) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cs, err := e.Podman.List(ctx, labels...)
		if err != nil {
			tb.Errorf("cleanup: %v", err)
			return
		}
		for _, c := range cs {
			if err := e.Podman.Remove(ctx, c.ID, 0); err != nil {
				tb.Errorf("cleanup: %v", err)
			}
		}
	})
}

// Main runs m and then removes the shared store.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if shared != nil {
		shared.cleanup()
	}
	return code
}

func (e *Env) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.Podman.Run(ctx, "rm", "-a", "-f", "-t", "0") //nolint:errcheck
	e.Podman.Run(ctx, "rmi", "-a", "-f")           //nolint:errcheck
	// The overlay driver keeps its directory bind-mounted on itself.
	UnmountUnder(e.Dir)
	os.RemoveAll(e.Dir)
}

// UnmountUnder unmounts every mount at or below dir, deepest first.
func UnmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		exec.Command("umount", mounts[i]).Run() //nolint:errcheck // best effort at the end of tests
	}
}
