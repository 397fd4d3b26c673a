package errkind_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// Every kind survives the wire: its code parses back to it, and an error
// rebuilt from code and message has the same kind and the same text.
func TestKindsRoundTrip(t *testing.T) {
	seen := map[errkind.Kind]bool{}
	for _, k := range errkind.All() {
		if seen[k] {
			t.Fatalf("kind %s listed twice", k)
		}
		seen[k] = true
		got, ok := errkind.Parse(k.String())
		if !ok || got != k {
			t.Errorf("Parse(%q) = %s, %v", k, got, ok)
		}
		if s := k.HTTPStatus(); s < 400 || s > 599 {
			t.Errorf("%s maps to HTTP %d, not an error status", k, s)
		}
		sent := fmt.Errorf("start host h1: %w", errkind.New(k, "it went wrong"))
		back := errkind.New(mustParse(t, errkind.Of(sent).String()), sent.Error())
		if errkind.Of(back) != k || back.Error() != "start host h1: it went wrong" {
			t.Errorf("round trip of %s: kind %s, message %q", k, errkind.Of(back), back)
		}
	}
	if len(seen) < 10 {
		t.Fatalf("only %d kinds", len(seen))
	}
	if k, ok := errkind.Parse("from_the_future"); ok || k != errkind.Internal {
		t.Errorf("unknown code parsed as %s, %v; want internal, false", k, ok)
	}
}

func mustParse(t *testing.T, s string) errkind.Kind {
	k, ok := errkind.Parse(s)
	if !ok {
		t.Fatalf("Parse(%q) failed", s)
	}
	return k
}

type busy struct{}

func (busy) Error() string           { return "host h1 has pending work" }
func (busy) ErrorKind() errkind.Kind { return errkind.Conflict }

func TestOf(t *testing.T) {
	inner := errkind.Errorf(errkind.Transient, "ssh: connection reset")
	for _, c := range []struct {
		err  error
		want errkind.Kind
	}{
		{nil, errkind.Internal},
		{errors.New("boom"), errkind.Internal},
		{errkind.Errorf(errkind.NotFound, "no host %q", "x"), errkind.NotFound},
		{fmt.Errorf("show: %w", errkind.New(errkind.Invalid, "bad")), errkind.Invalid},
		// The outermost classification wins: a refused action that wraps a
		// transient cause is refused.
		{errkind.Wrap(errkind.Refused, inner), errkind.Refused},
		{fmt.Errorf("delete: %w", busy{}), errkind.Conflict},
		{fmt.Errorf("wait: %w", context.Canceled), errkind.Canceled},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), errkind.Transient},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, errkind.Transient},
	} {
		if got := errkind.Of(c.err); got != c.want {
			t.Errorf("Of(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	if errkind.Wrap(errkind.Invalid, nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if !errkind.Is(inner, errkind.Transient) || errkind.Is(nil, errkind.Internal) {
		t.Error("Is disagrees with Of")
	}
	// The kind adds no words to the message.
	if got := errkind.Errorf(errkind.NotFound, "no host %q", "nope").Error(); got != `no host "nope"` {
		t.Errorf("message = %q", got)
	}
}
