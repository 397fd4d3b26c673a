package acmecert_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/acmecert"
	"github.com/sagemathinc/cocalc-hosts/pkg/acmecert/pebbletest"
	"github.com/sagemathinc/cocalc-hosts/pkg/dns/dnsfake"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

const domain = "hosts.example.com"

func setup(t *testing.T) (*acmecert.Issuer, *pebbletest.CA, *dnsfake.Server) {
	t.Helper()
	return pebbletest.Issuer(t, domain)
}

func csrFor(t *testing.T, names ...string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{}, DNSNames: names}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestIssueOverDNS01 gets a certificate from Pebble, which validates the
// TXT record through a real DNS lookup; the record is gone afterwards, and
// a second order (a renewal) with the same account works too.
func TestIssueOverDNS01(t *testing.T) {
	is, pebble, zone := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "gpu1." + domain
	for round := range 2 {
		chain, err := is.Issue(ctx, csrFor(t, name), name)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		blk, rest := pem.Decode(chain)
		if blk == nil {
			t.Fatalf("round %d: no PEM in %q", round, chain)
		}
		leaf, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		inter := x509.NewCertPool()
		for b, r := pem.Decode(rest); b != nil; b, r = pem.Decode(r) {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pebble.Roots(), Intermediates: inter}); err != nil {
			t.Fatalf("round %d: the chain does not verify for %s against Pebble's root: %v", round, name, err)
		}
	}
	for _, r := range zone.Records() {
		if r.Type == "TXT" {
			t.Fatalf("challenge record left behind: %+v", r)
		}
	}
	st, err := os.Stat(is.AccountKeyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("account key file: %v %v", st, err)
	}
}

// TestIssueRefusesOtherNames: a host may only get its own name; the CA is
// never asked.
func TestIssueRefusesOtherNames(t *testing.T) {
	is := &acmecert.Issuer{Directory: "https://127.0.0.1:1/dir", AccountKeyFile: filepath.Join(t.TempDir(), "k")}
	name := "gpu1." + domain
	for _, csr := range [][]byte{
		csrFor(t, "gpu2."+domain),
		csrFor(t, name, "gpu2."+domain),
		csrFor(t),
		[]byte("not a csr"),
	} {
		_, err := is.Issue(context.Background(), csr, name)
		if err == nil {
			t.Fatal("a bad CSR was accepted")
		}
		if k := errkind.Of(err); k != errkind.Forbidden && k != errkind.Invalid {
			t.Fatalf("kind %s for %v", k, err)
		}
		if !strings.Contains(err.Error(), "certificate request") && !strings.Contains(err.Error(), "its own name "+name) {
			t.Fatalf("error does not say what was wrong: %v", err)
		}
	}
	if _, err := os.Stat(is.AccountKeyFile); !os.IsNotExist(err) {
		t.Fatalf("an account was made for a refused request: %v", err)
	}
}

// wrongTXT publishes a wrong answer, so only a CA that really looks the
// record up refuses.
type wrongTXT struct{ acmecert.TXTRecords }

func (w wrongTXT) SetTXT(ctx context.Context, fqdn, value string) error {
	return w.TXTRecords.SetTXT(ctx, fqdn, "wrong-"+value)
}

func (w wrongTXT) RemoveTXT(ctx context.Context, fqdn, value string) error {
	return w.TXTRecords.RemoveTXT(ctx, fqdn, "wrong-"+value)
}

// TestIssueFailsOnAWrongChallengeRecord: Pebble validates DNS-01 for real.
func TestIssueFailsOnAWrongChallengeRecord(t *testing.T) {
	is, _, _ := setup(t)
	is.DNS = wrongTXT{is.DNS}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "gpu9." + domain
	if _, err := is.Issue(ctx, csrFor(t, name), name); err == nil || !strings.Contains(err.Error(), "did not validate "+name+" over DNS-01") {
		t.Fatalf("a wrong TXT record: %v", err)
	}
}
