package podman_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
)

// A build needs a Debian mirror: one that does not serve the suite, or
// cannot be reached, is named with the fix before anything runs.
func TestCheckMirror(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debian/dists/bookworm/Release" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/debian"
	l.Close()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "dists", "bookworm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dists", "bookworm", "Release"), []byte("Suite: stable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ mirror, suite, want string }{
		{srv.URL + "/debian", "bookworm", ""},
		{srv.URL + "/debian/", "bookworm", ""},
		{"file://" + dir, "bookworm", ""},
		{srv.URL + "/debian", "trixie", "the Debian mirror " + srv.URL + "/debian has no trixie release (HEAD " + srv.URL + "/debian/dists/trixie/Release: 404 Not Found)"},
		{"file://" + dir, "trixie", "the Debian mirror file://" + dir + " has no trixie release"},
		{closed, "bookworm", "cannot reach the Debian mirror " + closed + " ("},
	} {
		err := podman.CheckMirror(context.Background(), podman.BuildSpec{Suite: tc.suite, Mirror: tc.mirror})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %s: %v", tc.mirror, tc.suite, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--mirror URL")):
			t.Errorf("%s %s: %v; want an error with %q naming --mirror", tc.mirror, tc.suite, err, tc.want)
		}
	}
}
