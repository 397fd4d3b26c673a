package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil"
)

// BenchmarkList10k measures `cocalc-hosts list` (table and JSON) over
// 10,000 hosts (BENCH_HOSTS, if set) in the embedded SQLite store,
// including opening the store.
func BenchmarkList10k(b *testing.B) {
	dir := b.TempDir()
	b.Setenv("HOME", dir)
	b.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	b.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	path := filepath.Join(dir, "state.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range testutil.BenchSize(10000) {
		h := model.Host{ID: uuid.NewString(), Name: fmt.Sprintf("h%05d", i), Owner: "bench", Provider: "sim",
			Region: "sim-east1", Status: model.StatusRunning, LastAction: "create", CreatedAt: now, UpdatedAt: now}
		if err := st.CreateHost(context.Background(), h); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	for _, format := range []string{"table", "json"} {
		b.Run(format, func(b *testing.B) {
			for b.Loop() {
				f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: io.Discard, ErrOut: io.Discard})
				if code := Execute(context.Background(), f, []string{"--db", path, "list", "-o", format}); code != 0 {
					b.Fatalf("exit %d", code)
				}
				f.Close()
			}
		})
	}
}
