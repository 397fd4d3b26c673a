package model

import "testing"

// Catalog RAM is shown to a tenth of a GiB, whole numbers without a
// fraction.
func TestFormatGiB(t *testing.T) {
	for v, want := range map[float64]string{2.3021358869347655: "2.3", 16: "16", 0.5: "0.5", 7.96: "8", 0: "0"} {
		if got := FormatGiB(v); got != want {
			t.Errorf("FormatGiB(%v) = %q, want %q", v, got, want)
		}
	}
}
