package agent

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
)

// BenchmarkProjectStart measures starting a project through the agent
// (storage check, quota, memory headroom, container with limits and
// mounts) next to a raw `podman run -d` of the same image with the same
// limits, in the same podman store, interleaved: each iteration times one
// of each, so both see the same machine. It reports the medians and their
// ratio (goal ≤ 1.15). Stopping is not timed.
//
//	go test ./pkg/agent -run '^$' -bench ProjectStart -benchtime 20x
func BenchmarkProjectStart(b *testing.B) {
	h := newHost(b, nil)
	ctx := context.Background()
	limits := agentapi.Limits{MemoryBytes: 256 << 20, CPUs: 1, PidsLimit: 1024, DiskBytes: 256 << 20}
	id := uuid.NewString()
	if _, err := h.client.CreateProject(ctx, id, agentapi.CreateProjectRequest{DiskBytes: limits.DiskBytes}); err != nil {
		b.Fatal(err)
	}
	name := "cocalc-bench-raw-" + uuid.NewString()[:8]
	dir := b.TempDir()
	var agent, raw []time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		// As the control plane asks: with the memory headroom checked.
		if _, err := h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: h.env.Image, Limits: limits, MemoryCapBytes: 1 << 40}); err != nil {
			b.Fatal(err)
		}
		agent = append(agent, time.Since(t0))
		if _, err := h.client.StopProject(ctx, id); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		// The same mounts as a project's: home, scratch, snapshots.
		_, err := h.env.Podman.Run(ctx, "run", "-d", "--name", name, "--label", podman.LabelHost+"="+h.cfg.HostID,
			"--memory", "256m", "--memory-swap", "256m", "--cpus", "1", "--pids-limit", "1024",
			"--mount", "type=bind,source="+dir+",target=/home/user", "--mount", "type=bind,source="+dir+",target=/scratch",
			"--mount", "type=bind,source="+dir+",target=/home/user/.snapshots,readonly=true",
			"--user", "1000:1000", h.env.Image, "sleep", "infinity")
		if err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(t0))
		if err := h.env.Podman.Remove(ctx, name, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	a, r := median(agent), median(raw)
	b.ReportMetric(float64(a)/1e6, "agent-ms")
	b.ReportMetric(float64(r)/1e6, "podman-run-ms")
	b.ReportMetric(float64(a)/float64(r), "ratio")
}

// median of ds (which it sorts).
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// BenchmarkIdleProjects50 starts 50 idle projects on one host and reports
// what they cost in memory: the memory charged to each project's cgroup
// (its processes, page cache and kernel memory), the proportional size of
// podman's conmon per project, and the agent's own resident size. (The
// host's MemAvailable is not used: on a machine shared with other work it
// moves by more than 50 idle projects take.)
//
//	go test ./pkg/agent -run '^$' -bench IdleProjects50 -benchtime 1x
func BenchmarkIdleProjects50(b *testing.B) {
	const n = 50
	for range b.N {
		h := newHost(b, nil)
		ctx := context.Background()
		start := time.Now()
		ids := make([]string, n)
		for i := range ids {
			ids[i] = uuid.NewString()
			if _, err := h.client.CreateProject(ctx, ids[i], agentapi.CreateProjectRequest{DiskBytes: 64 << 20}); err != nil {
				b.Fatal(err)
			}
			if _, err := h.client.StartProject(ctx, ids[i], agentapi.StartProjectRequest{Image: h.env.Image,
				Limits: agentapi.Limits{MemoryBytes: 128 << 20, CPUs: 0.5, PidsLimit: 256, DiskBytes: 64 << 20}}); err != nil {
				b.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		time.Sleep(2 * time.Second) // let the just-started shells settle
		list, err := h.client.Projects(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var cg int64
		running := 0
		for _, p := range list {
			if p.State == agentapi.ProjectRunning {
				running++
				cg += p.MemoryBytes
			}
		}
		if running != n {
			b.Fatalf("%d of %d projects running", running, n)
		}
		conmon := conmonRSS(h.cfg.HostID)
		agentRSS := rss(h.proc.Process.Pid)
		const mib = 1 << 20
		b.ReportMetric(float64(cg)/n/mib, "MiB-cgroup/project")
		b.ReportMetric(float64(conmon)/n/mib, "MiB-conmon-pss/project")
		b.ReportMetric(float64(agentRSS)/mib, "MiB-agent")
		b.ReportMetric(elapsed.Seconds()/n, "s-start/project")
		// A list of 50 running projects, as `project list --refresh` asks.
		t0 := time.Now()
		if _, err := h.client.Projects(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s-list50")
	}
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// pss is the proportional set size of pid: its private memory plus its
// share of pages it shares with others (RSS would count shared libraries
// once per process).
func pss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// conmonRSS sums the proportional size of the conmon processes of hostID's
// containers (conmon's command line names the container's id, not the
// host, so match every conmon whose container carries the host's label).
func conmonRSS(hostID string) int64 {
	entries, _ := os.ReadDir("/proc")
	var total int64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) != "conmon" {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), ContainerPrefix) {
			total += pss(pid)
		}
	}
	return total
}
