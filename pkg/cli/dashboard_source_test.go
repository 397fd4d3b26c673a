package cli

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/tui"
)

// A move's progress messages (pkg/projects/move.go) say its bytes so far
// and its planned size; the dashboard's bar shows them, keeps them
// through steps without bytes, and grows the total when more crosses than
// planned. A message without a plan draws no bar.
func TestTransferProgressReadsTheMove(t *testing.T) {
	var got []tui.Progress
	p := transferProgress(func(p tui.Progress) { got = append(got, p) })
	for _, m := range []string{
		"snapshot s1: 512 MiB sent directly, 100 MiB/s; the move has sent 512 MiB of 4.0 GiB, about 36s left",
		"snapshot s1: 1.0 GiB sent directly in 10.0s, 102 MiB/s; the move has sent 1.0 GiB of 4.0 GiB, about 30s left",
		"cut-over: committing on b",
		"cut-over: 4.5 GiB sent, 1 MiB/s; the move has sent 4.5 GiB (planned 4.0 GiB), finishing",
	} {
		p(tui.Progress{Message: m})
	}
	want := [][2]int64{{512 << 20, 4 << 30}, {1 << 30, 4 << 30}, {1 << 30, 4 << 30}, {4<<30 + 512<<20, 4<<30 + 512<<20}}
	for i, w := range want {
		if got[i].Bytes != w[0] || got[i].Total != w[1] {
			t.Errorf("%q: %d of %d bytes, want %d of %d", got[i].Message, got[i].Bytes, got[i].Total, w[0], w[1])
		}
	}
	p = transferProgress(func(p tui.Progress) { got = append(got, p) })
	p(tui.Progress{Message: "copying project x: 2.0 MiB sent, 1 MiB/s"})
	if last := got[len(got)-1]; last.Total != 0 {
		t.Errorf("a message without a plan drew a bar: %d of %d", last.Bytes, last.Total)
	}
}

// With server.url set the dashboard reads through the server: no
// database is opened, each read ends with its deadline when the server
// does not answer (the dashboard then shows how stale its screen is),
// and it follows the server's event stream.
func TestRemoteDashboardReadsThroughTheServer(t *testing.T) {
	asked := make(chan string, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- r.Method + " " + r.URL.Path:
		default:
		}
		select { // a server that does not answer
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("server:\n  url: "+srv.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds, err := credentialsPath()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(creds), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(creds, []byte(`{"server": "`+srv.URL+`", "key": "k"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: io.Discard, ErrOut: io.Discard})
	f.ConfigPath = cfg
	defer f.Close()

	src, err := newDashboardSource(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if src.local != nil {
		t.Fatal("through a server the dashboard has this process's host service")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := src.Fleet(ctx); !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(fmt.Sprint(err), "deadline") {
		t.Fatalf("a read of a server that does not answer ended with %v, want its deadline", err)
	}
	if got := <-asked; got != "GET /api/v1/hosts" {
		t.Fatalf("the first read asked the server for %s", got)
	}
	// Changes follows the server's event stream, and ends with the
	// dashboard.
	wctx, stop := context.WithCancel(context.Background())
	ch := src.Changes(wctx)
	if ch == nil {
		t.Fatal("through a server the dashboard has no change events")
	}
	for got := ""; got != "GET /api/v1/events"; {
		select {
		case got = <-asked:
		case <-time.After(10 * time.Second):
			t.Fatal("the dashboard never asked the server for its events")
		}
	}
	stop()
	for range ch { // closes once the watch ends
	}
}

// Directly (here on SQLite), the dashboard's change events say once that
// they are live, after the rows the watch starts with (which are not
// changes), then carry each commit by another process; they end with
// the dashboard.
func TestDashboardChangesGoLive(t *testing.T) {
	db := hostsDB(t, 2)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("db: "+db+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: io.Discard, ErrOut: io.Discard})
	f.ConfigPath = cfg
	defer f.Close()
	src, err := newDashboardSource(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ch := src.Changes(ctx)
	if ch == nil {
		t.Fatal("directly the dashboard has no change events")
	}
	next := func(what string) []tui.Change {
		t.Helper()
		select {
		case cs, ok := <-ch:
			if !ok {
				t.Fatalf("the change events ended before %s", what)
			}
			return cs
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", what)
		}
		return nil
	}
	if cs := next("Live change"); len(cs) != 1 || !cs[0].Live {
		t.Fatalf("the first batch is %+v, want only Live (the starting rows are not changes)", cs)
	}
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE project_hosts SET status = 'off' WHERE name = 'h00001'`); err != nil {
		t.Fatal(err)
	}
	cs := next("change after a commit")
	if len(cs) != 1 || cs[0].Host == nil || cs[0].Host.Name != "h00001" || cs[0].Host.Status != "off" {
		t.Fatalf("after h00001 went off the changes are %+v", cs)
	}
	stop()
	for range ch { // closes once the watch ends
	}
}
