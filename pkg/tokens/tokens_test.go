package tokens

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/ssh"
)

const (
	hostA   = "11111111-1111-4111-8111-111111111111"
	hostB   = "22222222-2222-4222-8222-222222222222"
	project = "3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13"
	other   = "4f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c14"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newKeyring(t testing.TB) *Keyring {
	t.Helper()
	kr, err := LoadOrCreate(filepath.Join(t.TempDir(), "keys", "signing.json"), t0)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func grant(now time.Time) Grant {
	return Grant{Account: "alice", Project: project, HostID: hostA, Perms: []string{PermHTTP}, Ports: []int{8888}, TTL: 10 * time.Minute, Now: now}
}

func mint(t testing.TB, kr *Keyring, g Grant) string {
	t.Helper()
	s, _, err := kr.Mint(g)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clock is a settable clock for verifiers.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func wantReason(t *testing.T, err error, r Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want refused (%s)", r)
	}
	if got := ReasonOf(err); got != r {
		t.Fatalf("refused as %q (%v), want %q", got, err, r)
	}
}

func TestKeyringFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k", "signing.json")
	kr, err := LoadOrCreate(path, t0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file mode: %v %v", st.Mode(), err)
	}
	again, err := LoadOrCreate(path, t0.Add(time.Hour))
	if err != nil || again.Keys()[0].KID != kr.Keys()[0].KID || len(again.Keys()) != 1 {
		t.Fatalf("second LoadOrCreate made another key: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a keyring others can read was loaded: %v", err)
	}
}

// What hosts get has public keys only: no seed or private key of either
// kind, so nothing a host holds can sign a token or a certificate.
func TestPublicKeysHoldNoSecret(t *testing.T) {
	kr := newKeyring(t)
	b, err := json.Marshal(kr.Public(t0))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(kr.Path)
	var f keyFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	for _, k := range f.Keys {
		for _, seed := range [][]byte{k.TokenSeed, k.CASeed} {
			if strings.Contains(string(b), base64.StdEncoding.EncodeToString(seed)) {
				t.Fatalf("public keys contain a private seed: %s", b)
			}
			priv := ed25519.NewKeyFromSeed(seed)
			if strings.Contains(string(b), base64.StdEncoding.EncodeToString(priv)) {
				t.Fatalf("public keys contain a private key: %s", b)
			}
		}
	}
	var pk PublicKeys
	if err := json.Unmarshal(b, &pk); err != nil || len(pk.TokenKeys) != 1 || len(pk.SSHCAKeys) != 1 {
		t.Fatalf("public keys: %v %s", err, b)
	}
}

func TestTokenAccepted(t *testing.T) {
	kr := newKeyring(t)
	tok, issued := mintWithClaims(t, kr, grant(t0))
	v := NewVerifier(hostA, kr.Public(t0), (&clock{t0.Add(time.Minute)}).now)
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Account() != "alice" || c.Project != project || c.ID != issued.ID || len(c.ID) != 32 {
		t.Fatalf("claims: %+v", c)
	}
	if !c.Allows(PermHTTP, 8888) || c.Allows(PermHTTP, 8889) || c.Allows(PermSSH, 0) {
		t.Fatalf("permissions: %+v", c)
	}
}

func mintWithClaims(t *testing.T, kr *Keyring, g Grant) (string, Claims) {
	t.Helper()
	s, c, err := kr.Mint(g)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestTokenRefused(t *testing.T) {
	kr := newKeyring(t)
	clk := &clock{t0}
	v := NewVerifier(hostA, kr.Public(t0), clk.now)
	good := mint(t, kr, grant(t0))

	// Another control plane's key, with this one's kid: a forgery.
	forger := newKeyring(t)
	forged := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claimsOf(t, v, good))
	forged.Header["kid"] = kr.Keys()[0].KID
	forgedStr, err := forged.SignedString(forger.keys[0].token)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	// The payload of another project, under the original signature.
	alteredClaims := claimsOf(t, v, good)
	alteredClaims.Project = other
	payload, _ := json.Marshal(alteredClaims)
	altered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	// "alg": "none" and an HMAC keyed with the public key (the classic
	// confusions) are refused by the method allow-list, as forgeries.
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsOf(t, v, good))
	hs.Header["kid"] = kr.Keys()[0].KID
	hsStr, _ := hs.SignedString([]byte(kr.Public(t0).TokenKeys[0].Key))

	for _, c := range []struct {
		name   string
		tok    string
		reason Reason
	}{
		{"forged signature", forgedStr, BadSignature},
		{"altered payload", altered, BadSignature},
		{"alg none", none, BadSignature},
		{"hmac with the public key", hsStr, BadSignature},
		{"unknown kid", mint(t, forger, grant(t0)), UnknownKey},
		{"another host", mint(t, kr, func() Grant { g := grant(t0); g.HostID = hostB; return g }()), WrongAudience},
		{"not yet valid", mint(t, kr, grant(t0.Add(time.Hour))), NotYetValid},
		{"garbage", "a.b.c", Malformed},
		{"empty", "", Malformed},
		{"huge", strings.Repeat("a", 10000), Malformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Verify(c.tok)
			wantReason(t, err, c.reason)
		})
	}

	// Expired: accepted, then (also from the cache) refused once its time
	// plus the leeway has passed.
	if _, err := v.Verify(good); err != nil {
		t.Fatal(err)
	}
	clk.t = t0.Add(10*time.Minute + Leeway + time.Second)
	_, err = v.Verify(good)
	wantReason(t, err, Expired)
}

func claimsOf(t *testing.T, v *Verifier, tok string) Claims {
	t.Helper()
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// After a rotation the old key signs nothing new but its tokens are
// accepted until its grace ends; then they are refused, also from the
// verifier's cache, and a keyring rotated past the grace drops the key.
func TestRotation(t *testing.T) {
	kr := newKeyring(t)
	oldTok := mint(t, kr, grant(t0))
	oldKID := kr.Keys()[0].KID
	kr, err := Rotate(kr.Path, t0.Add(time.Minute), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	keys := kr.Keys()
	if len(keys) != 2 || !keys[0].Current() || keys[1].KID != oldKID || keys[1].Current() {
		t.Fatalf("keys after rotate: %+v", keys)
	}
	newTok := mint(t, kr, grant(t0.Add(time.Minute)))
	if h, _, _ := jwt.NewParser().ParseUnverified(newTok, &Claims{}); h.Header["kid"] != keys[0].KID {
		t.Fatalf("new token signed by %v, want the new key %s", h.Header["kid"], keys[0].KID)
	}
	clk := &clock{t0.Add(2 * time.Minute)}
	v := NewVerifier(hostA, kr.Public(clk.t), clk.now)
	for _, tok := range []string{oldTok, newTok} {
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("within the grace: %v", err)
		}
	}
	clk.t = t0.Add(6*time.Minute + time.Second) // past accept_until, old token not yet expired
	_, err = v.Verify(oldTok)
	wantReason(t, err, RetiredKey)
	if _, err := v.Verify(newTok); err != nil {
		t.Fatalf("the new key's token: %v", err)
	}
	// The control plane leaves the old key out of what it gives hosts,
	// and drops it at the next rotation.
	if pk := kr.Public(clk.t); len(pk.TokenKeys) != 1 || pk.TokenKeys[0].KID == oldKID {
		t.Fatalf("public keys past the grace: %+v", pk)
	}
	_, err = NewVerifier(hostA, kr.Public(clk.t), clk.now).Verify(oldTok)
	wantReason(t, err, UnknownKey)
	kr, err = Rotate(kr.Path, clk.t, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kr.Keys() {
		if k.KID == oldKID {
			t.Fatal("a key past its grace was kept at the next rotation")
		}
	}
}

func TestMintRefusesBadGrants(t *testing.T) {
	kr := newKeyring(t)
	for name, g := range map[string]Grant{
		"no account":  {Project: project, HostID: hostA, Perms: []string{PermHTTP}, TTL: time.Minute},
		"no perms":    {Account: "a", Project: project, HostID: hostA, TTL: time.Minute},
		"too long":    {Account: "a", Project: project, HostID: hostA, Perms: []string{PermHTTP}, TTL: 48 * time.Hour},
		"port 0":      {Account: "a", Project: project, HostID: hostA, Perms: []string{PermHTTP}, Ports: []int{0}, TTL: time.Minute},
		"port 70000":  {Account: "a", Project: project, HostID: hostA, Perms: []string{PermHTTP}, Ports: []int{70000}, TTL: time.Minute},
		"no lifetime": {Account: "a", Project: project, HostID: hostA, Perms: []string{PermHTTP}},
	} {
		if _, _, err := kr.Mint(g); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
}

func userKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certGrant(t testing.TB, now time.Time) CertGrant {
	return CertGrant{Account: "alice", Project: project, HostID: hostA, PublicKey: userKey(t), Validity: 10 * time.Minute, Now: now}
}

func TestSSHCert(t *testing.T) {
	kr := newKeyring(t)
	cert, err := kr.SignCert(certGrant(t, t0))
	if err != nil {
		t.Fatal(err)
	}
	if cert.KeyId != "alice" || cert.ValidPrincipals[0] != project || cert.CertType != ssh.UserCert {
		t.Fatalf("cert: %+v", cert)
	}
	// OpenSSH's own parser reads it back (authorized format round trip).
	parsed, _, _, _, err := ssh.ParseAuthorizedKey(ssh.MarshalAuthorizedKey(cert))
	if err != nil {
		t.Fatal(err)
	}
	cert = parsed.(*ssh.Certificate)
	clk := &clock{t0.Add(time.Minute)}
	v := NewVerifier(hostA, kr.Public(t0), clk.now)
	if acct, err := v.CheckCert(cert, project); err != nil || acct != "alice" {
		t.Fatalf("check: %q %v", acct, err)
	}

	_, err = v.CheckCert(cert, other)
	wantReason(t, err, WrongProject)
	_, err = NewVerifier(hostB, kr.Public(t0), clk.now).CheckCert(cert, project)
	wantReason(t, err, WrongAudience)

	forger := newKeyring(t)
	forged, _ := forger.SignCert(certGrant(t, t0))
	_, err = v.CheckCert(forged, project)
	wantReason(t, err, UnknownKey)
	// Our CA's key named as signer, but the account changed after signing.
	altered := *cert
	altered.KeyId = "mallory"
	_, err = v.CheckCert(&altered, project)
	wantReason(t, err, BadSignature)

	future, _ := kr.SignCert(certGrant(t, t0.Add(time.Hour)))
	_, err = v.CheckCert(future, project)
	wantReason(t, err, NotYetValid)

	clk.t = t0.Add(10*time.Minute + Leeway + time.Second)
	_, err = v.CheckCert(cert, project)
	wantReason(t, err, Expired)

	// A rotated-out CA: accepted within the grace, refused after.
	kr2, err := Rotate(kr.Path, t0.Add(time.Minute), 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clk.t = t0.Add(2 * time.Minute)
	v = NewVerifier(hostA, kr2.Public(clk.t), clk.now)
	if _, err := v.CheckCert(cert, project); err != nil {
		t.Fatalf("old CA within its grace: %v", err)
	}
	clk.t = t0.Add(4*time.Minute + time.Second)
	_, err = v.CheckCert(cert, project)
	wantReason(t, err, RetiredKey)
}
