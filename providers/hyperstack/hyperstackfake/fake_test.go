package hyperstackfake

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
