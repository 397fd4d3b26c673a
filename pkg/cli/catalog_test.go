package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// The worker's periodic duty refreshes expired catalogs (and only those)
// and recomputes usage into cloud_vm_usage.
func TestCatalogTickRefreshesExpiredCatalogsAndUsage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	for _, args := range [][]string{
		{"providers", "add", "sim"},
		{"catalog", "refresh"},
		{"create", "--cloud", "sim", "--name", "h1", "--cpu", "2"},
	} {
		if code, _, stderr := run(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "state", "cocalc-hosts", "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before, err := st.GetCatalog(ctx, "sim", catalog.KindCapacity, "all")
	if err != nil {
		t.Fatal(err)
	}
	h, err := st.GetHost(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if rows, _ := st.ListUsage(ctx, store.UsageFilter{HostID: h.ID}); len(rows) != 0 {
		t.Fatalf("usage before any tick: %d rows", len(rows))
	}

	tick := func(at time.Time) string {
		var errOut bytes.Buffer
		f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: &errOut})
		defer f.Close()
		f.Now = func() time.Time { return at }
		catalogTick(ctx, f)
		return errOut.String()
	}
	// Five minutes on, capacity (TTL 15m) is still fresh: nothing fetched.
	if msg := tick(before.FetchedAt.Add(5 * time.Minute)); msg != "" {
		t.Fatalf("tick: %s", msg)
	}
	if c, _ := st.GetCatalog(ctx, "sim", catalog.KindCapacity, "all"); !c.FetchedAt.Equal(before.FetchedAt) {
		t.Fatal("a fresh catalog was refreshed")
	}
	rows, _ := st.ListUsage(ctx, store.UsageFilter{HostID: h.ID})
	if len(rows) != 1 || rows[0].State != "running" || rows[0].HourlyPrice != 0.05 {
		t.Fatalf("usage after a tick: %+v", rows)
	}
	// An hour on, it has expired and is fetched again.
	later := before.FetchedAt.Add(time.Hour)
	if msg := tick(later); msg != "" {
		t.Fatalf("tick: %s", msg)
	}
	if c, _ := st.GetCatalog(ctx, "sim", catalog.KindCapacity, "all"); !c.FetchedAt.Equal(later) {
		t.Fatalf("expired catalog not refreshed: fetched %s", c.FetchedAt)
	}
	// A failing cloud is reported, naming it, and changes nothing.
	if code, _, stderr := run(t, "config", "set", "providers.sim.error_rate", "1"); code != 0 {
		t.Fatal(stderr)
	}
	if msg := tick(later.Add(time.Hour)); !strings.Contains(msg, "catalog refresh: catalog of sim: ") {
		t.Fatalf("tick with a failing cloud: %q", msg)
	}
	if c, _ := st.GetCatalog(ctx, "sim", catalog.KindCapacity, "all"); !c.FetchedAt.Equal(later) {
		t.Fatal("a failed refresh changed the cache")
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"30d":        now.Add(-30 * 24 * time.Hour),
		"1.5d":       now.Add(-36 * time.Hour),
		"12h":        now.Add(-12 * time.Hour),
		"2026-11-01": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		"all":        {},
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-3d", "yesterday", "3w"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
