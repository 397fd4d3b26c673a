package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agent"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/btrfs"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// helperEnv is set only by this test binary for the agents it starts. It
// carries AgentEnvPrefix so that the provider passes it on.
const helperEnv = AgentEnvPrefix + "TEST_HELPER"

// TestMain lets this test binary stand in for the CLI: the provider runs
// AgentCommand ("this binary") with "agent --config PATH", and here that
// becomes agent.Main, as the CLI's agent subcommand does.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" && len(os.Args) == 4 && os.Args[1] == "agent" && os.Args[2] == "--config" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := agent.Main(ctx, os.Args[3])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Setenv(helperEnv, "1")
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount btrfs loop pools")
	}
	if !btrfs.Available() {
		t.Fatal("running as root but btrfs is not usable; install btrfs-progs")
	}
}

// newProvider makes a provider on stateDir and, once per stateDir, a
// cleanup that removes whatever the test left: agents, mounts and loop
// devices, also when the test failed half way.
func newProvider(t *testing.T, stateDir, deployment string, opts map[string]string) *Provider {
	t.Helper()
	p, err := New(provider.Config{
		Deployment:   deployment,
		StateDir:     stateDir,
		Options:      opts,
		AgentCommand: []string{os.Args[0]},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Provider)
}

func testStateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { scrub(t, filepath.Join(dir, hostsDirName)) })
	return dir
}

// scrub kills agents and releases pools under root without using the
// provider, so that it works whatever state a failed test left.
func scrub(t *testing.T, root string) {
	entries, _ := os.ReadDir(root)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(root, e.Name())
		ps := paths{config: filepath.Join(dir, "agent.json"), pool: filepath.Join(dir, "pool"), image: filepath.Join(dir, "pool.img")}
		agents, err := findAgents(ps.config)
		if err == nil {
			err = killAll(ctx, agents)
		}
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := btrfs.Unmount(ctx, ps.pool); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := btrfs.DetachLoops(ctx, ps.image); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func agentPID(t *testing.T, ps paths) int {
	t.Helper()
	pid, _, err := readPidFile(ps.pid)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return pid
}

// agentsWithConfig counts processes running with "--config config",
// found apart from the provider's own search.
func agentsWithConfig(t *testing.T, config string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		if hasConfigArg(pid, config) {
			n++
		}
	}
	return n
}

// hasConfigArg reports whether process pid runs with "--config config".
func hasConfigArg(pid int, config string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--config" && args[i+1] == config {
			return true
		}
	}
	return false
}

func agentStatus(t *testing.T, ps paths) agentapi.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := agentapi.NewClient(ps.socket).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func loopsUnder(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -a: %v: %s", err, out)
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) {
			found = append(found, line)
		}
	}
	return found
}

func wantState(t *testing.T, p *Provider, name string, want provider.State) provider.Instance {
	t.Helper()
	inst, err := p.Status(context.Background(), provider.Ref{Name: name})
	if err != nil {
		t.Fatalf("Status(%s): %v", name, err)
	}
	if inst.State != want {
		t.Fatalf("Status(%s) = %s, want %s", name, inst.State, want)
	}
	return inst
}

func TestRegistered(t *testing.T) {
	r, err := provider.Lookup(Name)
	if err != nil {
		t.Fatal(err)
	}
	want := provider.Capabilities{Stop: provider.StopReal, DiskResize: true, PersistentDisk: true, ThisMachine: true}
	if r.Capabilities != want {
		t.Fatalf("capabilities %+v, want %+v", r.Capabilities, want)
	}
	if _, err := provider.Open(Name, provider.Config{Deployment: "d", StateDir: t.TempDir(), Options: map[string]string{"storage": "zfs"}}); err == nil {
		t.Fatal("Open accepted storage=zfs")
	}
}

func TestCatalog(t *testing.T) {
	p := newProvider(t, t.TempDir(), "d", nil)
	cat, err := p.Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(cat) != 1 {
		t.Fatalf("catalog has %d entries, want 1", len(cat))
	}
	e := cat[0]
	if e.InstanceType != "local" || e.Region != "local" || e.Provider != "local" || e.VCPUs != runtime.NumCPU() || e.MemoryGiB <= 0 || e.HourlyPrice != 0 || !e.Available {
		t.Fatalf("catalog entry %+v", e)
	}
}

func TestBtrfsHostLifecycle(t *testing.T) {
	needRoot(t)
	ctx := ctxT(t)
	state := testStateDir(t)
	p := newProvider(t, state, "dep1", nil)
	const name = "ch-h1"
	ps := p.paths(name)

	inst, err := p.Create(ctx, provider.CreateSpec{HostID: "h1", Name: name, Labels: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != provider.StateRunning || inst.ID != name || inst.Name != name || inst.HostID != "h1" || inst.Region != "local" {
		t.Fatalf("created %+v", inst)
	}
	if inst.Labels[provider.LabelDeployment] != "dep1" || inst.Labels[provider.LabelHost] != "h1" || inst.Labels["team"] != "a" {
		t.Fatalf("labels %v", inst.Labels)
	}
	if inst.Meta["storage"] != "btrfs" || inst.DataDisk != ps.image {
		t.Fatalf("meta %v, data disk %s", inst.Meta, inst.DataDisk)
	}
	if !btrfs.IsMounted(ps.pool) {
		t.Fatal("pool not mounted")
	}
	// `btrfs qgroup show` fails ("quotas not enabled") when they are off.
	if out, err := exec.Command("btrfs", "qgroup", "show", ps.pool).CombinedOutput(); err != nil {
		t.Fatalf("quota groups are off on the pool: %v: %s", err, out)
	}
	for _, f := range []string{ps.config, ps.socket} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v; want 0600", f, fi.Mode(), err)
		}
	}
	var rec record
	if b, err := os.ReadFile(ps.record); err != nil || json.Unmarshal(b, &rec) != nil {
		t.Fatalf("instance.json: %v", err)
	}
	if rec.DiskGB != 4 || rec.Storage != "btrfs" || rec.HostID != "h1" || rec.CreatedAt.IsZero() {
		t.Fatalf("instance.json %+v", rec)
	}
	st := agentStatus(t, ps)
	if st.HostID != "h1" || st.Storage.Kind != "btrfs" || st.Storage.Path != ps.pool {
		t.Fatalf("agent status %+v", st)
	}
	if st.Storage.TotalBytes < 3*uint64(gib) || st.Storage.TotalBytes > 4*uint64(gib) {
		t.Fatalf("pool total %d bytes, want about 4 GiB", st.Storage.TotalBytes)
	}
	pid := agentPID(t, ps)
	if st.PID != pid {
		t.Fatalf("agent reports pid %d, pid file says %d", st.PID, pid)
	}

	// The agent does not belong to the provider object: a new one (as in
	// the next CLI invocation) finds it running.
	p = nil
	p2 := newProvider(t, state, "dep1", nil)
	wantState(t, p2, name, provider.StateRunning)

	// Create again: the same host, the same agent, no second one.
	again, err := p2.Create(ctx, provider.CreateSpec{HostID: "h1", Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != inst.ID || again.State != provider.StateRunning {
		t.Fatalf("second create %+v", again)
	}
	if got := agentPID(t, ps); got != pid {
		t.Fatalf("second create started agent %d, first was %d", got, pid)
	}
	if n := agentsWithConfig(t, ps.config); n != 1 {
		t.Fatalf("%d agent processes, want 1", n)
	}
	if _, err := p2.Create(ctx, provider.CreateSpec{HostID: "other", Name: name}); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("create with the name of another host: %v", err)
	}

	data := filepath.Join(ps.pool, "data.txt")
	if err := os.WriteFile(data, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}

	stopped, err := p2.Stop(ctx, provider.Ref{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if stopped.State != provider.StateStopped {
		t.Fatalf("stop returned %s", stopped.State)
	}
	wantState(t, p2, name, provider.StateStopped)
	if n := agentsWithConfig(t, ps.config); n != 0 {
		t.Fatalf("%d agent processes after stop", n)
	}
	if _, err := os.Lstat(ps.socket); !os.IsNotExist(err) {
		t.Fatalf("socket after stop: %v", err)
	}
	// As a stopped VM holds no disk, a stopped host holds no mount and
	// no loop device.
	if btrfs.IsMounted(ps.pool) {
		t.Fatal("the pool is still mounted after stop")
	}
	if devs, err := btrfs.LoopDevices(ctx, ps.image); err != nil || len(devs) > 0 {
		t.Fatalf("loop devices after stop: %v %v", devs, err)
	}
	if _, err := p2.Stop(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatalf("stopping a stopped host: %v", err)
	}

	started, err := p2.Start(ctx, provider.Ref{InstanceID: name})
	if err != nil {
		t.Fatal(err)
	}
	if started.State != provider.StateRunning {
		t.Fatalf("start returned %s", started.State)
	}
	if b, err := os.ReadFile(data); err != nil || string(b) != "kept" {
		t.Fatalf("data after stop/start: %q, %v", b, err)
	}

	// As after a reboot: no agent, pool not mounted. Start mounts it.
	if _, err := p2.Stop(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	if err := btrfs.Unmount(ctx, ps.pool); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Start(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(data); err != nil || string(b) != "kept" {
		t.Fatalf("data after remount: %q, %v", b, err)
	}
	wantState(t, p2, name, provider.StateRunning)

	// Grow the pool online.
	before := agentStatus(t, ps).Storage.TotalBytes
	resized, err := p2.ResizeDisk(ctx, provider.Ref{Name: name}, 6)
	if err != nil {
		t.Fatal(err)
	}
	after := agentStatus(t, ps).Storage.TotalBytes
	if after <= before || resized.Meta["disk_gb"] != "6" {
		t.Fatalf("resize: total %d -> %d bytes, meta %v", before, after, resized.Meta)
	}
	if fi, err := os.Stat(ps.image); err != nil || fi.Size() != 6*gib {
		t.Fatalf("image after resize: %v, %v", fi.Size(), err)
	}
	if _, err := p2.ResizeDisk(ctx, provider.Ref{Name: name}, 5); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("shrink: %v, want an invalid error", err)
	}

	agentPid := agentPID(t, ps)
	if err := p2.Delete(ctx, provider.Ref{Name: name}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Status(ctx, provider.Ref{Name: name}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("status after delete: %v, want not found", err)
	}
	if btrfs.IsMounted(ps.pool) {
		t.Fatal("pool mounted after delete")
	}
	if l := loopsUnder(t, ps.dir); len(l) > 0 {
		t.Fatalf("loop devices left after delete: %v", l)
	}
	if _, err := os.Stat(ps.dir); !os.IsNotExist(err) {
		t.Fatalf("host directory after delete: %v", err)
	}
	if err := syscall.Kill(agentPid, 0); err == nil && hasConfigArg(agentPid, ps.config) {
		t.Fatal("agent alive after delete")
	}
	if err := p2.Delete(ctx, provider.Ref{Name: name}, false); err != nil {
		t.Fatalf("deleting a deleted host: %v", err)
	}
	if l, err := p2.List(ctx); err != nil || len(l) != 0 {
		t.Fatalf("list after delete: %v, %v", l, err)
	}
}

func TestDeleteKeepDisk(t *testing.T) {
	needRoot(t)
	ctx := ctxT(t)
	p := newProvider(t, testStateDir(t), "dep1", nil)
	const name = "ch-k1"
	ps := p.paths(name)
	spec := provider.CreateSpec{HostID: "k1", Name: name, DiskGB: 5}
	first, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ps.image); err != nil || fi.Size() != 5*gib {
		t.Fatalf("image: %v, %v; want 5 GiB", fi, err)
	}
	data := filepath.Join(ps.pool, "data.txt")
	if err := os.WriteFile(data, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, provider.Ref{Name: name}, true); err != nil {
		t.Fatal(err)
	}
	// The instance is gone, as a cloud VM deleted keeping its disk.
	if _, err := p.Status(ctx, provider.Ref{Name: name}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("status after delete keeping disk: %v, want not found", err)
	}
	if l, err := p.List(ctx); err != nil || len(l) != 0 {
		t.Fatalf("list after delete keeping disk: %v, %v", l, err)
	}
	if _, err := p.Start(ctx, provider.Ref{Name: name}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("start after delete keeping disk: %v, want not found", err)
	}
	if n := agentsWithConfig(t, ps.config); n != 0 {
		t.Fatalf("%d agents after delete keeping disk", n)
	}
	if btrfs.IsMounted(ps.pool) {
		t.Fatal("pool still mounted after delete keeping disk")
	}
	if l := loopsUnder(t, ps.dir); len(l) > 0 {
		t.Fatalf("loop devices left: %v", l)
	}
	if _, err := os.Stat(ps.image); err != nil {
		t.Fatalf("pool image gone: %v", err)
	}
	if err := p.Delete(ctx, provider.Ref{Name: name}, true); err != nil {
		t.Fatalf("second delete keeping disk: %v", err)
	}

	// Create of the same name attaches the kept pool.
	again, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if again.State != provider.StateRunning || again.DataDisk != first.DataDisk {
		t.Fatalf("recreated %+v; want running on %s", again, first.DataDisk)
	}
	if b, err := os.ReadFile(data); err != nil || string(b) != "kept" {
		t.Fatalf("data after delete keeping disk: %q, %v", b, err)
	}
	wantState(t, p, name, provider.StateRunning)

	// A full delete of a host whose disk was kept removes the disk too.
	if err := p.Delete(ctx, provider.Ref{Name: name}, true); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, provider.Ref{Name: name}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ps.dir); !os.IsNotExist(err) {
		t.Fatalf("host directory after delete: %v", err)
	}
	if l := loopsUnder(t, ps.dir); len(l) > 0 {
		t.Fatalf("loop devices left: %v", l)
	}
}

// A pool that is not mounted (as after a reboot) is mounted for a resize
// and released again.
func TestResizeUnmountedPool(t *testing.T) {
	needRoot(t)
	ctx := ctxT(t)
	p := newProvider(t, testStateDir(t), "dep1", nil)
	const name = "ch-r1"
	ps := p.paths(name)
	if _, err := p.Create(ctx, provider.CreateSpec{HostID: "r1", Name: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stop(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	if err := btrfs.Unmount(ctx, ps.pool); err != nil {
		t.Fatal(err)
	}
	inst, err := p.ResizeDisk(ctx, provider.Ref{Name: name}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != provider.StateStopped || inst.Meta["disk_gb"] != "5" {
		t.Fatalf("resized %+v", inst)
	}
	if btrfs.IsMounted(ps.pool) {
		t.Fatal("resize left the pool mounted")
	}
	if _, err := p.ResizeDisk(ctx, provider.Ref{Name: name}, 5); err != nil {
		t.Fatalf("repeating a resize: %v", err)
	}
	if _, err := p.Start(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	st := agentStatus(t, ps)
	if st.Storage.TotalBytes <= 4*uint64(gib) {
		t.Fatalf("pool total %d bytes after growing to 5 GiB", st.Storage.TotalBytes)
	}
	if err := p.Delete(ctx, provider.Ref{Name: name}, false); err != nil {
		t.Fatal(err)
	}
}

func TestDirectoryStorage(t *testing.T) {
	ctx := ctxT(t)
	p := newProvider(t, testStateDir(t), "dep1", map[string]string{OptionStorage: "directory"})
	const name = "ch-d1"
	ps := p.paths(name)
	inst, err := p.Create(ctx, provider.CreateSpec{HostID: "d1", Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != provider.StateRunning || inst.Meta["storage"] != "directory" || inst.Meta["storage_note"] == "" || inst.DataDisk != ps.pool {
		t.Fatalf("created %+v", inst)
	}
	if _, err := os.Stat(ps.image); !os.IsNotExist(err) {
		t.Fatalf("pool image exists for directory storage: %v", err)
	}
	if btrfs.IsMounted(ps.pool) {
		t.Fatal("directory pool is a mount")
	}
	st := agentStatus(t, ps)
	if st.Storage.Kind != "directory" || st.Storage.Note != agentapi.DirectoryNote {
		t.Fatalf("agent storage %+v", st.Storage)
	}
	// A directory has no size: resizing only records the number.
	if inst, err := p.ResizeDisk(ctx, provider.Ref{Name: name}, 8); err != nil || inst.Meta["disk_gb"] != "8" {
		t.Fatalf("resize of a directory pool: %v, %v", inst.Meta, err)
	}
	if _, err := p.ResizeDisk(ctx, provider.Ref{Name: name}, 5); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("shrinking a directory pool: %v", err)
	}
	if err := os.WriteFile(filepath.Join(ps.pool, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stop(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	wantState(t, p, name, provider.StateStopped)
	if _, err := p.Start(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ps.pool, "f")); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, provider.Ref{Name: name}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Status(ctx, provider.Ref{Name: name}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("status after delete: %v", err)
	}
	if _, err := os.Stat(ps.dir); !os.IsNotExist(err) {
		t.Fatalf("directory after delete: %v", err)
	}
}

func TestListFiltersByDeployment(t *testing.T) {
	ctx := ctxT(t)
	state := testStateDir(t)
	opts := map[string]string{OptionStorage: "directory"}
	p1 := newProvider(t, state, "dep1", opts)
	p2 := newProvider(t, state, "dep2", opts)
	for _, c := range []struct {
		p    *Provider
		name string
	}{{p1, "ch-a"}, {p1, "ch-b"}, {p2, "ch-c"}} {
		if _, err := c.p.Create(ctx, provider.CreateSpec{HostID: strings.TrimPrefix(c.name, "ch-"), Name: c.name}); err != nil {
			t.Fatal(err)
		}
	}
	names := func(p *Provider) string {
		l, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, i := range l {
			if i.State != provider.StateRunning {
				t.Errorf("%s is %s", i.Name, i.State)
			}
			n = append(n, i.Name)
		}
		return strings.Join(n, ",")
	}
	if got := names(p1); got != "ch-a,ch-b" {
		t.Fatalf("dep1 lists %s", got)
	}
	if got := names(p2); got != "ch-c" {
		t.Fatalf("dep2 lists %s", got)
	}
	// Other deployments' hosts are invisible and untouchable.
	if _, err := p1.Status(ctx, provider.Ref{Name: "ch-c"}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("dep1 sees dep2's host: %v", err)
	}
	if err := p1.Delete(ctx, provider.Ref{Name: "ch-c"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Create(ctx, provider.CreateSpec{HostID: "c", Name: "ch-c"}); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("dep1 creating over dep2's host: %v", err)
	}
	wantState(t, p2, "ch-c", provider.StateRunning)
	for _, c := range []struct {
		p    *Provider
		name string
	}{{p1, "ch-a"}, {p1, "ch-b"}, {p2, "ch-c"}} {
		if err := c.p.Delete(ctx, provider.Ref{Name: c.name}, false); err != nil {
			t.Fatal(err)
		}
	}
}

// An agent that dies at once: Create fails and says why, from agent.log.
func TestAgentFailureShowsLog(t *testing.T) {
	ctx := ctxT(t)
	p := newProvider(t, testStateDir(t), "dep1", map[string]string{OptionStorage: "directory"})
	p.cfg.AgentCommand = []string{"/bin/sh", "-c", "echo the agent broke >&2; exit 3", "sh"}
	_, err := p.Create(ctx, provider.CreateSpec{HostID: "f1", Name: "ch-f1"})
	if err == nil || !strings.Contains(err.Error(), "the agent broke") || !strings.Contains(err.Error(), "ch-f1") {
		t.Fatalf("create with a failing agent: %v", err)
	}
	t.Logf("as expected: %v", err)
	wantState(t, p, "ch-f1", provider.StateStopped)
	if err := p.Delete(ctx, provider.Ref{Name: "ch-f1"}, false); err != nil {
		t.Fatal(err)
	}
}

// An agent that hangs and ignores SIGTERM: pending, then killed by Stop.
func TestHungAgent(t *testing.T) {
	ctx := ctxT(t)
	p := newProvider(t, testStateDir(t), "dep1", map[string]string{OptionStorage: "directory", OptionAgentStartTimeout: "1s"})
	p.stopTimeout = 500 * time.Millisecond
	// The shell keeps "agent --config PATH" in its argv, so it passes as
	// this host's agent; it never opens the socket.
	p.cfg.AgentCommand = []string{"/bin/sh", "-c", `trap "" TERM; while :; do sleep 0.1; done`, "sh"}
	const name = "ch-g1"
	ps := p.paths(name)
	_, err := p.Create(ctx, provider.CreateSpec{HostID: "g1", Name: name})
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("create with a hung agent: %v", err)
	}
	t.Logf("as expected: %v", err)
	wantState(t, p, name, provider.StatePending)
	if _, err := p.Stop(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	wantState(t, p, name, provider.StateStopped)
	if n := agentsWithConfig(t, ps.config); n != 0 {
		t.Fatalf("%d hung agents left after stop", n)
	}
}

func TestRefs(t *testing.T) {
	p := newProvider(t, t.TempDir(), "dep1", nil)
	ctx := context.Background()
	if _, err := p.Status(ctx, provider.Ref{Name: "../etc"}); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("status of a path name: %v", err)
	}
	if _, err := p.Status(ctx, provider.Ref{Name: "a" + strings.Repeat("b", 63)}); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("status of a 64-character name: %v", err)
	}
	if _, err := p.Status(ctx, provider.Ref{HostID: "zz"}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("status of a missing host: %v", err)
	}
	var pe *provider.Error
	if _, err := p.Start(ctx, provider.Ref{Name: "ch-zz"}); !errors.As(err, &pe) || pe.Kind != errkind.NotFound {
		t.Fatalf("start of a missing host: %v", err)
	}
}

// Concurrent Creates of one name (a CLI and a server, or a retry racing
// the first attempt) make one host with one agent.
func TestConcurrentCreate(t *testing.T) {
	ctx := ctxT(t)
	p := newProvider(t, testStateDir(t), "dep1", map[string]string{OptionStorage: "directory"})
	const name = "ch-cc"
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			_, err := p.Create(ctx, provider.CreateSpec{HostID: "cc", Name: name})
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := agentsWithConfig(t, p.paths(name).config); n != 1 {
		t.Fatalf("%d agents after concurrent creates, want 1", n)
	}
	if err := p.Delete(ctx, provider.Ref{Name: name}, false); err != nil {
		t.Fatal(err)
	}
}

// A worker killed between launching an agent and writing its pid file
// leaves an agent no pid file names. The next start adopts it if it
// answers and replaces it if it does not, and stop kills it: never two
// agents for one host.
func TestAgentWithoutPidFile(t *testing.T) {
	ctx := ctxT(t)
	// The default start timeout: the deaf agent is waited for that long,
	// and its successor must answer within it on a loaded machine.
	p := newProvider(t, testStateDir(t), "dep1", map[string]string{OptionStorage: "directory"})
	const name = "ch-o1"
	ps := p.paths(name)
	if _, err := p.Create(ctx, provider.CreateSpec{HostID: "o1", Name: name}); err != nil {
		t.Fatal(err)
	}

	// Still starting: stopped, it does not answer until the start has
	// taken it on (written its pid file).
	orphan := agentPID(t, ps)
	if err := syscall.Kill(orphan, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ps.pid); err != nil {
		t.Fatal(err)
	}
	adopted := make(chan int, 1)
	go func() {
		defer syscall.Kill(orphan, syscall.SIGCONT)
		for ctx.Err() == nil {
			if pid, _, err := readPidFile(ps.pid); err == nil {
				adopted <- pid
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if _, err := p.Start(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	if pid := <-adopted; pid != orphan {
		t.Fatalf("start launched agent %d next to agent %d", pid, orphan)
	}
	if n := agentsWithConfig(t, ps.config); n != 1 {
		t.Fatalf("%d agents after start, want 1", n)
	}
	if st := agentStatus(t, ps); st.PID != orphan {
		t.Fatalf("agent %d answers, want %d", st.PID, orphan)
	}

	// Deaf: its socket is gone, so it never answers; start replaces it.
	if err := os.Remove(ps.pid); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ps.socket); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Start(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	if n := agentsWithConfig(t, ps.config); n != 1 {
		t.Fatalf("%d agents after start, want 1", n)
	}
	if st := agentStatus(t, ps); st.PID == orphan || st.PID != agentPID(t, ps) {
		t.Fatalf("agent %d answers, pid file says %d, the deaf one was %d", st.PID, agentPID(t, ps), orphan)
	}

	// KillAgents (a harness's crash, or its clean-up) finds it without
	// its pid file too; a start then brings up a new one.
	if err := os.Remove(ps.pid); err != nil {
		t.Fatal(err)
	}
	if err := KillAgents(ctx, ps.dir); err != nil {
		t.Fatal(err)
	}
	if n := agentsWithConfig(t, ps.config); n != 0 {
		t.Fatalf("%d agents after KillAgents, want 0", n)
	}
	if _, err := p.Start(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}

	// Stop and delete find it without its pid file too.
	if err := os.Remove(ps.pid); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ps.socket); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, provider.Ref{Name: name}, false); err != nil {
		t.Fatal(err)
	}
	if n := agentsWithConfig(t, ps.config); n != 0 {
		t.Fatalf("%d agents after delete, want 0", n)
	}
}

// A killed agent's commands run on by themselves (a `podman run` still
// making its container, a btrfs command holding the pool). The next agent
// starts only once they have ended, so that it finds what they did:
// otherwise its stop would miss a container made after it listed them.
func TestStartWaitsForKilledAgentsCommands(t *testing.T) {
	ctx := ctxT(t)
	p := newProvider(t, testStateDir(t), "dep1", map[string]string{OptionStorage: "directory"})
	const name = "ch-k1"
	ps := p.paths(name)
	if _, err := p.Create(ctx, provider.CreateSpec{HostID: "k1", Name: name}); err != nil {
		t.Fatal(err)
	}
	if err := KillAgents(ctx, ps.dir); err != nil {
		t.Fatal(err)
	}
	// In place of the killed agent, named by the pid file: a session
	// leader whose command outlives it and leaves a mark when it ends.
	mark := filepath.Join(t.TempDir(), "ended")
	leader := exec.Command("sh", "-c", `(sleep 3; touch "$1") & exec sleep 600`, "sh", mark)
	leader.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leader.Process.Kill(); leader.Wait() }) //nolint:errcheck // ended already, or now
	pid := leader.Process.Pid
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		// exec comes after the fork: the command runs once it is sleep.
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(b) == "sleep\x00600\x00" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stand-in agent did not start its command")
		}
	}
	st, err := readProcStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := writePidFile(ps.pid, pid, st.startTime); err != nil {
		t.Fatal(err)
	}
	leader.Process.Kill()
	leader.Wait() //nolint:errcheck // killed

	if _, err := p.Start(ctx, provider.Ref{Name: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatal("the host's new agent started while its killed agent's command still ran")
	}
	wantState(t, p, name, provider.StateRunning)
	if err := p.Delete(ctx, provider.Ref{Name: name}, false); err != nil {
		t.Fatal(err)
	}
}
