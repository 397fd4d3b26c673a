// Package sshpool keeps one SSH connection per host and runs commands
// and scripts over it, using golang.org/x/crypto/ssh (never the ssh
// program). It logs in with the fleet key, checks host keys against their
// pins (recording the key seen on first contact), waits for hosts that are
// still booting, and reaches a host agent's unix socket through the
// connection. Every successful contact is reported, as host health.
package sshpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/fleet"
)

// Target is a host to reach.
type Target struct {
	// HostID keys the pinned host key and the contact record.
	HostID string
	// Name is the host's name, used in messages.
	Name string
	Host string
	Port int // 0 means 22
	User string
	// Reverse: the host dials out to the control plane (create
	// --reverse) and Host:Port is its SSH server as seen from the host;
	// the connection goes through the host's tunnel (Pool.Tunnel).
	Reverse bool
}

// Addr is host:port.
func (t Target) Addr() string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

func (t Target) String() string { return t.User + "@" + t.Addr() }

// IsRoot reports whether the login user is root (no sudo needed).
func (t Target) IsRoot() bool { return t.User == "root" }

func (t Target) label() string {
	if t.Name != "" {
		return t.Name
	}
	return t.String()
}

// Pins keeps the host keys the pool accepts (the state database).
type Pins interface {
	// Pinned returns the pinned key of hostID (authorized_keys format),
	// or ok false when none is pinned.
	Pinned(ctx context.Context, hostID string) (key string, ok bool, err error)
	// PinFirst pins key unless a key is pinned already, and returns the
	// key in force.
	PinFirst(ctx context.Context, hostID, key string) (string, error)
	// Contact records a successful contact. Errors are the recorder's
	// business: health bookkeeping must not fail real work.
	Contact(ctx context.Context, hostID string, at time.Time)
}

// Pool holds one connection per host.
type Pool struct {
	// Identity returns the fleet key. It is called at the first dial, so
	// that a process that never dials never makes a key.
	Identity func() (*fleet.Identity, error)
	Pins     Pins
	// DialTimeout bounds one connection attempt (TCP and handshake).
	DialTimeout time.Duration
	// KeepAlive is how often an idle connection is checked; a connection
	// that does not answer is dropped and redialled on next use.
	KeepAlive time.Duration
	// ContactEvery throttles contact records per host.
	ContactEvery time.Duration
	Now          func() time.Time
	// Tunnel opens a connection to a reverse-connected host's SSH server
	// through its tunnel (nil: this process reaches no such host).
	Tunnel func(ctx context.Context, t Target) (net.Conn, error)

	mu     sync.Mutex
	conns  map[string]*conn
	closed bool
}

type conn struct {
	client *ssh.Client
	done   chan struct{}
	// lastContact is when the contact was last recorded.
	lastContact time.Time
}

// New returns a pool that checks host keys with pins and logs in with
// the fleet key identity returns, which it calls (once) on first use:
// commands that never dial never load or make the key.
func New(identity func() (*fleet.Identity, error), pins Pins) *Pool {
	var once sync.Once
	var id *fleet.Identity
	var err error
	load := func() (*fleet.Identity, error) {
		once.Do(func() { id, err = identity() })
		return id, err
	}
	return &Pool{Identity: load, Pins: pins, DialTimeout: 15 * time.Second, KeepAlive: 30 * time.Second,
		ContactEvery: 30 * time.Second, Now: time.Now, conns: map[string]*conn{}}
}

func connKey(t Target) string { return t.HostID + "|" + t.String() }

// Client returns the pool's connection to t, dialing it (once) if there
// is none or the old one died.
func (p *Pool) Client(ctx context.Context, t Target) (*ssh.Client, error) {
	key := connKey(t)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("ssh pool is closed")
	}
	if c, ok := p.conns[key]; ok {
		select {
		case <-c.done:
			delete(p.conns, key)
		default:
			p.mu.Unlock()
			return c.client, nil
		}
	}
	p.mu.Unlock()

	client, err := p.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	c := &conn{client: client, done: make(chan struct{})}
	p.mu.Lock()
	if old, ok := p.conns[key]; ok && !isDone(old.done) {
		// Another goroutine dialled at the same time: keep one.
		p.mu.Unlock()
		client.Close()
		return old.client, nil
	}
	if p.closed {
		p.mu.Unlock()
		client.Close()
		return nil, errors.New("ssh pool is closed")
	}
	p.conns[key] = c
	p.mu.Unlock()
	go func() { client.Wait(); close(c.done) }() //nolint:errcheck // Wait's error only says why it ended
	go p.keepAlive(key, t, c)
	p.contact(ctx, t, c, true)
	return client, nil
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (p *Pool) keepAlive(key string, t Target, c *conn) {
	tick := time.NewTicker(p.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			p.drop(key, c)
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case err := <-reply:
			if err == nil {
				p.contact(context.Background(), t, c, false)
				continue
			}
		case <-time.After(p.DialTimeout):
		}
		c.client.Close()
		p.drop(key, c)
		return
	}
}

func (p *Pool) drop(key string, c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[key] == c {
		delete(p.conns, key)
	}
}

// contact records a successful contact, at most every ContactEvery per
// connection unless force.
func (p *Pool) contact(ctx context.Context, t Target, c *conn, force bool) {
	if p.Pins == nil || t.HostID == "" {
		return
	}
	now := p.Now()
	p.mu.Lock()
	if !force && c != nil && now.Sub(c.lastContact) < p.ContactEvery {
		p.mu.Unlock()
		return
	}
	if c != nil {
		c.lastContact = now
	}
	p.mu.Unlock()
	p.Pins.Contact(context.WithoutCancel(ctx), t.HostID, now)
}

// touch records a contact for t's current connection (throttled).
func (p *Pool) touch(ctx context.Context, t Target) {
	p.mu.Lock()
	c := p.conns[connKey(t)]
	p.mu.Unlock()
	if c != nil {
		p.contact(ctx, t, c, false)
	}
}

// Forget closes and drops the connection to t, if any.
func (p *Pool) Forget(t Target) {
	key := connKey(t)
	p.mu.Lock()
	c := p.conns[key]
	delete(p.conns, key)
	p.mu.Unlock()
	if c != nil {
		c.client.Close()
	}
}

// Close closes every connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*conn{}
	p.mu.Unlock()
	for _, c := range conns {
		c.client.Close()
	}
	return nil
}

// dial makes one connection attempt.
func (p *Pool) dial(ctx context.Context, t Target) (*ssh.Client, error) {
	if p.Identity == nil {
		return nil, errors.New("ssh pool has no fleet key")
	}
	id, err := p.Identity()
	if err != nil {
		return nil, err
	}
	if t.Host == "" || t.User == "" {
		return nil, connectErr(errkind.Invalid, fmt.Errorf("host %s has no SSH address or user", t.label()))
	}
	cfg := &ssh.ClientConfig{
		User:            t.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(id.Signer())},
		HostKeyCallback: p.hostKeyCallback(ctx, t),
		Timeout:         p.DialTimeout,
	}
	if p.Pins != nil && t.HostID != "" {
		pinned, ok, err := p.Pins.Pinned(ctx, t.HostID)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", t.label(), err)
		}
		if ok {
			// Ask for the pinned key's type, as OpenSSH does for known
			// hosts; otherwise a server with several keys may show
			// another one and look changed.
			if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned)); err == nil {
				cfg.HostKeyAlgorithms = algorithmsFor(k.Type())
			}
		} else {
			cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
		}
	}
	dctx, cancel := context.WithTimeout(ctx, p.DialTimeout)
	defer cancel()
	nc, err := p.connect(dctx, t)
	if err != nil {
		return nil, &dialError{t: t, err: err}
	}
	// The handshake has no context: bound it with a deadline, and cut
	// it when ctx ends.
	nc.SetDeadline(time.Now().Add(p.DialTimeout)) //nolint:errcheck
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, t.Addr(), cfg)
	stop()
	if err != nil {
		nc.Close()
		return nil, classifyHandshake(t, id, err)
	}
	nc.SetDeadline(time.Time{}) //nolint:errcheck
	return ssh.NewClient(sc, chans, reqs), nil
}

// connect opens the connection an SSH handshake with t runs over: TCP,
// or a stream of the host's tunnel.
func (p *Pool) connect(ctx context.Context, t Target) (net.Conn, error) {
	if !t.Reverse {
		d := net.Dialer{Timeout: p.DialTimeout}
		return d.DialContext(ctx, "tcp", t.Addr())
	}
	if p.Tunnel == nil {
		return nil, errkind.Errorf(errkind.Unavailable, "host %s is reverse-connected and this process takes no tunnels", t.label())
	}
	return p.Tunnel(ctx, t)
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

func (p *Pool) hostKeyCallback(ctx context.Context, t Target) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if p.Pins == nil || t.HostID == "" {
			return errors.New("no host key pins configured; refusing to trust an unknown host key")
		}
		offered := fleet.KeyString(key)
		pinned, ok, err := p.Pins.Pinned(ctx, t.HostID)
		if err != nil {
			return err
		}
		if !ok {
			if pinned, err = p.Pins.PinFirst(ctx, t.HostID, offered); err != nil {
				return err
			}
		}
		if !fleet.SameKey(pinned, offered) {
			return &fleet.KeyChangedError{Host: t.label(), Addr: t.Addr(), Pinned: fleet.Fingerprint(pinned), Offered: ssh.FingerprintSHA256(key)}
		}
		return nil
	}
}

// HostKey returns the host key t offers now, without logging in and
// without checking it against its pin (for a deliberate re-pin).
func (p *Pool) HostKey(ctx context.Context, t Target) (ssh.PublicKey, error) {
	var got ssh.PublicKey
	errGot := errors.New("host key received")
	cfg := &ssh.ClientConfig{
		User: t.User,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got = key
			return errGot
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256},
		Timeout:           p.DialTimeout,
	}
	nc, err := p.connect(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", t.Addr(), err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(p.DialTimeout)) //nolint:errcheck
	_, _, _, err = ssh.NewClientConn(nc, t.Addr(), cfg)
	if got == nil {
		return nil, fmt.Errorf("SSH handshake with %s: %w", t.Addr(), err)
	}
	return got, nil
}

// dialError is a failed TCP connection: the host may still be booting.
type dialError struct {
	t   Target
	err error
}

func (e *dialError) Error() string { return fmt.Sprintf("connect to %s: %v", e.t.Addr(), e.err) }
func (e *dialError) Unwrap() error { return e.err }

// AuthError is a login the host refused.
type AuthError struct {
	Target      Target
	Fingerprint string
	Err         error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("SSH login as %s was refused for the fleet key %s (%v). Make sure user %s exists on %s and authorize the key: "+
		"append the line `cocalc-hosts ssh-key` prints to ~%s/.ssh/authorized_keys there, then retry",
		e.Target, e.Fingerprint, e.Err, e.Target.User, e.Target.Host, e.Target.User)
}

func (e *AuthError) Unwrap() error { return e.Err }

func classifyHandshake(t Target, id *fleet.Identity, err error) error {
	var kc *fleet.KeyChangedError
	if errors.As(err, &kc) {
		return connectErr(errkind.Auth, kc)
	}
	if strings.Contains(err.Error(), "unable to authenticate") || strings.Contains(err.Error(), "no supported methods remain") {
		return connectErr(errkind.Auth, &AuthError{Target: t, Fingerprint: id.Fingerprint(), Err: err})
	}
	// EOF or a reset during the handshake: sshd is starting or busy.
	return connectErr(errkind.Transient, fmt.Errorf("SSH handshake with %s: %w", t.Addr(), err))
}

// connectErr classifies a failed connection attempt.
func connectErr(k errkind.Kind, err error) error { return errkind.Errorf(k, "ssh connect: %w", err) }

// retryable reports whether waiting longer may help.
func retryable(err error) bool {
	var de *dialError
	if errors.As(err, &de) {
		return true
	}
	switch errkind.Of(err) {
	case errkind.Transient, errkind.Internal: // unclassified counts as transient
		return !errors.Is(err, context.Canceled)
	}
	return false
}

// Wait connects to t, retrying with backoff while the host does not
// answer (a VM still booting), until wait passes. A refused login or a
// changed host key ends the wait at once. progress hears about the wait.
func (p *Pool) Wait(ctx context.Context, t Target, wait time.Duration, progress func(string)) (*ssh.Client, error) {
	start := p.Now()
	deadline := start.Add(wait)
	delay := 250 * time.Millisecond
	attempts := 0
	lastReport := time.Time{}
	for {
		attempts++
		c, err := p.Client(ctx, t)
		if err == nil {
			return c, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		now := p.Now()
		if !now.Before(deadline) {
			// Not retried: it already waited as long as it was asked to.
			return nil, connectErr(errkind.Invalid, &UnreachableError{
				Target: t, Waited: now.Sub(start).Round(time.Second), Attempts: attempts, Last: err})
		}
		if progress != nil && now.Sub(lastReport) >= 10*time.Second {
			progress(fmt.Sprintf("waiting for SSH on %s (%v)", t, errors.Unwrap(err)))
			lastReport = now
		}
		sleep := min(delay, deadline.Sub(now))
		sleep = sleep/2 + rand.N(sleep/2+1)
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// UnreachableError is a host that did not answer SSH in time.
type UnreachableError struct {
	Target   Target
	Waited   time.Duration
	Attempts int
	Last     error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach SSH on %s: no answer after %s (%d attempts; last: %v). Check the address, that the machine is up, "+
		"and that port %d is open to this machine, then retry", e.Target, e.Waited, e.Attempts, e.Last, portOf(e.Target))
}

func (e *UnreachableError) Unwrap() error { return e.Last }

func portOf(t Target) int {
	if t.Port == 0 {
		return 22
	}
	return t.Port
}

// session opens a session on t's connection, redialling once if the
// pooled connection turns out to be dead.
func (p *Pool) session(ctx context.Context, t Target) (*ssh.Session, error) {
	for attempt := 0; ; attempt++ {
		c, err := p.Client(ctx, t)
		if err != nil {
			return nil, err
		}
		s, err := c.NewSession()
		if err == nil {
			return s, nil
		}
		p.Forget(t)
		if attempt == 1 {
			if lost := p.lost(t, "as a session opened", err); lost != nil {
				return nil, lost
			}
			return nil, fmt.Errorf("open SSH session on %s: %w", t, err)
		}
	}
}

// ExitError is a remote command that exited non-zero.
type ExitError struct {
	Status int
	Err    error
}

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Status) }
func (e *ExitError) Unwrap() error { return e.Err }

// Run runs command (a shell command line) on t as the login user. stdin
// may be nil. Each line of its output (stdout and stderr together) goes to
// onLine, which may be nil. A non-zero exit is an *ExitError.
func (p *Pool) Run(ctx context.Context, t Target, command string, stdin io.Reader, onLine func(string)) error {
	s, err := p.session(ctx, t)
	if err != nil {
		return err
	}
	defer s.Close()
	// Each stream gets its own line buffer (a partial line on one must
	// not swallow the other's), and one lock serializes the callback.
	var mu sync.Mutex
	locked := func(l string) {
		if onLine != nil {
			mu.Lock()
			defer mu.Unlock()
			onLine(l)
		}
	}
	lw, ew := newLineWriter(locked), newLineWriter(locked)
	s.Stdout, s.Stderr = lw, ew
	if stdin != nil {
		s.Stdin = stdin
	}
	if err := s.Start(command); err != nil {
		if lost := p.lost(t, "as the command started", err); lost != nil {
			return lost
		}
		return fmt.Errorf("run on %s: %w", t, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Signal(ssh.SIGTERM) //nolint:errcheck // best effort; closing ends it anyway
		s.Close()
		<-done
		lw.flush()
		ew.flush()
		return ctx.Err()
	}
	lw.flush()
	ew.flush()
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Status: ee.ExitStatus(), Err: err}
	}
	if err != nil {
		if lost := p.lost(t, "while the command ran", err); lost != nil {
			return lost
		}
		return fmt.Errorf("run on %s: %w", t, err)
	}
	p.touch(ctx, t)
	return nil
}

// lost returns err as a transient error that says so when it means the
// connection to t died (when: the step it died in): a command that ended
// without an exit status, or a request answered by EOF. The network or the
// machine went away, and whoever retries gets a new connection. Any other
// error (a request the server refused) gives nil.
func (p *Pool) lost(t Target, when string, err error) error {
	var missing *ssh.ExitMissingError
	if !errors.As(err, &missing) && !errors.Is(err, io.EOF) {
		return nil
	}
	p.Forget(t)
	return errkind.Errorf(errkind.Transient, "run on %s: the SSH connection was lost %s (the network or the machine went away): %w", t, when, err)
}

// Output runs command and returns its output (stdout and stderr).
func (p *Pool) Output(ctx context.Context, t Target, command string, stdin io.Reader) (string, error) {
	var b strings.Builder
	err := p.Run(ctx, t, command, stdin, func(l string) { b.WriteString(l); b.WriteByte('\n') })
	return b.String(), err
}

// RootCommand wraps a command line so that it runs as root: as is when
// the login user is root, else through `sudo -n` (never prompting, since
// nobody is there to type a password).
func RootCommand(t Target, argv ...string) string {
	q := ShellJoin(argv)
	if t.IsRoot() {
		return q
	}
	return "sudo -n -- " + q
}

// Script runs a POSIX shell script as root on t, with args as $1...,
// stdin and line output as Run. The script travels in the command line,
// so it must hold no secrets; secrets go on stdin.
func (p *Pool) Script(ctx context.Context, t Target, name, script string, args []string, stdin io.Reader, onLine func(string)) error {
	argv := append([]string{"/bin/sh", "-c", script, name}, args...)
	return p.Run(ctx, t, RootCommand(t, argv...), stdin, onLine)
}

// ShellJoin quotes argv for a POSIX shell.
func ShellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = ShellQuote(a)
	}
	return strings.Join(out, " ")
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// DialUnix connects to a unix socket on t. As root the connection is
// forwarded by sshd itself (direct-streamlocal); other users cannot open
// a root-only socket, so relay (a command line run through sudo that
// joins its stdin and stdout to the socket) carries it instead, one
// session per connection. An empty relay means direct forwarding only.
func (p *Pool) DialUnix(ctx context.Context, t Target, socket string, relay []string) (net.Conn, error) {
	if t.IsRoot() || len(relay) == 0 {
		c, err := p.Client(ctx, t)
		if err != nil {
			return nil, err
		}
		nc, err := c.Dial("unix", socket)
		if err == nil {
			p.touch(ctx, t)
			return nc, nil
		}
		if len(relay) == 0 || !strings.Contains(err.Error(), "prohibited") {
			return nil, fmt.Errorf("forward %s on %s: %w", socket, t, err)
		}
		// sshd forbids socket forwarding: fall back to the relay.
	}
	s, err := p.session(ctx, t)
	if err != nil {
		return nil, err
	}
	in, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	var errBuf limitedBuffer
	s.Stderr = &errBuf
	if err := s.Start(RootCommand(t, relay...)); err != nil {
		s.Close()
		return nil, fmt.Errorf("relay to %s on %s: %w", socket, t, err)
	}
	p.touch(ctx, t)
	return &sessionConn{s: s, in: in, out: out, stderr: &errBuf, t: t}, nil
}

// sessionConn is a net.Conn over a session's stdin and stdout.
type sessionConn struct {
	s      *ssh.Session
	in     io.WriteCloser
	out    io.Reader
	stderr *limitedBuffer
	t      Target
	once   sync.Once
}

func (c *sessionConn) Read(b []byte) (int, error) {
	n, err := c.out.Read(b)
	if err == io.EOF && n == 0 {
		if msg := strings.TrimSpace(c.stderr.String()); msg != "" {
			return 0, fmt.Errorf("relay on %s: %s", c.t, msg)
		}
	}
	return n, err
}

func (c *sessionConn) Write(b []byte) (int, error) { return c.in.Write(b) }

func (c *sessionConn) Close() error {
	c.once.Do(func() { c.in.Close(); c.s.Close() })
	return nil
}

func (c *sessionConn) LocalAddr() net.Addr  { return relayAddr("local") }
func (c *sessionConn) RemoteAddr() net.Addr { return relayAddr(c.t.String()) }

// Deadlines are not supported by a session; callers cancel by Close
// (net/http does).
func (c *sessionConn) SetDeadline(time.Time) error      { return nil }
func (c *sessionConn) SetReadDeadline(time.Time) error  { return nil }
func (c *sessionConn) SetWriteDeadline(time.Time) error { return nil }

type relayAddr string

func (a relayAddr) Network() string { return "ssh-relay" }
func (a relayAddr) String() string  { return string(a) }

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// lineWriter splits one stream into lines for a callback.
type lineWriter struct {
	mu     sync.Mutex
	buf    []byte
	onLine func(string)
}

func newLineWriter(onLine func(string)) *lineWriter { return &lineWriter{onLine: onLine} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		if w.onLine != nil {
			w.onLine(line)
		}
	}
	// A runaway line without newlines is passed on in pieces.
	if len(w.buf) > 64<<10 {
		if w.onLine != nil {
			w.onLine(string(w.buf))
		}
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 && w.onLine != nil {
		w.onLine(strings.TrimRight(string(w.buf), "\r"))
	}
	w.buf = nil
}

// ServeRelay is the far end of DialUnix's relay, run on the host (as
// `cocalc-hosts agent-relay SOCKET`, through sudo): it joins in and out
// to one connection to the unix socket.
func ServeRelay(ctx context.Context, socket string, in io.Reader, out io.Writer) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return err
	}
	defer c.Close()
	go func() {
		io.Copy(c, in) //nolint:errcheck // the reply side reports what matters
		// The request is complete: let the other end see end of input.
		if uc, ok := c.(*net.UnixConn); ok {
			uc.CloseWrite() //nolint:errcheck
		}
	}()
	_, err = io.Copy(out, c)
	return err
}
