package agent

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/proxypath"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// BenchmarkIngressHTTP loads the same web app in a project with wrk, in
// one run: directly on the container's address (plain HTTP, the
// baseline), and through the HTTPS ingress (TLS, token check, proxy into
// the container's network namespace). It reports requests per second and
// the 99th percentile latency of each, their ratio and difference, and
// the CPU time per request of the agent (the ingress) and of the app
// (the project's container): on a machine whose cores wrk, the app and
// the ingress share, those bound the ratio.
//
//	go test ./pkg/agent -run '^$' -bench IngressHTTP -benchtime 1x
func BenchmarkIngressHTTP(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk is missing; run scripts/install-deps.sh")
	}
	// The agent's own periodic work at its default pace: the tests' 250 ms
	// idle check runs podman four times a second, which takes a share of
	// the cores the run measures.
	ih := newIngressHost(b, func(c *agentapi.Config) { c.IdleCheckInterval = "" })
	p := ih.newProject(agentapi.Limits{MemoryBytes: 512 * mib}, 0)
	ih.push(time.Hour, map[string][]string{p: {"alice"}}, nil)
	ih.startAppOn(p, "0.0.0.0", 8889)
	ip, err := ih.env.Podman.Run(tctx(b), "inspect", "-f", "{{.NetworkSettings.IPAddress}}", containerName(p))
	if err != nil || strings.TrimSpace(ip) == "" {
		b.Fatalf("container address: %q %v", ip, err)
	}
	c, err := ih.env.Podman.Get(tctx(b), containerName(p))
	if err != nil {
		b.Fatal(err)
	}
	direct := fmt.Sprintf("http://%s:8889/", strings.TrimSpace(ip))
	through := ih.baseURL + proxypath.Prefix(p, 8889)
	tok := ih.token("alice", p, func(g *tokens.Grant) { g.Ports = []int{8889} })
	auth := "Bearer " + tok
	// One request first, as a browser's first page load: the agent finds
	// the project's network namespace (podman inspect) once. Measured
	// cold, the first request of each of wrk's connections waits for it,
	// and wrk's latency correction (for a closed loop, it adds samples for
	// the requests a slow one held back) turns 16 such waits of about a
	// second into a p99 of about a second.
	if code, body, _ := ih.get(proxypath.Prefix(p, 8889), map[string]string{"Authorization": auth}); code != http.StatusOK {
		b.Fatalf("warm-up through the ingress: %d %s", code, body)
	}
	cpu := func() (agent, app time.Duration) {
		return procCPU(b, ih.proc.Process.Pid), containerCPU(b, c)
	}
	for range b.N {
		d := runWrk(b, cpu, direct)
		i := runWrk(b, cpu, through, "-H", "Authorization: "+auth)
		b.ReportMetric(d.rps, "direct-req/s")
		b.ReportMetric(i.rps, "ingress-req/s")
		b.ReportMetric(i.rps/d.rps, "throughput-ratio")
		b.ReportMetric(d.p99.Seconds()*1000, "direct-p99-ms")
		b.ReportMetric(i.p99.Seconds()*1000, "ingress-p99-ms")
		b.ReportMetric((i.p99-d.p99).Seconds()*1000, "added-p99-ms")
		b.ReportMetric(i.agentCPU, "ingress-cpu-us/req")
		b.ReportMetric(d.appCPU, "app-cpu-us/req")
		b.ReportMetric(d.wrkCPU, "wrk-direct-cpu-us/req")
		b.ReportMetric(i.wrkCPU, "wrk-ingress-cpu-us/req")
	}
}

type wrkResult struct {
	rps float64
	p99 time.Duration
	// CPU time per request, in µs, of the agent, of the app's container
	// and of wrk itself during the run.
	agentCPU, appCPU, wrkCPU float64
}

var (
	rpsRE      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	requestsRE = regexp.MustCompile(`(\d+) requests in`)
	// wrk prints a latency as 123.45us, 1.23ms or 1.23s (minutes and
	// hours cannot occur: it gives up on a request after 2 s).
	p99RE = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)\s`)
)

// runWrk loads url for 10 s with 2 threads and 16 connections (the
// machine has 2 cores; the app, the ingress and wrk share them).
func runWrk(b *testing.B, cpu func() (agent, app time.Duration), url string, args ...string) wrkResult {
	b.Helper()
	agent0, app0 := cpu()
	cmd := exec.Command("wrk", append([]string{"-t2", "-c16", "-d10s", "--latency"}, append(args, url)...)...)
	out, err := cmd.CombinedOutput()
	agent1, app1 := cpu()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	s := string(out)
	b.Logf("%s\n%s", url, s)
	if strings.Contains(s, "Non-2xx") || strings.Contains(s, "Socket errors") {
		b.Fatalf("wrk %s: errors:\n%s", url, s)
	}
	rm, nm, pm := rpsRE.FindStringSubmatch(s), requestsRE.FindStringSubmatch(s), p99RE.FindStringSubmatch(s)
	if rm == nil || nm == nil || pm == nil {
		b.Fatalf("wrk output not understood:\n%s", s)
	}
	n, _ := strconv.ParseFloat(nm[1], 64)
	if n == 0 {
		b.Fatalf("wrk %s: no request completed:\n%s", url, s)
	}
	rps, _ := strconv.ParseFloat(rm[1], 64)
	v, _ := strconv.ParseFloat(pm[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[pm[2]]
	perReq := func(d time.Duration) float64 { return float64(d/time.Nanosecond) / 1000 / n }
	return wrkResult{rps: rps, p99: time.Duration(v * float64(unit)),
		agentCPU: perReq(agent1 - agent0), appCPU: perReq(app1 - app0),
		wrkCPU: perReq(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime())}
}

// procCPU is the CPU time (user and system) process pid used so far.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command (which may hold spaces), from field 3 on:
	// utime and stime are fields 14 and 15, in clock ticks (100 a second
	// on Linux).
	_, rest, _ := strings.Cut(string(st), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, st)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// containerCPU is the CPU time container c's processes used so far.
func containerCPU(b *testing.B, c podman.Container) time.Duration {
	b.Helper()
	d, err := podman.CPUUsage(c.PID)
	if err != nil {
		b.Fatal(err)
	}
	return d
}
