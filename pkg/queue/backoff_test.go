package queue

import (
	"testing"
	"time"
)

// Retry delays double from BaseBackoff up to MaxBackoff with ±20 %
// jitter, and are never shorter than a provider's Retry-After (plus up to
// 20 %, so that clients told the same time spread out).
func TestBackoff(t *testing.T) {
	w := &Worker{BaseBackoff: 2 * time.Second, MaxBackoff: 10 * time.Second}
	for range 200 {
		for attempt, want := range map[int]time.Duration{1: 2 * time.Second, 2: 4 * time.Second, 3: 8 * time.Second, 4: 10 * time.Second, 30: 10 * time.Second} {
			if d := w.backoff(attempt, 0); d < want*8/10 || d > want*12/10 {
				t.Fatalf("attempt %d: %s, want %s ±20%%", attempt, d, want)
			}
		}
		if d := w.backoff(1, time.Minute); d < time.Minute || d > 72*time.Second {
			t.Fatalf("Retry-After 1m: %s, want 1m to 1m12s", d)
		}
		if d := w.backoff(4, time.Second); d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("a short Retry-After does not shorten the backoff: %s", d)
		}
	}
}
