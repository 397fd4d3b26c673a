package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/accounts"
	"github.com/sagemathinc/cocalc-hosts/pkg/app"
	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is a server on a real database, reached over real HTTP on loopback,
// with an admin (root), two users (alice, bob) and their keys.
type env struct {
	t     testing.TB
	db    string // the database: an SQLite path or a postgres URL
	app   *app.App
	st    store.Store
	srv   *server.Server
	http  *httptest.Server
	logs  *syncBuffer
	keys  map[string]string
	clock *clock
	// offSpec: the test sends requests the API document refuses (bad
	// input), so its exchanges are not held to the document.
	offSpec bool
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// openApp is the application on database db, with its config file in dir,
// and its store and domain services.
func openApp(t testing.TB, dir, db string) (*app.App, store.Store, *hosts.Service, *projects.Service) {
	t.Helper()
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"), map[string]string{"db": db})
	if err != nil {
		t.Fatal(err)
	}
	a := app.New(cfg, nil)
	t.Cleanup(a.Close)
	ctx := context.Background()
	st, err := a.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := a.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := a.Projects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return a, st, hs, ps
}

func newEnv(t testing.TB, backend string, tune func(*server.Server)) *env {
	tmp := t.TempDir()
	t.Setenv("HOME", tmp)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(tmp, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(tmp, "state"))
	db := filepath.Join(tmp, "state.db")
	if backend == "postgres" {
		db = pgtest.Shared(t).NewDatabase(t)
	}
	a, st, hs, ps := openApp(t, tmp, db)
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	accts := accounts.New(st, clk.Now)
	e := &env{t: t, db: db, app: a, st: st, logs: &syncBuffer{}, keys: map[string]string{}, clock: clk}
	e.srv = &server.Server{Store: st, Hosts: hs, Projects: ps, Accounts: accts, Ops: a.Ops(), Now: clk.Now,
		Log: slog.New(slog.NewJSONHandler(e.logs, nil))}
	if tune != nil {
		tune(e.srv)
	}
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.http.Close)
	if tt, ok := t.(*testing.T); ok {
		defer e.checkOpenAPI(tt)
	}
	root := projects.Caller{Account: "root"}
	if _, err := accts.Create(ctx, root, "root", true); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob"} {
		if _, err := accts.Create(ctx, root, name, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"root", "alice", "bob"} {
		k, err := accts.CreateKey(ctx, projects.Caller{Account: name}, "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[name] = k.Key
	}
	return e
}

// do sends a request as account (""; no key) and returns the status and
// the decoded body.
func (e *env) do(account, method, path, contentType string, body io.Reader, hdr ...string) (int, map[string]any, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if account != "" {
		req.Header.Set("Authorization", "Bearer "+e.keys[account])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m) //nolint:errcheck // lists are not objects
	return resp.StatusCode, m, raw
}

// wantError checks an error response: its status and kind, and that the
// message contains want.
func wantError(t *testing.T, status int, body map[string]any, wantStatus int, kind errkind.Kind, want string) {
	t.Helper()
	e, _ := body["error"].(map[string]any)
	if status != wantStatus || e == nil || e["kind"] != string(kind) || !strings.Contains(e["message"].(string), want) {
		t.Fatalf("got %d %v, want %d kind %s with %q", status, body, wantStatus, kind, want)
	}
}

func (e *env) addHost(owner, name string) model.Host {
	e.t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	h := model.Host{ID: uuid.NewString(), Name: name, Owner: owner, Provider: "sim", Region: "sim-east1",
		Status: model.StatusOff, Spec: model.HostSpec{MachineType: "sim-small", DiskGB: 10}, CreatedAt: now, UpdatedAt: now}
	if err := e.st.CreateHost(context.Background(), h); err != nil {
		e.t.Fatal(err)
	}
	return h
}

// member is the object at keys in v (nil if there is none).
func member(v map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		v, _ = v[k].(map[string]any)
	}
	return v
}

// The OpenAPI document lists exactly the routes the server answers, and
// the server serves it without a key.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	status, _, raw := e.do("", "GET", "/api/v1/openapi.json", "", nil)
	if status != 200 {
		t.Fatalf("openapi.json: %d", status)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	var documented, served []string
	for p, ops := range doc.Paths {
		for m, op := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
			o, _ := op.(map[string]any)
			if o["summary"] == "" || o["responses"] == nil {
				t.Errorf("%s %s: no summary or responses", m, p)
			}
			// Each JSON answer has its shape (from the route's Go type).
			schema := member(o, "responses", "200", "content", "application/json", "schema")
			if len(schema) == 0 && !server.IsStream(httptest.NewRequest(strings.ToUpper(m), p, nil)) && !strings.HasSuffix(p, "/openapi.json") {
				t.Errorf("%s %s: the answer's shape is not documented", m, p)
			}
		}
	}
	for _, r := range server.Routes() {
		served = append(served, r.Method+" "+r.Path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("openapi.json documents %s, which the server does not answer", r)
		}
	}
	// Every documented route answers with JSON (an API error at worst),
	// never with the catch-all "no API route".
	for _, r := range served {
		m, p, _ := strings.Cut(r, " ")
		p = strings.NewReplacer("{host}", "h", "{project}", uuid.NewString(), "{account}", "bob", "{job}", "j",
			"{id}", "k", "{fingerprint}", "f").Replace(p)
		if p == "/api/v1/events" {
			p += "?topics=-" // refused: the stream would not end
		}
		_, body, _ := e.do("root", m, p, "", nil)
		if er, _ := body["error"].(map[string]any); er != nil && strings.Contains(er["message"].(string), "no API route") {
			t.Errorf("%s: %v", r, er)
		}
	}
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	if s, b, _ := e.do("", "GET", "/healthz", "", nil); s != 200 || b["status"] != "ok" {
		t.Fatalf("healthz: %d %v", s, b)
	}
	if s, b, _ := e.do("", "GET", "/readyz", "", nil); s != 200 || b["db"] != "sqlite" {
		t.Fatalf("readyz: %d %v", s, b)
	}
	e.st.Close()
	s, b, _ := e.do("", "GET", "/readyz", "", nil)
	wantError(t, s, b, 503, errkind.Unavailable, "state database")
}

// Keys that are missing, unknown, revoked or expired, and the keys of a
// disabled account, are refused with kind auth.
func TestAuthRefusals(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, nil)
			ctx := context.Background()
			s, b, _ := e.do("", "GET", "/api/v1/hosts", "", nil)
			wantError(t, s, b, 401, errkind.Auth, "no API key")
			e.keys["junk"] = "hunter2"
			s, b, _ = e.do("junk", "GET", "/api/v1/hosts", "", nil)
			wantError(t, s, b, 401, errkind.Auth, "not a cocalc-hosts API key")
			e.keys["forged"] = accounts.KeyPrefix + "AAAA"
			s, b, _ = e.do("forged", "GET", "/api/v1/hosts", "", nil)
			wantError(t, s, b, 401, errkind.Auth, "unknown API key")

			// Revoked.
			k, err := e.srv.Accounts.CreateKey(ctx, projects.Caller{Account: "alice"}, "ci", nil)
			if err != nil {
				t.Fatal(err)
			}
			e.keys["ci"] = k.Key
			if s, _, _ := e.do("ci", "GET", "/api/v1/whoami", "", nil); s != 200 {
				t.Fatalf("fresh key refused: %d", s)
			}
			s, b, _ = e.do("alice", "POST", "/api/v1/api-keys/"+k.ID+"/revoke", "", nil)
			if s != 200 {
				t.Fatalf("revoke: %d %v", s, b)
			}
			s, b, _ = e.do("ci", "GET", "/api/v1/whoami", "", nil)
			wantError(t, s, b, 401, errkind.Auth, "was revoked")
			// bob cannot revoke alice's key.
			s, b, _ = e.do("bob", "POST", "/api/v1/api-keys/"+k.ID+"/revoke", "", nil)
			wantError(t, s, b, 404, errkind.NotFound, k.ID)

			// Expired.
			exp := e.clock.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
			k, err = e.srv.Accounts.CreateKey(ctx, projects.Caller{Account: "alice"}, "short", &exp)
			if err != nil {
				t.Fatal(err)
			}
			e.keys["short"] = k.Key
			if s, _, _ := e.do("short", "GET", "/api/v1/whoami", "", nil); s != 200 {
				t.Fatalf("key before expiry refused: %d", s)
			}
			e.clock.Add(2 * time.Hour)
			s, b, _ = e.do("short", "GET", "/api/v1/whoami", "", nil)
			wantError(t, s, b, 401, errkind.Auth, "expired")

			// Disabled account: bob's key stops working, and again after
			// he is enabled.
			s, b, _ = e.do("alice", "POST", "/api/v1/accounts/bob/disable", "", nil)
			wantError(t, s, b, 403, errkind.Forbidden, "only admins")
			if s, b, _ := e.do("root", "POST", "/api/v1/accounts/bob/disable", "", nil); s != 200 || b["disabled"] != true {
				t.Fatalf("disable: %d %v", s, b)
			}
			s, b, _ = e.do("bob", "GET", "/api/v1/whoami", "", nil)
			wantError(t, s, b, 401, errkind.Auth, "account bob is disabled")
			e.do("root", "POST", "/api/v1/accounts/bob/enable", "", nil)
			if s, _, _ := e.do("bob", "GET", "/api/v1/whoami", "", nil); s != 200 {
				t.Fatalf("enabled again but refused: %d", s)
			}
		})
	}
}

// An account without access gets forbidden refusals; admins see all and
// may act for others; others may not use --as.
func TestAuthorizedByIdentity(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	h := e.addHost("alice", "alicebox")
	s, b, _ := e.do("bob", "GET", "/api/v1/hosts/alicebox", "", nil)
	wantError(t, s, b, 403, errkind.Forbidden, "belongs to alice")
	s, b, _ = e.do("bob", "POST", "/api/v1/hosts/alicebox/start", "", nil)
	wantError(t, s, b, 403, errkind.Forbidden, "belongs to alice")
	s, b, _ = e.do("bob", "GET", "/api/v1/hosts/alicebox", "", nil, server.AsHeader, "alice")
	wantError(t, s, b, 403, errkind.Forbidden, "only admins may act for another account")
	s, b, _ = e.do("bob", "POST", "/api/v1/hosts", "application/json", strings.NewReader(`{"Name":"x","Owner":"alice","Provider":"sim"}`))
	wantError(t, s, b, 403, errkind.Forbidden, "only admins may create hosts for another account")
	s, b, _ = e.do("bob", "GET", "/api/v1/accounts", "", nil)
	wantError(t, s, b, 403, errkind.Forbidden, "only admins")

	names := func(account string) []string {
		_, _, raw := e.do(account, "GET", "/api/v1/hosts", "", nil)
		var hs []model.Host
		if err := json.Unmarshal(raw, &hs); err != nil {
			t.Fatalf("%s: %s", err, raw)
		}
		var out []string
		for _, h := range hs {
			out = append(out, h.Name)
		}
		return out
	}
	if got := names("bob"); len(got) != 0 {
		t.Fatalf("bob sees %v", got)
	}
	if got := names("alice"); !slices.Equal(got, []string{"alicebox"}) {
		t.Fatalf("alice sees %v", got)
	}
	if got := names("root"); !slices.Equal(got, []string{"alicebox"}) {
		t.Fatalf("root sees %v", got)
	}
	// The hosts' pending jobs (the dashboard's marks) follow the same rule.
	j, _, err := e.st.EnqueueJob(context.Background(), model.Job{ID: uuid.NewString(), Subject: model.HostSubject(h.ID),
		Action: model.ActionStart, MaxAttempts: 1, RunAfter: time.Now(), CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	jobs := func(account string) []string {
		c, err := client.New(e.http.URL, e.keys[account])
		if err != nil {
			t.Fatal(err)
		}
		js, err := client.Hosts{C: c}.ActiveJobs(context.Background())
		if err != nil {
			t.Fatalf("%s: active jobs: %v", account, err)
		}
		var out []string
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	if got := jobs("bob"); len(got) != 0 {
		t.Fatalf("bob sees the jobs %v", got)
	}
	if got := jobs("alice"); !slices.Equal(got, []string{j.ID}) {
		t.Fatalf("alice sees the jobs %v, want %s", got, j.ID)
	}
	// A collaborator sees the host but may not change it.
	if err := e.st.AddCollaborator(context.Background(), h.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := names("bob"); !slices.Equal(got, []string{"alicebox"}) {
		t.Fatalf("collaborator bob sees %v", got)
	}
	if got := jobs("bob"); !slices.Equal(got, []string{j.ID}) {
		t.Fatalf("collaborator bob sees the jobs %v", got)
	}
	s, b, _ = e.do("bob", "POST", "/api/v1/hosts/alicebox/stop", "", nil)
	wantError(t, s, b, 403, errkind.Forbidden, "only its owner or an admin")
	s, b, _ = e.do("root", "GET", "/api/v1/whoami", "", nil, server.AsHeader, "alice")
	if s != 200 || b["account"] != "root" || b["as"] != "alice" {
		t.Fatalf("whoami as: %d %v", s, b)
	}
}

// Bad input is refused with one clear error, and nothing is written.
func TestBadInput(t *testing.T) {
	e := newEnv(t, "sqlite", func(s *server.Server) { s.MaxBody = 1024 })
	e.offSpec = true
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		kind                            errkind.Kind
		want                            string
	}{
		{"malformed JSON", "POST", "/api/v1/hosts", "application/json", `{"Name": "x",`, 400, errkind.Invalid, "malformed JSON"},
		{"two values", "POST", "/api/v1/hosts", "application/json", `{"Name":"x"} {}`, 400, errkind.Invalid, "more than one JSON value"},
		{"unknown field", "POST", "/api/v1/hosts", "application/json", `{"Name":"x","Provider":"sim","Bogus":1}`, 400, errkind.Invalid, `unknown field "Bogus"`},
		{"wrong type", "POST", "/api/v1/hosts", "application/json", `{"Name":7}`, 400, errkind.Invalid, "malformed JSON"},
		{"oversized", "POST", "/api/v1/hosts", "application/json", `{"Name":"` + strings.Repeat("x", 2000) + `"}`, 400, errkind.Invalid, "over 1024 bytes"},
		{"content type", "POST", "/api/v1/hosts", "text/plain", `{"Name":"x"}`, 400, errkind.Invalid, "send application/json"},
		{"form", "POST", "/api/v1/hosts", "application/x-www-form-urlencoded", `Name=x`, 400, errkind.Invalid, "send application/json"},
		{"dot dot", "GET", "/api/v1/hosts/../accounts", "", "", 400, errkind.Invalid, "invalid request path"},
		{"escaped dot dot", "GET", "/api/v1/hosts/%2e%2e/accounts", "", "", 400, errkind.Invalid, "invalid request path"},
		{"escaped slash within a name", "GET", "/api/v1/hosts/a%2fb", "", "", 404, errkind.NotFound, `no host "a/b"`},
		{"escaped slash within a fingerprint", "DELETE", "/api/v1/ssh-keys/SHA256:a%2Fb", "", "", 404, errkind.NotFound, "SHA256:a/b"},
		{"escaped backslash", "GET", "/api/v1/hosts/a%5Cb", "", "", 400, errkind.Invalid, "invalid request path"},
		{"double slash", "GET", "/api/v1//hosts", "", "", 400, errkind.Invalid, "invalid request path"},
		{"unknown route", "GET", "/api/v1/nothing", "", "", 404, errkind.NotFound, "no API route GET /api/v1/nothing"},
		{"unversioned", "GET", "/api/hosts", "", "", 404, errkind.NotFound, "no API route"},
		{"wrong method", "DELETE", "/api/v1/hosts", "", "", 405, errkind.Invalid, "does not take DELETE"},
		{"bad wait", "GET", "/api/v1/jobs/x?wait=soon", "", "", 400, errkind.Invalid, "want a duration"},
		{"bad project id", "GET", "/api/v1/projects/not-a-uuid", "", "", 400, errkind.Invalid, "invalid project id"},
		{"bad account", "POST", "/api/v1/accounts", "application/json", `{"id":"no spaces please"}`, 400, errkind.Invalid, "invalid account"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Sent raw: Go's client would clean some of these paths.
			s, b := rawRequest(t, e, c.method, c.path, c.ctype, c.body)
			wantError(t, s, b, c.status, c.kind, c.want)
		})
	}
	hs, err := e.st.ListHosts(context.Background(), store.HostFilter{IncludeDeleted: true})
	if err != nil || len(hs) != 0 {
		t.Fatalf("bad requests wrote hosts: %v %v", hs, err)
	}
	accts, _ := e.st.ListAccounts(context.Background())
	if len(accts) != 3 {
		t.Fatalf("bad requests wrote accounts: %v", accts)
	}
}

// rawRequest writes one HTTP/1.1 request as given, path untouched.
func rawRequest(t *testing.T, e *env, method, path, ctype, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.http.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path // sent as is
	req.Header.Set("Authorization", "Bearer "+e.keys["root"])
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: not a JSON answer (%d): %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, m
}

func TestRateLimitPerAccount(t *testing.T) {
	e := newEnv(t, "sqlite", func(s *server.Server) { s.RateLimit, s.Burst = 1, 2 })
	for i := 0; i < 2; i++ {
		if s, b, _ := e.do("alice", "GET", "/api/v1/whoami", "", nil); s != 200 {
			t.Fatalf("request %d within the burst: %d %v", i, s, b)
		}
	}
	s, b, _ := e.do("alice", "GET", "/api/v1/whoami", "", nil)
	wantError(t, s, b, 429, errkind.RateLimited, "over its limit")
	// Another account has its own bucket.
	if s, _, _ := e.do("bob", "GET", "/api/v1/whoami", "", nil); s != 200 {
		t.Fatalf("bob limited by alice's requests: %d", s)
	}
	e.clock.Add(time.Second)
	if s, _, _ := e.do("alice", "GET", "/api/v1/whoami", "", nil); s != 200 {
		t.Fatalf("alice still limited a second later: %d", s)
	}
	// The client hears it as rate_limited with the server's delay.
	c, err := client.New(e.http.URL, e.keys["alice"])
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Whoami(context.Background())
	if !errkind.Is(err, errkind.RateLimited) || errkind.RetryAfter(err) <= 0 {
		t.Fatalf("client: %v (retry after %s)", err, errkind.RetryAfter(err))
	}
}

// Changes and refusals are in the audit log, which cannot be changed; no
// key appears in clear in the log, the audit rows, the database or the
// server's log.
func TestAuditAndKeysNeverInClear(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, nil)
			e.do("alice", "POST", "/api/v1/accounts", "application/json", strings.NewReader(`{"id":"carol"}`))
			e.do("root", "POST", "/api/v1/accounts", "application/json", strings.NewReader(`{"id":"carol"}`))
			s, b, _ := e.do("alice", "POST", "/api/v1/api-keys", "application/json", strings.NewReader(`{"name":"laptop"}`))
			if s != 200 || !strings.HasPrefix(b["key"].(string), accounts.KeyPrefix) {
				t.Fatalf("create key: %d %v", s, b)
			}
			e.keys["laptop"] = b["key"].(string)
			e.do("laptop", "GET", "/api/v1/whoami", "", nil)
			e.keys["wrong"] = e.keys["laptop"] + "x"
			e.do("wrong", "GET", "/api/v1/hosts", "", nil)

			es, err := e.st.ListAudit(context.Background(), store.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range es {
				got = append(got, a.Account+" "+a.Method+" "+a.Path+" "+a.Kind)
			}
			want := []string{
				"alice POST /api/v1/accounts forbidden",
				"root POST /api/v1/accounts ",
				"alice POST /api/v1/api-keys ",
				" GET /api/v1/hosts auth",
			}
			if !slices.Equal(got, want) {
				t.Fatalf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// Non-admins read only their own entries.
			_, _, raw := e.do("alice", "GET", "/api/v1/audit", "", nil)
			var mine []model.AuditEntry
			if err := json.Unmarshal(raw, &mine); err != nil || len(mine) != 2 {
				t.Fatalf("alice's audit: %v %s", err, raw)
			}
			s, b, _ = e.do("alice", "GET", "/api/v1/audit?account=root", "", nil)
			wantError(t, s, b, 403, errkind.Forbidden, "only admins")

			sqlDB := rawDB(t, backend, e.db)
			if _, err := sqlDB.Exec(`UPDATE audit_log SET account_id = 'x'`); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("audit_log update: %v", err)
			}
			if _, err := sqlDB.Exec(`DELETE FROM audit_log`); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("audit_log delete: %v", err)
			}

			var dump strings.Builder
			dump.WriteString(e.logs.String())
			for _, table := range []string{"api_keys", "audit_log", "accounts"} {
				dumpTable(t, sqlDB, table, &dump)
			}
			if backend == "sqlite" {
				for _, f := range []string{e.db, e.db + "-wal"} {
					b, _ := os.ReadFile(f)
					dump.Write(b)
				}
			}
			if dump.Len() < 500 {
				t.Fatalf("scanned too little to mean anything: %d bytes", dump.Len())
			}
			for name, k := range e.keys {
				secret := strings.TrimPrefix(k, accounts.KeyPrefix)
				if len(secret) > 8 && strings.Contains(dump.String(), secret) {
					t.Errorf("key %s appears in clear in the logs or the database", name)
				}
			}
			if !strings.Contains(dump.String(), accounts.Hash(e.keys["laptop"])) {
				t.Errorf("the scan did not see the stored hash: it scanned the wrong thing")
			}
		})
	}
}

func rawDB(t *testing.T, backend, db string) *sql.DB {
	driver := "sqlite"
	if backend == "postgres" {
		driver = "pgx"
	}
	d, err := sql.Open(driver, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func dumpTable(t *testing.T, db *sql.DB, table string, w io.Writer) {
	rows, err := db.Query(`SELECT * FROM ` + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			io.WriteString(w, strings.TrimSpace(strings.ReplaceAll(strings.Join([]string{toString(v)}, ""), "\n", " "))+"\n")
		}
	}
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// The client rebuilds errors with their kind (a missing host is still an
// *errkind.NotFoundError), waits for jobs, and names server.url and login
// when it cannot reach the server.
func TestClientKeepsErrorKinds(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	ctx := context.Background()
	c, err := client.New(e.http.URL, e.keys["alice"])
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Hosts{C: c}.Get(ctx, "nope")
	var nf *errkind.NotFoundError
	if !errors.As(err, &nf) || nf.Type != "host" || nf.Name != "nope" {
		t.Fatalf("missing host: %#v", err)
	}
	// A name with characters a path escapes reaches the route as it is.
	_, err = client.Hosts{C: c}.Get(ctx, "no pe%")
	if !errors.As(err, &nf) || nf.Type != "host" || nf.Name != "no pe%" {
		t.Fatalf("missing host with a space and %%: %#v", err)
	}
	e.addHost("root", "rootbox")
	_, err = client.Hosts{C: c}.Start(ctx, "rootbox")
	if !errkind.Is(err, errkind.Forbidden) {
		t.Fatalf("start another's host: %v", err)
	}
	_, err = client.Hosts{C: c}.Create(ctx, hosts.CreateRequest{Name: "bad name!", Provider: "sim"})
	if !errkind.Is(err, errkind.Invalid) {
		t.Fatalf("invalid create: %v", err)
	}

	bad, _ := client.New(e.http.URL, accounts.KeyPrefix+"nope")
	_, err = bad.Whoami(ctx)
	if !errkind.Is(err, errkind.Auth) || !strings.Contains(err.Error(), "cocalc-hosts login --server "+e.http.URL) {
		t.Fatalf("unknown key: %v", err)
	}

	// A server that is gone: one line naming server.url and login.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	g, _ := client.New(gone.URL, e.keys["alice"])
	_, err = client.Hosts{C: g}.List(ctx, store.HostFilter{})
	if !errkind.Is(err, errkind.Unavailable) || !strings.Contains(err.Error(), "(server.url)") ||
		!strings.Contains(err.Error(), "cocalc-hosts login --server URL") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("unreachable: %v", err)
	}
	// A TLS server whose certificate is not trusted.
	tlsSrv := httptest.NewTLSServer(e.srv.Handler())
	defer tlsSrv.Close()
	tc, _ := client.New(tlsSrv.URL, e.keys["alice"])
	_, err = tc.Whoami(ctx)
	if !errkind.Is(err, errkind.Unavailable) || !strings.Contains(err.Error(), "TLS with the server") || !strings.Contains(err.Error(), "--ca-cert FILE") {
		t.Fatalf("untrusted TLS: %v", err)
	}
	// Trusted through server.ca_cert: the server's own certificate.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{filepath.Join(t.TempDir(), "none.pem"): "no such file", t.TempDir(): "is a directory", "/dev/null": "holds no PEM certificate"} {
		if err := tc.TrustCA(file); !errkind.Is(err, errkind.Invalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("TrustCA(%s) = %v, want an invalid-input error saying %q", file, err, want)
		}
	}
	if err := tc.TrustCA(caFile); err != nil {
		t.Fatal(err)
	}
	if who, err := tc.Whoami(ctx); err != nil || who.Account != "alice" {
		t.Fatalf("with the server's certificate trusted: %+v, %v", who, err)
	}
	// Something that is not a cocalc-hosts server.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "teapot", 418) }))
	defer other.Close()
	oc, _ := client.New(other.URL, e.keys["alice"])
	if _, err := oc.Whoami(ctx); !errkind.Is(err, errkind.Unavailable) || !strings.Contains(err.Error(), "is it a cocalc-hosts server") {
		t.Fatalf("not a server: %v", err)
	}
	for _, u := range []string{"ftp://x", "http://", "https://h/path", "not a url"} {
		if _, err := client.New(u, "k"); !errkind.Is(err, errkind.Invalid) {
			t.Errorf("client.New(%q): %v", u, err)
		}
	}
}

// A job is waited for through the server: the wait ends when a worker
// finishes it, woken by the store's notifications.
func TestWaitForJob(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	ctx := context.Background()
	h := e.addHost("alice", "jobbox")
	j := e.queueStart(h, time.Now())
	c, _ := client.New(e.http.URL, e.keys["alice"])
	done := make(chan model.Job, 1)
	var events []string
	go func() {
		got, err := client.Jobs{C: c}.RunJob(ctx, j, func(ev queue.Event) { events = append(events, string(ev.Kind)) })
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	// Finish it as a worker would, without a handler: claim, then fail.
	e.endJob(j, model.JobFailed, "boom", time.Now())
	select {
	case got := <-done:
		if got.State != model.JobFailed || got.LastError != "boom" {
			t.Fatalf("job as waited for: %+v", got)
		}
		if len(events) == 0 || events[len(events)-1] != "failed" {
			t.Fatalf("events: %v", events)
		}
	case <-time.After(time.Minute):
		t.Fatal("the wait did not end when the job did")
	}
	// bob may not wait for alice's job.
	bc, _ := client.New(e.http.URL, e.keys["bob"])
	if _, err := (client.Jobs{C: bc}).RunJob(ctx, j, nil); !errkind.Is(err, errkind.Forbidden) {
		t.Fatalf("bob waits for alice's job: %v", err)
	}
}

// queueStart enqueues a start of host h, due at.
func (e *env) queueStart(h model.Host, at time.Time) model.Job {
	e.t.Helper()
	j, _, err := e.st.EnqueueJob(context.Background(), model.Job{ID: uuid.NewString(), Subject: model.HostSubject(h.ID), Action: model.ActionStart,
		MaxAttempts: 1, RunAfter: at, CreatedAt: at})
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// endJob claims job j and ends it in state at, as a worker would.
func (e *env) endJob(j model.Job, state model.JobState, errMsg string, at time.Time) {
	e.t.Helper()
	ctx := context.Background()
	if claimed, err := e.st.ClaimJobs(ctx, store.Claim{Owner: "w1", Lease: time.Minute, JobID: j.ID, Now: at}); err != nil || len(claimed) != 1 {
		e.t.Fatalf("claim job %s: %v, %v", j.ID, claimed, err)
	}
	if errs := e.st.FinishJobs(ctx, []store.Finish{{JobID: j.ID, Owner: "w1", State: state, Error: errMsg, Now: at}}); errs[0] != nil {
		e.t.Fatal(errs[0])
	}
}

// gatedJobs holds the server's reads of jobs until open is closed, and
// closes reading at the first (a job's follower reads it once it has
// subscribed to the job's events).
type gatedJobs struct {
	store.Store
	reading, open chan struct{}
	once          *sync.Once
}

func (g gatedJobs) GetJob(ctx context.Context, id string) (model.Job, error) {
	g.once.Do(func() { close(g.reading) })
	<-g.open
	return g.Store.GetJob(ctx, id)
}

// A job that runs from claim to end between a client's subscribing to
// its events and the server's first look at it (a fast job on a busy
// server) is told whole: the follower hears its events, not only that
// it ended, as if another process had run it.
func TestFollowFastJob(t *testing.T) {
	hub := server.NewHub(nil)
	gate := gatedJobs{reading: make(chan struct{}), open: make(chan struct{}), once: &sync.Once{}}
	e := newEnv(t, "sqlite", func(s *server.Server) { gate.Store = s.Store; s.Events, s.Store = hub, gate })
	ctx := context.Background()
	h := e.addHost("alice", "fastbox")
	j := e.queueStart(h, time.Now())
	c, _ := client.New(e.http.URL, e.keys["alice"])
	var heard []queue.EventKind
	done := make(chan error, 1)
	go func() {
		_, err := client.Jobs{C: c}.RunJob(ctx, j, func(ev queue.Event) { heard = append(heard, ev.Kind) })
		done <- err
	}()
	select {
	case <-gate.reading:
	case <-time.After(time.Minute):
		t.Fatal("the client never followed the job")
	}
	hub.Publish(queue.Event{Kind: queue.EventClaimed, JobID: j.ID, Action: j.Action, Subject: j.Subject, Attempt: 1})
	hub.Publish(queue.Event{Kind: queue.EventProgress, JobID: j.ID, Message: "fast"})
	e.endJob(j, model.JobDone, "", time.Now())
	hub.Publish(queue.Event{Kind: queue.EventDone, JobID: j.ID})
	close(gate.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := []queue.EventKind{queue.EventClaimed, queue.EventProgress, queue.EventDone}; !slices.Equal(heard, want) {
		t.Fatalf("heard %v, want %v", heard, want)
	}
}

// A client following a job through the server hears the events the
// server's worker publishes (also those from before it subscribed), then
// the job as it ended.
func TestFollowJobEvents(t *testing.T) {
	hub := server.NewHub(nil)
	e := newEnv(t, "sqlite", func(s *server.Server) { s.Events = hub })
	ctx := context.Background()
	h := e.addHost("alice", "evbox")
	j := e.queueStart(h, time.Now())
	hub.Publish(queue.Event{Kind: queue.EventClaimed, JobID: j.ID, Action: j.Action, Subject: j.Subject, Attempt: 1})
	hub.Publish(queue.Event{Kind: queue.EventProgress, JobID: j.ID, Message: "booting"})
	c, _ := client.New(e.http.URL, e.keys["alice"])
	events := make(chan queue.Event, 10)
	done := make(chan model.Job, 1)
	go func() {
		got, err := client.Jobs{C: c}.RunJob(ctx, j, func(ev queue.Event) { events <- ev })
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	for _, want := range []string{"claimed", "progress"} {
		select {
		case ev := <-events:
			if string(ev.Kind) != want {
				t.Fatalf("event %s, want %s", ev.Kind, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("no %s event", want)
		}
	}
	// The worker ends the job: it commits, then tells the hub.
	e.endJob(j, model.JobDone, "", time.Now())
	hub.Publish(queue.Event{Kind: queue.EventDone, JobID: j.ID})
	select {
	case got := <-done:
		if got.State != model.JobDone {
			t.Fatalf("ended as %s", got.State)
		}
	case <-time.After(time.Minute):
		t.Fatal("the stream did not end with the job")
	}
	if ev := <-events; ev.Kind != queue.EventDone {
		t.Fatalf("last event %s, want done", ev.Kind)
	}
	// A follower of someone else's job is refused before any stream.
	bc, _ := client.New(e.http.URL, e.keys["bob"])
	if _, err := (client.Jobs{C: bc}).RunJob(ctx, j, nil); !errkind.Is(err, errkind.Forbidden) {
		t.Fatalf("bob follows alice's job: %v", err)
	}
}
