package podman

import (
	"context"
	"sync"
	"time"
)

// fresh shares runs of one function among concurrent callers while each
// caller still gets the result of a run that began after it asked: a
// caller arriving during a run waits for it to end and shares the next
// one with everyone else who arrived meanwhile. At most one run is in
// flight, however many callers there are.
//
// Why not singleflight: it hands a caller the result of a run that began
// before the call, which can miss a container started just before it
// (and a memory headroom check would then let a project in that does not
// fit). Why at all: a listing is `podman ps`, which takes seconds on a
// busy host; a dashboard refreshing every 300 ms, or many clients, would
// otherwise pile up listings that all wait on podman's store lock, and
// starve the starts and stops waiting on the same lock.
type fresh[T any] struct {
	mu      sync.Mutex
	running bool
	next    *freshRun[T] // the run that callers arriving now will share
}

type freshRun[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// freshTimeout bounds one shared run: a caller gives up when its own
// context ends, but the run goes on for the others, and a hung podman
// must not hold every later caller.
const freshTimeout = 2 * time.Minute

// do returns the result of a run of fn that began after do was called.
// fn must be the same function for every caller of f; it runs with ctx's
// values but not its cancellation (other callers share the run).
func (f *fresh[T]) do(ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	f.mu.Lock()
	r := f.next
	if r == nil {
		r = &freshRun[T]{done: make(chan struct{})}
		f.next = r
		if !f.running {
			f.running = true
			go f.loop(context.WithoutCancel(ctx), fn)
		}
	}
	f.mu.Unlock()
	select {
	case <-r.done:
		return r.val, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// loop runs fn for the waiting callers until none is left.
func (f *fresh[T]) loop(ctx context.Context, fn func(context.Context) (T, error)) {
	for {
		f.mu.Lock()
		r := f.next
		if r == nil {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.next = nil
		f.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, freshTimeout)
		r.val, r.err = fn(rctx)
		cancel()
		close(r.done)
	}
}
