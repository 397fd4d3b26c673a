package restclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:35 GMT": 30 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT": 0,
	} {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

// A number is read from JSON numbers and numeric strings, nothing else.
func TestNumber(t *testing.T) {
	for in, want := range map[string]float64{`80`: 80, `"80"`: 80, `" 1.35 "`: 1.35, `0.000096`: 0.000096} {
		var n Number
		if err := json.Unmarshal([]byte(in), &n); err != nil || float64(n) != want {
			t.Errorf("%s: got %v, %v; want %v", in, n, err, want)
		}
	}
	for _, in := range []string{`"cheap"`, `"NaN"`, `"Inf"`, `true`, `""`, `{}`} {
		var n Number
		if err := json.Unmarshal([]byte(in), &n); err == nil {
			t.Errorf("%s: read as %v, want an error", in, n)
		}
	}
}

// OnCall hears of every request sent, a 429 retried here included, with
// the operation and the error's kind.
func TestOnCallHearsEachRequest(t *testing.T) {
	statuses := []int{http.StatusTooManyRequests, http.StatusOK}
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(statuses[served.Add(1)-1])
		io.WriteString(w, `{"ok": true}`) //nolint:errcheck
	}))
	defer srv.Close()
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	type call struct {
		op   string
		kind errkind.Kind // "" when it succeeded
	}
	var calls []call
	c := &Client{
		Provider: "test", Base: srv.URL, CredsFile: keyFile, HTTP: srv.Client(), MaxReply: 1 << 20,
		MaxRetryWait: time.Minute, MaxRetries: 1, DefaultRetryWait: time.Millisecond,
		Sleep:     func(context.Context, time.Duration) error { return nil },
		Authorize: func(*http.Request, string) {},
		Classify: func(op, _, _ string, resp *http.Response, _ []byte) error {
			return provider.Errorf(errkind.RateLimited, "test", op, "HTTP %d", resp.StatusCode)
		},
		Decode: func(_, _, _ string, _ *http.Response, raw []byte, out any) error { return json.Unmarshal(raw, out) },
		OnCall: func(op string, took time.Duration, err error) {
			c := call{op: op}
			if err != nil {
				c.kind = errkind.Of(err)
			}
			if took <= 0 {
				t.Errorf("call %s took %v", op, took)
			}
			calls = append(calls, c)
		},
	}
	var out struct{ OK bool }
	if err := c.Do(context.Background(), "catalog", http.MethodGet, "/types", nil, &out); err != nil || !out.OK {
		t.Fatalf("Do: %v, %+v", err, out)
	}
	want := []call{{"catalog", errkind.RateLimited}, {"catalog", ""}}
	if !slices.Equal(calls, want) {
		t.Fatalf("OnCall heard %+v, want %+v", calls, want)
	}
}
