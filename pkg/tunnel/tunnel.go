// Package tunnel connects hosts that the control plane cannot dial: on
// the machine, `cocalc-hosts join` keeps one outbound connection to
// `serve` (a WebSocket over TLS, the server's certificate checked against
// its CA), authenticated with the host's tunnel credential, and the server
// opens streams over it (yamux). Each stream starts with one line naming
// its target — the machine's SSH server, over which the control plane
// bootstraps the host and reaches the agent's API as on any adopted
// machine, or the agent's HTTPS or SSH ingress — and the machine dials
// that target locally and relays bytes, so every check (SSH host key and
// fleet key, connect tokens, certificates) stays end to end.
//
// A credential is "cht_<host id>_<secret>": it names the one host whose
// tunnel it opens, and the control plane keeps only its SHA-256.
package tunnel

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// Targets a stream may ask for: the machine's own SSH server (the
// control plane logs in there, as to any adopted machine, and reaches the
// agent's API over that connection), and the agent's HTTPS and SSH
// ingress.
const (
	TargetSSHD  = "sshd"
	TargetHTTPS = "https"
	TargetSSH   = "ssh"
)

// Path is where `serve` takes tunnels.
const Path = "/api/v1/tunnel"

const credPrefix = "cht_"

// NewCredential makes a host's tunnel credential and the sum the control
// plane keeps of it.
func NewCredential(hostID string) (cred, sum string, err error) {
	if hostID == "" || strings.ContainsAny(hostID, "_ \n") {
		return "", "", fmt.Errorf("tunnel credential: bad host id %q", hostID)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	cred = credPrefix + hostID + "_" + hex.EncodeToString(b)
	return cred, Sum(cred), nil
}

// Sum is what the control plane keeps of a credential.
func Sum(cred string) string {
	s := sha256.Sum256([]byte(cred))
	return hex.EncodeToString(s[:])
}

// HostOf is the host a credential names, or an error when it is not a
// tunnel credential.
func HostOf(cred string) (string, error) {
	rest, ok := strings.CutPrefix(cred, credPrefix)
	i := strings.IndexByte(rest, '_')
	if !ok || i <= 0 || len(rest)-i-1 != 64 {
		return "", errkind.New(errkind.Auth, "not a host tunnel credential (cht_HOST_SECRET)")
	}
	return rest[:i], nil
}

// Matches says in constant time whether cred has sum.
func Matches(cred, sum string) bool {
	return sum != "" && subtle.ConstantTimeCompare([]byte(Sum(cred)), []byte(sum)) == 1
}

// Authenticate checks the credential r carries (Authorization: Bearer)
// against the sum kept for the host it names (sumOf returns "" for a host
// with no tunnel), and returns that host.
func Authenticate(r *http.Request, sumOf func(ctx context.Context, hostID string) (string, error)) (string, error) {
	cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", errkind.New(errkind.Auth, "no host credential: send Authorization: Bearer cht_HOST_SECRET")
	}
	host, err := HostOf(strings.TrimSpace(cred))
	if err != nil {
		return "", err
	}
	sum, err := sumOf(r.Context(), host)
	if err != nil && !errkind.Is(err, errkind.NotFound) {
		return "", err
	}
	if err != nil || !Matches(strings.TrimSpace(cred), sum) {
		return "", errkind.Errorf(errkind.Auth, "host %s: this tunnel credential is not the host's (run the join command `create --reverse` printed again)", host)
	}
	return host, nil
}

// Registry holds the tunnels of the hosts connected to this process.
type Registry struct {
	mu       sync.Mutex
	sessions map[string]*yamux.Session
}

// NewRegistry makes an empty registry.
func NewRegistry() *Registry { return &Registry{sessions: map[string]*yamux.Session{}} }

// yamuxConfig keeps yamux's log quiet and its keepalive short, so that a
// dead tunnel is noticed in seconds.
func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	c.KeepAliveInterval = 10 * time.Second
	c.ConnectionWriteTimeout = 10 * time.Second
	return c
}

// Accept upgrades r to hostID's tunnel (the caller has authenticated it)
// and holds it until it drops or ctx ends. A newer tunnel of the same
// host replaces an older one.
func (g *Registry) Accept(ctx context.Context, w http.ResponseWriter, r *http.Request, hostID string) error {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return err
	}
	c.SetReadLimit(-1)
	conn := websocket.NetConn(ctx, c, websocket.MessageBinary)
	sess, err := yamux.Client(conn, yamuxConfig())
	if err != nil {
		conn.Close()
		return err
	}
	g.mu.Lock()
	if old := g.sessions[hostID]; old != nil {
		old.Close()
	}
	g.sessions[hostID] = sess
	g.mu.Unlock()
	select {
	case <-sess.CloseChan():
	case <-ctx.Done():
		sess.Close()
	}
	g.mu.Lock()
	if g.sessions[hostID] == sess {
		delete(g.sessions, hostID)
	}
	g.mu.Unlock()
	return nil
}

// Connected says whether hostID's tunnel is held here.
func (g *Registry) Connected(hostID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.sessions[hostID]
	return s != nil && !s.IsClosed()
}

// ErrNotConnected is Dial's error when this process holds no tunnel of the
// host.
var ErrNotConnected = errors.New("no tunnel from this host")

// Dial opens a stream to target on hostID's host.
func (g *Registry) Dial(ctx context.Context, hostID, target string) (net.Conn, error) {
	g.mu.Lock()
	sess := g.sessions[hostID]
	g.mu.Unlock()
	if sess == nil || sess.IsClosed() {
		return nil, errkind.Errorf(errkind.Unavailable, "host %s: %w", hostID, ErrNotConnected)
	}
	type result struct {
		s   *yamux.Stream
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := sess.OpenStream()
		if err == nil {
			if _, err = s.Write([]byte(target + "\n")); err != nil {
				s.Close()
			}
		}
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, errkind.Errorf(errkind.Unavailable, "host %s: open tunnel stream: %w", hostID, r.err)
		}
		return r.s, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// Close drops every tunnel.
func (g *Registry) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, s := range g.sessions {
		s.Close()
		delete(g.sessions, id)
	}
}

// Client is the agent's end: it keeps the tunnel to the server up and
// serves the streams the server opens.
type Client struct {
	// URL is the server's tunnel address (https://HOST:PORT/api/v1/tunnel).
	URL string
	// HTTP makes the connection (its TLS configuration pins the server's
	// CA).
	HTTP *http.Client
	// Credential returns the host's credential (read from its 0600 file
	// each time, so a replaced file is used on the next connection).
	Credential func() (string, error)
	// Targets dial what streams ask for, on this host.
	Targets map[string]func(ctx context.Context) (net.Conn, error)
	// OnState hears "connected" and each failure (nil: nothing).
	OnState func(connected bool, err error)
	// OnStreamError hears a target that could not be dialed (nil:
	// nothing); the server sees its stream closed.
	OnStreamError func(target string, err error)
	// MaxBackoff bounds the wait between attempts (0: 30s).
	MaxBackoff time.Duration
}

// Run keeps the tunnel up until ctx ends, reconnecting with backoff (1s,
// doubling to MaxBackoff; back to 1s after a connection that lasted).
func (c *Client) Run(ctx context.Context) {
	maxWait := c.MaxBackoff
	if maxWait == 0 {
		maxWait = 30 * time.Second
	}
	wait := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		err := c.once(ctx)
		if c.OnState != nil && ctx.Err() == nil {
			c.OnState(false, err)
		}
		if time.Since(start) > maxWait {
			wait = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// once holds one connection until it drops.
func (c *Client) once(ctx context.Context) error {
	cred, err := c.Credential()
	if err != nil {
		return err
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+cred)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ws, resp, err := websocket.Dial(dctx, c.URL, &websocket.DialOptions{HTTPClient: c.HTTP, HTTPHeader: h})
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return errkind.Errorf(errkind.Auth, "tunnel to %s: the server refused this host's credential", c.URL)
		}
		return fmt.Errorf("tunnel to %s: %w", c.URL, err)
	}
	ws.SetReadLimit(-1)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	conn := websocket.NetConn(cctx, ws, websocket.MessageBinary)
	sess, err := yamux.Server(conn, yamuxConfig())
	if err != nil {
		conn.Close()
		return err
	}
	defer sess.Close()
	if c.OnState != nil {
		c.OnState(true, nil)
	}
	for {
		s, err := sess.AcceptStream()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("tunnel to %s dropped: %w", c.URL, err)
		}
		go c.relay(cctx, s)
	}
}

// relay connects a stream to the target its first line names.
func (c *Client) relay(ctx context.Context, s net.Conn) {
	defer s.Close()
	br := bufio.NewReaderSize(s, 64)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return
	}
	target := strings.TrimSuffix(string(line), "\n")
	dial := c.Targets[target]
	if dial == nil {
		c.streamError(target, errors.New("no such target"))
		return
	}
	t, err := dial(ctx)
	if err != nil {
		c.streamError(target, err)
		return
	}
	defer t.Close()
	Pipe(t, readConn{s, br})
}

func (c *Client) streamError(target string, err error) {
	if c.OnStreamError != nil {
		c.OnStreamError(target, err)
	}
}

// readConn reads through r what was buffered from its Conn.
type readConn struct {
	net.Conn
	r io.Reader
}

func (c readConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Pipe copies both ways between a and b, ending each direction with a
// half close (a yamux stream's Close is one), until both are done.
func Pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src) //nolint:errcheck // ends when either side does
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite() //nolint:errcheck
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}
