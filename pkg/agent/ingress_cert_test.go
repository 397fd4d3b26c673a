package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/acmecert/pebbletest"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// TestIngressACMECert: the control plane's certificate duty (acmecert
// with the DNS token) gets a certificate from Pebble for the host's CSR;
// the host serves it at once, keeps it across a restart, and takes a
// renewal at 2/3 of its life; a failed attempt is recorded and not retried
// at once. The key stays on
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

	// The control plane's duty (the worker runs it after each access-list
	// push): a running host with a DNS name gets a certificate from the CA,
	// keeps it while it is fresh, and gets a new one at 2/3 of its life.
	issuer, pebble, _ := pebbletest.Issuer(t, "hosts.example.com")
	now := time.Now()
	ps, db := controlPlane(t, h, name, func() time.Time { return now })
	ps.Certs = issuer
	var pins []string
	for round := range 2 { // the second is a renewal
		rep, err := ps.RenewCertificates(ctx)
		if err != nil || len(rep.Issued) != 1 || len(rep.Failed) != 0 || rep.Issued[0].CertName != name {
			t.Fatalf("round %d: %+v %v", round, rep, err)
		}
		in, err := db.GetHostIngress(ctx, h.cfg.HostID)
		if err != nil || in.Cert == nil || in.Cert.Name != name || in.Cert.Issuer == "" || in.CertError != "" || in.TLSCertSHA256 == selfPin {
			t.Fatalf("round %d: recorded %+v %v", round, in, err)
		}
		leaf := verifyServed(t, ingressOf(t, h).HTTPSAddr, name, pebble.Roots())
		if pin := sha256Hex(leaf.Raw); pin != in.TLSCertSHA256 {
			t.Fatalf("round %d: the ingress serves %s, the control plane recorded %s", round, pin, in.TLSCertSHA256)
		}
		pins = append(pins, in.TLSCertSHA256)
		life := in.Cert.NotAfter.Sub(in.Cert.NotBefore)
		now = in.Cert.NotBefore.Add(life * 2 / 3).Add(-time.Minute)
		if rep, err := ps.RenewCertificates(ctx); err != nil || len(rep.Issued)+len(rep.Failed) != 0 {
			t.Fatalf("round %d: a fresh certificate was renewed: %+v %v", round, rep, err)
		}
		now = now.Add(2 * time.Minute)
	}
	if pins[0] == pins[1] {
		t.Fatal("the renewal did not replace the certificate")
	}

	// A CA that cannot validate the name: the failure is recorded, the
	// host keeps serving what it had, and the next pass within
	// projects.CertRetry does not try again (CAs limit failed attempts).
	other, _, _ := pebbletest.Issuer(t, "elsewhere.example.net")
	ps.Certs = other
	now = now.Add(24 * time.Hour)
	if rep, err := ps.RenewCertificates(ctx); err != nil || len(rep.Failed) != 1 || rep.Failed[0].Error == "" {
		t.Fatalf("a CA that cannot validate the name: %+v %v", rep, err)
	}
	if in, err := db.GetHostIngress(ctx, h.cfg.HostID); err != nil || in.CertError == "" || in.TLSCertSHA256 != pins[1] {
		t.Fatalf("after a failed attempt: %+v %v", in, err)
	}
	now = now.Add(projects.CertRetry / 2)
	if rep, err := ps.RenewCertificates(ctx); err != nil || len(rep.Issued)+len(rep.Failed) != 0 {
		t.Fatalf("tried again before projects.CertRetry: %+v %v", rep, err)
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

// controlPlane is the project service on a new SQLite store that holds h
// as a running host named dnsName, reaching it through its socket, with
// its access list pushed once.
func controlPlane(t *testing.T, h *host, dnsName string, now func() time.Time) (*projects.Service, store.Store) {
	t.Helper()
	ctx := tctx(t)
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hm := model.Host{ID: h.cfg.HostID, Name: "gpu1", Provider: "ssh", Status: model.StatusRunning, Owner: "alice", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	hm.Runtime.DNSName = dnsName
	if err := st.CreateHost(ctx, hm); err != nil {
		t.Fatal(err)
	}
	ps := projects.New(st, agentsOf{h.client})
	ps.Now = now
	keys := filepath.Join(t.TempDir(), "keys.json")
	ps.Keys = func() (*tokens.Keyring, error) { return tokens.LoadOrCreate(keys, now()) }
	if rep, err := ps.PushAllAccess(ctx); err != nil || rep.Pushed != 1 {
		t.Fatalf("push the access list: %+v %v", rep, err)
	}
	return ps, st
}

// agentsOf reaches every host through one agent client.
type agentsOf struct{ c *agentapi.Client }

func (a agentsOf) AgentClient(context.Context, model.Host) (*agentapi.Client, error) { return a.c, nil }

// ingressOf is what h's agent says about its ingress.
func ingressOf(t *testing.T, h *host) agentapi.IngressInfo {
	t.Helper()
	st, err := h.client.Access(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return st.Ingress
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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
