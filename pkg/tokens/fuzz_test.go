package tokens

import (
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds the token parser arbitrary input: it must never panic,
// and whatever it accepts must be a token our key signed for this host,
// unexpired, with an account and a project (with the fixed seed keys no
// mutation can produce such a token, so nothing but the seeds may pass).
func FuzzVerify(f *testing.F) {
	kr := newKeyring(f)
	good := mint(f, kr, grant(t0))
	other := mint(f, kr, func() Grant { g := grant(t0); g.HostID = hostB; return g }())
	for _, s := range []string{good, other, "", "a.b.c", "..", strings.Repeat(".", 100),
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", good + "x", good[:len(good)-3]} {
		f.Add(s)
	}
	v := NewVerifier(hostA, kr.Public(t0), func() time.Time { return t0.Add(time.Minute) })
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if tok != good {
			// Trailing base64 bits can decode to the same bytes, so a
			// different string may carry the same signed token: it must
			// then say exactly what the good one says.
			want, _ := v.Verify(good)
			if c.ID != want.ID || c.Project != want.Project || c.Account() != want.Account() {
				t.Fatalf("accepted a token that is not ours: %q → %+v", tok, c)
			}
		}
	})
}
