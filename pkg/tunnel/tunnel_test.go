package tunnel_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// fixture is a server taking tunnels (TLS, as serve does) and an agent
// end with two real targets: an HTTP server on a unix socket (the API)
// and a TCP echo server (an ingress port).
type fixture struct {
	reg    *tunnel.Registry
	srv    *httptest.Server
	sums   map[string]string
	states atomic.Int32
	sock   string // the agent end's HTTP server
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{reg: tunnel.NewRegistry(), sums: map[string]string{}}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, err := tunnel.Authenticate(r, func(_ context.Context, id string) (string, error) {
			if s, ok := f.sums[id]; ok {
				return s, nil
			}
			return "", errkind.Errorf(errkind.NotFound, "no host %s", id)
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		f.reg.Accept(r.Context(), w, r, host) //nolint:errcheck
	}))
	t.Cleanup(func() { f.reg.Close(); f.srv.Close() })
	return f
}

// agent runs the agent's end for host with cred until the test ends.
func (f *fixture) agent(t testing.TB, cred string) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	f.sock = sock
	api, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "api %s", r.URL.Path)
	})}
	go hs.Serve(api) //nolint:errcheck
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }() //nolint:errcheck
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c := &tunnel.Client{
		URL: "wss" + strings.TrimPrefix(f.srv.URL, "https") + tunnel.Path, HTTP: f.srv.Client(),
		Credential: func() (string, error) { return cred, nil },
		Targets: map[string]func(context.Context) (net.Conn, error){
			tunnel.TargetSSHD: func(ctx context.Context) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			tunnel.TargetSSH: func(ctx context.Context) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", echo.Addr().String())
			},
		},
		OnState:    func(up bool, err error) { f.states.Add(1); t.Log("tunnel", up, err) },
		MaxBackoff: time.Second,
	}
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; hs.Close(); echo.Close() })
}

func (f *fixture) waitConnected(t testing.TB, host string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f.reg.Connected(host) {
		if time.Now().After(deadline) {
			t.Fatalf("host %s did not connect its tunnel within 10s", host)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) get(t *testing.T, host, path string) (string, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return f.reg.Dial(ctx, host, tunnel.TargetSSHD)
	}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://agent" + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestTunnelCarriesAPIAndIngressAndReconnects(t *testing.T) {
	f := newFixture(t)
	cred, sum, err := tunnel.NewCredential("h1")
	if err != nil {
		t.Fatal(err)
	}
	f.sums["h1"] = sum
	f.agent(t, cred)
	f.waitConnected(t, "h1")

	if body, err := f.get(t, "h1", "/v1/status"); err != nil || body != "api /v1/status" {
		t.Fatalf("API through the tunnel: %q %v", body, err)
	}
	// An ingress stream carries bytes both ways, and a half close.
	s, err := f.reg.Dial(context.Background(), "h1", tunnel.TargetSSH)
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("x", 1<<20)
	go func() { io.WriteString(s, payload); s.Close() }() //nolint:errcheck
	if got, err := io.ReadAll(s); err != nil || string(got) != payload {
		t.Fatalf("echo through the tunnel: %d bytes, %v", len(got), err)
	}
	// A target the agent does not have: the stream is closed at once.
	bad, err := f.reg.Dial(context.Background(), "h1", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	bad.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	if n, err := bufio.NewReader(bad).Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("unknown target: read %d, %v; want EOF", n, err)
	}

	// The server drops the tunnel: the agent comes back by itself.
	f.reg.Close()
	if _, err := f.reg.Dial(context.Background(), "h1", tunnel.TargetSSHD); !errkind.Is(err, errkind.Unavailable) {
		t.Fatalf("dial with no tunnel: %v", err)
	}
	f.waitConnected(t, "h1")
	if body, err := f.get(t, "h1", "/again"); err != nil || body != "api /again" {
		t.Fatalf("API after reconnecting: %q %v", body, err)
	}
}

func TestTunnelCredentialOpensOnlyItsHost(t *testing.T) {
	f := newFixture(t)
	cred1, sum1, _ := tunnel.NewCredential("h1")
	_, sum2, _ := tunnel.NewCredential("h2")
	f.sums["h1"], f.sums["h2"] = sum1, sum2
	secret := cred1[strings.LastIndexByte(cred1, '_')+1:]
	url := f.srv.URL + tunnel.Path
	for name, cred := range map[string]string{
		"h1's secret as h2":  "cht_h2_" + secret,
		"an unknown host":    "cht_h9_" + secret,
		"an API key":         "chk_0123456789abcdef",
		"a truncated secret": cred1[:len(cred1)-1],
	} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+cred)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %s %s", name, resp.Status, b)
		}
	}
	if f.reg.Connected("h1") || f.reg.Connected("h2") {
		t.Fatal("a refused credential left a tunnel")
	}
	if _, err := tunnel.HostOf(cred1); err != nil {
		t.Fatal(err)
	}
}
