package sshboot_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/agent"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/fleet"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshboot"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
	"github.com/sagemathinc/cocalc-hosts/providers/gcp"
	sshprovider "github.com/sagemathinc/cocalc-hosts/providers/ssh"
)

// TestMain makes this test binary the agent, too: installed on a test VM
// as /usr/local/bin/cocalc-hosts, it serves the two commands the host
// side uses, with the same functions as the CLI (`agent --config FILE`
// and `agent-relay SOCKET`), so the bootstrap installs and starts a real
// agent. The end-to-end tests in cmd/cocalc-hosts use the CLI itself.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "cocalc-hosts" {
		os.Exit(hostSide(os.Args[1:]))
	}
	flag.Parse()
	// As the CLI does (in its state directory), keep the compressed
	// agent between bootstraps.
	dir, err := os.MkdirTemp("", "sshboot-agent-cache-")
	if err != nil {
		panic(err)
	}
	agentCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var agentCache string

// agentBinary replaces this test binary as the agent to install, e.g. a
// real cocalc-hosts build for the benchmark (bench/bootstrap.sh).
var agentBinary = flag.String("agent-binary", "", "agent binary to install instead of this test binary")

func hostSide(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(args) == 3 && args[0] == "agent" && args[1] == "--config":
		err = agent.Main(ctx, args[2])
	case len(args) == 2 && args[0] == "agent-relay":
		err = sshpool.ServeRelay(ctx, args[1], os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}

type env struct {
	t      testing.TB
	id     *fleet.Identity
	st     *store.SQLStore
	pool   *sshpool.Pool
	boot   *sshboot.Bootstrapper
	secret string
	lines  []string
	mu     sync.Mutex
}

func newEnv(t testing.TB) *env {
	sshvm.NeedRoot(t)
	dir := t.TempDir()
	id, err := fleet.LoadOrCreate(filepath.Join(dir, "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pool := sshpool.New(func() (*fleet.Identity, error) { return id, nil }, sshboot.StorePins{Store: st})
	pool.DialTimeout = 5 * time.Second
	t.Cleanup(func() { pool.Close() })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if *agentBinary != "" {
		exe = *agentBinary
	}
	b := sshboot.New(pool, st, func() (*fleet.Identity, error) { return id, nil }, &sshboot.AgentSource{Self: exe, CacheDir: agentCache})
	b.SSHWait, b.AgentWait = 10*time.Second, 30*time.Second
	// Real providers: ssh adopts machines; gcp makes VMs of ours (New
	// makes no API call).
	b.Provider = func(_ context.Context, name string) (provider.Provider, error) {
		cfg := provider.Config{Deployment: "sshboot-test", State: st.ProviderState(),
			Options: map[string]string{"project": "sshboot-test", "endpoint": "http://127.0.0.1:1"}}
		switch name {
		case "ssh":
			return sshprovider.New(cfg)
		case "gcp":
			return gcp.New(cfg)
		}
		return nil, fmt.Errorf("no provider %s in this test", name)
	}
	e := &env{t: t, id: id, st: st, pool: pool, boot: b, secret: "restic-password-" + uuid.NewString()}
	b.Secrets = func(context.Context) (map[string][]byte, error) {
		return map[string][]byte{"backup-password": []byte(e.secret)}, nil
	}
	return e
}

func (e *env) host(vm *sshvm.VM, user, dataDisk string) model.Host {
	return model.Host{ID: uuid.NewString(), Name: "h-" + vm.Name[len(vm.Name)-4:], Provider: "ssh",
		Runtime: model.Runtime{SSHHost: vm.Addr, SSHPort: 22, SSHUser: user, DataDiskDevice: dataDisk}}
}

func (e *env) progress(l string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines = append(e.lines, l)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

func (e *env) bootstrap(t *testing.T, h model.Host) hosts.BootResult {
	t.Helper()
	res, err := e.boot.Bootstrap(ctx(t), h, "job-"+uuid.NewString()[:8], e.progress)
	if err != nil {
		t.Fatalf("bootstrap: %v\nprogress:\n%s", err, strings.Join(e.lines, "\n"))
	}
	return res
}

func (e *env) lastRun(t *testing.T, h model.Host) (store.BootRun, []string) {
	t.Helper()
	runs, err := e.st.ListBootRuns(context.Background(), h.ID, 1)
	if err != nil || len(runs) == 0 {
		t.Fatalf("no boot run: %v", err)
	}
	lines, err := e.st.ListBootLog(context.Background(), store.BootLogFilter{HostID: h.ID, RunID: runs[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range lines {
		out = append(out, l.Line)
	}
	return runs[0], out
}

func contains(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func TestBootstrapAsRoot(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	h := e.host(vm, "root", "")
	res := e.bootstrap(t, h)

	// The agent answers through SSH, as this host.
	c, _ := e.boot.AgentClient(ctx(t), h)
	st, err := c.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.HostID != h.ID || st.Storage.Kind != "btrfs" || st.Storage.Path != "/btrfs" || st.Storage.Note != "" || st.PID != res.AgentPID {
		t.Fatalf("agent status: %+v (result %+v)", st, res)
	}
	if res.Platform != "linux/amd64" && res.Platform != "linux/arm64" || res.AgentSHA256 == "" {
		t.Fatalf("result: %+v", res)
	}
	pin, err := e.st.GetHostKey(ctx(t), h.ID)
	if err != nil || !fleet.SameKey(pin.PublicKey, fleet.KeyString(vm.HostKey())) || pin.PublicKey != res.HostKey || pin.LastContactAt == nil {
		t.Fatalf("pin: %v %+v", err, pin)
	}
	run, lines := e.lastRun(t, h)
	if run.Result != store.BootDone || run.Kind != "bootstrap" || !contains(lines, "==> data disk") || !contains(lines, "enabled btrfs quotas") ||
		!contains(lines, "no data disk: making a") || !contains(lines, "uploading the agent") {
		t.Fatalf("run %+v, lines:\n%s", run, strings.Join(lines, "\n"))
	}
	if len(e.lines) != len(lines) {
		t.Fatalf("progress saw %d lines, the boot log has %d", len(e.lines), len(lines))
	}

	// The pool is btrfs on a loop file, mounted through fstab with nofail,
	// with quotas on; podman's storage is on it.
	out := vm.MustExec(t, `findmnt -n -o FSTYPE /btrfs; grep ' /btrfs ' /etc/fstab; btrfs qgroup show /btrfs >/dev/null && echo quotas-on; grep graphroot /etc/containers/storage.conf`)
	for _, want := range []string{"btrfs\n", "/var/lib/cocalc-hosts/btrfs.img /btrfs btrfs loop,nofail,noatime 0 0", "quotas-on", `graphroot = "/btrfs/containers/storage"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("VM state lacks %q:\n%s", want, out)
		}
	}

	// Config and secrets are root-only files; the agent's environment
	// carries no secret, and neither does its command line.
	out = vm.MustExec(t, `stat -c '%a %U %G %n' /etc/cocalc-hosts /etc/cocalc-hosts/agent.json /etc/cocalc-hosts/secrets /etc/cocalc-hosts/secrets/backup-password /etc/cocalc-hosts/bootstrap.conf /run/cocalc-hosts/agent.sock`)
	for _, want := range []string{"700 root root /etc/cocalc-hosts\n", "600 root root /etc/cocalc-hosts/agent.json", "700 root root /etc/cocalc-hosts/secrets\n",
		"600 root root /etc/cocalc-hosts/secrets/backup-password", "600 root root /etc/cocalc-hosts/bootstrap.conf", "600 root root /run/cocalc-hosts/agent.sock"} {
		if !strings.Contains(out, want) {
			t.Fatalf("modes: want %q in\n%s\n(progress:\n%s)", want, out, strings.Join(e.lines, "\n"))
		}
	}
	if got := vm.MustExec(t, "cat /etc/cocalc-hosts/secrets/backup-password"); got != e.secret {
		t.Fatalf("secret on the host is %q", got)
	}
	// The agent gets the project settings of a remote host: everything on
	// the pool, podman in the store bootstrap.sh configured, projects that
	// survive an agent restart, and no power-off on an adopted machine.
	cfg := agentConfigOn(t, vm)
	want := agentapi.Config{HostID: h.ID, SocketPath: "/run/cocalc-hosts/agent.sock", PoolPath: "/btrfs", StorageKind: "btrfs",
		LogPath: "/var/log/cocalc-hosts/agent.log", ImageCacheDir: "/btrfs/.image-cache",
		Podman: agentapi.PodmanConfig{Root: "/btrfs/containers/storage", RunRoot: "/run/containers/storage", TmpDir: "/run/libpod"}}
	if cfg != want {
		t.Fatalf("agent config on the adopted machine:\n got %+v\nwant %+v", cfg, want)
	}
	environ := vm.MustExec(t, fmt.Sprintf("tr '\\0' '\\n' < /proc/%d/environ; echo; tr '\\0' ' ' < /proc/%d/cmdline", st.PID, st.PID))
	if strings.Contains(environ, e.secret) || strings.Contains(environ, "SSH_") || strings.Contains(environ, "SUDO") {
		t.Fatalf("the agent's environment or argv carries something it must not:\n%s", environ)
	}
	var names []string
	for _, l := range strings.Split(environ, "\n") {
		if k, _, ok := strings.Cut(l, "="); ok && !strings.Contains(k, " ") {
			names = append(names, k)
		}
	}
	if strings.Join(names, ",") != "PATH,HOME,LANG" {
		t.Fatalf("agent environment has %v, want only PATH, HOME and LANG", names)
	}

	// Running the bootstrap again changes nothing: no upload, the same
	// agent process.
	e.lines = nil
	res2 := e.bootstrap(t, h)
	_, lines = e.lastRun(t, h)
	if res2.AgentPID != res.AgentPID || !res2.AgentStartedAt.Equal(res.AgentStartedAt) {
		t.Fatalf("re-run restarted the agent: %+v then %+v", res, res2)
	}
	if contains(lines, "uploading") || !contains(lines, "already bootstrapped with these settings") || !contains(lines, "agent already running") {
		t.Fatalf("re-run was not a no-op:\n%s", strings.Join(lines, "\n"))
	}

	// Upgrade: the host has another binary (an older version); the
	// upgrade installs ours and restarts the agent.
	vm.MustExec(t, "cp /usr/local/bin/cocalc-hosts /root/old && echo older-build >> /root/old && mv /root/old /usr/local/bin/cocalc-hosts")
	up, err := e.boot.Upgrade(ctx(t), h, "job-up", e.progress)
	if err != nil {
		t.Fatal(err)
	}
	run, lines = e.lastRun(t, h)
	if up.AgentPID == res.AgentPID || run.Kind != "upgrade" || !contains(lines, "uploading the agent") {
		t.Fatalf("upgrade: %+v, lines:\n%s", up, strings.Join(lines, "\n"))
	}
	if sum := strings.Fields(vm.MustExec(t, "sha256sum /usr/local/bin/cocalc-hosts"))[0]; sum != up.AgentSHA256 {
		t.Fatalf("installed binary %s, want %s", sum, up.AgentSHA256)
	}
	// Upgrading to the same binary still restarts the agent.
	again, err := e.boot.Upgrade(ctx(t), h, "job-up2", e.progress)
	if err != nil {
		t.Fatal(err)
	}
	if again.AgentPID == up.AgentPID {
		t.Fatal("upgrade with an unchanged binary did not restart the agent")
	}

	// After a reboot (the VM's processes and mounts are gone) the
	// bootstrap mounts the pool and starts the agent again.
	vm.PowerOff(t)
	vm.Boot(t)
	e.pool.Forget(sshboot.Target(h))
	res3 := e.bootstrap(t, h)
	if res3.AgentPID == 0 {
		t.Fatal("no agent after reboot")
	}
	if out := vm.MustExec(t, "findmnt -n -o FSTYPE /btrfs"); strings.TrimSpace(out) != "btrfs" {
		t.Fatalf("pool not mounted after reboot: %q", out)
	}
}

func TestBootstrapSudoUserDataDisk(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{})
	vm.AddUser(t, "deploy", true, e.id.AuthorizedKey())
	disk := sshvm.LoopDevice(t, 4096, "")
	h := e.host(vm, "deploy", disk)
	h.Provider = "gcp" // a cloud VM of ours, which powers itself off when idle
	e.boot.IdleCheckInterval, e.boot.SnapshotInterval = "45s", "0"
	e.bootstrap(t, h)
	cfg := agentConfigOn(t, vm)
	if cfg.SelfStopCommand != "systemctl poweroff" || cfg.StopProjectsOnExit || cfg.IdleCheckInterval != "45s" || cfg.SnapshotInterval != "0" ||
		cfg.ImageCacheDir != "/btrfs/.image-cache" || cfg.Podman.Root != "/btrfs/containers/storage" {
		t.Fatalf("agent config on a cloud VM: %+v", cfg)
	}
	out := vm.MustExec(t, fmt.Sprintf("findmnt -n -o SOURCE,FSTYPE /btrfs; grep ' /btrfs ' /etc/fstab; blkid -o value -s UUID %s", disk))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], disk+" ") || !strings.HasSuffix(lines[0], "btrfs") ||
		lines[1] != "UUID="+lines[2]+" /btrfs btrfs defaults,nofail,noatime 0 0" {
		t.Fatalf("data disk pool:\n%s", out)
	}
	// The agent answers through the relay (deploy cannot open root's socket).
	c, _ := e.boot.AgentClient(ctx(t), h)
	if st, err := c.Status(ctx(t)); err != nil || st.HostID != h.ID {
		t.Fatalf("agent through the relay: %v %+v", err, st)
	}
}

// agentConfigOn reads the agent config the bootstrap wrote on vm.
func agentConfigOn(t *testing.T, vm *sshvm.VM) agentapi.Config {
	t.Helper()
	var cfg agentapi.Config
	raw := vm.MustExec(t, "cat /etc/cocalc-hosts/agent.json")
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("agent.json on the host: %v\n%s", err, raw)
	}
	return cfg
}

// failBootstrap runs a bootstrap that must fail with an error mentioning
// every one of wants, records nothing but a failed run, and returns the
// error.
func (e *env) failBootstrap(t *testing.T, h model.Host, wants ...string) error {
	t.Helper()
	e.lines = nil
	_, err := e.boot.Bootstrap(ctx(t), h, "job", e.progress)
	if err == nil {
		t.Fatalf("bootstrap succeeded, want an error; output:\n%s", strings.Join(e.lines, "\n"))
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not mention %q", err, w)
		}
	}
	if errkind.Retryable(err) {
		t.Fatalf("bad input must not be retried by the queue: %v", err)
	}
	t.Logf("error: %v", err)
	run, lines := e.lastRun(t, h)
	if run.Result != store.BootFailed || run.Error == "" || !contains(lines, "ERROR: ") {
		t.Fatalf("failed run: %+v\n%s", run, strings.Join(lines, "\n"))
	}
	return err
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	vm.AddUser(t, "nosudo", false, e.id.AuthorizedKey())

	t.Run("no_sudo", func(t *testing.T) {
		e.failBootstrap(t, e.host(vm, "nosudo", ""), "user nosudo cannot use sudo without a password", "NOPASSWD")
	})
	t.Run("sudo_missing", func(t *testing.T) {
		vm.MustExec(t, "mv /usr/bin/sudo /usr/bin/sudo.away")
		defer vm.MustExec(t, "mv /usr/bin/sudo.away /usr/bin/sudo")
		e.failBootstrap(t, e.host(vm, "nosudo", ""), "sudo is not installed", "log in as root")
	})
	t.Run("not_linux", func(t *testing.T) {
		// What uname says on a Mac.
		vm.MustExec(t, "printf '#!/bin/sh\\necho Darwin arm64\\n' > /usr/local/bin/uname && chmod 755 /usr/local/bin/uname")
		defer vm.MustExec(t, "rm /usr/local/bin/uname")
		e.failBootstrap(t, e.host(vm, "root", ""), "runs Darwin", "project hosts run Linux")
	})
	t.Run("unsupported_distribution", func(t *testing.T) {
		vm.MustExec(t, "cp /etc/os-release /root/os-release && rm /etc/os-release && printf 'ID=alpine\\nVERSION_ID=3.19\\nPRETTY_NAME=\"Alpine Linux v3.19\"\\n' > /etc/os-release")
		defer vm.MustExec(t, "cp /root/os-release /etc/os-release")
		e.failBootstrap(t, e.host(vm, "root", ""), "unsupported distribution Alpine Linux v3.19", "Debian 11+")
	})
	t.Run("no_space_for_agent", func(t *testing.T) {
		vm.MustExec(t, "mount -t tmpfs -o size=8m tmpfs /usr/local/bin")
		defer vm.MustExec(t, "umount /usr/local/bin")
		h := e.host(vm, "root", "")
		e.failBootstrap(t, h, "not enough space for the agent", "/usr/local/bin has 8 MiB free")
		if out := vm.MustExec(t, "ls -A /usr/local/bin"); strings.TrimSpace(out) != "" {
			t.Fatalf("a refused upload left files: %q", out)
		}
	})
	t.Run("other_host_on_machine", func(t *testing.T) {
		vm.MustExec(t, `mkdir -p /etc/cocalc-hosts && echo '{"host_id": "someone-else"}' > /etc/cocalc-hosts/agent.json`)
		defer vm.MustExec(t, "rm -r /etc/cocalc-hosts")
		e.failBootstrap(t, e.host(vm, "root", ""), "already project host someone-else")
	})
}

// A missing package on a machine that cannot reach a mirror (the test
// VMs have no route out) is a clear error, not a half-installed host.
func TestMissingPackageWithoutNetwork(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	vm.MustExec(t, "dpkg -r restic >/dev/null")
	h := e.host(vm, "root", "")
	e.failBootstrap(t, h, `at step "packages": apt-get update failed`, "install restic by hand")
	_, lines := e.lastRun(t, h)
	if contains(lines, "==> data disk") {
		t.Fatalf("the run went on after the packages step:\n%s", strings.Join(lines, "\n"))
	}
}

// A script that fails half-way (here: after the package and GPU steps,
// at the data disk) reports its last boot-log lines, and once the cause
// is fixed the same bootstrap completes.
func TestHalfWayFailureThenRerunCompletes(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	disk := sshvm.LoopDevice(t, 4096, "mkfs.ext4 -q")
	h := e.host(vm, "root", disk)
	err := e.failBootstrap(t, h, `at step "data disk": data disk `+disk+" holds a filesystem of type ext4; refusing to format it", "wipefs -a", "last lines of the boot log", "==> data disk", "logs --boot")
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("the error must be one line: %q", err)
	}
	_, lines := e.lastRun(t, h)
	if !contains(lines, "==> packages") || contains(lines, "==> agent service") {
		t.Fatalf("the run should have stopped at the data disk:\n%s", strings.Join(lines, "\n"))
	}
	// The ext4 data is untouched.
	if out := vm.MustExec(t, "blkid -o value -s TYPE "+disk); strings.TrimSpace(out) != "ext4" {
		t.Fatalf("the disk was changed: %q", out)
	}
	vm.MustExec(t, "wipefs -a -q "+disk)
	e.bootstrap(t, h)
	if out := vm.MustExec(t, "findmnt -n -o SOURCE /btrfs"); strings.TrimSpace(out) != disk {
		t.Fatalf("pool source %q, want %s", out, disk)
	}
}

func TestFullDiskThenRerunCompletes(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	vm.MustExec(t, "mkdir -p /var/lib/cocalc-hosts && mount -t tmpfs -o size=64m tmpfs /var/lib/cocalc-hosts")
	h := e.host(vm, "root", "")
	e.failBootstrap(t, h, "not enough free space for the project pool", "/var/lib/cocalc-hosts has 6", "--data-disk")
	if out := vm.MustExec(t, "ls /var/lib/cocalc-hosts"); strings.Contains(out, "btrfs.img") {
		t.Fatalf("a refused pool left an image: %q", out)
	}
	// Space freed (the small filesystem goes away): the re-run completes.
	vm.MustExec(t, "umount /var/lib/cocalc-hosts")
	e.bootstrap(t, h)
}

func TestAgentSource(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "cocalc-hosts_linux_arm64")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho arm64 agent\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := "f3c2d0cbd7c7f0e26d7f60c4ea2e1bd6fcb4c3a2a1e4d5d3bb9ff0d8a6a35b3b"
	src := &sshboot.AgentSource{Self: "/nonexistent", SelfPlatform: "linux/amd64", CacheDir: filepath.Join(dir, "cache"),
		ReleaseURL: "file://" + filepath.Join(dir, "cocalc-hosts_{os}_{arch}"), SHA256: map[string]string{"linux/arm64": sum}}
	_, err := src.For(context.Background(), "linux/arm64")
	if err == nil || !strings.Contains(err.Error(), "refusing to install it") || !strings.Contains(err.Error(), "bootstrap.agent_sha256_linux_arm64 says "+sum) {
		t.Fatalf("a wrong checksum must be refused: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "cocalc-hosts-"+sum+".artifact")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused download was kept")
	}
	real, _, err := fileSum(bin)
	if err != nil {
		t.Fatal(err)
	}
	src.SHA256["linux/arm64"] = real
	b, err := src.For(context.Background(), "linux/arm64")
	if err != nil || b.SHA256 != real {
		t.Fatalf("right checksum: %v %+v", err, b)
	}
	// Cached: the source may go away.
	os.Remove(bin)
	if b2, err := src.For(context.Background(), "linux/arm64"); err != nil || b2.Path != b.Path {
		t.Fatalf("cached artifact: %v %+v", err, b2)
	}
	if _, err := src.For(context.Background(), "linux/riscv64"); err == nil || !strings.Contains(err.Error(), "bootstrap.agent_sha256_linux_riscv64") {
		t.Fatalf("no checksum configured: %v", err)
	}
	noURL := &sshboot.AgentSource{Self: "/x", SelfPlatform: "linux/amd64"}
	if _, err := noURL.For(context.Background(), "linux/arm64"); err == nil || !strings.Contains(err.Error(), "set bootstrap.agent_url") {
		t.Fatalf("no release configured: %v", err)
	}

	// A goreleaser archive: the checksum is the archive's, the agent is
	// the cocalc-hosts file in it.
	arch := filepath.Join(dir, "cocalc-hosts_linux_arm64.tar.gz")
	writeTarGz(t, arch, map[string]string{"README.md": "readme", "cocalc-hosts": "#!/bin/sh\necho from tarball\n"})
	asum, _, _ := fileSum(arch)
	tgz := &sshboot.AgentSource{SelfPlatform: "linux/amd64", CacheDir: filepath.Join(dir, "cache2"),
		ReleaseURL: "file://" + filepath.Join(dir, "cocalc-hosts_{os}_{arch}.tar.gz"), SHA256: map[string]string{"linux/arm64": asum}}
	tb, err := tgz.For(context.Background(), "linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(tb.Path); string(got) != "#!/bin/sh\necho from tarball\n" {
		t.Fatalf("extracted %q", got)
	}

	// Over https, as from a release page: the archive is downloaded once
	// and verified; a missing artifact is bad configuration, a server
	// error is worth retrying.
	archive, _ := os.ReadFile(arch)
	var downloads atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/cocalc-hosts_linux_arm64.tar.gz":
			downloads.Add(1)
			w.Write(archive) //nolint:errcheck
		case "/v1/cocalc-hosts_linux_riscv64.tar.gz":
			http.Error(w, "try later", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	web := &sshboot.AgentSource{SelfPlatform: "linux/amd64", CacheDir: filepath.Join(dir, "cache3"), HTTP: srv.Client(),
		ReleaseURL: srv.URL + "/v1/cocalc-hosts_{os}_{arch}.tar.gz",
		SHA256: map[string]string{"linux/arm64": asum,
			// (other sums: the cache is keyed by the artifact's sum)
			"linux/riscv64": strings.Repeat("1", 64), "darwin/arm64": strings.Repeat("2", 64)}}
	for range 2 {
		wb, err := web.For(context.Background(), "linux/arm64")
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(wb.Path); string(got) != "#!/bin/sh\necho from tarball\n" {
			t.Fatalf("downloaded agent %q", got)
		}
	}
	if n := downloads.Load(); n != 1 {
		t.Fatalf("%d downloads, want 1 (then the verified cache)", n)
	}
	if _, err := web.For(context.Background(), "darwin/arm64"); errkind.Of(err) != errkind.Invalid || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing artifact: %v (kind %s)", err, errkind.Of(err))
	}
	if _, err := web.For(context.Background(), "linux/riscv64"); errkind.Of(err) != errkind.Transient || !strings.Contains(err.Error(), "503") {
		t.Fatalf("server error: %v (kind %s)", err, errkind.Of(err))
	}
}

func fileSum(path string) (string, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	return fmt.Sprintf("%x", sha256.Sum256(b)), int64(len(b)), nil
}

func writeTarGz(t *testing.T, path string, files map[string]string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}) //nolint:errcheck
		tw.Write([]byte(body))                                                                              //nolint:errcheck
	}
	tw.Close()
	gz.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Providers that install a host key through user data get one derived
// from the fleet key and pinned before the VM exists: the VM is trusted
// from its first contact, and a VM with any other key is refused.
func TestInjectedHostKey(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	h := e.host(vm, "root", "")
	key, hk, err := e.boot.Access(ctx(t), h, true)
	if err != nil || key != e.id.AuthorizedKey() || hk == nil {
		t.Fatalf("access: %v %q %v", err, key, hk)
	}
	pin, err := e.st.GetHostKey(ctx(t), h.ID)
	if err != nil || pin.Source != "generated" || pin.PublicKey != hk.Public {
		t.Fatalf("pin before the VM exists: %v %+v", err, pin)
	}
	// The VM still has its own key: refused, no trust on first use.
	_, err = e.boot.Bootstrap(ctx(t), h, "job", nil)
	var kc *fleet.KeyChangedError
	if !errors.As(err, &kc) {
		t.Fatalf("a VM without the injected key: got %v, want KeyChangedError", err)
	}
	// The VM as the provider makes it, with the injected key.
	raw, err := gossh.ParseRawPrivateKey([]byte(hk.PrivatePEM))
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		t.Fatalf("derived key is %T", raw)
	}
	vm.PowerOff(t)
	vm.SetHostKey(t, *priv)
	vm.Boot(t)
	e.pool.Forget(sshboot.Target(h))
	e.bootstrap(t, h)

	// Providers without injection: a new VM of the host starts with no pin.
	if _, hk, err := e.boot.Access(ctx(t), h, false); err != nil || hk != nil {
		t.Fatalf("access without injection: %v %v", err, hk)
	}
	if _, err := e.st.GetHostKey(ctx(t), h.ID); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("the old VM's pin must go with a new VM: %v", err)
	}
}
