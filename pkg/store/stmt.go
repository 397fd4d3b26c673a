package store

import (
	"context"
	"database/sql"
	"sync"
)

// stmtDB is the store's database handle. On SQLite it keeps each
// statement prepared after its first use: the driver would otherwise
// parse and plan the SQL on every call, which cost a quarter of the CPU
// of a queue drain. pgx caches prepared statements itself (per
// connection), so on Postgres calls go straight through.
type stmtDB struct {
	*sql.DB
	cache bool

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// maxStmts bounds the cache: statements built at run time (a LIMIT
// spelled out, a batch of n values) beyond it run unprepared.
const maxStmts = 256

func newStmtDB(db *sql.DB, cache bool) *stmtDB {
	return &stmtDB{DB: db, cache: cache, stmts: map[string]*sql.Stmt{}}
}

// stmt returns query prepared, preparing it on first use, or nil when it
// is not cached (the caller then runs it as it is).
func (d *stmtDB) stmt(ctx context.Context, query string) *sql.Stmt {
	st, full := d.cached(query)
	if st != nil || full || !d.cache {
		return st
	}
	// Not under d.mu: preparing waits for a connection, which a
	// transaction looking up its statements may hold.
	st, err := d.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil // run unprepared: the error, if any, comes from there
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if had, ok := d.stmts[query]; ok {
		st.Close()
		return had
	}
	d.stmts[query] = st
	return st
}

// cached returns query's prepared statement if there is one, and whether
// the cache is full.
func (d *stmtDB) cached(query string) (*sql.Stmt, bool) {
	if !d.cache {
		return nil, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stmts[query], len(d.stmts) >= maxStmts
}

func (d *stmtDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.DB.ExecContext(ctx, query, args...)
}

func (d *stmtDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.DB.QueryContext(ctx, query, args...)
}

func (d *stmtDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.DB.QueryRowContext(ctx, query, args...)
}

// Close closes the prepared statements, then the database.
func (d *stmtDB) Close() error {
	d.mu.Lock()
	for q, st := range d.stmts {
		st.Close()
		delete(d.stmts, q)
	}
	d.mu.Unlock()
	return d.DB.Close()
}

// stmtTx is a transaction that runs the statements cached in its stmtDB
// prepared. It cannot prepare one itself (on SQLite it holds the only
// connection): those it misses are prepared once it has committed.
type stmtTx struct {
	*sql.Tx
	d      *stmtDB
	missed []string
}

func (d *stmtDB) begin(ctx context.Context) (*stmtTx, error) {
	tx, err := d.BeginTx(ctx, nil)
	return &stmtTx{Tx: tx, d: d}, err
}

// prepared is query's statement in this transaction, or nil.
func (t *stmtTx) prepared(ctx context.Context, query string) *sql.Stmt {
	st, full := t.d.cached(query)
	if st == nil {
		if !full {
			t.missed = append(t.missed, query)
		}
		return nil
	}
	return t.StmtContext(ctx, st)
}

func (t *stmtTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.prepared(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *stmtTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.prepared(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// Commit commits, then prepares the statements the transaction missed.
func (t *stmtTx) Commit() error {
	if err := t.Tx.Commit(); err != nil {
		return err
	}
	for _, q := range t.missed {
		t.d.stmt(context.Background(), q)
	}
	t.missed = nil
	return nil
}
