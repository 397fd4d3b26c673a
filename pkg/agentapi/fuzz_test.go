package agentapi

import "testing"

// A terminal resize message of any bytes decodes only when it is exactly
// a window size.
func FuzzParseResize(f *testing.F) {
	f.Add([]byte{0, 24, 0, 80})
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ok := ParseResize(b); ok && len(b) != 4 {
			t.Fatalf("%d bytes accepted as a window size", len(b))
		}
	})
}
