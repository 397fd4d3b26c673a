package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// LeaderStore is the deployment's leader lock: of the processes sharing
// one database, the one holding it runs the periodic duties (reconcile,
// catalog refresh, project sync, …), so that they run once, not once per
// process. The lock goes with its holder: a process that dies or loses
// its database connection leads no more, and another may take over.
//
// Postgres: a session advisory lock held on a connection of its own,
// which Postgres releases when the session ends (the process died, the
// connection dropped). The holder pings its connection every
// LeaderCheckInterval and stops leading when a ping fails; the session
// is set to end after LeaderIdleTimeout without a ping, so the lock of a
// holder whose machine vanished without closing its connection is
// released too.
//
// SQLite: an exclusive flock(2) on the file "<database>.leader" beside
// the database. SQLite is shared only by processes on one machine, whose
// kernel releases the lock when the holder's file is closed, which
// happens however the process ends; unlike a lease row it needs no
// clock and no writes, and cannot be lost while its holder runs.
type LeaderStore interface {
	// TryLead takes the leader lock if no process holds it, and returns
	// nil (and no error) if one does.
	TryLead(ctx context.Context) (*Lead, error)
	// LeaderExists reports whether some process holds the leader lock.
	LeaderExists(ctx context.Context) (bool, error)
}

const (
	// LeaderCheckInterval is how often a Postgres holder pings its lock's
	// connection; a failed ping ends its lead.
	LeaderCheckInterval = 2 * time.Second
	// LeaderIdleTimeout ends the lock's session on the server when its
	// holder has not pinged for that long.
	LeaderIdleTimeout = 5 * LeaderCheckInterval
	// leaderKey is the advisory lock's key: any constant, the same in
	// every process, and not the migration lock's (7285113).
	leaderKey = 7285114
)

// Lead is the leader lock, held until Release or until it is lost.
type Lead struct {
	lost chan struct{} // closed when this process leads no more
	stop chan struct{} // closed by Release
	done chan struct{} // closed when the lock is given up
	once sync.Once
}

// Lost is closed when this process no longer leads: the lock's
// connection failed, or Release was called.
func (l *Lead) Lost() <-chan struct{} { return l.lost }

// Release gives the lock up, so that another process may take it at
// once. It may be called more than once.
func (l *Lead) Release() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// hold keeps a lock until Release or until check fails, then gives it
// up with release. check, when not nil, runs every LeaderCheckInterval.
func hold(check func(context.Context) error, release func()) *Lead {
	l := &Lead{lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer release()
		defer close(l.lost)
		var tick <-chan time.Time
		if check != nil {
			t := time.NewTicker(LeaderCheckInterval)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-l.stop:
				return
			case <-tick:
			}
			ctx, cancel := context.WithTimeout(context.Background(), LeaderCheckInterval)
			err := check(ctx)
			cancel()
			if err != nil {
				return
			}
		}
	}()
	return l
}

func (s *SQLStore) TryLead(ctx context.Context) (*Lead, error) {
	l, err := s.d.tryLead(ctx)
	return l, s.err("take the leader lock", err)
}

func (s *SQLStore) LeaderExists(ctx context.Context) (bool, error) {
	ok, err := s.d.leaderExists(ctx, s)
	return ok, s.err("look for a leader", err)
}

func (d postgresDialect) tryLead(ctx context.Context) (*Lead, error) {
	conn, err := pgx.ConnectConfig(ctx, d.cfg)
	if err != nil {
		return nil, err
	}
	// A session that stops pinging ends, and its lock with it (Postgres
	// 14 and later; older servers keep it until TCP notices).
	conn.Exec(ctx, fmt.Sprintf("SET idle_session_timeout = %d", LeaderIdleTimeout.Milliseconds())) //nolint:errcheck
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, leaderKey).Scan(&got); err != nil || !got {
		conn.Close(context.Background()) //nolint:errcheck
		return nil, err
	}
	// Only the holder's goroutine uses conn from here on (pgx conns are
	// not safe for concurrent use).
	return hold(func(ctx context.Context) error {
		_, err := conn.Exec(ctx, "SELECT 1")
		return err
	}, func() {
		// Unlock first: the server ends a closed session in its own time,
		// and Release promises the lock is free when it returns.
		ctx, cancel := context.WithTimeout(context.Background(), LeaderCheckInterval)
		defer cancel()
		conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, leaderKey) //nolint:errcheck // a broken session is ended anyway
		conn.Close(ctx)                                            //nolint:errcheck
	}), nil
}

func (postgresDialect) leaderExists(ctx context.Context, s *SQLStore) (bool, error) {
	var ok bool
	err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
 AND classid = 0 AND objid = $1 AND objsubid = 1)`, leaderKey).Scan(&ok)
	return ok, err
}

func (d sqliteDialect) lockPath() string { return d.path + ".leader" }

func (d sqliteDialect) tryLead(context.Context) (*Lead, error) {
	f, err := os.OpenFile(d.lockPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	// flock locks belong to the open file, so two stores of one process
	// exclude each other as two processes do.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock %s: %w", d.lockPath(), err)
	}
	return hold(nil, func() { f.Close() }), nil
}

func (d sqliteDialect) leaderExists(context.Context, *SQLStore) (bool, error) {
	f, err := os.Open(d.lockPath())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	// A shared lock is refused only while someone holds the exclusive one.
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}
