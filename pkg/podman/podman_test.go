package podman_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
)

func TestMain(m *testing.M) { os.Exit(podmantest.Main(m)) }

func TestRunSpecArgs(t *testing.T) {
	s := podman.RunSpec{
		Name: "p1", Image: "img", Hostname: "h", Labels: map[string]string{"b": "2", "a": "1"},
		MemoryBytes: 1 << 30, CPUs: 1.5, PidsLimit: 100, User: "1000:1000", Workdir: "/home/user",
		Mounts:  []podman.Mount{{Source: "/pool/projects/x", Target: "/home/user"}, {Source: "/pool/snapshots/x", Target: "/home/user/.snapshots", ReadOnly: true}},
		GPUs:    true,
		Command: []string{"sleep", "1"},
	}
	args, err := s.Args()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(args, " ")
	for _, want := range []string{
		"run -d --name p1 --hostname h --label a=1 --label b=2",
		"--memory 1073741824 --memory-swap 1073741824", "--cpus 1.5", "--pids-limit 100",
		"--mount type=bind,source=/pool/projects/x,target=/home/user --mount type=bind,source=/pool/snapshots/x,target=/home/user/.snapshots,readonly=true",
		"--user 1000:1000", "--device nvidia.com/gpu=all", "img sleep 1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
	bad := s
	bad.Mounts = []podman.Mount{{Source: "/a,b", Target: "/x"}}
	if _, err := bad.Args(); err == nil {
		t.Error("a mount source with a comma was accepted")
	}
	if _, err := (podman.RunSpec{Name: "x"}).Args(); err == nil {
		t.Error("a spec without an image was accepted")
	}
}

func TestBuildSpecNormalize(t *testing.T) {
	s, err := podman.BuildSpec{Include: []string{"procps,less", "less", " curl"}}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if s.Suite != "bookworm" || s.Variant != "minbase" || strings.Join(s.Include, ",") != "curl,less,procps" {
		t.Fatalf("normalized = %+v", s)
	}
	if _, err := (podman.BuildSpec{Suite: "b" + strings.Repeat("x", 31), Include: []string{"p" + strings.Repeat("x", 99)}}).Normalize(); err != nil {
		t.Fatalf("a 32-character suite and a 100-character package: %v", err)
	}
	same, _ := podman.BuildSpec{Include: []string{"less", "curl", "procps"}}.Normalize()
	if s.Key() != same.Key() {
		t.Fatal("the same packages in another order make another cache key")
	}
	for _, bad := range []podman.BuildSpec{
		{Suite: "bookworm; rm -rf /"}, {Variant: "--foo"}, {Include: []string{"-oAPT::x"}}, {Mirror: "ftp://x y"},
		{Suite: "b"}, {Suite: "b" + strings.Repeat("x", 32)}, {Include: []string{"p" + strings.Repeat("x", 100)}},
	} {
		if _, err := bad.Normalize(); err == nil {
			t.Errorf("Normalize(%+v) accepted", bad)
		}
	}
}

func TestGPUPassthrough(t *testing.T) {
	dev, cdi := t.TempDir(), t.TempDir()
	if ok, n, err := podman.GPUPassthrough(dev, []string{cdi}); ok || n != 0 || err != nil {
		t.Fatalf("no GPUs: %v %d %v", ok, n, err)
	}
	for _, name := range []string{"nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"} {
		os.WriteFile(filepath.Join(dev, name), nil, 0o600)
	}
	if _, n, err := podman.GPUPassthrough(dev, []string{cdi}); n != 2 || !errors.Is(err, podman.ErrNoCDI) {
		t.Fatalf("GPUs without CDI: %d %v", n, err)
	}
	os.WriteFile(filepath.Join(cdi, "nvidia.yaml"), []byte("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n"), 0o644)
	if ok, n, err := podman.GPUPassthrough(dev, []string{cdi}); !ok || n != 2 || err != nil {
		t.Fatalf("GPUs with CDI: %v %d %v", ok, n, err)
	}
}

// ctx ends a little before the test binary's own deadline (go test
// -timeout), so that a hung podman fails the test with its output rather
// than the whole package with a goroutine dump; a fixed cap would instead
// fail slow but healthy work on a loaded machine (an mmdebstrap build took
// over 5 minutes at load 19).
func ctx(t *testing.T) context.Context {
	// Not t.Context(): cleanups call ctx too, after t.Context is cancelled.
	deadline, ok := t.Deadline()
	if !ok {
		return context.Background()
	}
	c, cancel := context.WithDeadline(context.Background(), deadline.Add(-30*time.Second))
	t.Cleanup(cancel)
	return c
}

// startLimited starts a container of the test image with small limits.
func startLimited(t *testing.T, e *podmantest.Env) podman.Container {
	t.Helper()
	label := uuid.NewString()
	e.RemoveContainers(t, podman.LabelProject+"="+label)
	name := "cocalc-test-" + label[:8]
	id, err := e.Podman.Start(ctx(t), podman.RunSpec{
		Name: name, Image: e.Image, Hostname: "limited",
		Labels:      map[string]string{podman.LabelProject: label},
		MemoryBytes: 64 << 20, CPUs: 0.5, PidsLimit: 30, User: "1000:1000",
		Command: []string{"sleep", "infinity"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.Podman.List(ctx(t), podman.LabelProject+"="+label)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].ID != id || !cs[0].Running() || cs[0].Name != name || cs[0].PID <= 0 {
		t.Fatalf("list by label = %+v; want the one running container %s", cs, id)
	}
	return cs[0]
}

func execIn(t *testing.T, e *podmantest.Env, c podman.Container, script string) (string, int) {
	t.Helper()
	cmd := e.Podman.Command(ctx(t), podman.ExecArgs(c.Name, podman.ExecOptions{}, []string{"sh", "-c", script})...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

func TestMemoryLimitOOMKills(t *testing.T) {
	e := podmantest.Shared(t)
	c := startLimited(t, e)
	before, err := podman.OOMKills(c.PID)
	if err != nil {
		t.Fatal(err)
	}
	// tail must hold its whole input in memory (there is no newline in
	// it): 256 MiB cannot fit under the 64 MiB limit.
	out, code := execIn(t, e, c, "head -c 256m /dev/zero | tail > /dev/null")
	if code != 137 {
		t.Fatalf("memory hog exited %d (%q); want 137 (SIGKILL by the OOM killer)", code, out)
	}
	after, err := podman.OOMKills(c.PID)
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("oom_kill count %d -> %d; the kill was not the OOM killer's", before, after)
	}
	// The container itself survives its process being killed.
	if out, code := execIn(t, e, c, "echo alive"); code != 0 || strings.TrimSpace(out) != "alive" {
		t.Fatalf("after OOM: %q %d", out, code)
	}
}

func TestPidsAndIdentity(t *testing.T) {
	e := podmantest.Shared(t)
	c := startLimited(t, e)
	out, code := execIn(t, e, c, "id -u; hostname; ulimit -n")
	if code != 0 || strings.Fields(out)[0] != "1000" || strings.Fields(out)[1] != "limited" {
		t.Fatalf("identity = %q (%d)", out, code)
	}
	// 60 sleeping processes cannot exist under a limit of 30.
	out, code = execIn(t, e, c, "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done 2>&1; wait")
	if code == 0 && !strings.Contains(out, "Resource temporarily unavailable") && !strings.Contains(out, "fork") {
		t.Fatalf("60 processes under --pids-limit 30: %q (%d)", out, code)
	}
	if n, err := podman.CPUUsage(c.PID); err != nil || n <= 0 {
		t.Fatalf("cpu usage = %v, %v", n, err)
	}
	if err := e.Podman.Remove(ctx(t), c.Name, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Podman.Get(ctx(t), c.Name); !errors.Is(err, podman.ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
	if err := e.Podman.Remove(ctx(t), c.Name, 0); err != nil {
		t.Fatalf("removing a missing container: %v", err)
	}
}

func TestImages(t *testing.T) {
	e := podmantest.Shared(t)
	if ok, err := e.Podman.ImageExists(ctx(t), e.Image); err != nil || !ok {
		t.Fatalf("ImageExists(test image) = %v, %v", ok, err)
	}
	if ok, err := e.Podman.ImageExists(ctx(t), "localhost/no-such-image:1"); err != nil || ok {
		t.Fatalf("ImageExists(missing) = %v, %v", ok, err)
	}
	_, err := e.Podman.Start(ctx(t), podman.RunSpec{Name: "cocalc-test-noimage", Image: "localhost/no-such-image:1", Command: []string{"true"}})
	if err == nil {
		e.Podman.Remove(ctx(t), "cocalc-test-noimage", 0)
		t.Fatal("started a container of a missing image")
	}
}

// A real build from Debian packages into a fresh cache: what `image
// build` does on an air-gapped host with a Debian mirror.
func TestBuildImageFromDebianPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a root filesystem with mmdebstrap (about a minute)")
	}
	e := podmantest.Shared(t)
	if _, err := podman.Bootstrapper(); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	name := "localhost/cocalc-build-test-" + uuid.NewString()[:8]
	t.Cleanup(func() { e.Podman.Run(context.Background(), "rmi", "-f", name) }) //nolint:errcheck // best effort: the image may not have been made
	var log bytes.Buffer
	spec := podman.BuildSpec{Suite: "bookworm", Variant: "minbase", Include: []string{"less"}}
	cached, err := e.Podman.BuildImage(ctx(t), name, spec, cache, false, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if cached {
		t.Fatal("a fresh cache said cached")
	}
	out, err := e.Podman.Run(ctx(t), "run", "--rm", name, "sh", "-c", "cat /etc/debian_version; command -v less")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "12.") || !strings.Contains(out, "/usr/bin/less") {
		t.Fatalf("built image says %q; want Debian 12 with less", out)
	}
	imageID := func() string {
		t.Helper()
		id, err := e.Podman.Run(ctx(t), "image", "inspect", "--format", "{{.Id}}", name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(id)
	}
	first := imageID()
	// The second build of the same spec comes from the cache, and the
	// image made from that root filesystem is kept, not imported again.
	log.Reset()
	cached, err = e.Podman.BuildImage(ctx(t), name, spec, cache, false, &log)
	if err != nil || !cached {
		t.Fatalf("second build: cached=%v err=%v\n%s", cached, err, log.String())
	}
	if id := imageID(); id != first || !strings.Contains(log.String(), "already made from") {
		t.Fatalf("second build made image %s (first %s); want the first kept:\n%s", id, first, log.String())
	}
	// A root filesystem that changed (rebuilt) is imported again.
	tarballs, _ := filepath.Glob(filepath.Join(cache, "rootfs-*.tar"))
	if len(tarballs) != 1 {
		t.Fatalf("cache holds %v; want one root filesystem", tarballs)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(tarballs[0], later, later); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	if _, err := e.Podman.BuildImage(ctx(t), name, spec, cache, false, &log); err != nil {
		t.Fatalf("third build: %v\n%s", err, log.String())
	}
	if id := imageID(); id == first {
		t.Fatalf("a changed root filesystem was not imported again:\n%s", log.String())
	}
}

// Without a containers.conf, the probe finds a runtime, cgroup manager
// and ulimits that run a project container on this machine (whose hard
// RLIMIT_NOFILE may be below podman's default), and containers started
// with them get the clamped limits.
func TestProbeFindsWorkingSettings(t *testing.T) {
	e := podmantest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if rt := e.Podman.Probe(ctx); rt.Source != "containers_conf" || rt.Runtime != "" || rt.Ulimits != nil {
		t.Fatalf("with a containers.conf the probe decides nothing; got %+v", rt)
	}
	cfg := e.Config
	cfg.ContainersConf = ""
	p, err := podman.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt := p.Probe(ctx)
	if rt.Error != "" || rt.Source != "probe" {
		t.Fatalf("probe: %+v", rt)
	}
	want, err := podman.ClampedUlimits()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rt.Ulimits, " ") != strings.Join(want, " ") {
		t.Fatalf("ulimits %v, want %v", rt.Ulimits, want)
	}
	p.Use(rt)
	name := "probe-" + uuid.NewString()[:8]
	e.RemoveContainers(t, "probe-test="+name)
	if _, err := p.Start(ctx, podman.RunSpec{Name: name, Image: e.Image, Labels: map[string]string{"probe-test": name},
		MemoryBytes: 64 << 20, CPUs: 0.5, PidsLimit: 50, Command: []string{"sleep", "300"}}); err != nil {
		t.Fatalf("start with the probed settings: %v", err)
	}
	out, err := p.Run(ctx, "exec", name, "sh", "-c", "ulimit -Hn")
	if err != nil {
		t.Fatal(err)
	}
	nofile := want[0][strings.LastIndexByte(want[0], ':')+1:]
	if strings.TrimSpace(out) != nofile {
		t.Fatalf("hard nofile in the container %q, want %s (from %s)", strings.TrimSpace(out), nofile, want[0])
	}
}

// Failures that repeat on every attempt are told apart from the rest, by
// podman's and the OCI runtimes' own messages (as podman 4.3 and runc
// print them).
func TestDiagnose(t *testing.T) {
	for _, c := range []struct{ msg, problem string }{
		{"runc: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied", podman.ProblemPermission},
		{"crun: opening file `memory.max` for writing: Permission denied: OCI permission denied", podman.ProblemPermission},
		{"range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available", podman.ProblemLimits},
		{"localhost/nope: image not known", podman.ProblemImage},
		{"runc: runc create failed: unable to start container process: exec: \"python3\": executable file not found in $PATH: OCI runtime attempted to invoke a command that was not found", podman.ProblemImage},
		{"cannot connect to the Podman socket", ""},
	} {
		d, ok := podman.Diagnose(fmt.Errorf("start: %w", &podman.Error{Args: []string{"run"}, Msg: c.msg}))
		if ok != (c.problem != "") || d.Problem != c.problem {
			t.Errorf("%q: got %+v %v, want problem %q", c.msg, d, ok, c.problem)
		}
		if ok && d.Fix == "" {
			t.Errorf("%q: no fix named", c.msg)
		}
	}
}

// A start whose caller gives up half way (the request cancelled) leaves
// no network namespace behind once its container is removed. podman 4.3
// signalled while it sets a container up leaks the namespace and its
// address for good: before Start ran to its end, 6-7 of these 21 starts
// did (by hand, those cancelled 60-120 ms in).
func TestCancelledStartLeavesNoNetworkNamespace(t *testing.T) {
	e := podmantest.Shared(t)
	before, err := podmantest.NetworkNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	var startErrs []error
	for i := range 21 {
		name := fmt.Sprintf("cocalc-test-cancel-%d", i)
		c, cancel := context.WithTimeout(ctx(t), time.Duration(i)*10*time.Millisecond)
		// The start runs to its end: it makes the container.
		if _, err := e.Podman.Start(c, podman.RunSpec{Name: name, Image: e.Image, Command: []string{"sleep", "600"}}); err != nil {
			startErrs = append(startErrs, fmt.Errorf("start cancelled after %d ms: %w", i*10, err))
		}
		cancel()
		if err := e.Podman.Remove(ctx(t), name, 0); err != nil {
			t.Fatal(err)
		}
	}
	left, err := podmantest.LeftNetworkNamespaces(before, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		podmantest.RemoveNetworkNamespaces(left)
		t.Fatalf("cancelled starts left network namespaces %v (deleted now)", left)
	}
	if err := errors.Join(startErrs...); err != nil {
		t.Fatal(err)
	}
}
