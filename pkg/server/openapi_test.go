package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider/openapicheck"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
)

// checkOpenAPI puts a checker in front of e's server: every exchange
// from then on must be an operation of the API document the server
// serves, with its parameters, a body of the documented shape and an
// answer of the documented shape (no member the document does not list).
// The test fails at its end on any exchange that breaks it, unless it
// sends what the document refuses on purpose (env.offSpec). Streams
// (events, exec, tunnels, image builds) pass unchecked: they are not
// JSON answers.
func (e *env) checkOpenAPI(t *testing.T) {
	status, _, raw := e.do("", "GET", "/api/v1/openapi.json", "", nil)
	if status != http.StatusOK {
		t.Fatalf("openapi.json: %d", status)
	}
	file := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	spec := openapicheck.Load(t, file, "")
	direct := e.srv.Handler()
	rec := openapicheck.NewRecorder(spec, direct)
	checked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if server.IsStream(r) {
			direct.ServeHTTP(w, r)
			return
		}
		rec.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		checked.Close()
		if !e.offSpec {
			rec.RequireExercised(t)
		}
	})
	e.http = checked
}

// A path parameter with an escaped slash in it (base64 in an SSH key's
// fingerprint) is one parameter to the server and to the document's
// check (checkOpenAPI fails the test at its end on any violation).
func TestOpenAPIEscapedSlash(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	status, body, _ := e.do("alice", "DELETE", "/api/v1/ssh-keys/SHA256:a%2Fb", "", nil)
	if status != http.StatusNotFound || !strings.Contains(fmt.Sprint(body), "SHA256:a/b") {
		t.Fatalf("delete of an unknown key with a slash: %d %v", status, body)
	}
}
