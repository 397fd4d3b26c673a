package restclient

import (
	"testing"
	"time"
)

// A Retry-After header of any content gives a wait that is never negative.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "5", "120", "-3", "Wed, 21 Oct 2015 07:28:00 GMT", "Thu, 01 Jan 2099 00:00:00 GMT", "1e9", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := ParseRetryAfter(v, now); d < 0 {
			t.Fatalf("Retry-After %q: negative wait %s", v, d)
		}
	})
}

// Found by FuzzParseRetryAfter: 9,227,000,000 seconds overflowed into a
// negative wait.
func TestRetryAfterOverflow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, v := range []string{"9227000000", "99999999999", "Thu, 01 Jan 2099 00:00:00 GMT"} {
		if d := ParseRetryAfter(v, now); d != MaxRetryAfter {
			t.Errorf("Retry-After %q: %s, want the cap %s", v, d, MaxRetryAfter)
		}
	}
}
