package sim

import "testing"

// Configuration values of any content are accepted or refused with an
// error, never a panic, and accepted rates are probabilities.
func FuzzParseOptions(f *testing.F) {
	f.Add("error_rate", "0.2")
	f.Add("latency", "250ms")
	f.Add("seed", "18446744073709551615")
	f.Add("capacity_error_regions", "sim-east1, sim-west1")
	f.Add("boot_disk_gb", "-1")
	f.Add("error_rates", "1")
	f.Add("duplicate_names", "true")
	f.Fuzz(func(t *testing.T, k, v string) {
		o, err := parseOptions(map[string]string{k: v})
		if err != nil {
			return
		}
		for _, r := range []float64{o.errorRate, o.rateLimitRate, o.timeoutRate, o.ghostRate} {
			if r < 0 || r > 1 || r != r {
				t.Fatalf("%s=%q accepted as rate %v", k, v, r)
			}
		}
		if o.latency < 0 || o.bootTime < 0 || o.timeout < 0 || o.retryAfter < 0 {
			t.Fatalf("%s=%q accepted as a negative duration: %+v", k, v, o)
		}
	})
}
