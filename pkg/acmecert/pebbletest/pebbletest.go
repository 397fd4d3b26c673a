// Package pebbletest runs Let's Encrypt's Pebble ACME test CA in-process
// for tests, validating DNS-01 for real: Pebble's VA asks a small DNS
// server on 127.0.0.1 that answers TXT queries from a Cloudflare fake's
// records. Only tests import it.
package pebbletest

import (
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	mdns "github.com/miekg/dns"

	"github.com/sagemathinc/cocalc-hosts/pkg/acmecert"
	"github.com/sagemathinc/cocalc-hosts/pkg/dns"
	"github.com/sagemathinc/cocalc-hosts/pkg/dns/dnsfake"
)

// Issuer is a control plane's ACME side for domain: a Cloudflare fake for
// the zone, the real pkg/dns client on it, and Pebble.
func Issuer(t testing.TB, domain string) (*acmecert.Issuer, *CA, *dnsfake.Server) {
	t.Helper()
	zone := dnsfake.New("zone1", domain, "tok")
	t.Cleanup(zone.Close)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "cf.token")
	if err := os.WriteFile(tokFile, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	cf, err := dns.New(dns.Config{Domain: domain, ZoneID: "zone1", TokenFile: tokFile, Endpoint: zone.BaseURL()})
	if err != nil {
		t.Fatal(err)
	}
	pebble := Start(t, zone)
	return &acmecert.Issuer{Directory: pebble.Directory, Email: "ops@example.com",
		AccountKeyFile: filepath.Join(dir, "acme-account.key"), DNS: cf, HTTPClient: pebble.Client}, pebble, zone
}

// CA is a running Pebble.
type CA struct {
	// Directory is the ACME directory URL.
	Directory string
	// Client trusts Pebble's HTTPS front end.
	Client *http.Client
	ca     *ca.CAImpl
}

// Start runs Pebble until the test ends. Its VA resolves through a DNS
// server answering from zone's TXT records.

func Start(t testing.TB, zone *dnsfake.Server) *CA {
	t.Helper()
	resolver := startDNS(t, zone)
	logger := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	v := newVA(logger, resolver, store)
	front := wfe.New(logger, store, v, authority, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)
	return &CA{Directory: srv.URL + wfe.DirectoryPath, Client: srv.Client(), ca: authority}
}

// Roots is a pool with Pebble's root, to verify what it issued.
func (c *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.ca.GetRootCert(0).Cert)
	return p
}

// startDNS serves TXT answers from zone over TCP (Pebble's VA asks over
// TCP) and UDP; other questions get an empty answer.
func startDNS(t testing.TB, zone *dnsfake.Server) string {
	t.Helper()
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		for _, q := range req.Question {
			if q.Qtype != mdns.TypeTXT {
				continue
			}
			for _, r := range zone.Records() {
				if r.Type == "TXT" && strings.EqualFold(mdns.Fqdn(r.Name), q.Name) {
					m.Answer = append(m.Answer, &mdns.TXT{
						Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 0},
						Txt: []string{r.Content}})
				}
			}
		}
		w.WriteMsg(m) //nolint:errcheck
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{Listener: ln, Handler: handler}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }() //nolint:errcheck
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done }) //nolint:errcheck
	return ln.Addr().String()
}

var envMu sync.Mutex

// newVA makes Pebble's VA without its random sleep of up to 5 s before
// each validation: Pebble reads that only from its environment, and
// t.Setenv would forbid parallel tests. (Its front end also rejects 5% of
// nonces; the ACME client retries those.)
func newVA(logger *log.Logger, resolver string, store *db.MemoryStore) *va.VAImpl {
	envMu.Lock()
	defer envMu.Unlock()
	old, had := os.LookupEnv("PEBBLE_VA_NOSLEEP")
	os.Setenv("PEBBLE_VA_NOSLEEP", "1") //nolint:errcheck
	defer func() {
		if had {
			os.Setenv("PEBBLE_VA_NOSLEEP", old) //nolint:errcheck
		} else {
			os.Unsetenv("PEBBLE_VA_NOSLEEP") //nolint:errcheck
		}
	}()
	// The HTTP-01 and TLS-ALPN-01 ports are unused: only DNS-01 is answered.
	return va.New(logger, 0, 0, false, resolver, store)
}
