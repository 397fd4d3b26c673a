// Package server is the HTTP API of `cocalc-hosts serve`: every operation
// the command layer offers, as versioned JSON under /api/v1, for callers
// identified by an API key (pkg/accounts). It authorizes each request by
// the caller's identity with the rules of the domain services (owner,
// collaborator, shared pool, admin, --as for admins), limits each
// account's request rate, and appends what callers change to the audit
// log. Errors travel as {"error": {"kind", "message"}} with the kind's
// HTTP status (pkg/errkind), so a client rebuilds an error of the same
// kind and the CLI exits with the same code as in direct mode.
//
// Like every package but the command layer, it prints nothing: requests
// are logged through the given slog.Logger.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/accounts"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/proxypath"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// Prefix is the versioned root of the API.
const Prefix = "/api/v1"

// AsHeader names the account an admin acts for (the CLI's --as).
const AsHeader = "X-Cocalc-As"

// DefaultMaxBody bounds a request body.
const DefaultMaxBody = 1 << 20

// reTrickyEscape finds an escaped dot or backslash in a path.
var reTrickyEscape = lazyre.New(`(?i)%(2e|5c)`)

// Server serves the API on the domain services of one process.
type Server struct {
	Store    store.Store
	Hosts    *hosts.Service
	Projects *projects.Service
	Accounts *accounts.Service
	// Ops answer cost, catalog, providers and reconcile.
	Ops Ops
	Now func() time.Time
	// Log hears one line per request (never a key); nil: discarded.
	Log *slog.Logger
	// RateLimit is each account's sustained requests per second, Burst
	// how many it may make at once (0: no limit).
	RateLimit float64
	Burst     int
	// MaxBody bounds request bodies (0: DefaultMaxBody).
	MaxBody int64
	// MaxWait bounds how long a request may wait for a job (0: 30s).
	MaxWait time.Duration
	// Events are the events of the jobs this process's worker runs
	// (nil: none are, a hub without publishers).
	Events *Hub
	// Tunnels holds the tunnels of reverse-connected hosts (nil: this
	// server takes none).
	Tunnels *tunnel.Registry
	// Name says which process this is where it is recorded as holding a
	// host's tunnel (host_tunnels.holder).
	Name string

	limits   *limiter
	quit     chan struct{}
	quitOnce sync.Once
	// ingressPools reach reverse-connected hosts' HTTPS ingress
	// (ingressTransport).
	ingressMu    sync.Mutex
	ingressPools map[string]*http.Transport
}

// Shutdown ends the streams that follow jobs, so that an http.Server's
// Shutdown need not wait for them (register it with RegisterOnShutdown).
func (s *Server) Shutdown() { s.quitOnce.Do(func() { close(s.quit) }) }

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error WireError `json:"error"`
}

// WireError is an error on the wire: its kind's code and its message, and
// for a missing thing what it was (so that the CLI can say where to look).
type WireError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Type    string `json:"type,omitempty"`
	Name    string `json:"name,omitempty"`
}

// identity is who makes a request.
type identity struct {
	account model.Account
	key     model.APIKey
	as      string
}

func (id identity) caller() projects.Caller {
	return projects.Caller{Account: id.account.ID, As: id.as}
}

// request is what a handler gets: the request, its caller, and its body
// decoded strictly.
type request struct {
	*http.Request
	s  *Server
	id identity
}

// decode reads the JSON body into v: application/json, at most MaxBody
// bytes, no unknown fields, nothing after the value. An empty body leaves
// v as it is (every body field is optional).
func (r *request) decode(v any) error {
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errkind.Errorf(errkind.Invalid, "request body is over %d bytes", tooBig.Limit)
	}
	if err != nil {
		return errkind.Errorf(errkind.Invalid, "read request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return errkind.Errorf(errkind.Invalid, "request body has Content-Type %q; send application/json", r.Header.Get("Content-Type"))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errkind.Errorf(errkind.Invalid, "malformed JSON request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errkind.New(errkind.Invalid, "malformed JSON request body: more than one JSON value")
	}
	return nil
}

// Handler returns the API's handler.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultMaxBody
	}
	if s.MaxWait == 0 {
		s.MaxWait = 30 * time.Second
	}
	s.limits = newLimiter(s.RateLimit, s.Burst, s.Now)
	if s.Events == nil {
		s.Events = NewHub(s.Now)
	}
	s.quit = make(chan struct{})
	mux := http.NewServeMux()
	byPath := map[string]map[string]route{}
	var paths []string
	for _, rt := range s.routes() {
		if byPath[rt.path] == nil {
			byPath[rt.path] = map[string]route{}
			paths = append(paths, rt.path)
		}
		byPath[rt.path][rt.method] = rt
	}
	for _, p := range paths {
		methods := byPath[p]
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			rt, ok := methods[r.Method]
			if !ok {
				allowed := make([]string, 0, len(methods))
				for m := range methods {
					allowed = append(allowed, m)
				}
				w.Header().Set("Allow", strings.Join(allowed, ", "))
				s.fail(w, r, http.StatusMethodNotAllowed, errkind.Errorf(errkind.Invalid, "%s does not take %s", p, r.Method))
				return
			}
			s.serve(w, r, rt)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, 0, errkind.Errorf(errkind.NotFound, "no API route %s %s; see %s/openapi.json", r.Method, r.URL.Path, Prefix))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A project's ingress path (never an API path: those start with
		// /api) goes to its reverse-connected host, as the path came.
		if t, ok := proxypath.Parse(proxypath.RequestPath(r)); ok {
			s.ingressProxy(w, r, t)
			return
		}
		// Refuse rather than redirect paths the mux would clean, and
		// escaped dots and backslashes (another path once decoded): a
		// client that sends them is confused or probing. Other escapes
		// are a segment's own characters, which the mux matches within
		// the segment: the slashes of an SSH key's fingerprint, a space
		// in a name the route then refuses as a name.
		if p := r.URL.EscapedPath(); p != path.Clean(p) || reTrickyEscape().MatchString(p) || strings.ContainsAny(r.URL.Path, "\x00\\") {
			s.fail(w, r, 0, errkind.Errorf(errkind.Invalid, "invalid request path %q: use the canonical paths of %s/openapi.json", p, Prefix))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.MaxBody)
		mux.ServeHTTP(w, r)
	})
}

// serve authenticates r (unless the route is public), rate-limits it,
// runs the route and writes its result, and records changes in the audit
// log.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, rt route) {
	req := &request{Request: r, s: s}
	if !rt.public {
		id, err := s.authenticate(r)
		if err != nil {
			s.audit(r, identity{}, err)
			s.fail(w, r, 0, err)
			return
		}
		req.id = id
		if wait, ok := s.limits.allow(id.account.ID); !ok {
			w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds()+1)))
			err := errkind.Errorf(errkind.RateLimited, "account %s is over its limit of %g requests/s; retry in %s", id.account.ID, s.RateLimit, wait.Round(time.Millisecond))
			s.fail(w, r, 0, err)
			return
		}
	}
	if rt.stream != nil {
		// Errors before the stream starts are answered as usual; once it
		// runs, it ends by closing (or tells its client its own way).
		err := rt.stream(w, req)
		if r.Method != http.MethodGet {
			s.audit(r, req.id, err)
		}
		var told *streamed
		switch {
		case errors.As(err, &told):
			s.log(r, req.id, told.status, told.err)
		case err != nil:
			s.fail(w, r, 0, err)
		default:
			s.log(r, req.id, http.StatusOK, nil)
		}
		return
	}
	v, err := rt.run(req)
	if !rt.public && (r.Method != http.MethodGet || errkind.Is(err, errkind.Forbidden) || errkind.Is(err, errkind.Auth)) {
		s.audit(r, req.id, err)
	}
	if err != nil {
		s.fail(w, r, 0, err)
		return
	}
	s.log(r, req.id, http.StatusOK, nil)
	if raw, ok := v.(rawJSON); ok {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(raw) //nolint:errcheck // the client went away
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// rawJSON is a result already encoded.
type rawJSON []byte

func (s *Server) authenticate(r *http.Request) (identity, error) {
	h := r.Header.Get("Authorization")
	key, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || key == "" {
		return identity{}, errkind.New(errkind.Auth, "no API key: send Authorization: Bearer KEY (`cocalc-hosts login` stores one)")
	}
	a, k, err := s.Accounts.Authenticate(r.Context(), strings.TrimSpace(key))
	if err != nil {
		return identity{}, err
	}
	as := r.Header.Get(AsHeader)
	if as != "" && as != a.ID && !a.Admin {
		return identity{account: a, key: k}, errkind.Errorf(errkind.Forbidden, "--as %s: only admins may act for another account, and %s is not an admin", as, a.ID)
	}
	return identity{account: a, key: k, as: as}, nil
}

// audit appends one entry; a failure to write it is logged, not
// returned: the request already happened.
func (s *Server) audit(r *http.Request, id identity, err error) {
	e := model.AuditEntry{At: s.Now().UTC(), Account: id.account.ID, As: id.as, KeyID: id.key.ID,
		Method: r.Method, Path: r.URL.Path, Status: http.StatusOK, Remote: r.RemoteAddr}
	if err != nil {
		k := errkind.Of(err)
		e.Status, e.Kind = k.HTTPStatus(), string(k)
	}
	// The request's context may be canceled already; the entry must land.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if aerr := s.Accounts.Record(ctx, e); aerr != nil {
		s.Log.Error("audit log", "err", aerr, "method", r.Method, "path", r.URL.Path)
	}
}

func (s *Server) log(r *http.Request, id identity, status int, err error) {
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "account", id.account.ID, "remote", r.RemoteAddr}
	if err != nil {
		attrs = append(attrs, "kind", string(errkind.Of(err)), "err", err.Error())
	}
	s.Log.Info("request", attrs...)
}

// fail writes err as an error body with its kind's status (or status,
// when given).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	k := errkind.Of(err)
	if status == 0 {
		status = k.HTTPStatus()
	}
	s.log(r, identity{}, status, err)
	writeJSON(w, status, ErrorBody{Error: wireError(err)})
}

// wireError is err as the API sends it.
func wireError(err error) WireError {
	we := WireError{Kind: string(errkind.Of(err)), Message: err.Error()}
	var nf *errkind.NotFoundError
	if errors.As(err, &nf) {
		we.Type, we.Name = nf.Type, nf.Name
	}
	return we
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}
