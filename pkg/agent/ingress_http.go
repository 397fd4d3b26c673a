package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/proxypath"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// How a browser or client presents a connect token to the HTTPS ingress.
const (
	// TokenParam carries a token in a URL (what `project open` prints). A
	// GET with it is answered with a session cookie and a redirect to the
	// same URL without it, so the token leaves the address bar; a token
	// is exchanged this way once.
	TokenParam = "cocalc_token"
	// SessionCookie is the host's session, scoped to one project port.
	SessionCookie = "cocalc_session"
)

func (g *ingress) startHTTPS(addr string, names []string) error {
	cert, err := g.tlsCert(names)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           g,
		TLSConfig:         &tls.Config{GetCertificate: g.getCertificate, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(g.s.log.Handler(), slog.LevelDebug),
	}
	g.mu.Lock()
	g.https = ln
	if issued, ok := g.loadACME(time.Now()); ok {
		g.serve(issued, certInfo(issued.Leaf, true))
	} else {
		g.serve(&cert, certInfo(cert.Leaf, false))
	}
	g.mu.Unlock()
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			g.s.log.Error("https ingress stopped", "err", err)
		}
	}()
	g.s.log.Info("https ingress listening", "addr", ln.Addr().String(), "cert_sha256", g.tlsPin)
	return nil
}

// ServeHTTP is the HTTPS ingress: strict path, then who, then the proxy.
func (g *ingress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t, ok := proxypath.Parse(proxypath.RequestPath(r))
	if !ok {
		http.Error(w, "not found: the ingress serves /<project_id>/port/<n>/ only", http.StatusNotFound)
		return
	}
	if t.Rest == "" {
		// The bare prefix: apps and the session cookie need the slash.
		u := proxypath.Prefix(t.Project, t.Port)
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, u, http.StatusMovedPermanently)
		return
	}
	view, err := g.s.access.current()
	if err != nil {
		refuseHTTP(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	if done := g.authorize(w, r, view, t); done {
		return
	}
	g.s.proj.sessionStart(t.Project)
	defer g.s.proj.sessionEnd(t.Project)
	g.proxy.serve(w, r, t)
}

// authorize finds who asks and checks that they may use t now. It
// answers the request itself (a refusal, or the redirect that exchanges
// a URL token for a cookie) and reports done, or leaves it to the proxy.
func (g *ingress) authorize(w http.ResponseWriter, r *http.Request, view *accessView, t proxypath.Target) (done bool) {
	tok, fromURL := bearer(r), false
	if tok == "" {
		if tok = r.URL.Query().Get(TokenParam); tok != "" {
			fromURL = true
		}
	}
	sess, sessErr := g.cookieSession(r, view, t)
	if fromURL && sess != nil && isPageLoad(r) {
		// Already signed in here (a reload of the link): just drop the token.
		http.Redirect(w, r, withoutToken(r), http.StatusSeeOther)
		return true
	}
	if tok == "" {
		switch {
		case sess != nil:
			return false
		case sessErr != nil:
			refuseErr(w, sessErr)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="cocalc-hosts"`)
			refuseHTTP(w, http.StatusUnauthorized, "no_token",
				fmt.Sprintf("no connect token: get a link with `cocalc-hosts project open %s --port %d`", t.Project, t.Port))
		}
		return true
	}
	c, err := view.verifier.Verify(tok)
	if err == nil {
		err = checkClaims(view, c, t)
	}
	if err != nil {
		refuseErr(w, err)
		return true
	}
	if fromURL && isPageLoad(r) {
		id, err := g.sessions.create(c, g.sessionTTL)
		if err != nil {
			refuseErr(w, err)
			return true
		}
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: proxypath.Prefix(t.Project, t.Port),
			Expires: time.Now().Add(g.sessionTTL), HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, withoutToken(r), http.StatusSeeOther)
		return true
	}
	return false
}

// checkClaims checks a verified token against the request and the
// access list: its project, its permissions, and the account's access.
func checkClaims(view *accessView, c tokens.Claims, t proxypath.Target) error {
	if c.Project != t.Project {
		return &tokens.Error{Reason: tokens.WrongProject, Msg: fmt.Sprintf("connect token refused: it is for project %s, not %s", c.Project, t.Project)}
	}
	if !c.Allows(tokens.PermHTTP, t.Port) {
		return &tokens.Error{Reason: tokens.NotPermitted, Msg: fmt.Sprintf("connect token refused: it does not allow HTTP to port %d", t.Port)}
	}
	return view.mayUse(c.Account(), c.Project)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// isPageLoad: a GET that a redirect can answer (not a WebSocket).
func isPageLoad(r *http.Request) bool {
	return r.Method == http.MethodGet && !strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// withoutToken is the request's URL without the token parameter.
func withoutToken(r *http.Request) string {
	q := r.URL.Query()
	q.Del(TokenParam)
	u := proxypath.RequestPath(r)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// cookieSession returns the request's valid session for t, nil when it
// has none, or why its session is no good any more.
func (g *ingress) cookieSession(r *http.Request, view *accessView, t proxypath.Target) (*session, error) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, nil
	}
	s := g.sessions.get(ck.Value)
	if s == nil || s.project != t.Project {
		return nil, nil
	}
	c := tokens.Claims{Project: s.project, Perms: []string{tokens.PermHTTP}, Ports: s.ports}
	c.Subject = s.account
	if kerr := view.verifier.KeyAccepted(s.kid); kerr != nil {
		kerr.Msg = "session refused: its connect token was " + kerr.Msg
		return nil, kerr
	}
	if err := checkClaims(view, c, t); err != nil {
		return nil, err
	}
	return s, nil
}

func refuseErr(w http.ResponseWriter, err error) {
	r := tokens.ReasonOf(err)
	status := http.StatusUnauthorized
	switch r {
	case tokens.WrongAudience, tokens.WrongProject, tokens.NotPermitted, tokens.Revoked:
		status = http.StatusForbidden
	case "":
		r = "refused"
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cocalc-hosts", error="invalid_token"`)
	}
	refuseHTTP(w, status, string(r), err.Error())
}

// refuseHTTP answers with one line: the reason's code, then the message.
func refuseHTTP(w http.ResponseWriter, status int, reason, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s: %s\n", reason, msg)
}

// session is a browser's sign-in on one project port, made from a
// connect token.
type session struct {
	account string
	project string
	ports   []int
	kid     string
	expires time.Time
}

// sessions holds the host's sessions and the ids of the tokens that were
// exchanged for one (until those tokens expire).
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	used map[string]time.Time
}

// maxSessions bounds memory; past it, expired entries are dropped first.
const maxSessions = 100000

func newSessions() *sessions {
	return &sessions{byID: map[string]*session{}, used: map[string]time.Time{}}
}

func (ss *sessions) create(c tokens.Claims, ttl time.Duration) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	now := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.used[c.ID]; ok {
		return "", &tokens.Error{Reason: tokens.NotPermitted,
			Msg: "connect token refused: this link was used already; get a new one with `cocalc-hosts project open`"}
	}
	if len(ss.byID) >= maxSessions || len(ss.used) >= maxSessions {
		ss.prune(now)
		if len(ss.byID) >= maxSessions || len(ss.used) >= maxSessions {
			return "", errors.New("too many sessions on this host; try again later")
		}
	}
	ss.used[c.ID] = c.ExpiresAt.Add(tokens.Leeway)
	ss.byID[id] = &session{account: c.Account(), project: c.Project, ports: c.Ports, kid: c.KID, expires: now.Add(ttl)}
	return id, nil
}

func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[id]
	if s != nil && time.Now().After(s.expires) {
		delete(ss.byID, id)
		return nil
	}
	return s
}

func (ss *sessions) prune(now time.Time) {
	for id, s := range ss.byID {
		if now.After(s.expires) {
			delete(ss.byID, id)
		}
	}
	for jti, exp := range ss.used {
		if now.After(exp) {
			delete(ss.used, jti)
		}
	}
}

// projectProxy forwards requests to ports inside project containers.
type projectProxy struct {
	rp *httputil.ReverseProxy
	tr *http.Transport
}

type targetKey struct{}

// upstreamHost names a project port as the transport's address; dial
// reads it back. It never reaches DNS.
func upstreamHost(t proxypath.Target) string {
	return "project-" + t.Project + ":" + strconv.Itoa(t.Port)
}

func newProjectProxy(s *server) *projectProxy {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			id, ok := strings.CutPrefix(host, "project-")
			n, perr := strconv.Atoi(port)
			if err != nil || !ok || perr != nil {
				return nil, fmt.Errorf("ingress: bad upstream %q", addr)
			}
			return s.proj.dialProject(ctx, id, n)
		},
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p := &projectProxy{tr: tr}
	p.rp = &httputil.ReverseProxy{
		Transport: tr,
		// 0: an answer of known length goes out in one write (headers and
		// body in one TLS record); streams (server-sent events, answers of
		// unknown length: long polls, progress) are flushed as they come,
		// which ReverseProxy does by itself for those.
		FlushInterval: 0,
		// Without a pool, every request allocates a 32 KiB copy buffer:
		// the garbage collector's work per request grows with it.
		BufferPool: &copyBuffers{},
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(proxypath.Target)
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", upstreamHost(t)
			// The app sees the name the browser used (WebSocket origin
			// checks compare it), and where the prefix ends.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Forwarded-Prefix", strings.TrimSuffix(proxypath.Prefix(t.Project, t.Port), "/"))
			scrubCredentials(pr.Out)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t := r.Context().Value(targetKey{}).(proxypath.Target)
			switch {
			case isCode(err, agentapi.CodeNotRunning):
				refuseHTTP(w, http.StatusServiceUnavailable, "not_running",
					fmt.Sprintf("project %s is not running; start it with `cocalc-hosts project start %s`", t.Project, t.Project))
			case errors.Is(err, syscall.ECONNREFUSED):
				refuseHTTP(w, http.StatusBadGateway, "nothing_listening",
					fmt.Sprintf("nothing listens on port %d in project %s", t.Port, t.Project))
			case errors.Is(err, context.Canceled):
				// The client went away.
			default:
				s.log.Warn("ingress proxy", "project", t.Project, "port", t.Port, "err", err)
				refuseHTTP(w, http.StatusBadGateway, "upstream", fmt.Sprintf("port %d in project %s: %v", t.Port, t.Project, err))
			}
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return p
}

// copyBuffers reuses the proxy's copy buffers across requests.
type copyBuffers struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (c *copyBuffers) Get() []byte {
	if b, ok := c.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, copyBufferSize)
}

func (c *copyBuffers) Put(b []byte) {
	if cap(b) == copyBufferSize {
		b = b[:copyBufferSize]
		c.p.Put(&b)
	}
}

func isCode(err error, code string) bool {
	var pe *projectError
	return errors.As(err, &pe) && pe.code == code
}

func (p *projectProxy) serve(w http.ResponseWriter, r *http.Request, t proxypath.Target) {
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

func (p *projectProxy) close() { p.tr.CloseIdleConnections() }

// scrubCredentials keeps the user's credentials for this host from the
// app: whoever runs a server in a project must not collect collaborators'
// tokens or sessions.
func scrubCredentials(out *http.Request) {
	if bearer(out) != "" {
		out.Header.Del("Authorization")
	}
	if out.URL.RawQuery != "" {
		if q := out.URL.Query(); q.Has(TokenParam) {
			q.Del(TokenParam)
			out.URL.RawQuery = q.Encode()
		}
	}
	cookies := out.Header.Values("Cookie")
	if len(cookies) == 0 {
		return
	}
	var kept []string
	for _, line := range cookies {
		for _, part := range strings.Split(line, ";") {
			if name, _, _ := strings.Cut(strings.TrimSpace(part), "="); name != SessionCookie {
				kept = append(kept, strings.TrimSpace(part))
			}
		}
	}
	out.Header.Del("Cookie")
	if len(kept) > 0 {
		out.Header.Set("Cookie", strings.Join(kept, "; "))
	}
}
