package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

type postgresDialect struct {
	where string
	cfg   *pgx.ConnConfig // for the LISTEN connection
}

func (postgresDialect) name() string          { return "postgres" }
func (postgresDialect) skipLocked() string    { return " FOR UPDATE SKIP LOCKED" }
func (postgresDialect) lockRow() string       { return " FOR UPDATE" }
func (postgresDialect) migrationsDir() string { return "migrations/postgres" }

func (postgresDialect) migrationLock(ctx context.Context, tx *sql.Tx) error {
	// Any constant: it only has to be the same in every process.
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7285113)`)
	return err
}

func (d postgresDialect) translate(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return errkind.Wrap(errkind.Conflict, err)
		case "28P01", "28000":
			return errkind.Errorf(errkind.Unavailable, "Postgres at %s refused the login (%s); check the user in --db and the password in ~/.pgpass", d.where, pe.Message)
		case "3D000":
			return errkind.Errorf(errkind.Unavailable, "Postgres at %s: %s; create it with createdb or fix --db", d.where, pe.Message)
		}
		return err
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return errkind.Errorf(errkind.Unavailable, "cannot reach Postgres at %s (%v); check --db and that the server is running", d.where, err)
	}
	return err
}

func openPostgres(ctx context.Context, dsn string, o Options) (*SQLStore, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, errkind.Errorf(errkind.Invalid, "bad Postgres URL: %v", err)
	}
	if _, has := u.User.Password(); has || u.Query().Has("password") {
		return nil, errkind.Errorf(errkind.Invalid, "the Postgres URL contains a password; remove it and put it in ~/.pgpass (mode 0600) instead, so it never appears in argv or config")
	}
	if err := checkPassfile(u); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errkind.Errorf(errkind.Invalid, "bad Postgres URL: %v", err)
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	d := postgresDialect{where: net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)) + "/" + cfg.Database, cfg: cfg}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(20)
	// Keep them all: database/sql keeps only 2 idle connections by
	// default, so a few concurrent workers would otherwise open and close
	// a connection (a server process) for most of their statements.
	db.SetMaxIdleConns(20)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, d.translate(err)
	}
	return newSQLStore(db, d), nil
}

// checkPassfile refuses a password file others can read, as libpq does
// (pgx silently uses it).
func checkPassfile(u *url.URL) error {
	path := u.Query().Get("passfile")
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil
		}
		path = filepath.Join(home, ".pgpass")
	}
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	return secrets.CheckMode(path)
}

// notifyChannels maps the channels the triggers of migration 0007 NOTIFY
// to topics.
var notifyChannels = map[string]Topic{"cocalc_hosts": TopicHosts, "cocalc_projects": TopicProjects, "cocalc_jobs": TopicJobs}

// watch LISTENs on its own connection (reconnecting with backoff) and
// publishes every notification; see Subscribe.
func (d postgresDialect) watch(ctx context.Context, _ *SQLStore, publish func(Change), ready func()) {
	backoff := 100 * time.Millisecond
	for connected := false; ctx.Err() == nil; {
		conn, err := pgx.ConnectConfig(ctx, d.cfg)
		if err == nil {
			for ch := range notifyChannels {
				if _, err = conn.Exec(ctx, "LISTEN "+ch); err != nil {
					break
				}
			}
		}
		if err == nil {
			if connected {
				// Notifications sent while we were away are lost.
				for _, t := range Topics {
					publish(Change{Topic: t})
				}
			}
			connected = true
			backoff = 100 * time.Millisecond
			ready()
			for {
				n, err := conn.WaitForNotification(ctx)
				if err != nil {
					break
				}
				publish(Change{Topic: notifyChannels[n.Channel], ID: n.Payload})
			}
		}
		// Subscribers go on without wake-ups (their callers poll) until
		// the server is back.
		ready()
		if conn != nil {
			conn.Close(context.Background()) //nolint:errcheck
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 5*time.Second)
	}
}

// publishesOwnChanges: the triggers publish every change, ours too.
func (postgresDialect) publishesOwnChanges() bool { return true }
