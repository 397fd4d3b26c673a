package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/acmecert/pebbletest"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// TestIngressACMECert: the control plane (acmecert with the DNS token)
// gets a certificate from Pebble for the host's CSR; the host serves it at
// once, keeps it across a restart, and takes a renewal. The key stays on
// the host: the control plane handles only the CSR and the chain.
func TestIngressACMECert(t *testing.T) {
	t.Parallel()
	const name = "gpu1.hosts.example.com"
	h := newHost(t, func(c *agentapi.Config) {
		c.Ingress = agentapi.IngressConfig{HTTPSAddr: "127.0.0.1:0", TLSNames: "127.0.0.1"}
	})
	ctx := tctx(t)
	st, err := h.client.Access(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Ingress.Cert; c == nil || c.Issuer != "" || len(st.Ingress.TLSCertSHA256) != 64 {
		t.Fatalf("without ACME the ingress should serve its self-signed pinned certificate: %+v", st.Ingress)
	}
	selfPin := st.Ingress.TLSCertSHA256

	// A chain for another key is refused, and the pinned certificate stays.
	if _, err := h.client.InstallIngressCert(ctx, []byte("junk")); err == nil || !strings.Contains(err.Error(), "no certificate request is pending") {
		t.Fatalf("a chain without a CSR: %v", err)
	}
	if _, err := h.client.IngressCSR(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.InstallIngressCert(ctx, otherKeyCert(t, name)); err == nil || !strings.Contains(err.Error(), "does not fit this host's pending key") {
		t.Fatalf("a chain for another key: %v", err)
	}

	issuer, pebble, _ := pebbletest.Issuer(t, "hosts.example.com")
	var pins []string
	for round := range 2 { // the second is a renewal
		csr, err := h.client.IngressCSR(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := issuer.Issue(ctx, csr.CSR, name)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if strings.Contains(string(chain), "PRIVATE KEY") {
			t.Fatal("a private key crossed to the control plane")
		}
		info, err := h.client.InstallIngressCert(ctx, chain)
		if err != nil {
			t.Fatalf("round %d: install: %v", round, err)
		}
		if info.Cert == nil || info.Cert.Issuer == "" || info.Cert.Name != name || info.TLSCertSHA256 == selfPin {
			t.Fatalf("round %d: after install the ingress reports %+v", round, info)
		}
		req, _ := x509.ParseCertificateRequest(csr.CSR)
		leaf := verifyServed(t, info.HTTPSAddr, name, pebble.Roots())
		if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(req.PublicKey) {
			t.Fatalf("round %d: the served certificate is not for the key of the host's CSR", round)
		}
		pins = append(pins, info.TLSCertSHA256)
	}
	if pins[0] == pins[1] {
		t.Fatal("the renewal did not replace the certificate")
	}
	keyPath := filepath.Join(ingressDir(h.cfg), acmeKeyFile)
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the host's certificate key %s: %v %v", keyPath, fi, err)
	}

	// A restarted agent serves the kept certificate.
	h.kill()
	h.start()
	st, err = h.client.Access(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ingress.TLSCertSHA256 != pins[1] {
		t.Fatalf("after a restart the ingress serves %s, want the renewed %s", st.Ingress.TLSCertSHA256, pins[1])
	}
	verifyServed(t, st.Ingress.HTTPSAddr, name, pebble.Roots())
}

// verifyServed connects as a browser would (trusting roots, for name) and
// returns the served leaf.
func verifyServed(t *testing.T, addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("the ingress's certificate does not verify for %s against the CA's root: %v", name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// otherKeyCert is a valid-looking certificate for name with a key the
// host never made.
func otherKeyCert(t *testing.T, name string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
