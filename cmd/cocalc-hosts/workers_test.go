package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// cluster is a Postgres database plus a config dir pointing the CLI at it,
// shared by the real `cocalc-hosts worker` processes a test starts.
type cluster struct {
	t   *testing.T
	st  *store.SQLStore
	svc *hosts.Service
	env []string
}

func newCluster(t *testing.T, simOptions map[string]string) *cluster {
	url := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	cfg := "db: " + url + "\nproviders:\n  sim:\n"
	for k, v := range simOptions {
		cfg += fmt.Sprintf("    %s: %q\n", k, v)
	}
	if len(simOptions) == 0 {
		cfg += "    latency: 0s\n"
	}
	if err := os.MkdirAll(filepath.Join(dir, "config", "cocalc-hosts"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "cocalc-hosts", "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dep, err := st.Deployment(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p, err := provider.Open("sim", provider.Config{Deployment: dep, Options: simOptions, State: st.ProviderState()})
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_STATE_HOME="+filepath.Join(dir, "state"))
	return &cluster{t: t, st: st, svc: hosts.New(st, oneProvider{p}), env: env}
}

type oneProvider struct{ p provider.Provider }

func (o oneProvider) Get(context.Context, string) (provider.Provider, error) { return o.p, nil }

// worker starts a real `cocalc-hosts worker` process.
func (c *cluster) worker(args ...string) *exec.Cmd {
	cmd := exec.Command("cocalc-hosts", append([]string{"worker"}, args...)...)
	cmd.Env = c.env
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
		if c.t.Failed() {
			c.t.Logf("worker %d output:\n%s", cmd.Process.Pid, out.String())
		}
	})
	return cmd
}

// N worker processes × M actions on one Postgres: every action runs once.
func TestWorkerProcessesRunEachActionOnce(t *testing.T) {
	parallel(t)
	const workers, hostsN = 4, 150
	c := newCluster(t, map[string]string{"latency": "2ms"})
	ctx := context.Background()
	var jobs []string
	for i := range hostsN {
		sub, err := c.svc.Create(ctx, hosts.CreateRequest{Name: fmt.Sprintf("h%03d", i), Owner: "ops", Provider: "sim"})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, sub.Job.ID)
	}
	drain := func() {
		var cmds []*exec.Cmd
		for range workers {
			cmds = append(cmds, c.worker("--drain", "--concurrency", "4"))
		}
		for _, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("worker: %v", err)
			}
		}
	}
	drain()
	hs, _ := c.st.ListHosts(ctx, store.HostFilter{})
	for _, h := range hs {
		sub, err := c.svc.Stop(ctx, h.ID, hosts.StopOptions{})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, sub.Job.ID)
	}
	drain()

	logs, _ := c.st.ListLog(ctx, store.LogFilter{})
	done := map[string]int{}
	for _, e := range logs {
		if e.Status == "done" {
			done[e.JobID]++
		}
	}
	for _, id := range jobs {
		j, _ := c.st.GetJob(ctx, id)
		if j.State != model.JobDone || j.Attempts != 1 || done[id] != 1 {
			t.Errorf("job %s (%s): state %s, attempts %d, done entries %d; want done once", id, j.Action, j.State, j.Attempts, done[id])
		}
	}
	hs, _ = c.st.ListHosts(ctx, store.HostFilter{})
	recs, _ := sim.Records(ctx, c.st.ProviderState())
	for _, h := range hs {
		if h.Status != model.StatusOff {
			t.Errorf("host %s is %s", h.Name, h.Status)
		}
		if r := recs[provider.InstanceName(h.ID)]; r.Creations != 1 {
			t.Errorf("host %s: %d VM creations", h.Name, r.Creations)
		}
	}
	if len(recs) != hostsN || len(jobs) != 2*hostsN {
		t.Fatalf("%d VMs, %d jobs", len(recs), len(jobs))
	}
}

// A worker killed with SIGKILL in the middle of a create: another worker
// takes the job over once the lease expires and finishes it, finding the
// VM the dead worker made instead of making a second one.
func TestKilledWorkerJobIsTakenOver(t *testing.T) {
	parallel(t)
	c := newCluster(t, map[string]string{"boot_time": "3s"})
	ctx := context.Background()
	sub, err := c.svc.Create(ctx, hosts.CreateRequest{Name: "victim", Owner: "ops", Provider: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	first := c.worker("--lease", "2s", "--reconcile-interval", "0")
	name := provider.InstanceName(sub.Host.ID)
	poll(t, "the first worker to create the VM", func() bool {
		recs, _ := sim.Records(ctx, c.st.ProviderState())
		return recs[name].Creations == 1
	})
	j, _ := c.st.GetJob(ctx, sub.Job.ID)
	if j.State != model.JobRunning || j.Attempts != 1 {
		t.Fatalf("before the kill: %+v", j)
	}
	syscall.Kill(-first.Process.Pid, syscall.SIGKILL) //nolint:errcheck
	first.Wait()                                      //nolint:errcheck

	second := c.worker("--drain", "--lease", "2s")
	if err := second.Wait(); err != nil {
		t.Fatal(err)
	}
	j, _ = c.st.GetJob(ctx, sub.Job.ID)
	h, _ := c.st.GetHost(ctx, sub.Host.ID)
	recs, _ := sim.Records(ctx, c.st.ProviderState())
	if j.State != model.JobDone || j.Attempts != 2 {
		t.Fatalf("after takeover: %+v", j)
	}
	if h.Status != model.StatusRunning || h.Runtime.InstanceID != recs[name].ID {
		t.Fatalf("host %s instance %s, sim has %s", h.Status, h.Runtime.InstanceID, recs[name].ID)
	}
	if len(recs) != 1 || recs[name].Creations != 1 {
		t.Fatalf("want exactly one VM, sim has %d records, creations %d", len(recs), recs[name].Creations)
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
