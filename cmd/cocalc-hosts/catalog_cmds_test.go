package main

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sagemathinc/cocalc-hosts/pkg/dns/dnsfake"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/providers/hyperstack/hyperstackfake"
	"github.com/sagemathinc/cocalc-hosts/providers/lambda/lambdafake"
)

// Commands for the catalog, cost and DNS scripts.

// cmdVMLog appends a cloud_vm_log entry dated in the past, the way the
// queue would have logged an action then, so that cost scripts can check
// a history against a hand calculation. HOURS counts from one day before
// the host was created, so every entry of a script has an exact time:
//
//	vmlog HOST HOURS HOST_STATUS [DISK_GB]
func cmdVMLog(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 || len(args) > 4 {
		ts.Fatalf("usage: vmlog HOST HOURS HOST_STATUS [DISK_GB]")
	}
	hours, err := strconv.ParseFloat(args[1], 64)
	ts.Check(err)
	status := model.Status(args[2])
	if !slices.Contains(model.AllStatuses, status) {
		ts.Fatalf("vmlog: unknown host status %q (one of %v)", status, model.AllStatuses)
	}
	st := scriptStore(ts)
	defer st.Close()
	h, err := st.GetHost(context.Background(), args[0])
	ts.Check(err)
	s := h.Spec
	if len(args) == 4 {
		s.DiskGB, err = strconv.Atoi(args[3])
		ts.Check(err)
	}
	spec, _ := json.Marshal(s)
	_, err = st.AppendLog(context.Background(), model.LogEntry{HostID: h.ID, TS: h.CreatedAt.Add(-24*time.Hour + time.Duration(hours*float64(time.Hour))),
		Action: "script", Status: "done", Provider: h.Provider, Spec: spec, HostStatus: status})
	ts.Check(err)
}

var (
	cloudflareMu    sync.Mutex
	cloudflareFakes = map[*testscript.TestScript]*dnsfake.Server{}
)

// cmdCloudflare starts a fake Cloudflare DNS API for the script and sets
// $CLOUDFLARE_URL to its API base: cloudflare ZONE_ID DOMAIN TOKEN_FILE
func cmdCloudflare(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: cloudflare ZONE_ID DOMAIN TOKEN_FILE")
	}
	srv := dnsfake.New(args[0], args[1], strings.TrimSpace(ts.ReadFile(args[2])))
	cloudflareMu.Lock()
	cloudflareFakes[ts] = srv
	cloudflareMu.Unlock()
	ts.Defer(func() {
		srv.Close()
		cloudflareMu.Lock()
		delete(cloudflareFakes, ts)
		cloudflareMu.Unlock()
	})
	ts.Setenv("CLOUDFLARE_URL", srv.BaseURL())
}

// cmdDNSRecord checks the fake's A record of a host: dnsrecord HOST checks
// that HOST's name has exactly one A record and that it points at the
// host's public IP; ! dnsrecord NAME checks that NAME has none.
func cmdDNSRecord(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: [!] dnsrecord HOST")
	}
	cloudflareMu.Lock()
	srv := cloudflareFakes[ts]
	cloudflareMu.Unlock()
	if srv == nil {
		ts.Fatalf("dnsrecord: no fake Cloudflare; run `cloudflare` first")
	}
	fqdn := args[0] + "." + srv.ZoneName
	var recs []dnsfake.Record
	for _, r := range srv.Records() {
		if r.Name == fqdn && r.Type == "A" {
			recs = append(recs, r)
		}
	}
	if neg {
		if len(recs) != 0 {
			ts.Fatalf("%s has A records %+v", fqdn, recs)
		}
		return
	}
	st := scriptStore(ts)
	defer st.Close()
	h, err := st.GetHost(context.Background(), args[0])
	ts.Check(err)
	if len(recs) != 1 || h.Runtime.PublicIP == "" || recs[0].Content != h.Runtime.PublicIP {
		ts.Fatalf("%s: records %+v, host address %q", fqdn, recs, h.Runtime.PublicIP)
	}
}

var (
	lambdaMu    sync.Mutex
	lambdaFakes = map[*testscript.TestScript]*lambdafake.Fake{}
)

// cmdLambdaFake starts a fake of the Lambda Cloud API (the lambda
// provider's own fake) for the script and sets $LAMBDA_URL to its API
// base; its API key is lambdafake.DefaultAPIKey: lambdafake
func cmdLambdaFake(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: lambdafake")
	}
	f, srv := lambdafake.Start(lambdafake.Options{})
	lambdaMu.Lock()
	lambdaFakes[ts] = f
	lambdaMu.Unlock()
	ts.Defer(func() {
		srv.Close()
		lambdaMu.Lock()
		delete(lambdaFakes, ts)
		lambdaMu.Unlock()
	})
	ts.Setenv("LAMBDA_URL", lambdafake.URL(srv.URL))
}

// cmdLambdaRequests checks how many requests the fake served for a route:
// lambdareqs 'GET /ssh-keys' N
func cmdLambdaRequests(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: lambdareqs 'METHOD /path' N")
	}
	f := lambdaFakeOf(ts, "lambdareqs")
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	if got := f.Requests(args[0]); got != want {
		ts.Fatalf("%s: %d requests, want %d", args[0], got, want)
	}
}

// cmdLambdaCapacity sets where the fake has capacity for an instance type
// (no regions: sold out): lambdacapacity TYPE [REGION...]
func cmdLambdaCapacity(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: lambdacapacity TYPE [REGION...]")
	}
	lambdaFakeOf(ts, "lambdacapacity").SetCapacity(args[0], args[1:]...)
}

// lambdaFakeOf is the script's Lambda fake; cmd names the command that
// needs it.
func lambdaFakeOf(ts *testscript.TestScript, cmd string) *lambdafake.Fake {
	lambdaMu.Lock()
	f := lambdaFakes[ts]
	lambdaMu.Unlock()
	if f == nil {
		ts.Fatalf("%s: run lambdafake first", cmd)
	}
	return f
}

// cmdHyperstackFake starts a fake of the Hyperstack API (the hyperstack
// provider's own fake) for the script and sets $HYPERSTACK_URL to its API
// base; its API key is hyperstackfake.DefaultAPIKey. Its catalog adds to
// the default flavors one that fails validation (n3-broken, no vCPUs) and
// one with RAM as Hyperstack writes it (n1-cpu-tiny, 2.3021358869347655
// GiB): hyperstackfake
func cmdHyperstackFake(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: hyperstackfake")
	}
	flavors := append(hyperstackfake.DefaultFlavors(),
		hyperstackfake.Flavor{Name: "n3-broken", Region: "CANADA-1", GPU: "L40", GPUCount: 1, RAM: 58, Stock: true},
		hyperstackfake.Flavor{Name: "n1-cpu-tiny", Region: "CANADA-1", CPU: 1, RAM: 2.3021358869347655, Disk: 50, Stock: true})
	_, srv := hyperstackfake.Start(hyperstackfake.Options{Flavors: flavors})
	ts.Defer(srv.Close)
	ts.Setenv("HYPERSTACK_URL", hyperstackfake.URL(srv.URL))
}
