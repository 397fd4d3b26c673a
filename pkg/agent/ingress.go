package agent

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// ingress is the running listeners.
type ingress struct {
	s          *server
	dir        string
	sessionTTL time.Duration

	mu     sync.Mutex
	https  net.Listener
	ssh    net.Listener
	tlsPin string
	// served is the HTTPS certificate (self-signed or CA-issued).
	served     *tls.Certificate
	servedInfo agentapi.IngressCert
	csrName    string // the name of the pending CSR
	hostKey    ssh.Signer
	problems   []string

	sessions *sessions
	proxy    *projectProxy
}

// ingressDir keeps the ingress's keys and the access list, on the pool
// (it survives reinstalls of the agent).
func ingressDir(c agentapi.Config) string {
	return filepath.Join(c.PoolPath, ".cocalc-agent", "ingress")
}

// startAccess loads the access list: the saved one, or the one the host
// was bootstrapped with when that is newer.
func (s *server) startAccess() error {
	s.access = newAccessCache(s.cfg.HostID, filepath.Join(ingressDir(s.cfg), "access.json"), time.Now)
	if err := os.MkdirAll(ingressDir(s.cfg), 0o700); err != nil {
		return fmt.Errorf("agent ingress: %w", err)
	}
	if err := s.access.load(); err != nil {
		s.log.Warn("saved access list not used", "err", err)
	}
	if init := s.cfg.Ingress.InitialAccess; init != nil {
		if st := s.access.status(); st.IssuedAt == nil || st.IssuedAt.Before(init.IssuedAt) {
			if err := s.access.seed(*init); err != nil {
				return fmt.Errorf("agent config: initial access list: %w", err)
			}
		}
	}
	return nil
}

// startIngress opens the listeners. A listener that cannot open (its port
// is taken) is reported in the access status and the log; the agent's
// own API keeps working.
func (s *server) startIngress() {
	cfg := s.cfg.Ingress
	if cfg.HTTPSAddr == "" && cfg.SSHAddr == "" {
		return
	}
	ttl, _ := cfg.Sessions() // validated with the config
	g := &ingress{s: s, dir: ingressDir(s.cfg), sessionTTL: ttl, sessions: newSessions()}
	g.proxy = newProjectProxy(s)
	s.ingress = g
	if cfg.HTTPSAddr != "" {
		if err := g.startHTTPS(cfg.HTTPSAddr, splitNames(cfg.TLSNames)); err != nil {
			g.problem("https ingress on %s: %v", cfg.HTTPSAddr, err)
		}
	}
	if cfg.SSHAddr != "" {
		if err := g.startSSH(cfg.SSHAddr); err != nil {
			g.problem("ssh ingress on %s: %v", cfg.SSHAddr, err)
		}
	}
}

func (s *server) stopIngress() {
	if s.ingress != nil {
		s.ingress.close()
	}
}

func (g *ingress) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	g.s.log.Error("ingress not started", "err", msg)
	g.mu.Lock()
	g.problems = append(g.problems, msg)
	g.mu.Unlock()
}

func (g *ingress) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range []net.Listener{g.https, g.ssh} {
		if l != nil {
			l.Close()
		}
	}
	g.proxy.close()
}

func (g *ingress) info() agentapi.IngressInfo {
	g.mu.Lock()
	defer g.mu.Unlock()
	var in agentapi.IngressInfo
	if g.https != nil {
		info := g.servedInfo
		in.HTTPSAddr, in.TLSCertSHA256, in.Cert = g.https.Addr().String(), g.tlsPin, &info
	}
	if g.ssh != nil {
		in.SSHAddr = g.ssh.Addr().String()
		in.SSHHostKey = authorizedKey(g.hostKey.PublicKey())
	}
	in.Error = strings.Join(g.problems, "; ")
	return in
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// tlsCert returns the ingress's self-signed certificate, making it (an
// ECDSA P-256 key, which every browser accepts) when there is none or it
// is not for names.
func (g *ingress) tlsCert(names []string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(g.dir, "tls.crt"), filepath.Join(g.dir, "tls.key")
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && secrets.CheckMode(keyPath) == nil {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil && time.Now().Before(leaf.NotAfter) && sameNames(leaf, names) {
			return c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "cocalc-hosts ingress " + g.s.cfg.HostID},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := secrets.Write(keyPath, keyPEM); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

func sameNames(c *x509.Certificate, names []string) bool {
	var have []string
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	have = append(have, c.DNSNames...)
	want := make([]string, 0, len(names))
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		}
		want = append(want, n)
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(have, want)
}

// sshHostKey returns the SSH ingress's host key, making it on first use.
func (g *ingress) sshHostKey() (ssh.Signer, error) {
	path := filepath.Join(g.dir, "ssh_host_ed25519_key")
	b, err := secrets.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, gerr
		}
		block, merr := ssh.MarshalPrivateKey(priv, "cocalc-hosts ingress "+g.s.cfg.HostID)
		if merr != nil {
			return nil, merr
		}
		b = pem.EncodeToMemory(block)
		if err := secrets.Write(path, b); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(b)
}
