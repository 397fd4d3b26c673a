package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

// Of two stores on one database (two processes), only one leads; when it
// lets go, the other takes over.
func TestLeaderLock(t *testing.T) {
	storetest.DSNs(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := storetest.Open(t, dsn), storetest.Open(t, dsn)
		if ok, err := b.LeaderExists(ctx); err != nil || ok {
			t.Fatalf("before anyone leads: leader exists %v, %v", ok, err)
		}
		la := tryLead(t, a)
		if la == nil {
			t.Fatal("nobody leads, yet the lock was refused")
		}
		defer la.Release()
		if lb := tryLead(t, b); lb != nil {
			t.Fatal("two stores lead at once")
		}
		if again := tryLead(t, a); again != nil {
			t.Fatal("the holder's store took the lock a second time")
		}
		if ok, err := b.LeaderExists(ctx); err != nil || !ok {
			t.Fatalf("while a leads: leader exists %v, %v", ok, err)
		}
		la.Release()
		select {
		case <-la.Lost():
		default:
			t.Fatal("Lost is still open after Release")
		}
		lb := tryLead(t, b)
		if lb == nil {
			t.Fatal("the lock was released, but the other store cannot take it")
		}
		lb.Release()
		if ok, err := a.LeaderExists(ctx); err != nil || ok {
			t.Fatalf("after both released: leader exists %v, %v", ok, err)
		}
	})
}

// A Postgres holder whose session ends (its process died, its connection
// dropped: here the server ends it) notices, stops leading, and the lock
// is free for another.
func TestLeaderLockLostWithSession(t *testing.T) {
	storetest.DSNs(t, func(t *testing.T, dsn string) {
		if !store.IsPostgres(dsn) {
			t.Skip("an SQLite lock is a flock the kernel releases when its holder ends; there is no session to lose")
		}
		ctx := context.Background()
		a, b := storetest.Open(t, dsn), storetest.Open(t, dsn)
		la := tryLead(t, a)
		if la == nil {
			t.Fatal("nobody leads, yet the lock was refused")
		}
		defer la.Release()
		var ended int
		if err := b.DB().QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
 WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&ended); err != nil || ended != 1 {
			t.Fatalf("ending the holder's session: %d ended, %v", ended, err)
		}
		select {
		case <-la.Lost():
		case <-time.After(10 * store.LeaderCheckInterval):
			t.Fatal("the holder did not notice that its session ended")
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if lb := tryLead(t, b); lb != nil {
				lb.Release()
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the lock of the ended session was never freed")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func tryLead(t *testing.T, s *store.SQLStore) *store.Lead {
	t.Helper()
	l, err := s.TryLead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l
}
