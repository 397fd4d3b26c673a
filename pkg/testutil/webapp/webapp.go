// Package webapp is a small web app that tests run inside project
// containers, as a user's server (Jupyter, a dashboard) would run there:
// it echoes what it was sent (as JSON), echoes WebSocket messages, and
// streams a response in two parts. It routes on the path after the
// ingress prefix exactly as it arrives, without cleaning it.
package webapp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sagemathinc/cocalc-hosts/pkg/proxypath"
)

// Seen is what the app reports about a request.
type Seen struct {
	// Project is the project it runs in ($COCALC_PROJECT_ID).
	Project       string `json:"project"`
	RequestURI    string `json:"request_uri"`
	Host          string `json:"host"`
	Authorization string `json:"authorization"`
	Cookie        string `json:"cookie"`
	Prefix        string `json:"prefix"`
}

// Serve listens on addr (the project's localhost, so that only a client
// inside the container's network namespace reaches it).
//
//   - /ws echoes WebSocket messages, prefixed with "echo:";
//   - /stream sends "one\n", then "two\n" only once /release was asked:
//     a proxy that buffers responses never delivers the first line in time;
//   - anything else answers Seen.
func Serve(addr string) error {
	release := make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		rest := r.URL.EscapedPath()
		if t, ok := proxypath.Parse(rest); ok {
			rest = t.Rest
		}
		switch rest {
		case "/ws":
			echo(w, r)
		case "/stream":
			io.WriteString(w, "one\n") //nolint:errcheck
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "two\n") //nolint:errcheck
		case "/release":
			select {
			case release <- struct{}{}:
			case <-time.After(10 * time.Second):
			}
		default:
			json.NewEncoder(w).Encode(Seen{ //nolint:errcheck
				Project: os.Getenv("COCALC_PROJECT_ID"), RequestURI: r.RequestURI, Host: r.Host,
				Authorization: r.Header.Get("Authorization"), Cookie: r.Header.Get("Cookie"), Prefix: r.Header.Get("X-Forwarded-Prefix"),
			})
		}
	}
	return http.ListenAndServe(addr, http.HandlerFunc(h))
}

func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for {
		typ, b, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, append([]byte("echo:"), b...)); err != nil {
			return
		}
	}
}

// Build compiles the app as a static binary (it runs in any image) and
// returns its path.
func Build(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "webapp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/sagemathinc/cocalc-hosts/pkg/testutil/webapp/cmd/webapp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the web app: %v\n%s", err, b)
	}
	return out
}
