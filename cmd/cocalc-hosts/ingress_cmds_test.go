package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdIngressGet fetches a URL from a host's HTTPS ingress, trusting only
// the certificate with the given pin, and prints the status line and the
// body (for stdout checks). It follows no redirects: a redirect's target
// goes into $NEXT, a cookie set into $COOKIE.
//
//	ingressget PIN URL [COOKIE]
func cmdIngressGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: ingressget PIN URL [COOKIE]")
	}
	c := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // replaced by the pin check
			VerifyConnection: func(cs tls.ConnectionState) error {
				sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
				if hex.EncodeToString(sum[:]) != args[0] {
					return errors.New("certificate does not match the pin")
				}
				return nil
			},
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequest(http.MethodGet, args[1], nil)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	if len(args) == 3 {
		req.Header.Set("Cookie", args[2])
	}
	resp, err := c.Do(req)
	if err != nil {
		ts.Fatalf("GET %s: %v", args[1], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Fprintf(ts.Stdout(), "%d\n%s", resp.StatusCode, body)
	if loc, err := resp.Location(); err == nil {
		ts.Setenv("NEXT", loc.String())
	}
	for _, ck := range resp.Cookies() {
		fmt.Fprintf(ts.Stdout(), "set-cookie %s=%s\n", ck.Name, ck.Value)
		ts.Setenv("COOKIE", ck.Name+"="+ck.Value)
	}
}
