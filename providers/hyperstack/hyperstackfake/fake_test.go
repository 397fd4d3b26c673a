package hyperstackfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a manual clock for the fake.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func call(t *testing.T, srv *httptest.Server, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, srv.URL+BasePath+path, rd)
	req.Header.Set("api_key", DefaultAPIKey)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck
	return resp.StatusCode, out
}

// The VM moves through Infrahub's documented status sequences.
func TestStatusSequences(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := New(Options{BootTime: 10 * time.Second, StopTime: 4 * time.Second, DeleteTime: 2 * time.Second, Now: c.now})
	srv := httptest.NewServer(f)
	defer srv.Close()
	call(t, srv, "POST", "/core/environments", map[string]any{"name": "e", "region": "CANADA-1"})
	call(t, srv, "POST", "/core/keypairs", map[string]any{"name": "k", "environment_name": "e", "public_key": "ssh-ed25519 AAAA"})
	code, out := call(t, srv, "POST", "/core/virtual-machines", map[string]any{"name": "vm", "environment_name": "e",
		"flavor_name": "n3-A100x1", "key_name": "k", "count": 1, "image_name": DefaultImages()[0], "assign_floating_ip": true})
	if code != 200 {
		t.Fatalf("create: %d %v", code, out)
	}
	id := int(out["instances"].([]any)[0].(map[string]any)["id"].(float64))
	status := func() string {
		_, out := call(t, srv, "GET", "/core/virtual-machines/"+itoa(id), nil)
		if out["instance"] == nil {
			return "gone"
		}
		return out["instance"].(map[string]any)["status"].(string)
	}
	var seen []string
	step := func(d time.Duration) { seen = append(seen, status()); c.add(d) }
	step(6 * time.Second) // CREATING
	step(5 * time.Second) // BUILD
	step(0)               // ACTIVE
	if code, _ := call(t, srv, "GET", "/core/virtual-machines/"+itoa(id)+"/hibernate-restore", nil); code != 400 {
		t.Fatalf("restore of an ACTIVE VM: %d, want 400", code)
	}
	call(t, srv, "GET", "/core/virtual-machines/"+itoa(id)+"/hibernate", nil)
	step(5 * time.Second) // HIBERNATING
	step(0)               // HIBERNATED
	call(t, srv, "GET", "/core/virtual-machines/"+itoa(id)+"/hibernate-restore", nil)
	step(11 * time.Second) // RESTORING
	step(0)                // ACTIVE
	call(t, srv, "GET", "/core/virtual-machines/"+itoa(id)+"/stop", nil)
	step(5 * time.Second) // STOPPING
	step(0)               // SHUTOFF
	call(t, srv, "GET", "/core/virtual-machines/"+itoa(id)+"/start", nil)
	step(11 * time.Second) // STARTING
	step(0)                // ACTIVE
	call(t, srv, "DELETE", "/core/virtual-machines/"+itoa(id), nil)
	step(3 * time.Second) // DELETING
	step(0)               // gone
	want := []string{"CREATING", "BUILD", "ACTIVE", "HIBERNATING", "HIBERNATED", "RESTORING", "ACTIVE", "STOPPING", "SHUTOFF", "STARTING", "ACTIVE", "DELETING", "gone"}
	if len(seen) != len(want) {
		t.Fatalf("statuses %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("statuses %v, want %v", seen, want)
		}
	}
	if code, out := call(t, srv, "GET", "/core/virtual-machines/"+itoa(id), nil); code != 404 || out["status"] != false {
		t.Fatalf("deleted VM: %d %v, want 404 with status false", code, out)
	}
}

func TestFaultsAndAuth(t *testing.T) {
	f := New(Options{})
	srv := httptest.NewServer(f)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+BasePath+"/core/environments", nil)
	req.Header.Set("api_key", "wrong")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	f.InjectFault(Fault{Method: "GET", Path: "/core/environments", Status: 429, RetryAfter: "3", Times: 2})
	for i := range 3 {
		req, _ := http.NewRequest("GET", srv.URL+BasePath+"/core/environments", nil)
		req.Header.Set("api_key", DefaultAPIKey)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want, ra := 429, "3"
		if i == 2 {
			want, ra = 200, ""
		}
		if resp.StatusCode != want || resp.Header.Get("Retry-After") != ra {
			t.Fatalf("request %d: %d Retry-After %q, want %d %q", i, resp.StatusCode, resp.Header.Get("Retry-After"), want, ra)
		}
	}
	if n := f.Requests("GET /core/environments"); n != 3 {
		t.Fatalf("counted %d requests, want 3 (the unauthorized one is not served)", n)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// Rules follow Create_Security_Rule_Payload, which requires the VM's id:
// a create request carrying rules (no VM id yet) is refused, as a server
// validating by the spec refuses it; the VM's sg-rules endpoint adds
// them once it exists.
func TestSecurityRulesNeedTheVM(t *testing.T) {
	f, srv := Start(Options{})
	defer srv.Close()
	call(t, srv, "POST", "/core/environments", map[string]any{"name": "e", "region": "CANADA-1"})
	call(t, srv, "POST", "/core/keypairs", map[string]any{"name": "k", "environment_name": "e", "public_key": "ssh-ed25519 AAAA"})
	rule := map[string]any{"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "remote_ip_prefix": "0.0.0.0/0", "port_range_min": 22, "port_range_max": 22}
	create := map[string]any{"name": "vm", "environment_name": "e", "flavor_name": "n3-A100x1", "key_name": "k", "count": 1,
		"image_name": DefaultImages()[0], "security_rules": []any{rule}}
	code, out := call(t, srv, "POST", "/core/virtual-machines", create)
	if code != 400 || !strings.Contains(fmt.Sprint(out["message"]), "security_rules[0]: virtual_machine_id is required") {
		t.Fatalf("create with a rule lacking virtual_machine_id: %d %v, want 400 naming it", code, out)
	}
	delete(create, "security_rules")
	code, out = call(t, srv, "POST", "/core/virtual-machines", create)
	if code != 200 {
		t.Fatalf("create: %d %v", code, out)
	}
	id := int(out["instances"].([]any)[0].(map[string]any)["id"].(float64))
	if code, out := call(t, srv, "POST", "/core/virtual-machines/"+itoa(id)+"/sg-rules", rule); code != 400 {
		t.Fatalf("rule without virtual_machine_id: %d %v, want 400", code, out)
	}
	rule["virtual_machine_id"] = id + 1
	if code, out := call(t, srv, "POST", "/core/virtual-machines/"+itoa(id)+"/sg-rules", rule); code != 400 {
		t.Fatalf("rule for another VM: %d %v, want 400", code, out)
	}
	rule["virtual_machine_id"] = id
	if code, out := call(t, srv, "POST", "/core/virtual-machines/"+itoa(id)+"/sg-rules", rule); code != 200 || out["security_rule"] == nil {
		t.Fatalf("rule: %d %v, want 200 with the rule", code, out)
	}
	if vms := f.VMs(); len(vms) != 1 || len(vms[0].Rules) != 1 || vms[0].Rules[0].PortRangeMin != 22 {
		t.Fatalf("VMs %+v, want one with the rule for port 22", vms)
	}
}
