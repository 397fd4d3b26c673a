package lambdafake

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func call(t *testing.T, srv *httptest.Server, method, path string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	if body == nil {
		b = nil
	}
	req, _ := http.NewRequest(method, srv.URL+BasePath+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+DefaultAPIKey)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck
	return resp.StatusCode, out
}

// An instance boots, runs, terminates, is listed as terminated for a
// while, then disappears.
func TestInstanceLifecycle(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := New(Options{BootTime: 10 * time.Second, TerminateTime: 3 * time.Second, TerminatedTTL: 5 * time.Second, Now: c.now})
	srv := httptest.NewServer(f)
	defer srv.Close()
	if code, out := call(t, srv, "POST", "/instance-operations/launch", map[string]any{
		"region_name": "us-east-1", "instance_type_name": "gpu_1x_a10", "ssh_key_names": []string{"k"}, "name": "x"}); code != 400 {
		t.Fatalf("launch with an unknown key: %d %v, want 400", code, out)
	}
	call(t, srv, "POST", "/ssh-keys", map[string]any{"name": "k", "public_key": "ssh-ed25519 AAAA"})
	if code, out := call(t, srv, "POST", "/instance-operations/launch", map[string]any{
		"region_name": "us-east-1", "instance_type_name": "gpu_8x_a100_80gb_sxm4", "ssh_key_names": []string{"k"}}); code != 400 ||
		out["error"].(map[string]any)["code"] != "instance-operations/launch/insufficient-capacity" {
		t.Fatalf("launch without capacity: %d %v", code, out)
	}
	code, out := call(t, srv, "POST", "/instance-operations/launch", map[string]any{
		"region_name": "us-east-1", "instance_type_name": "gpu_1x_a10", "ssh_key_names": []string{"k"}, "name": "x"})
	if code != 200 {
		t.Fatalf("launch: %d %v", code, out)
	}
	id := out["data"].(map[string]any)["instance_ids"].([]any)[0].(string)
	status := func() string {
		code, out := call(t, srv, "GET", "/instances/"+id, nil)
		if code == 404 {
			return "gone"
		}
		return out["data"].(map[string]any)["status"].(string)
	}
	var seen []string
	step := func(d time.Duration) { seen = append(seen, status()); c.add(d) }
	step(10 * time.Second) // booting
	step(0)                // active
	call(t, srv, "POST", "/instance-operations/terminate", map[string]any{"instance_ids": []string{id}})
	step(3 * time.Second) // terminating
	step(5 * time.Second) // terminated
	step(0)               // gone
	want := []string{"booting", "active", "terminating", "terminated", "gone"}
	for i := range want {
		if i >= len(seen) || seen[i] != want[i] {
			t.Fatalf("statuses %v, want %v", seen, want)
		}
	}
	if n := f.Launches("x"); n != 1 {
		t.Fatalf("Launches = %d", n)
	}
}
