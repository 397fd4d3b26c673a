package providertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// Helpers shared by the providers' own unit tests (against their fakes).

// waitStep is the pause between Status calls in WaitState and WaitGone:
// fakes change state within milliseconds, and the deadline is the context's.
const waitStep = 5 * time.Millisecond

// Ctx is a context that ends after d or when the test ends.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// WaitState polls Status until ref is in want, failing the test when ctx
// ends first.
func WaitState(t testing.TB, ctx context.Context, p provider.Provider, ref provider.Ref, want provider.State) provider.Instance {
	t.Helper()
	var last provider.Instance
	var err error
	for ctx.Err() == nil {
		last, err = p.Status(ctx, ref)
		if err == nil && last.State == want {
			return last
		}
		time.Sleep(waitStep)
	}
	t.Fatalf("instance %s never reached %s: last state %q, error %v", ref.Name, want, last.State, err)
	return last
}

// WaitGone polls Status until it reports ref does not exist, failing the
// test when ctx ends first.
func WaitGone(t testing.TB, ctx context.Context, p provider.Provider, ref provider.Ref) {
	t.Helper()
	var err error
	for ctx.Err() == nil {
		_, err = p.Status(ctx, ref)
		if errkind.Is(err, errkind.NotFound) {
			return
		}
		time.Sleep(waitStep)
	}
	t.Fatalf("instance %s is not gone: %v", ref.Name, err)
}

// WantKind fails the test unless err is a provider error of kind.
func WantKind(t testing.TB, err error, kind errkind.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a %s error", kind)
	}
	if k := errkind.Of(err); k != kind {
		t.Fatalf("got %v (kind %s), want kind %s", err, k, kind)
	}
}

// KindOf is errkind.Of, with "none" for a nil error so test tables
// can expect success and failure alike.
func KindOf(err error) errkind.Kind {
	if err == nil {
		return "none"
	}
	return errkind.Of(err)
}

// SleepLog stands in for a client's sleep function: it records the waits
// asked for (Retry-After, backoff) instead of waiting, so tests can assert
// them without taking that long.
type SleepLog struct {
	mu sync.Mutex
	d  []time.Duration
}

// Sleep records d and returns at once (with ctx's error, like a real sleep
// whose context ended).
func (s *SleepLog) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

// Waits returns the recorded waits in order.
func (s *SleepLog) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}
