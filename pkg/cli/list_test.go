package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// syncBuffer is a buffer written by one goroutine and read by another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// `list --watch -o json` prints the hosts, then only what changes: a
// changed host, a deleted one (op delete), a new one. After the first
// read it reads only the hosts updated since: a host whose row is then
// changed behind its updated_at (which a full re-read would show) is not
// read again.
func TestListWatchReadsOnlyChanges(t *testing.T) {
	db := hostsDB(t, 3)
	ctx := context.Background()
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hs, err := st.ListHosts(ctx, store.HostFilter{})
	if err != nil || len(hs) != 3 {
		t.Fatalf("%d hosts: %v", len(hs), err)
	}
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// h00000 was last updated a minute ago.
	if _, err := raw.Exec(`UPDATE project_hosts SET updated_at = updated_at - 60000 WHERE id = $1`, hs[0].ID); err != nil {
		t.Fatal(err)
	}

	var out syncBuffer
	var errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut})
	defer f.Close()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- Execute(wctx, f, []string{"--db", db, "list", "--watch", "--interval", "20ms", "-o", "json"})
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("watch exit %d: %s", code, errOut.String())
		}
	}()
	lines := func(want int) []WatchLine {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			text := strings.TrimSpace(out.String())
			var ls []WatchLine
			if text != "" {
				for _, l := range strings.Split(text, "\n") {
					var wl WatchLine
					if err := json.Unmarshal([]byte(l), &wl); err != nil {
						t.Fatalf("line %q: %v", l, err)
					}
					ls = append(ls, wl)
				}
			}
			if len(ls) >= want || time.Now().After(deadline) {
				if len(ls) != want {
					t.Fatalf("%d lines, want %d: %s (stderr %s)", len(ls), want, text, errOut.String())
				}
				return ls
			}
			time.Sleep(10 * time.Millisecond) // polled, bounded by the deadline
		}
	}
	first := lines(3)
	for i, l := range first {
		if l.Op != "upsert" || l.Host == nil || l.Host.ID != hs[i].ID {
			t.Fatalf("first lines: %+v", first)
		}
	}

	// A write that leaves updated_at alone: a full re-read would show it.
	if _, err := raw.Exec(`UPDATE project_hosts SET last_error = 'unseen' WHERE id = $1`, hs[0].ID); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	changed := hs[1]
	changed.Status, changed.UpdatedAt = model.StatusOff, now
	gone := hs[2]
	gone.DeletedAt, gone.UpdatedAt = &now, now
	added := model.Host{ID: "new-host", Name: "h00003", Owner: "bench", Provider: "sim", Status: model.StatusRunning, CreatedAt: now, UpdatedAt: now}
	for _, err := range []error{st.UpdateHost(ctx, changed), st.UpdateHost(ctx, gone), st.CreateHost(ctx, added)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	all := lines(6)
	got := map[string]string{}
	for _, l := range all[3:] {
		if l.ID == hs[0].ID {
			t.Errorf("the host not updated was read again: %+v", l)
		}
		got[l.ID] = l.Op
		if l.Op == "upsert" && l.ID == changed.ID && l.Host.Status != model.StatusOff {
			t.Errorf("changed host shown as %s", l.Host.Status)
		}
	}
	if got[changed.ID] != "upsert" || got[gone.ID] != "delete" || got[added.ID] != "upsert" {
		t.Fatalf("after the changes: %+v", all[3:])
	}
}

func TestListIntervalNeedsWatch(t *testing.T) {
	db := hostsDB(t, 1)
	var w writes
	code, stderr := runOn(t, &w, false, "--db", db, "list", "--interval", "1s")
	if code == 0 || !strings.Contains(stderr, "--interval 1s: give a positive duration together with --watch") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
