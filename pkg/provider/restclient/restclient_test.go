package restclient

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:35 GMT": 30 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT": 0,
	} {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

// A number is read from JSON numbers and numeric strings, nothing else.
func TestNumber(t *testing.T) {
	for in, want := range map[string]float64{`80`: 80, `"80"`: 80, `" 1.35 "`: 1.35, `0.000096`: 0.000096} {
		var n Number
		if err := json.Unmarshal([]byte(in), &n); err != nil || float64(n) != want {
			t.Errorf("%s: got %v, %v; want %v", in, n, err, want)
		}
	}
	for _, in := range []string{`"cheap"`, `"NaN"`, `"Inf"`, `true`, `""`, `{}`} {
		var n Number
		if err := json.Unmarshal([]byte(in), &n); err == nil {
			t.Errorf("%s: read as %v, want an error", in, n)
		}
	}
}
