package agentapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestStatusRoundTrip(t *testing.T) {
	want := Status{
		Version: "v1", HostID: "h", StartedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		UptimeSeconds: 1.5, PID: 42,
		Storage: Storage{Kind: StorageBtrfs, Path: "/p", FreeBytes: 1, TotalBytes: 2},
	}
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != StatusPath {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(want)
	})
	got, err := NewClient(sock).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Status = %+v, want %+v", got, want)
	}
}

func TestJSONFieldNames(t *testing.T) {
	b, err := json.Marshal(Status{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "host_id", "started_at", "uptime_seconds", "storage", "pid", "free_bytes", "total_bytes", "kind", "path"} {
		if !strings.Contains(string(b), `"`+k+`"`) {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
}

func TestStatusErrors(t *testing.T) {
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "pool gone", http.StatusInternalServerError)
	})
	if _, err := NewClient(sock).Status(context.Background()); err == nil || !strings.Contains(err.Error(), "pool gone") {
		t.Fatalf("Status on a failing agent: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "none.sock")
	if _, err := NewClient(missing).Status(context.Background()); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Status on a missing socket: %v", err)
	}
}

func TestValidImageNameLength(t *testing.T) {
	long := "r/" + strings.Repeat("a", 253)
	if !ValidImageName(long) || ValidImageName(long+"a") || ValidImageName("-rm") || ValidImageName("") {
		t.Fatal("image names: want at most 255 bytes, starting with a letter or digit")
	}
}
