package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrations embed.FS

// Options tune Open.
type Options struct {
	// BusyTimeout is how long SQLite waits for another process's write
	// lock before giving up. Zero means 10 s.
	BusyTimeout time.Duration
	// ConnectTimeout bounds connecting to Postgres. Zero means 10 s.
	ConnectTimeout time.Duration
}

// IsPostgres reports whether dsn names a Postgres database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open connects to dsn — a postgres:// URL or an SQLite file path — and
// brings its schema up to date.
func Open(ctx context.Context, dsn string, o Options) (*SQLStore, error) {
	if o.BusyTimeout == 0 {
		o.BusyTimeout = 10 * time.Second
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	var s *SQLStore
	var err error
	if IsPostgres(dsn) {
		s, err = openPostgres(ctx, dsn, o)
	} else {
		s, err = openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite://"), o)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// migrate applies the embedded migrations not yet recorded, each in its
// own transaction, under the dialect's migration lock.
func (s *SQLStore) migrate(ctx context.Context) error { return s.migrateTo(ctx, math.MaxInt) }

// migrateTo is migrate up to version last (tests upgrade old schemas).
func (s *SQLStore) migrateTo(ctx context.Context, last int) error {
	dir := s.d.migrationsDir()
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	// Reading first keeps an up-to-date database free of write locks, so
	// read-only commands work while another process writes.
	applied, err := s.appliedMigrations(ctx)
	if err != nil {
		if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
			return s.err("prepare migrations", err)
		}
	}
	seen := map[int]string{}
	for _, e := range entries {
		version, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", e.Name())
		}
		// Branches number their migrations independently; two with one
		// number would leave one unapplied forever.
		if other, dup := seen[version]; dup {
			return fmt.Errorf("migrations %s and %s have the same number; renumber one", other, e.Name())
		}
		seen[version] = e.Name()
		if applied[version] || version > last {
			continue
		}
		body, err := migrations.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return err
		}
		if err := s.applyMigration(ctx, version, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", e.Name(), err)
		}
	}
	return nil
}

func (s *SQLStore) applyMigration(ctx context.Context, version int, body string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.d.translate(err)
	}
	defer tx.Rollback() //nolint:errcheck
	if err := s.d.migrationLock(ctx, tx); err != nil {
		return s.d.translate(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
		return s.d.translate(err)
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return s.d.translate(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, ms(time.Now())); err != nil {
		return s.d.translate(err)
	}
	return s.d.translate(tx.Commit())
}

// appliedMigrations returns the versions recorded as applied. Every
// missing version is applied, not only those above the newest: branches
// may add migrations out of order.
func (s *SQLStore) appliedMigrations(ctx context.Context) (map[int]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out[v] = true
	}
	return out, rows.Err()
}

// SchemaVersion returns the newest applied migration.
func (s *SQLStore) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	return int(v.Int64), s.err("schema version", err)
}
