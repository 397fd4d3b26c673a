package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
)

// BenchmarkList10k measures `cocalc-hosts list` (table and JSON, opening
// the store included) over 10,000 hosts (BENCH_HOSTS, if set) on SQLite
// and Postgres, next to the raw database client dumping the same rows
// (sqlite3, psql) in the same run. The hosts are made the way users make
// them: `create --cloud sim` through the host service, worked by the
// queue, so each row carries what a real create leaves (spec with
// prices, runtime from the provider, last action).
//
//	go test -run '^$' -bench BenchmarkList10k -benchtime 5x ./pkg/cli/
func BenchmarkList10k(b *testing.B) {
	n := testutil.BenchSize(10000)
	b.Run("sqlite", func(b *testing.B) {
		db := filepath.Join(b.TempDir(), "state.db")
		benchList(b, db, n, func(json bool) *exec.Cmd {
			if json {
				return exec.Command("sqlite3", "-json", db, rawListSQL)
			}
			return exec.Command("sqlite3", db, rawListSQL)
		})
	})
	b.Run("postgres", func(b *testing.B) {
		c, err := pgtest.Start()
		if err != nil {
			b.Skipf("throwaway Postgres: %v", err)
		}
		b.Cleanup(c.Stop)
		url := c.NewDatabase(b)
		benchList(b, url, n, func(json bool) *exec.Cmd {
			if json {
				return exec.Command("psql", "-X", "-A", "-t", "-q", url, "-c", "SELECT json_agg(t) FROM ("+rawListSQL+") t")
			}
			return exec.Command("psql", "-X", "-A", "-F", "\t", "-q", url, "-c", rawListSQL)
		})
	})
}

// rawListSQL is what list reads, as the raw client would dump it.
const rawListSQL = `SELECT id, name, owner, provider, region, zone, status, spec, runtime, hourly_price,
 last_action, last_error, shared, missing_count, created_at, updated_at, deleted_at
 FROM project_hosts WHERE deleted_at IS NULL ORDER BY created_at, id`

func benchList(b *testing.B, db string, n int, raw func(json bool) *exec.Cmd) {
	dir := b.TempDir()
	b.Setenv("HOME", dir)
	b.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	b.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("db: "+db+"\naccount: bench\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	seedHostsThroughQueue(b, cfg, n)
	for _, format := range []string{"table", "json"} {
		b.Run(format, func(b *testing.B) {
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: io.Discard})
				if code := Execute(context.Background(), f, []string{"--config", cfg, "list", "-o", format}); code != 0 {
					b.Fatalf("exit %d", code)
				}
				f.Close()
			}
			if lines := bytes.Count(out.Bytes(), []byte("\n    \"id\": ")) + bytes.Count(out.Bytes(), []byte("\tsim\t")); lines != n {
				b.Fatalf("listed %d hosts, want %d: %.300s", lines, n, out.String())
			}
		})
		b.Run("raw-"+format, func(b *testing.B) {
			for b.Loop() {
				if out, err := raw(format == "json").CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			}
		})
	}
}

// seedHostsThroughQueue creates n sim hosts through the host service
// (validation, catalog plan, row and create job) and works their jobs
// with a queue worker, as `create --no-wait` and `worker --drain` do.
func seedHostsThroughQueue(b *testing.B, cfg string, n int) {
	start := time.Now()
	ctx := context.Background()
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: io.Discard, ErrOut: io.Discard})
	f.ConfigPath = cfg
	defer f.Close()
	svc, err := f.Hosts(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := svc.Create(ctx, hosts.CreateRequest{Name: fmt.Sprintf("h%05d", i), Owner: "bench", Provider: "sim"}); err != nil {
			b.Fatal(err)
		}
	}
	a, err := f.App()
	if err != nil {
		b.Fatal(err)
	}
	st, err := a.Store(ctx)
	if err != nil {
		b.Fatal(err)
	}
	h, err := a.Handler(ctx)
	if err != nil {
		b.Fatal(err)
	}
	w := queue.NewWorker(st, h)
	if err := w.Run(ctx, true); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d hosts through the service and queue on %s in %s", n, st.Backend(), time.Since(start).Round(time.Millisecond))
}
