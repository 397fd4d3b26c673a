package agent

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/proxypath"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// BenchmarkIngressHTTP loads the same web app in a project with wrk, in
// one run: directly on the container's address (plain HTTP, the
// baseline), and through the HTTPS ingress (TLS, token check, proxy into
// the container's network namespace). It reports requests per second and
// the 99th percentile latency of each, and their ratio and difference.
//
//	go test ./pkg/agent -run '^$' -bench IngressHTTP -benchtime 1x
func BenchmarkIngressHTTP(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk is missing; run scripts/install-deps.sh")
	}
	ih := newIngressHost(b)
	p := ih.newProject(agentapi.Limits{MemoryBytes: 512 * mib}, 0)
	ih.push(time.Hour, map[string][]string{p: {"alice"}}, nil)
	ih.startAppOn(p, "0.0.0.0", 8889)
	ip, err := ih.env.Podman.Run(tctx(b), "inspect", "-f", "{{.NetworkSettings.IPAddress}}", containerName(p))
	if err != nil || strings.TrimSpace(ip) == "" {
		b.Fatalf("container address: %q %v", ip, err)
	}
	direct := fmt.Sprintf("http://%s:8889/", strings.TrimSpace(ip))
	through := ih.baseURL + proxypath.Prefix(p, 8889)
	tok := ih.token("alice", p, func(g *tokens.Grant) { g.Ports = []int{8889} })
	for range b.N {
		d := runWrk(b, direct)
		i := runWrk(b, through, "-H", "Authorization: Bearer "+tok)
		b.ReportMetric(d.rps, "direct-req/s")
		b.ReportMetric(i.rps, "ingress-req/s")
		b.ReportMetric(i.rps/d.rps, "throughput-ratio")
		b.ReportMetric(d.p99.Seconds()*1000, "direct-p99-ms")
		b.ReportMetric(i.p99.Seconds()*1000, "ingress-p99-ms")
		b.ReportMetric((i.p99-d.p99).Seconds()*1000, "added-p99-ms")
	}
}

type wrkResult struct {
	rps float64
	p99 time.Duration
}

var (
	rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p99RE = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
)

// runWrk loads url for 10 s with 2 threads and 16 connections (the
// machine has 2 cores; the app, the ingress and wrk share them).
func runWrk(b *testing.B, url string, args ...string) wrkResult {
	b.Helper()
	out, err := exec.Command("wrk", append([]string{"-t2", "-c16", "-d10s", "--latency"}, append(args, url)...)...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	s := string(out)
	if strings.Contains(s, "Non-2xx") {
		b.Fatalf("wrk %s: errors:\n%s", url, s)
	}
	rm, pm := rpsRE.FindStringSubmatch(s), p99RE.FindStringSubmatch(s)
	if rm == nil || pm == nil {
		b.Fatalf("wrk output not understood:\n%s", s)
	}
	rps, _ := strconv.ParseFloat(rm[1], 64)
	v, _ := strconv.ParseFloat(pm[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[pm[2]]
	b.Logf("%s\n%s", url, s)
	return wrkResult{rps: rps, p99: time.Duration(v * float64(unit))}
}
