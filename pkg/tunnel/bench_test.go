package tunnel_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// The reverse path's added latency: one HTTP request to a server on the
// agent's side, directly (its unix socket) and through the tunnel (TLS
// WebSocket, yamux, the agent's relay), on a kept-alive connection and
// with a new stream per request (as each relayed user connection or SSH
// dial opens one). Compare ns/op.
func BenchmarkHTTP(b *testing.B) {
	f := newFixture(b)
	cred, sum, _ := tunnel.NewCredential("h1")
	f.sums["h1"] = sum
	f.agent(b, cred)
	f.waitConnected(b, "h1")
	direct := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", f.sock)
	}
	tunneled := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return f.reg.Dial(ctx, "h1", tunnel.TargetSSHD)
	}
	for _, c := range []struct {
		name      string
		dial      func(context.Context, string, string) (net.Conn, error)
		keepAlive bool
	}{
		{"direct/keepalive", direct, true}, {"tunnel/keepalive", tunneled, true},
		{"direct/newconn", direct, false}, {"tunnel/newconn", tunneled, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			hc := &http.Client{Transport: &http.Transport{DialContext: c.dial, DisableKeepAlives: !c.keepAlive}}
			defer hc.CloseIdleConnections()
			for b.Loop() {
				resp, err := hc.Get("http://agent/v1/status")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
			}
		})
	}
}
