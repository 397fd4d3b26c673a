package projects

import "testing"

// Sizes given by users (--memory, --disk) parse to a non-negative number
// of bytes or to an error, never a panic or an overflow.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"10G", "512M", "1.5Gi", "100", "0", "-1G", "9999999999999999999T", "1e400", "G", " 2 GB "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseBytes(s); err == nil && n < 0 {
			t.Fatalf("%q parsed to %d bytes", s, n)
		}
	})
}
