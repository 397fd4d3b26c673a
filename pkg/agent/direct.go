package agent

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
)

// Direct transfers (see agentapi/direct.go): the destination side accepts
// one connection per expected volume; the source side pushes to it.

// directConnectTimeout bounds connecting and the TLS handshake: a
// destination the source cannot reach quickly is relayed to instead.
const directConnectTimeout = 3 * time.Second

// directStall bounds how long a direct stream may make no progress: a
// network cut between the hosts would otherwise stall its TCP connection
// for many minutes. Both sides give up; the move's attempt fails and is
// retried.
const directStall = 20 * time.Second

// stallConn is a connection whose every read and write must make progress
// within directStall.
type stallConn struct{ *tls.Conn }

func (c stallConn) Read(p []byte) (int, error) {
	c.SetReadDeadline(time.Now().Add(directStall)) //nolint:errcheck
	n, err := c.Conn.Read(p)
	return n, stalled(err)
}

func (c stallConn) Write(p []byte) (int, error) {
	c.SetWriteDeadline(time.Now().Add(directStall)) //nolint:errcheck
	n, err := c.Conn.Write(p)
	return n, stalled(err)
}

// stallError is a direct stream that made no progress for directStall.
type stallError struct{ err error }

func (e stallError) Error() string {
	return fmt.Sprintf("no progress for %s (is the network between the hosts cut?): %v", directStall, e.err)
}

func (e stallError) Unwrap() error { return e.err }

// stalled says what a timeout on a direct stream means.
func stalled(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return stallError{err}
	}
	return err
}

// pushFailed is the last line of a failed push: a stall is worth
// another attempt (CodeStalled).
func pushFailed(n int64, err error) agentapi.PushProgress {
	p := agentapi.PushProgress{Bytes: n, Done: true, Error: err.Error()}
	if errors.As(err, new(stallError)) {
		p.Code = agentapi.CodeStalled
	}
	return p
}

// directs tracks the listeners and receives of expected transfers, so
// that stopping the agent closes them all, and dropping a project's
// transfer state first ends its receives.
type directs struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	receiving map[string]map[*receive]bool
}

// receive is one direct stream being received.
type receive struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func newDirects() *directs {
	ctx, cancel := context.WithCancel(context.Background())
	return &directs{ctx: ctx, cancel: cancel, receiving: map[string]map[*receive]bool{}}
}

// begin records a receive of project id; the returned func ends it.
func (d *directs) begin(id string, cancel context.CancelFunc) func() {
	r := &receive{cancel: cancel, done: make(chan struct{})}
	d.mu.Lock()
	if d.receiving[id] == nil {
		d.receiving[id] = map[*receive]bool{}
	}
	d.receiving[id][r] = true
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.receiving[id], r)
		if len(d.receiving[id]) == 0 {
			delete(d.receiving, id)
		}
		d.mu.Unlock()
		close(r.done)
	}
}

// end cancels project id's receives and waits until they have cleaned up.
func (d *directs) end(ctx context.Context, id string) error {
	d.mu.Lock()
	var rs []*receive
	for r := range d.receiving[id] {
		rs = append(rs, r)
	}
	d.mu.Unlock()
	for _, r := range rs {
		r.cancel()
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (d *directs) stop() {
	d.cancel()
	d.wg.Wait()
}

func (s *server) handleExpect(r *http.Request, req agentapi.ExpectRequest) (any, error) {
	id := r.PathValue("id")
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	cred, err := base64.StdEncoding.DecodeString(req.Credential)
	switch {
	case err != nil || len(cred) < agentapi.CredentialBytes:
		return nil, perr(agentapi.CodeInvalid, "the transfer credential must be base64 of at least %d bytes", agentapi.CredentialBytes)
	case req.Method != agentapi.TransferBtrfs && req.Method != agentapi.TransferTar:
		return nil, perr(agentapi.CodeInvalid, "transfer method %q is not %q or %q", req.Method, agentapi.TransferBtrfs, agentapi.TransferTar)
	case req.Move == "" || req.Volume.Name == "":
		return nil, perr(agentapi.CodeInvalid, "an expected transfer needs a move and a volume name")
	case req.TTLSeconds <= 0 || req.TTLSeconds > agentapi.MaxExpectSeconds:
		return nil, perr(agentapi.CodeInvalid, "ttl_seconds %d is not between 1 and %d", req.TTLSeconds, agentapi.MaxExpectSeconds)
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	cert, fp, err := transferCert(ttl)
	if err != nil {
		return nil, err
	}
	ln, err := listenTransfer(req.Address)
	if err != nil {
		return nil, perr(agentapi.CodeInternal, "listen for a direct transfer: %v", err)
	}
	want := agentapi.DirectHello{Project: id, Move: req.Move, Volume: req.Volume.Name, Credential: req.Credential}
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	s.direct.wg.Add(1)
	go func() {
		defer s.direct.wg.Done()
		s.acceptOne(tl, ttl, want, req)
	}()
	return agentapi.ExpectReply{Port: ln.Addr().(*net.TCPAddr).Port, Fingerprint: fp}, nil
}

// listenTransfer opens an ephemeral port on addr when it is one of this
// host's addresses, else (NAT, or no address given) on all of them.
func listenTransfer(addr string) (net.Listener, error) {
	if ip := net.ParseIP(addr); ip != nil {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return ln, err
		}
	}
	return net.Listen("tcp", ":0")
}

// acceptOne takes the first connection within ttl and closes the port:
// one use, whatever the hello says.
func (s *server) acceptOne(ln net.Listener, ttl time.Duration, want agentapi.DirectHello, req agentapi.ExpectRequest) {
	ctx, cancel := context.WithTimeout(s.direct.ctx, ttl)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	raw, err := ln.Accept()
	stop()
	ln.Close()
	if err != nil {
		return // expired, or the agent stops
	}
	conn := stallConn{raw.(*tls.Conn)}
	defer conn.Close()
	// Cancelled when the agent stops or the project's transfer state is
	// dropped; not at the expiry, which only bounds the wait for the
	// connection.
	ctx, cancel = context.WithCancel(s.direct.ctx)
	defer cancel()
	stopConn := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopConn()

	br := bufio.NewReaderSize(conn, 64<<10)
	enc := json.NewEncoder(conn)
	var got agentapi.DirectHello
	line, err := br.ReadSlice('\n')
	if err == nil {
		err = json.Unmarshal(line, &got)
	}
	if err != nil {
		s.log.Warn("direct transfer: bad hello", "project", want.Project, "remote", conn.RemoteAddr().String())
		enc.Encode(agentapi.DirectAnswer{Error: "the destination could not read the hello"}) //nolint:errcheck
		return
	}
	if !helloMatches(got, want) {
		s.log.Warn("direct transfer refused", "project", want.Project, "volume", want.Volume, "remote", conn.RemoteAddr().String())
		enc.Encode(agentapi.DirectAnswer{Error: "the destination refused the transfer: credential, project, move or volume do not match"}) //nolint:errcheck
		return
	}
	// An older stream of the project still arriving (its network cut)
	// is superseded.
	if err := s.direct.end(ctx, want.Project); err != nil {
		return
	}
	defer s.direct.begin(want.Project, cancel)()
	if err := enc.Encode(agentapi.DirectAnswer{}); err != nil {
		return
	}
	var n int64
	switch req.Method {
	case agentapi.TransferBtrfs:
		n, err = s.proj.st.Receive(ctx, want.Project, storage.Volume{Name: req.Volume.Name, Identity: req.Volume.Identity}, br)
	default:
		n, err = s.proj.st.ReceiveTar(ctx, want.Project, br)
	}
	ans := agentapi.DirectAnswer{Bytes: n}
	if err != nil {
		ans.Error = err.Error()
		s.log.Error("direct transfer: receive failed", "project", want.Project, "volume", want.Volume, "err", err)
	}
	io.Copy(io.Discard, io.LimitReader(br, 1<<20)) //nolint:errcheck // the rest of a failed stream
	enc.Encode(ans)                                //nolint:errcheck // the source notices a missing answer
}

// helloMatches compares every field; the credential in constant time.
func helloMatches(got, want agentapi.DirectHello) bool {
	ok := subtle.ConstantTimeCompare([]byte(got.Credential), []byte(want.Credential)) == 1
	return ok && got.Project == want.Project && got.Move == want.Move && got.Volume == want.Volume
}

// transferCert makes a self-signed certificate for one transfer and
// returns it with its fingerprint (hex SHA-256 of the DER).
func transferCert(ttl time.Duration) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("direct transfer key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "cocalc-hosts transfer"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(ttl + time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("direct transfer certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, agentapi.CertPin(der), nil
}

// countingWriter counts bytes and reports them at most once a second;
// err is the first write error.
type countingWriter struct {
	w      io.Writer
	n      int64
	err    error
	last   time.Time
	report func(n int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	if t := time.Now(); t.Sub(c.last) >= time.Second {
		c.last = t
		c.report(c.n)
	}
	return n, err
}

// handlePush connects to an expected transfer and sends one volume. A
// failure before the stream is an error reply with CodeUnreachable; after
// it, the last PushProgress line carries the error.
func (s *server) handlePush(w http.ResponseWriter, r *http.Request) {
	var req agentapi.PushRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	id := r.PathValue("id")
	if req.Method != agentapi.TransferBtrfs && req.Method != agentapi.TransferTar {
		s.writeErr(w, r, perr(agentapi.CodeInvalid, "transfer method %q is not %q or %q", req.Method, agentapi.TransferBtrfs, agentapi.TransferTar))
		return
	}
	conn, err := dialTransfer(r.Context(), req.Addr, req.Fingerprint, req.Hello)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(r.Context(), func() { conn.Close() })
	defer stop()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	line := func(p agentapi.PushProgress) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(p) //nolint:errcheck // the caller notices a cut answer
		rc.Flush()                   //nolint:errcheck
	}
	cw := &countingWriter{w: stallConn{conn}, last: time.Now(), report: func(n int64) { line(agentapi.PushProgress{Bytes: n}) }}
	switch req.Method {
	case agentapi.TransferBtrfs:
		_, err = s.proj.st.Send(r.Context(), id, storage.Step{Name: req.Name, Parent: req.Parent}, cw)
	default:
		_, err = s.proj.st.SendTar(r.Context(), id, req.Name, cw)
	}
	if err == nil {
		err = conn.CloseWrite()
	}
	if cw.err != nil {
		// The sending command only saw its output close.
		err = fmt.Errorf("the stream to %s stopped after %d bytes: %w", req.Addr, cw.n, cw.err)
	}
	if err != nil {
		s.log.Error("push failed", "project", id, "volume", req.Name, "err", err)
		line(pushFailed(cw.n, fmt.Errorf("source: %w", err)))
		return
	}
	var ans agentapi.DirectAnswer
	if err := json.NewDecoder(io.LimitReader(stallConn{conn}, 1<<20)).Decode(&ans); err != nil {
		line(pushFailed(cw.n, fmt.Errorf("the destination did not answer after the stream: %w", err)))
		return
	}
	if ans.Error != "" {
		line(agentapi.PushProgress{Bytes: cw.n, Done: true, Error: "destination: " + ans.Error})
		return
	}
	line(agentapi.PushProgress{Bytes: ans.Bytes, Done: true})
}

// dialTransfer connects to an expected transfer, checks its certificate,
// and has the hello accepted; every failure is CodeUnreachable.
func dialTransfer(ctx context.Context, addr, fp string, hello agentapi.DirectHello) (*tls.Conn, error) {
	unreachable := func(format string, args ...any) error {
		return perr(agentapi.CodeUnreachable, "direct transfer to %s: "+format, append([]any{addr}, args...)...)
	}
	d := net.Dialer{Timeout: directConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, unreachable("%v", err)
	}
	// TLS 1.3 only: both ends are agents of this release.
	pc := agentapi.PinnedTLS(fp)
	pc.MinVersion = tls.VersionTLS13
	conn := tls.Client(raw, pc)
	hctx, cancel := context.WithTimeout(ctx, directConnectTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, unreachable("%v", err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck
	if err := json.NewEncoder(conn).Encode(hello); err != nil {
		conn.Close()
		return nil, unreachable("%v", err)
	}
	var ans agentapi.DirectAnswer
	if err := json.NewDecoder(io.LimitReader(conn, 1<<16)).Decode(&ans); err != nil {
		conn.Close()
		return nil, unreachable("no answer to the hello: %v", err)
	}
	if ans.Error != "" {
		conn.Close()
		return nil, unreachable("%s", ans.Error)
	}
	conn.SetDeadline(time.Time{}) //nolint:errcheck
	return conn, nil
}
