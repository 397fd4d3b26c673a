package tokens

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"
)

// BenchmarkVerify is a host checking a connect token it has not seen
// before: parse, Ed25519 signature, claims. Run with -cpu 1 for the rate
// per core (the goal is at least 20,000 verifications per second).
func BenchmarkVerify(b *testing.B) {
	kr := newKeyring(b)
	tok := mint(b, kr, grant(t0))
	v := NewVerifier(hostA, kr.Public(t0), func() time.Time { return t0.Add(time.Minute) })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t, err := v.parse(tok)
			if err == nil {
				err = v.check(t)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// BenchmarkVerifyCached is the same token presented again (every request
// of a session): the signature was checked once.
func BenchmarkVerifyCached(b *testing.B) {
	kr := newKeyring(b)
	tok := mint(b, kr, grant(t0))
	v := NewVerifier(hostA, kr.Public(t0), func() time.Time { return t0.Add(time.Minute) })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// BenchmarkCheckCert is a host checking an SSH certificate at login.
func BenchmarkCheckCert(b *testing.B) {
	kr := newKeyring(b)
	cert, err := kr.SignCert(certGrant(b, t0))
	if err != nil {
		b.Fatal(err)
	}
	v := NewVerifier(hostA, kr.Public(t0), func() time.Time { return t0.Add(time.Minute) })
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.CheckCert(cert, project); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Verify is the signature check alone, on a message the
// size of a token's signed part: the floor under BenchmarkVerify on the
// same machine at the same moment.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 300)
	sig := ed25519.Sign(priv, msg)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("bad signature")
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}
