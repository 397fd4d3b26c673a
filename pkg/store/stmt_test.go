package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// On SQLite a statement is prepared once and reused; a transaction that
// meets one not yet prepared runs it as it is (it holds the only
// connection, so it cannot prepare it) and it is prepared after the
// commit; past maxStmts statements run unprepared.
func TestSQLiteStatementCache(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	count := func() int {
		s.db.mu.Lock()
		defer s.db.mu.Unlock()
		return len(s.db.stmts)
	}
	base := count()
	q := `SELECT count(*) FROM jobs WHERE state = $1`
	for range 2 {
		var n int
		if err := s.db.QueryRowContext(ctx, q, "queued").Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(); got != base+1 {
		t.Fatalf("after one statement run twice the cache holds %d statements, want %d", got, base+1)
	}
	tx, err := s.db.begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET attempts = attempts WHERE id = $1`, "none"); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != base+1 {
		t.Fatalf("a transaction prepared a statement before its commit: %d cached, want %d", got, base+1)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != base+2 {
		t.Fatalf("the statement a transaction missed is not prepared after its commit: %d cached, want %d", got, base+2)
	}
	for i := range maxStmts + 10 {
		if _, err := s.db.ExecContext(ctx, fmt.Sprintf(`UPDATE jobs SET attempts = %d WHERE id = 'none'`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(); got != maxStmts {
		t.Fatalf("the cache holds %d statements, want at most %d", got, maxStmts)
	}
}
