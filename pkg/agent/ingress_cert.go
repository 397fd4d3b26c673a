package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// The HTTPS ingress serves a CA-issued certificate when the control plane
// got one (ACME over DNS-01, which only it can answer), else the
// self-signed one clients pin. The CA-issued certificate's key is made
// here and never leaves the host: the control plane sees only the CSR.
const (
	acmeCertFile = "acme.crt"
	acmeKeyFile  = "acme.key"
	// acmeNextKeyFile is the key of the last CSR, until its chain arrives.
	acmeNextKeyFile = "acme-next.key"
)

func (s *server) ingressCertRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+agentapi.IngressCSRPath, s.reply(withBody(s.handleIngressCSR)))
	mux.HandleFunc("PUT "+agentapi.IngressCertPath, s.reply(withBody(s.handleInstallIngressCert)))
}

func (s *server) httpsIngress() (*ingress, error) {
	if s.ingress == nil || s.cfg.Ingress.HTTPSAddr == "" {
		return nil, perr(agentapi.CodeUnsupported, "this host's HTTPS ingress is off (ingress https_addr is empty)")
	}
	return s.ingress, nil
}

func (s *server) handleIngressCSR(_ *http.Request, req agentapi.CSRRequest) (any, error) {
	g, err := s.httpsIngress()
	if err != nil {
		return nil, err
	}
	name := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(req.Name), "."))
	if name == "" || strings.ContainsAny(name, " */:") || !strings.Contains(name, ".") {
		return nil, perr(agentapi.CodeInvalid, "%q is not a DNS name for a certificate request", req.Name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := secrets.Write(filepath.Join(g.dir, acmeNextKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})); err != nil {
		return nil, fmt.Errorf("save the certificate key: %w", err)
	}
	g.csrName = name
	return agentapi.CSRReply{CSR: csr}, nil
}

func (s *server) handleInstallIngressCert(_ *http.Request, req agentapi.InstallCertRequest) (any, error) {
	g, err := s.httpsIngress()
	if err != nil {
		return nil, err
	}
	if err := g.installACME([]byte(req.ChainPEM), time.Now()); err != nil {
		return nil, err
	}
	return g.info(), nil
}

// installACME checks that chain is for the key and name of the last CSR
// and currently valid, keeps it, and serves it from the next handshake.
func (g *ingress) installACME(chain []byte, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.csrName == "" {
		return perr(agentapi.CodeConflict, "no certificate request is pending on this host; ask for a new CSR first")
	}
	nextKey := filepath.Join(g.dir, acmeNextKeyFile)
	keyPEM, err := secrets.Read(nextKey)
	if err != nil {
		return perr(agentapi.CodeConflict, "the key of the pending certificate request is gone (%v); ask for a new CSR", err)
	}
	cert, err := tls.X509KeyPair(chain, keyPEM)
	if err != nil {
		// X509KeyPair says "private key does not match public key" for a
		// chain issued for another key.
		return perr(agentapi.CodeInvalid, "the certificate chain does not fit this host's pending key: %v", err)
	}
	if err := usable(cert.Leaf, g.csrName, now); err != nil {
		return perr(agentapi.CodeInvalid, "%v", err)
	}
	if err := os.WriteFile(filepath.Join(g.dir, acmeCertFile), chain, 0o644); err != nil {
		return fmt.Errorf("save the certificate: %w", err)
	}
	if err := os.Rename(nextKey, filepath.Join(g.dir, acmeKeyFile)); err != nil {
		return fmt.Errorf("save the certificate key: %w", err)
	}
	g.csrName = ""
	g.serve(&cert, certInfo(cert.Leaf, true))
	g.s.log.Info("https ingress serves a CA-issued certificate", "issuer", cert.Leaf.Issuer.CommonName,
		"not_after", cert.Leaf.NotAfter, "cert_sha256", g.tlsPin)
	return nil
}

// usable: leaf names name and is valid now.
func usable(leaf *x509.Certificate, name string, now time.Time) error {
	if err := leaf.VerifyHostname(name); err != nil {
		return fmt.Errorf("the certificate is not for %s: %v", name, err)
	}
	if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
		return fmt.Errorf("the certificate for %s is valid only from %s to %s", name,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// loadACME returns the kept CA-issued certificate if it is still valid.
func (g *ingress) loadACME(now time.Time) (*tls.Certificate, bool) {
	keyPath := filepath.Join(g.dir, acmeKeyFile)
	if secrets.CheckMode(keyPath) != nil {
		return nil, false
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(g.dir, acmeCertFile), keyPath)
	if err != nil || cert.Leaf == nil || len(cert.Leaf.DNSNames) == 0 || usable(cert.Leaf, cert.Leaf.DNSNames[0], now) != nil {
		return nil, false
	}
	return &cert, true
}

// serve makes cert the one handshakes get; g.mu is held.
func (g *ingress) serve(cert *tls.Certificate, info agentapi.IngressCert) {
	g.served, g.servedInfo, g.tlsPin = cert, info, agentapi.CertPin(cert.Certificate[0])
}

func (g *ingress) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.served, nil
}

func certInfo(leaf *x509.Certificate, issued bool) agentapi.IngressCert {
	in := agentapi.IngressCert{NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC()}
	if issued {
		in.Issuer = leaf.Issuer.CommonName
		if len(leaf.DNSNames) > 0 {
			in.Name = leaf.DNSNames[0]
		}
	}
	return in
}
