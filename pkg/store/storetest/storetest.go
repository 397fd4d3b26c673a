// Package storetest runs a test on both store backends: a SQLite file and
// a database of the shared test Postgres (pkg/testutil/pgtest).
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
)

// runner is *testing.T or *testing.B: what can run a subtest of its kind.
type runner[T any] interface {
	testing.TB
	Run(name string, f func(T)) bool
}

// DSNs runs fn as the subtests "sqlite" and "postgres", each with the
// address of a new, empty database of that backend.
func DSNs[T runner[T]](t T, fn func(t T, dsn string)) {
	t.Run("sqlite", func(t T) { fn(t, filepath.Join(t.TempDir(), "state.db")) })
	t.Run("postgres", func(t T) { fn(t, pgtest.Shared(t).NewDatabase(t)) })
}

// Each runs fn as the subtests "sqlite" and "postgres", each with a new,
// empty store of that backend, closed when the subtest ends.
func Each[T runner[T]](t T, fn func(t T, s *store.SQLStore)) {
	DSNs(t, func(t T, dsn string) { fn(t, Open(t, dsn)) })
}

// Open opens the store at dsn (as another process would: tests open one
// database twice) and closes it when the test ends.
func Open(tb testing.TB, dsn string) *store.SQLStore {
	tb.Helper()
	s, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
