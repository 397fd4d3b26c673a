package hosts

import "testing"

// A --address of any content parses to a user, a host and a port in
// range, or to an error.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"root@203.0.113.7", "alice@host:2222", "[2001:db8::1]:22", "bob@[2001:db8::1]", "@:", "host:99999", "a@b@c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		if a.Host == "" || a.User == "" || a.Port < 1 || a.Port > 65535 {
			t.Fatalf("%q parsed to %+v", s, a)
		}
	})
}
