package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// served is a real `cocalc-hosts serve` process started by a test.
type served struct {
	cmd          *exec.Cmd
	api, metrics string // base URLs
	exited       chan struct{}
	mu           sync.Mutex
	log          strings.Builder
}

// serve starts `cocalc-hosts serve` on free loopback ports in its own
// process group; it is killed when the test ends if still running.
func (c *cluster) serve() *served {
	s := &served{exited: make(chan struct{})}
	s.cmd = exec.Command("cocalc-hosts", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	s.cmd.Env = c.env
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // ended already, normally
		<-s.exited
		if c.t.Failed() {
			c.t.Logf("serve %d:\n%s", s.cmd.Process.Pid, s.output())
		}
	})
	urls := make(chan [2]string, 1)
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(stderr)
		reAPI, reMetrics := regexp.MustCompile(`listening on (http://\S+)`), regexp.MustCompile(`metrics on (http://\S+)/metrics`)
		var metrics string
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := reMetrics.FindStringSubmatch(line); m != nil {
				metrics = m[1]
			}
			if m := reAPI.FindStringSubmatch(line); m != nil {
				urls <- [2]string{m[1], metrics}
			}
		}
		s.cmd.Wait() //nolint:errcheck // judged by the test
	}()
	select {
	case u := <-urls:
		s.api, s.metrics = u[0], u[1]
	case <-s.exited:
		c.t.Fatalf("serve exited before listening:\n%s", s.output())
	case <-time.After(time.Minute):
		c.t.Fatal("serve did not listen within a minute")
	}
	return s
}

func (s *served) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// leads scrapes the server's /metrics for cocalc_hosts_leader.
func (s *served) leads(t *testing.T) bool {
	resp, err := http.Get(s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`(?m)^cocalc_hosts_leader 1$`).Match(b)
}

// Two servers on one Postgres, the leader SIGKILLed while it runs jobs:
// the other takes its jobs over once their leases expire and completes
// them, no action runs twice (one successful cloud_vm_log entry each, one
// VM per host), the leader lock moves to the survivor, and a client of
// the survivor keeps receiving events, the dead server's jobs included.
func TestServeKilledLeaderIsTakenOver(t *testing.T) {
	parallel(t)
	c := newCluster(t, map[string]string{"boot_time": "1500ms", "latency": "20ms"})
	ctx := context.Background()
	cfgFile := filepath.Join(envValue(c.env, "XDG_CONFIG_HOME"), "cocalc-hosts", "config.yaml")
	f, err := os.OpenFile(cfgFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A short lease, so that the dead server's jobs are taken over soon.
	if _, err := f.WriteString("worker:\n  lease: 2s\n  concurrency: 2\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// An admin and its key, for following the survivor's events.
	create := exec.Command("cocalc-hosts", "--account", "ops", "account", "create", "ops", "--admin")
	create.Env = c.env
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("account create: %v\n%s", err, out)
	}
	keyCmd := exec.Command("cocalc-hosts", "--account", "ops", "account", "api-key", "create", "--name", "ha", "-o", "json")
	keyCmd.Env = c.env
	out, err := keyCmd.Output()
	var key struct{ Key string }
	if err != nil || json.Unmarshal(out, &key) != nil || key.Key == "" {
		t.Fatalf("api-key create: %v: %s", err, out)
	}

	leader := c.serve()
	poll(t, "the first server to lead", func() bool { return leader.leads(t) })
	survivor := c.serve()
	if survivor.leads(t) {
		t.Fatal("two servers lead")
	}

	// Follow the jobs through the survivor from before the kill.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, survivor.api+"/api/v1/events?topics=jobs", nil)
	req.Header.Set("Authorization", "Bearer "+key.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	var evMu sync.Mutex
	doneSeen := map[string]bool{} // jobs the stream reported done
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e store.Event
			if json.Unmarshal([]byte(data), &e) == nil && e.Job != nil && e.Job.State == model.JobDone {
				evMu.Lock()
				doneSeen[e.Job.ID] = true
				evMu.Unlock()
			}
		}
	}()

	const n = 6
	var jobs []string
	for i := range n {
		sub, err := c.svc.Create(ctx, hosts.CreateRequest{Name: fmt.Sprintf("ha%d", i), Owner: "ops", Provider: "sim"})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, sub.Job.ID)
	}
	// Kill the leader while it holds jobs.
	mark := fmt.Sprintf("/%d/", leader.cmd.Process.Pid)
	var held []string
	poll(t, "the leader to run jobs", func() bool {
		held = held[:0]
		for _, id := range jobs {
			if j, _ := c.st.GetJob(ctx, id); j.State == model.JobRunning && strings.Contains(j.LeaseOwner, mark) {
				held = append(held, id)
			}
		}
		return len(held) > 0
	})
	syscall.Kill(-leader.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
	killed := time.Now()
	<-leader.exited
	poll(t, "the survivor to lead", func() bool { return survivor.leads(t) })
	leads := time.Since(killed)

	poll(t, "every job to end", func() bool {
		for _, id := range jobs {
			if j, _ := c.st.GetJob(ctx, id); j.Active() {
				return false
			}
		}
		return true
	})
	allDone := time.Since(killed)
	logs, _ := c.st.ListLog(ctx, store.LogFilter{})
	done := map[string]int{}
	for _, e := range logs {
		if e.Status == "done" {
			done[e.JobID]++
		}
	}
	for _, id := range jobs {
		if j, _ := c.st.GetJob(ctx, id); j.State != model.JobDone || done[id] != 1 {
			t.Errorf("job %s: %s (%s), %d done entries in cloud_vm_log; want done once", id, j.State, j.LastError, done[id])
		}
	}
	takenOver := 0
	for _, id := range held {
		if j, _ := c.st.GetJob(ctx, id); j.Attempts >= 2 {
			takenOver++
		}
	}
	if takenOver == 0 {
		t.Errorf("none of the %d jobs the leader held was run again: the kill tested no takeover", len(held))
	}
	hs, _ := c.st.ListHosts(ctx, store.HostFilter{})
	recs, _ := sim.Records(ctx, c.st.ProviderState())
	for _, h := range hs {
		if r := recs[provider.InstanceName(h.ID)]; h.Status != model.StatusRunning || r.Creations != 1 || h.Runtime.InstanceID != r.ID {
			t.Errorf("host %s: %s, %d VM creations, instance %s (sim has %s)", h.Name, h.Status, r.Creations, h.Runtime.InstanceID, r.ID)
		}
	}
	if len(recs) != n || len(hs) != n {
		t.Errorf("%d VMs for %d hosts; want %d", len(recs), len(hs), n)
	}
	// Figures for the notes, not assertions.
	t.Logf("killed the leader holding %d of %d jobs; the survivor led %s after the kill; all jobs done after %s",
		len(held), n, leads.Round(time.Millisecond), allDone.Round(time.Millisecond))
	poll(t, "the survivor's event stream to report the dead leader's jobs done", func() bool {
		evMu.Lock()
		defer evMu.Unlock()
		for _, id := range held {
			if !doneSeen[id] {
				return false
			}
		}
		return true
	})

	// The survivor stops cleanly on SIGTERM.
	resp.Body.Close()
	syscall.Kill(survivor.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck
	select {
	case <-survivor.exited:
		if code := survivor.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("the survivor exited %d on SIGTERM", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("the survivor did not stop within a minute of SIGTERM")
	}
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}
