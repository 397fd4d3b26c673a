package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

type sqliteDialect struct {
	path string
	dsn  string // for the connection that watches for other processes' commits
}

func (sqliteDialect) name() string          { return "sqlite" }
func (sqliteDialect) skipLocked() string    { return "" }
func (sqliteDialect) lockRow() string       { return "" }
func (sqliteDialect) migrationsDir() string { return "migrations/sqlite" }

// SQLite transactions here start with BEGIN IMMEDIATE (see openSQLite), so
// the write lock is taken up front and migrations are already serialized.
func (sqliteDialect) migrationLock(context.Context, *sql.Tx) error { return nil }

func (d sqliteDialect) translate(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT:
			if strings.Contains(err.Error(), "UNIQUE") {
				return errkind.Wrap(errkind.Conflict, err)
			}
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return errkind.Errorf(errkind.Unavailable, "state database %s is locked by another process; wait for it to finish or stop it, then retry", d.path)
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return errkind.Errorf(errkind.Unavailable, "state database %s is corrupt or not an SQLite database; restore it from a backup or move it aside to start empty", d.path)
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL:
			return errkind.Errorf(errkind.Unavailable, "state database %s: %v; check the file and its directory", d.path, err)
		}
	}
	return err
}

func openSQLite(ctx context.Context, path string, o Options) (*SQLStore, error) {
	if path == "" {
		return nil, errkind.Errorf(errkind.Invalid, "empty SQLite path: give --db a file path or a postgres:// URL")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, errkind.Errorf(errkind.Unavailable, "state database %s cannot be created (%v); give --db a path in a writable directory", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// One connection: SQLite has one writer anyway, and a second
	// connection in this process would only wait on the first.
	db.SetMaxOpenConns(1)
	d := sqliteDialect{path: path, dsn: dsn}
	s := newSQLStore(db, d)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, d.translate(err)
	}
	// A file that is not a database fails only on first real read.
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
		db.Close()
		return nil, d.translate(err)
	}
	if err := os.Chmod(path, 0o600); err != nil && !os.IsNotExist(err) {
		db.Close()
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	return s, nil
}

// watch polls PRAGMA data_version on a connection of its own: the value
// changes whenever another connection (this process's, or another
// process's) commits. It cannot say what changed, so every topic is told
// to re-read.
func (d sqliteDialect) watch(ctx context.Context, _ *SQLStore, publish func(Change), ready func()) {
	defer ready()
	db, err := sql.Open("sqlite", d.dsn)
	if err != nil {
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	t := time.NewTicker(SQLitePollInterval)
	defer t.Stop()
	last := int64(-1)
	for {
		var v int64
		if err := db.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err == nil {
			if last >= 0 && v != last {
				for _, t := range Topics {
					publish(Change{Topic: t})
				}
			}
			last = v
		}
		if last >= 0 {
			ready()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// publishesOwnChanges: only the store's own calls know what changed in
// this process at once; other commits are seen by polling.
func (sqliteDialect) publishesOwnChanges() bool { return false }
