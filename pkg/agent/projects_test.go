package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
)

// agentConfigEnv makes the test binary run the agent instead of the tests,
// so a test can kill a real agent process and start another.
const agentConfigEnv = "COCALC_AGENT_TEST_CONFIG"

func TestMain(m *testing.M) {
	if code, ok := ingressTestMain(); ok {
		os.Exit(code)
	}
	if cfg := os.Getenv(agentConfigEnv); cfg != "" {
		SFTPHelper = []string{os.Args[0], sftpHelperArg}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := Main(ctx, cfg)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(podmantest.Main(m))
}

// host is a real agent process on a btrfs pool with the test podman.
type host struct {
	t      testing.TB
	cfg    agentapi.Config
	path   string
	client *agentapi.Client
	proc   *exec.Cmd
	exited chan error
	env    *podmantest.Env
}

func newHost(t testing.TB, tweak func(*agentapi.Config)) *host {
	t.Helper()
	pool := storagetest.BtrfsPool(t)
	env := podmantest.Shared(t)
	hostID := uuid.NewString()
	// Registered after the pool, so it runs before the pool is released.
	env.RemoveContainers(t, podman.LabelHost+"="+hostID)
	dir, err := os.MkdirTemp("", "agt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := agentapi.Config{
		HostID: hostID, SocketPath: filepath.Join(dir, "a.sock"), PoolPath: pool,
		StorageKind: agentapi.StorageBtrfs, LogPath: filepath.Join(dir, "agent.log"),
		Podman: env.Config, ImageCacheDir: podmantest.CacheDir,
		IdleCheckInterval: "250ms", SnapshotInterval: "0",
	}
	if tweak != nil {
		tweak(&cfg)
	}
	path := filepath.Join(dir, "agent.json")
	if err := agentapi.WriteConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, cfg: cfg, path: path, client: agentapi.NewClient(cfg.SocketPath), env: env}
	t.Cleanup(func() {
		h.kill()
		if t.Failed() {
			b, _ := os.ReadFile(cfg.LogPath)
			t.Logf("agent log:\n%s", b)
		}
	})
	h.start()
	return h
}

// start runs an agent process and waits until it answers.
func (h *host) start() {
	h.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentConfigEnv+"="+h.path)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.proc, h.exited = cmd, make(chan error, 1)
	go func() { h.exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := h.client.Status(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case err := <-h.exited:
			h.t.Fatalf("agent exited before answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("agent did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill SIGKILLs the agent, as a crash would.
func (h *host) kill() {
	if h.proc == nil {
		return
	}
	h.proc.Process.Kill()
	<-h.exited
	h.proc = nil
}

func tctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

const mib = int64(1) << 20

// newProject creates and starts a project.
func (h *host) newProject(limits agentapi.Limits, idle int64) string {
	h.t.Helper()
	id := uuid.NewString()
	ctx := tctx(h.t)
	if _, err := h.client.CreateProject(ctx, id, agentapi.CreateProjectRequest{DiskBytes: limits.DiskBytes}); err != nil {
		h.t.Fatal(err)
	}
	st, err := h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: h.env.Image, Limits: limits, IdleTimeoutSeconds: idle})
	if err != nil {
		h.t.Fatal(err)
	}
	if st.State != agentapi.ProjectRunning || st.ContainerID == "" {
		h.t.Fatalf("started project = %+v", st)
	}
	return id
}

// run execs a shell script in project id and returns stdout, stderr and
// the exit code.
func (h *host) run(id, script string, stdin ...string) (string, string, int, error) {
	var out, errOut bytes.Buffer
	req := agentapi.ExecRequest{Command: []string{"sh", "-c", script}}
	eio := agentapi.ExecIO{Stdout: &out, Stderr: &errOut}
	if len(stdin) > 0 {
		req.Stdin = true
		eio.Stdin = strings.NewReader(stdin[0])
	}
	code, err := h.client.Exec(tctx(h.t), id, req, eio)
	return out.String(), errOut.String(), code, err
}

func (h *host) mustRun(id, script string) string {
	h.t.Helper()
	out, errOut, code, err := h.run(id, script)
	if err != nil || code != 0 {
		h.t.Fatalf("%q: exit %d, err %v, stderr %q", script, code, err, errOut)
	}
	return out
}

func TestProjectLimitsAndIsolation(t *testing.T) {
	h := newHost(t, nil)
	id := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib, CPUs: 0.5, PidsLimit: 64, DiskBytes: 48 * mib}, 0)

	out := h.mustRun(id, "id -u; hostname; pwd; test -d /scratch && echo scratch; test -d ~/.snapshots && echo snapshots; echo $COCALC_PROJECT_ID")
	want := fmt.Sprintf("1000\nproject-%s\n/home/user\nscratch\nsnapshots\n%s\n", id[:8], id)
	if out != want {
		t.Fatalf("inside the project:\n%s\nwant:\n%s", out, want)
	}
	// stdout and stderr arrive separately; the exit code is the command's.
	out, errOut, code, err := h.run(id, "echo to-out; echo to-err >&2; exit 7")
	if err != nil || code != 7 || out != "to-out\n" || errOut != "to-err\n" {
		t.Fatalf("exec = %q %q %d %v", out, errOut, code, err)
	}
	// Input reaches the command.
	if out, _, code, err := h.run(id, "tr a-z A-Z", "hello\n"); err != nil || code != 0 || out != "HELLO\n" {
		t.Fatalf("stdin: %q %d %v", out, code, err)
	}
	// A command that does not exist: podman's 127.
	if _, _, code, err := h.run(id, "exec no-such-command"); err != nil || code != 127 {
		t.Fatalf("missing command: %d %v", code, err)
	}

	// Memory: the hog is OOM-killed, and the agent reports it.
	_, _, code, err = h.run(id, "head -c 256m /dev/zero | tail > /dev/null")
	if err != nil || code != 137 {
		t.Fatalf("memory hog: exit %d, %v; want 137", code, err)
	}
	st, err := h.client.Project(tctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.OOMKills < 1 || st.Limits.MemoryBytes != 64*mib {
		t.Fatalf("status after OOM = %+v", st)
	}

	// Disk: writes past the quota fail with "Disk quota exceeded".
	_, errOut, code, err = h.run(id, "head -c 80m /dev/urandom > ~/big")
	if err != nil || code == 0 || !strings.Contains(errOut, "Disk quota exceeded") {
		t.Fatalf("write past the quota: exit %d, %v, stderr %q", code, err, errOut)
	}
	h.mustRun(id, "rm -f ~/big")
	// Scratch has its own limit of the same size.
	_, errOut, code, _ = h.run(id, "head -c 80m /dev/urandom > /scratch/big")
	if code == 0 || !strings.Contains(errOut, "Disk quota exceeded") {
		t.Fatalf("scratch past its limit: exit %d, stderr %q", code, errOut)
	}

	// The project cannot write to its snapshots.
	if _, err := h.client.CreateSnapshot(tctx(t), id, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, _, code, _ := h.run(id, "touch ~/.snapshots/s1/x"); code == 0 {
		t.Fatal("the project wrote into its snapshot")
	}
}

func TestSnapshotChangeRestoreInProject(t *testing.T) {
	h := newHost(t, nil)
	id := h.newProject(agentapi.Limits{MemoryBytes: 128 * mib, DiskBytes: 256 * mib}, 0)
	ctx := tctx(t)
	h.mustRun(id, "mkdir -p work && echo version-1 > work/a.txt && echo keep > b.txt")
	if _, err := h.client.CreateSnapshot(ctx, id, "before"); err != nil {
		t.Fatal(err)
	}
	// The snapshot appears inside the running project at once.
	if out := h.mustRun(id, "cat ~/.snapshots/before/work/a.txt"); out != "version-1\n" {
		t.Fatalf("snapshot inside the project reads %q", out)
	}
	h.mustRun(id, "echo version-2 > work/a.txt && rm b.txt")
	res, err := h.client.Restore(ctx, id, agentapi.RestoreRequest{Snapshot: "before", Path: "work/a.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.SafetySnapshot, "pre-restore-") {
		t.Fatalf("restore result = %+v", res)
	}
	if out := h.mustRun(id, "cat work/a.txt; test -e b.txt || echo b-gone"); out != "version-1\nb-gone\n" {
		t.Fatalf("after restoring one file: %q", out)
	}
	if _, err := h.client.Restore(ctx, id, agentapi.RestoreRequest{Snapshot: "before"}); err != nil {
		t.Fatal(err)
	}
	if out := h.mustRun(id, "cat b.txt; stat -c %u b.txt"); out != "keep\n1000\n" {
		t.Fatalf("after restoring the home: %q", out)
	}
	snaps, err := h.client.Snapshots(ctx, id)
	if err != nil || len(snaps) != 3 {
		t.Fatalf("snapshots = %+v, %v; want before and two pre-restore", snaps, err)
	}
	// Bad input gets codes the control plane can act on.
	_, err = h.client.Restore(ctx, id, agentapi.RestoreRequest{Snapshot: "before", Path: "../../etc/passwd"})
	if !agentapi.IsCode(err, agentapi.CodeInvalid) {
		t.Fatalf("restore with a path leaving the home: %v", err)
	}
	_, err = h.client.Restore(ctx, id, agentapi.RestoreRequest{Snapshot: "nope"})
	if !agentapi.IsCode(err, agentapi.CodeNotFound) {
		t.Fatalf("restore from a missing snapshot: %v", err)
	}
	if _, err := h.client.CreateSnapshot(ctx, id, "auto-x"); !agentapi.IsCode(err, agentapi.CodeInvalid) {
		t.Fatalf("snapshot with a reserved name: %v", err)
	}
	if err := h.client.DeleteSnapshot(ctx, id, "before"); err != nil {
		t.Fatal(err)
	}
}

func TestAgentRestartKeepsProjectsRunning(t *testing.T) {
	h := newHost(t, nil)
	id := h.newProject(agentapi.Limits{MemoryBytes: 128 * mib, CPUs: 1, DiskBytes: 128 * mib}, 3600)
	ctx := tctx(t)
	before, err := h.client.Project(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	h.mustRun(id, "sleep 1000 > /dev/null 2>&1 & echo started")
	h.kill()
	// With the agent dead the container runs on.
	cs, err := h.env.Podman.List(ctx, podman.LabelProject+"="+id)
	if err != nil || len(cs) != 1 || !cs[0].Running() {
		t.Fatalf("container after the agent was killed: %+v, %v", cs, err)
	}
	h.start()
	after, err := h.client.Project(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if after.State != agentapi.ProjectRunning || after.ContainerID != before.ContainerID ||
		!after.StartedAt.Equal(*before.StartedAt) || after.Limits != before.Limits || after.IdleTimeoutSeconds != 3600 {
		t.Fatalf("after restart: %+v\nbefore: %+v", after, before)
	}
	list, err := h.client.Projects(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].State != agentapi.ProjectRunning {
		t.Fatalf("list after restart = %+v, %v", list, err)
	}
	// The processes inside survived too.
	if out := h.mustRun(id, "pgrep -c -x sleep"); strings.TrimSpace(out) != "2" {
		t.Fatalf("processes after the restart: %q", out)
	}
}

func TestIdleProjectsAreStopped(t *testing.T) {
	h := newHost(t, nil)
	idle := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib}, 1)
	busy := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib}, 2)
	// A session keeps busy active for as long as it is open (longer than
	// its idle timeout).
	sessionDone := make(chan error, 1)
	go func() {
		_, _, code, err := h.run(busy, "sleep 6")
		if err == nil && code != 0 {
			err = fmt.Errorf("exit %d", code)
		}
		sessionDone <- err
	}()
	waitState(t, h, idle, agentapi.ProjectStopped, 20*time.Second)
	st, _ := h.client.Project(tctx(t), idle)
	if st.StoppedReason != "idle" {
		t.Fatalf("stopped project = %+v; want reason idle", st)
	}
	if st, _ := h.client.Project(tctx(t), busy); st.State != agentapi.ProjectRunning {
		t.Fatalf("a project with an open session was stopped: %+v", st)
	}
	if err := <-sessionDone; err != nil {
		t.Fatal(err)
	}
	// Once the session ended it goes idle as well.
	waitState(t, h, busy, agentapi.ProjectStopped, 20*time.Second)
	// exec on a stopped project is refused with a hint.
	_, _, _, err := h.run(idle, "true")
	if !agentapi.IsCode(err, agentapi.CodeNotRunning) || !strings.Contains(err.Error(), "cocalc-hosts project start "+idle) {
		t.Fatalf("exec on a stopped project: %v", err)
	}
}

func waitState(t *testing.T, h *host, id, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := h.client.Project(tctx(t), id)
		if err == nil && st.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("project %s is %s (%v) after %v; want %s", id, st.State, err, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHostStopsItselfWhenIdle(t *testing.T) {
	h := newHost(t, func(c *agentapi.Config) { c.StopProjectsOnExit = true })
	id := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib}, 0) // never idle-stopped by itself
	p, err := h.client.SetIdle(tctx(t), agentapi.IdlePolicy{StopAfterSeconds: 1})
	if err != nil || p.StopAfterSeconds != 1 || p.StopsAt == nil {
		t.Fatalf("SetIdle = %+v, %v", p, err)
	}
	select {
	case err := <-h.exited:
		h.proc = nil
		if err != nil {
			t.Fatalf("agent exited with %v; want a clean exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("idle host did not stop itself")
	}
	cs, err := h.env.Podman.List(tctx(t), podman.LabelProject+"="+id)
	if err != nil || len(cs) != 0 {
		t.Fatalf("projects left running by the idle stop: %+v, %v", cs, err)
	}
	// The policy is kept: a new agent reports it.
	h.start()
	if p, err := h.client.Idle(tctx(t)); err != nil || p.StopAfterSeconds != 1 {
		t.Fatalf("policy after restart = %+v, %v", p, err)
	}
	h.client.SetIdle(tctx(t), agentapi.IdlePolicy{StopAfterSeconds: 0}) //nolint:errcheck
}

func TestTerminalSession(t *testing.T) {
	h := newHost(t, nil)
	id := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib}, 0)
	inR, inW := io.Pipe()
	var out syncBuffer
	resize := make(chan agentapi.WindowSize, 1)
	done := make(chan struct{})
	var code int
	var err error
	go func() {
		defer close(done)
		code, err = h.client.Exec(tctx(t), id, agentapi.ExecRequest{Command: []string{"sh"}, TTY: true, Stdin: true, Rows: 30, Cols: 100},
			agentapi.ExecIO{Stdin: inR, Stdout: &out, Resize: resize})
	}()
	fmt.Fprintln(inW, "tty; stty size")
	waitFor(t, &out, "30 100")
	resize <- agentapi.WindowSize{Rows: 40, Cols: 120}
	// The new size reaches the container's terminal asynchronously; ask
	// until it shows.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "40 120") {
		fmt.Fprintln(inW, "stty size")
		if time.Now().After(deadline) {
			t.Fatalf("resize never arrived; output:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintln(inW, "exit 3")
	<-done
	if err != nil || code != 3 {
		t.Fatalf("terminal session ended with %d, %v", code, err)
	}
	if !strings.Contains(out.String(), "/dev/pts/") {
		t.Fatalf("no terminal in the session:\n%s", out.String())
	}
}

type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *syncBuffer) lock() {
	if b.mu == nil {
		b.mu = make(chan struct{}, 1)
	}
	b.mu <- struct{}{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.String()
}

func waitFor(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%q never appeared in:\n%s", s, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestProjectBadInput(t *testing.T) {
	h := newHost(t, nil)
	ctx := tctx(t)
	id := uuid.NewString()
	// Path tricks in the id never reach the pool.
	for _, bad := range []string{"..", "x", "3F1C9A52-8D0B-4C7E-9A61-2B5D7E4F0C13", "..%2F..%2Fetc"} {
		// ".." is cleaned away by the HTTP router (404) before any handler;
		// the others reach the handler and are refused as invalid.
		_, err := h.client.CreateProject(ctx, bad, agentapi.CreateProjectRequest{})
		if err == nil || (bad != ".." && !agentapi.IsCode(err, agentapi.CodeInvalid)) {
			t.Errorf("create %q: %v", bad, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(h.cfg.PoolPath, "projects"))
	if len(entries) != 0 {
		t.Fatalf("bad ids made projects: %v", entries)
	}
	// A raw request with an encoded path trick.
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.cfg.SocketPath)
	}}}
	resp, err := c.Get("http://agent/v1/projects/..%2F..%2Fetc%2Fpasswd")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("encoded path trick: %s", resp.Status)
	}
	// Start without storage.
	_, err = h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: h.env.Image})
	if !agentapi.IsCode(err, agentapi.CodeNotFound) || !strings.Contains(err.Error(), "create it first") {
		t.Fatalf("start without storage: %v", err)
	}
	// An image that is not there (and no pull): nothing is left running.
	if _, err := h.client.CreateProject(ctx, id, agentapi.CreateProjectRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: "localhost/no-such-image:1"})
	if !agentapi.IsCode(err, agentapi.CodeNotFound) || !strings.Contains(err.Error(), "image build") {
		t.Fatalf("start with a missing image: %v", err)
	}
	_, err = h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: "localhost/no-such-image:1", Pull: true})
	if !agentapi.IsCode(err, agentapi.CodeNotFound) || !strings.Contains(err.Error(), "cannot be pulled") {
		t.Fatalf("start with an image that cannot be pulled: %v", err)
	}
	// The failed pull is a podman error on the agent's metrics.
	if n := h.metric(t, "cocalc_agent_podman_errors_total", "command", "pull"); n != 1 {
		t.Fatalf("podman pull errors counted: %g, want 1", n)
	}
	_, err = h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: "--privileged"})
	if !agentapi.IsCode(err, agentapi.CodeInvalid) {
		t.Fatalf("start with an option as image: %v", err)
	}
	if st, err := h.client.Project(ctx, id); err != nil || st.State != agentapi.ProjectStopped {
		t.Fatalf("after failed starts: %+v, %v", st, err)
	}
	// exec on a stopped project.
	_, _, _, err = h.run(id, "true")
	if !agentapi.IsCode(err, agentapi.CodeNotRunning) {
		t.Fatalf("exec on a stopped project: %v", err)
	}
	// Delete leaves nothing, and deleting again succeeds.
	if err := h.client.DeleteProject(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err := h.client.Project(ctx, id); err != nil || st.State != agentapi.ProjectAbsent {
		t.Fatalf("after delete: %+v, %v", st, err)
	}
	if err := h.client.DeleteProject(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func TestResourcesAndImages(t *testing.T) {
	h := newHost(t, nil)
	ctx := tctx(t)
	h.newProject(agentapi.Limits{MemoryBytes: 100 * mib, CPUs: 0.5}, 0)
	res, err := h.client.Resources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.MemoryTotalBytes <= 0 || res.CPUs <= 0 || res.RunningProjects != 1 || res.MemoryCommittedBytes != 100*mib ||
		res.CPUsCommitted != 0.5 || !res.Quotas || !res.Snapshots || res.Storage.TotalBytes == 0 {
		t.Fatalf("resources = %+v", res)
	}

	// Two starts at once with room for one more 100 MiB project under the
	// cap: exactly one runs, the other is refused as no room.
	ids := []string{uuid.NewString(), uuid.NewString()}
	errs := make(chan error, len(ids))
	for _, id := range ids {
		if _, err := h.client.CreateProject(ctx, id, agentapi.CreateProjectRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		go func() {
			_, err := h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: h.env.Image,
				Limits: agentapi.Limits{MemoryBytes: 100 * mib}, MemoryCapBytes: 250 * mib})
			errs <- err
		}()
	}
	var refusals []error
	for range ids {
		if err := <-errs; err != nil {
			refusals = append(refusals, err)
		}
	}
	if len(refusals) != 1 || !agentapi.IsCode(refusals[0], agentapi.CodeNoRoom) ||
		!strings.Contains(refusals[0].Error(), "no memory headroom: 200 MiB of 250 MiB is promised to 2 running project(s) and this one needs 100 MiB") {
		t.Fatalf("concurrent starts under a cap: %v", refusals)
	}
	if res, err := h.client.Resources(ctx); err != nil || res.RunningProjects != 2 || res.MemoryCommittedBytes != 200*mib {
		t.Fatalf("after the concurrent starts: %+v %v", res, err)
	}
	// The agent's Prometheus metrics say the same, read at the scrape.
	for name, want := range map[string]float64{"cocalc_agent_projects_running": 2, "cocalc_agent_memory_committed_bytes": float64(200 * mib),
		"cocalc_agent_projects_on_disk": 3, "cocalc_agent_resources_up": 1, "cocalc_agent_cpus_committed": 0.5} {
		if got := h.metric(t, name); got != want {
			t.Errorf("%s = %g, want %g", name, got, want)
		}
	}
	if free, total := h.metric(t, "cocalc_agent_disk_free_bytes"), h.metric(t, "cocalc_agent_disk_total_bytes"); free <= 0 || free > total {
		t.Errorf("disk free %g of %g", free, total)
	}
	if avail, total := h.metric(t, "cocalc_agent_memory_available_bytes"), h.metric(t, "cocalc_agent_memory_total_bytes"); avail <= 0 || avail > total {
		t.Errorf("memory available %g of %g", avail, total)
	}
	if h.metric(t, "cocalc_agent_info", "host_id", h.cfg.HostID) != 1 {
		t.Error("cocalc_agent_info does not name the host")
	}

	if im, err := h.client.Image(ctx, h.env.Image); err != nil || !im.Present {
		t.Fatalf("test image: %+v, %v", im, err)
	}
	if im, err := h.client.Image(ctx, "localhost/nope:1"); err != nil || im.Present {
		t.Fatalf("missing image: %+v, %v", im, err)
	}
	// Building the default spec comes from the shared cache (the test
	// image was made from it), so this is the import path end to end.
	name := "localhost/cocalc-agent-build-" + uuid.NewString()[:8]
	t.Cleanup(func() { h.env.Podman.Run(context.Background(), "rmi", "-f", name) }) //nolint:errcheck // best effort: the image may not have been made
	var lines []string
	cached, err := h.client.BuildImage(ctx, agentapi.BuildImageRequest{Name: name, Include: podman.DefaultBuildSpec.Include}, func(l string) { lines = append(lines, l) })
	if err != nil || !cached {
		t.Fatalf("build = cached %v, %v; output %q", cached, err, lines)
	}
	if im, err := h.client.Image(ctx, name); err != nil || !im.Present {
		t.Fatalf("built image: %+v, %v", im, err)
	}
	_, err = h.client.BuildImage(ctx, agentapi.BuildImageRequest{Name: name, Include: []string{"bad package"}}, nil)
	if !agentapi.IsCode(err, agentapi.CodeInvalid) {
		t.Fatalf("build with a bad package name: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

// CPU use counts as activity: a busy project outlives its idle timeout.
func TestBusyProjectIsNotIdle(t *testing.T) {
	h := newHost(t, nil)
	const timeout = 3 * time.Second
	busy := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib, CPUs: 0.5}, int64(timeout/time.Second))
	// A computation that goes on after the exec session that started it.
	h.mustRun(busy, "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &")
	t0 := time.Now()
	idle := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib}, 1)
	waitState(t, h, idle, agentapi.ProjectStopped, 20*time.Second)
	// Three idle timeouts later the busy one still runs, and its last
	// activity was renewed after it would otherwise have gone idle (not
	// "within the last timeout": a loaded machine samples late).
	for time.Since(t0) < 3*timeout {
		st, err := h.client.Project(tctx(t), busy)
		if err != nil || st.State != agentapi.ProjectRunning {
			t.Fatalf("busy project after %v: %+v, %v", time.Since(t0), st, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	st, err := h.client.Project(tctx(t), busy)
	if err != nil || st.LastActivity == nil || !st.LastActivity.After(t0.Add(timeout)) || st.CPUSeconds < 1 {
		t.Fatalf("busy project: %+v, %v; want activity renewed after %v and CPU time", st, err, t0.Add(timeout))
	}
}

// Active projects get scheduled snapshots; retention keeps the newest
// one of each hour, and snapshots made by hand stay.
func TestScheduledSnapshots(t *testing.T) {
	h := newHost(t, func(c *agentapi.Config) { c.SnapshotInterval = "1s" })
	id := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib, DiskBytes: 64 * mib}, 0)
	ctx := tctx(t)
	if _, err := h.client.CreateSnapshot(ctx, id, "mine"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < 2 {
		h.mustRun(id, "date > last-seen") // activity
		snaps, err := h.client.Snapshots(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var auto []string
		for _, s := range snaps {
			if s.Auto {
				auto = append(auto, s.Name)
			}
		}
		// Hourly retention keeps the newest scheduled snapshot of each
		// hour (the test may run across the turn of an hour).
		hours := map[string]bool{}
		for _, name := range auto {
			hour := name[:len(storage.AutoName(time.Time{}))-len("0405Z")]
			if hours[hour] {
				t.Fatalf("retention kept %v; want only the newest scheduled snapshot of each hour", auto)
			}
			hours[hour] = true
		}
		if n := len(auto); n > 0 && (len(seen) == 0 || seen[len(seen)-1] != auto[n-1]) {
			seen = append(seen, auto[n-1])
		}
		if len(snaps) != len(auto)+1 {
			t.Fatalf("snapshots = %+v; the one made by hand must stay", snaps)
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduled snapshots seen: %v; want two in turn", seen)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// A host whose pool is a plain directory runs projects without snapshots
// or quotas, and says so.
func TestDirectoryPool(t *testing.T) {
	dir := t.TempDir()
	h := newHost(t, func(c *agentapi.Config) {
		c.StorageKind, c.PoolPath = agentapi.StorageDirectory, dir
	})
	ctx := tctx(t)
	id := h.newProject(agentapi.Limits{MemoryBytes: 64 * mib, DiskBytes: 64 * mib}, 0)
	if out := h.mustRun(id, "echo hi > f; cat f; test -d /scratch && echo scratch"); out != "hi\nscratch\n" {
		t.Fatalf("project on a directory pool: %q", out)
	}
	res, err := h.client.Resources(ctx)
	if err != nil || res.Snapshots || res.Quotas || res.Storage.Note != agentapi.DirectoryNote {
		t.Fatalf("resources = %+v, %v", res, err)
	}
	st, err := h.client.Project(ctx, id)
	if err != nil || st.Disk == nil || st.Disk.Note != agentapi.DirectoryNote || st.Disk.QuotaBytes != 0 {
		t.Fatalf("status = %+v, %v", st, err)
	}
	_, err = h.client.CreateSnapshot(ctx, id, "s1")
	if !agentapi.IsCode(err, agentapi.CodeUnsupported) || !strings.Contains(err.Error(), "no snapshots or quotas") {
		t.Fatalf("snapshot on a directory pool: %v", err)
	}
}

// A host with no way to stop itself (no self-stop command, and not a local
// host whose agent exit is the host stopping) refuses an idle policy
// instead of exiting into a restart loop.
func TestIdlePolicyRefusedWhenHostCannotStop(t *testing.T) {
	h := newHost(t, func(c *agentapi.Config) { c.StopProjectsOnExit, c.SelfStopCommand = false, "" })
	_, err := h.client.SetIdle(tctx(t), agentapi.IdlePolicy{StopAfterSeconds: 60})
	if err == nil || !strings.Contains(err.Error(), "cannot be stopped when idle") {
		t.Fatalf("SetIdle on a host that cannot stop: %v", err)
	}
	if p, err := h.client.SetIdle(tctx(t), agentapi.IdlePolicy{StopAfterSeconds: 0}); err != nil || p.StopAfterSeconds != 0 {
		t.Fatalf("turning it off must work: %+v, %v", p, err)
	}
}

// A start asks podman only `run`; what it used to ask first still holds:
// a start of a running project returns that container, one whose container
// exited by itself starts afresh, a changed quota is set, and a container
// that exited by itself does not hold memory headroom.
func TestStartAgain(t *testing.T) {
	h := newHost(t, nil)
	ctx := tctx(t)
	id := h.newProject(agentapi.Limits{MemoryBytes: 100 * mib, DiskBytes: 32 * mib}, 0)
	quota := func(want int64) {
		t.Helper()
		st, err := h.client.Project(ctx, id)
		if err != nil || st.Disk == nil || st.Disk.QuotaBytes != want {
			t.Fatalf("status = %+v, %v; want quota %d", st, err, want)
		}
	}
	quota(32 * mib)
	first, err := h.client.Project(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	start := func(id string, l agentapi.Limits, capBytes int64) (agentapi.ProjectStatus, error) {
		return h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: h.env.Image, Limits: l, MemoryCapBytes: capBytes})
	}

	// Running: the same container, not a second one. (With a cap, so
	// that the agent learns what runs.)
	st, err := start(id, agentapi.Limits{MemoryBytes: 100 * mib, DiskBytes: 32 * mib}, 1<<40)
	if err != nil || st.State != agentapi.ProjectRunning || st.ContainerID != first.ContainerID {
		t.Fatalf("start of a running project = %+v, %v; want container %s", st, err, first.ContainerID)
	}

	// Exited by itself (podman stop, as a crash of its first process
	// would): it holds no headroom, and a start makes a new container.
	if _, err := h.env.Podman.Run(ctx, "stop", "-t", "0", first.ContainerID); err != nil {
		t.Fatal(err)
	}
	other := uuid.NewString()
	if _, err := h.client.CreateProject(ctx, other, agentapi.CreateProjectRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := start(other, agentapi.Limits{MemoryBytes: 100 * mib}, 150*mib); err != nil {
		t.Fatalf("start next to an exited container: %v", err)
	}
	// What the agent knows (no podman command) and what podman says agree.
	for _, get := range []func(context.Context) (agentapi.Resources, error){h.client.KnownResources, h.client.Resources} {
		if res, err := get(ctx); err != nil || res.RunningProjects != 1 || res.RunningMemory[other] != 100*mib {
			t.Fatalf("resources = %+v, %v; want %s running", res, err, other)
		}
	}
	// Now the cap is full: refused, naming what is promised.
	_, err = start(id, agentapi.Limits{MemoryBytes: 100 * mib, DiskBytes: 48 * mib}, 150*mib)
	if !agentapi.IsCode(err, agentapi.CodeNoRoom) || !strings.Contains(err.Error(), "100 MiB of 150 MiB is promised to 1 running project(s)") {
		t.Fatalf("start over the cap: %v", err)
	}
	// The cap as a share of the host's memory: far too small.
	_, err = h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: h.env.Image, Limits: agentapi.Limits{MemoryBytes: 100 * mib}, MemoryOvercommit: 1e-6})
	if !agentapi.IsCode(err, agentapi.CodeNoRoom) {
		t.Fatalf("start over the overcommitted host memory: %v", err)
	}
	st, err = start(id, agentapi.Limits{MemoryBytes: 100 * mib, DiskBytes: 48 * mib}, 0)
	if err != nil || st.State != agentapi.ProjectRunning || st.ContainerID == first.ContainerID {
		t.Fatalf("start after the container exited = %+v, %v", st, err)
	}
	quota(48 * mib)
	h.mustRun(id, "true")

	// A quota changed between a stop and a start is set.
	if _, err := h.client.StopProject(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := start(id, agentapi.Limits{MemoryBytes: 100 * mib, DiskBytes: 40 * mib}, 0); err != nil {
		t.Fatal(err)
	}
	quota(40 * mib)
	// Starts that failed on podman's answers are not counted as podman errors.
	if n := h.metric(t, "cocalc_agent_podman_errors_total", "command", "run"); n != 0 {
		t.Fatalf("podman run errors counted: %g, want 0", n)
	}
}
