package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider/openapicheck"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
)

// specProxy stands between a script's client and its server: it passes
// every exchange on and checks it against the API document the server
// serves (its operations, parameters, and the shapes of bodies and
// answers), so that every served script also checks that the CLI and the
// server speak the API as documented. Streams pass through unchecked.
type specProxy struct {
	http *httptest.Server
	rec  *openapicheck.Recorder
}

// newSpecProxy serves on a loopback port with the server's own
// certificate, forwarding to target (the server's URL), whose document it
// reads first.
func newSpecProxy(work, target, certFile, keyFile string) (*specProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: false}
	resp, err := (&http.Client{Transport: tr}).Get(target + "/api/v1/openapi.json")
	if err != nil {
		return nil, fmt.Errorf("read the API document: %w", err)
	}
	doc, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the API document: %d %v", resp.StatusCode, err)
	}
	file := filepath.Join(work, "openapi.json")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		return nil, err
	}
	spec, err := openapicheck.New(file, "")
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = tr
	rp.FlushInterval = -1 // events arrive as they happen
	p := &specProxy{rec: openapicheck.NewRecorder(spec, rp)}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	p.http = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if server.IsStream(r) {
			rp.ServeHTTP(w, r)
			return
		}
		p.rec.ServeHTTP(w, r)
	}))
	p.http.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	p.http.StartTLS()
	return p, nil
}

// violations closes the proxy and returns the exchanges that broke the
// document (and a complaint if it saw none: then it checked nothing).
func (p *specProxy) violations() []string {
	p.http.Close()
	v, seen := p.rec.Report()
	if len(seen) == 0 {
		v = append(v, "no exchange went through the checking proxy")
	}
	return v
}
