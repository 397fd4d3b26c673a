package podman

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Callers that arrive while a run is in flight share the next run, never
// the one in flight (it began before they asked), and only one run is
// in flight at a time.
func TestFreshSharesOnlyLaterRuns(t *testing.T) {
	var f fresh[int]
	var runs, inFlight, most atomic.Int32
	release := make(chan struct{})
	started := make(chan int, 10)
	fn := func(context.Context) (int, error) {
		n := runs.Add(1)
		if c := inFlight.Add(1); c > most.Load() {
			most.Store(c)
		}
		defer inFlight.Add(-1)
		started <- int(n)
		<-release
		return int(n), nil
	}
	ctx := context.Background()
	first := make(chan int)
	go func() { v, _ := f.do(ctx, fn); first <- v }()
	if n := <-started; n != 1 {
		t.Fatalf("first run is run %d", n)
	}
	// Five callers arrive during run 1.
	var wg sync.WaitGroup
	got := make([]int, 5)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], _ = f.do(ctx, fn) }()
	}
	// They are all waiting (a run for them is pending) before run 1 ends.
	waitFor(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.next != nil })
	time.Sleep(10 * time.Millisecond) // let the other callers join the pending run
	release <- struct{}{}
	if v := <-first; v != 1 {
		t.Fatalf("the first caller got run %d, want 1", v)
	}
	if n := <-started; n != 2 {
		t.Fatalf("second run is run %d", n)
	}
	release <- struct{}{}
	wg.Wait()
	for i, v := range got {
		if v != 2 {
			t.Errorf("caller %d, arrived during run 1, got run %d; want 2", i, v)
		}
	}
	if r := runs.Load(); r != 2 {
		t.Errorf("%d runs for 6 callers, want 2", r)
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d runs in flight at once, want 1", m)
	}
	// Idle again: the next caller starts a run of its own.
	go func() { <-started; release <- struct{}{} }()
	if v, err := f.do(ctx, fn); v != 3 || err != nil {
		t.Fatalf("a caller after the runs got %d, %v; want run 3", v, err)
	}
}

// A caller whose context ends stops waiting; the run goes on for the
// others, and its error reaches them.
func TestFreshCallerGivesUp(t *testing.T) {
	var f fresh[int]
	release := make(chan struct{})
	boom := errors.New("podman failed")
	fn := func(context.Context) (int, error) { <-release; return 0, boom }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := f.do(ctx, fn); done <- err }()
	other := make(chan error)
	go func() { _, err := f.do(context.Background(), fn); other <- err }()
	waitFor(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.running })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(release)
	if err := <-other; !errors.Is(err, boom) {
		t.Fatalf("the other caller: %v, want the run's error", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
	}
}
