package dns_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/dns"
	"github.com/sagemathinc/cocalc-hosts/pkg/dns/dnsfake"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

const (
	zoneID = "023e105f4ecef8ad9ca31a8372d0c353"
	domain = "hosts.example.com"
	token  = "cf-test-token-1"
)

func tokenFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cloudflare.token")
	if err := os.WriteFile(p, []byte(content+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func newClient(t *testing.T, srv *dnsfake.Server, tok string, retries int) *dns.Cloudflare {
	t.Helper()
	c, err := dns.New(dns.Config{Domain: domain, ZoneID: zoneID, TokenFile: tokenFile(t, tok, 0o600),
		Endpoint: srv.BaseURL(), MaxRetries: retries})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func aRecords(srv *dnsfake.Server, name string) []dnsfake.Record {
	var out []dnsfake.Record
	for _, r := range srv.Records() {
		if r.Name == name && r.Type == "A" {
			out = append(out, r)
		}
	}
	return out
}

func TestEnsureCreatesUpdatesAndRemoves(t *testing.T) {
	srv := dnsfake.New(zoneID, domain, token)
	defer srv.Close()
	// A record of someone else in the zone must never be touched.
	other := srv.Put(dnsfake.Record{Name: "www." + domain, Type: "A", Content: "192.0.2.1", TTL: 1})
	c := newClient(t, srv, token, 0)
	ctx := context.Background()

	fqdn, err := c.Ensure(ctx, "gpu1", "203.0.113.7")
	if err != nil {
		t.Fatal(err)
	}
	if fqdn != "gpu1."+domain {
		t.Fatalf("fqdn %q", fqdn)
	}
	recs := aRecords(srv, fqdn)
	if len(recs) != 1 || recs[0].Content != "203.0.113.7" || recs[0].Proxied || recs[0].TTL != 1 {
		t.Fatalf("after create: %+v", recs)
	}

	// The same address again changes nothing.
	if _, err := c.Ensure(ctx, "gpu1", "203.0.113.7"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls("POST create") + srv.Calls("PUT update"); n != 1 {
		t.Fatalf("an unchanged address made %d writes in total, want just the first create", n)
	}

	// A new address updates the record in place.
	if _, err := c.Ensure(ctx, "gpu1", "203.0.113.99"); err != nil {
		t.Fatal(err)
	}
	recs2 := aRecords(srv, fqdn)
	if len(recs2) != 1 || recs2[0].ID != recs[0].ID || recs2[0].Content != "203.0.113.99" {
		t.Fatalf("after IP change: %+v (was %+v)", recs2, recs)
	}
	if ip, err := c.Lookup(ctx, "gpu1"); err != nil || ip != "203.0.113.99" {
		t.Fatalf("lookup: %q %v", ip, err)
	}

	if err := c.Remove(ctx, "gpu1"); err != nil {
		t.Fatal(err)
	}
	if recs := aRecords(srv, fqdn); len(recs) != 0 {
		t.Fatalf("after remove: %+v", recs)
	}
	if err := c.Remove(ctx, "gpu1"); err != nil {
		t.Fatalf("removing a missing record must succeed: %v", err)
	}
	if got := aRecords(srv, other.Name); len(got) != 1 || got[0].Content != other.Content {
		t.Fatalf("another record was touched: %+v", got)
	}
}

func TestEnsureRemovesDuplicates(t *testing.T) {
	srv := dnsfake.New(zoneID, domain, token)
	defer srv.Close()
	srv.Put(dnsfake.Record{Name: "dup." + domain, Type: "A", Content: "198.51.100.1", TTL: 1})
	srv.Put(dnsfake.Record{Name: "dup." + domain, Type: "A", Content: "198.51.100.2", TTL: 1})
	c := newClient(t, srv, token, 0)
	if _, err := c.Ensure(context.Background(), "dup", "198.51.100.3"); err != nil {
		t.Fatal(err)
	}
	recs := aRecords(srv, "dup."+domain)
	if len(recs) != 1 || recs[0].Content != "198.51.100.3" {
		t.Fatalf("want one record at the new address, got %+v", recs)
	}
}

func TestPaginationFindsRecordsOnLaterPages(t *testing.T) {
	srv := dnsfake.New(zoneID, domain, token)
	defer srv.Close()
	// 150 records of one name span two pages of 100: every one must be
	// seen, or Remove would leave some behind.
	for i := range 150 {
		srv.Put(dnsfake.Record{Name: "many." + domain, Type: "A", Content: "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250), TTL: 1})
	}
	c := newClient(t, srv, token, 0)
	if err := c.Remove(context.Background(), "many"); err != nil {
		t.Fatal(err)
	}
	if recs := aRecords(srv, "many."+domain); len(recs) != 0 {
		t.Fatalf("%d records left after remove", len(recs))
	}
}

func TestBadTokenAndZoneAreNamed(t *testing.T) {
	srv := dnsfake.New(zoneID, domain, token)
	defer srv.Close()
	ctx := context.Background()

	bad := newClient(t, srv, "wrong-token", 0)
	_, err := bad.Ensure(ctx, "gpu1", "203.0.113.7")
	if err == nil || !strings.Contains(err.Error(), "refused the token (HTTP 403)") || !strings.Contains(err.Error(), "dns.token_file") {
		t.Fatalf("bad token: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-token") {
		t.Fatalf("the token leaked into an error: %v", err)
	}
	if err := bad.Check(ctx); err == nil {
		t.Fatal("Check with a bad token succeeded")
	}

	noZone, err := dns.New(dns.Config{Domain: domain, ZoneID: "nope", TokenFile: tokenFile(t, token, 0o600), Endpoint: srv.BaseURL()})
	if err != nil {
		t.Fatal(err)
	}
	if err := noZone.Check(ctx); err == nil || !strings.Contains(err.Error(), "no zone nope") {
		t.Fatalf("unknown zone: %v", err)
	}
	if err := newClient(t, srv, token, 0).Check(ctx); err != nil {
		t.Fatalf("Check with a good token: %v", err)
	}
	if len(srv.Records()) != 0 {
		t.Fatalf("failed calls wrote records: %+v", srv.Records())
	}
}

func TestTokenFileMustBePrivate(t *testing.T) {
	_, err := dns.New(dns.Config{Domain: domain, ZoneID: zoneID, TokenFile: tokenFile(t, token, 0o644)})
	var loose *secrets.ModeError
	if !errors.As(err, &loose) {
		t.Fatalf("a 0644 token file must be refused, got %v", err)
	}
	for _, cfg := range []dns.Config{
		{ZoneID: zoneID, TokenFile: "x"},
		{Domain: domain, TokenFile: "x"},
		{Domain: domain, ZoneID: zoneID},
	} {
		if _, err := dns.New(cfg); err == nil || !strings.Contains(err.Error(), "set dns.") {
			t.Errorf("%+v: want an error naming the setting, got %v", cfg, err)
		}
	}
}

func TestRetriesTransientErrors(t *testing.T) {
	srv := dnsfake.New(zoneID, domain, token)
	defer srv.Close()
	c := newClient(t, srv, token, 2) // the client's default
	srv.FailNext(1, 500, "")
	srv.FailNext(1, 429, "0")
	if _, err := c.Ensure(context.Background(), "gpu2", "203.0.113.8"); err != nil {
		t.Fatalf("a 500 and a 429 should be retried: %v", err)
	}
	if recs := aRecords(srv, "gpu2."+domain); len(recs) != 1 {
		t.Fatalf("records: %+v", recs)
	}
	srv.FailNext(3, 503, "")
	_, err := c.Ensure(context.Background(), "gpu3", "203.0.113.9")
	if err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("persistent 503: %v", err)
	}
}

func TestRejectsNonIPv4(t *testing.T) {
	srv := dnsfake.New(zoneID, domain, token)
	defer srv.Close()
	c := newClient(t, srv, token, 0)
	for _, ip := range []string{"", "2001:db8::1", "not-an-ip"} {
		if _, err := c.Ensure(context.Background(), "h", ip); err == nil || !strings.Contains(err.Error(), "not an IPv4 address") {
			t.Errorf("%q: %v", ip, err)
		}
	}
	if srv.Calls("GET list") != 0 {
		t.Fatal("a bad address was sent to the API")
	}
}

func TestTXTRecordsForACMEChallenges(t *testing.T) {
	srv := dnsfake.New(zoneID, domain, token)
	defer srv.Close()
	c := newClient(t, srv, token, 0)
	ctx := context.Background()
	name := "_acme-challenge.gpu1." + domain
	a, err := c.Ensure(ctx, "gpu1", "203.0.113.7")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second is a no-op, not a duplicate
		if err := c.SetTXT(ctx, name, "tok-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SetTXT(ctx, name, "tok-2"); err != nil {
		t.Fatal(err)
	}
	txt := func() []string {
		var out []string
		for _, r := range srv.Records() {
			if r.Type == "TXT" && r.Name == name {
				out = append(out, r.Content)
			}
		}
		return out
	}
	if got := txt(); len(got) != 2 {
		t.Fatalf("TXT records %v, want tok-1 and tok-2", got)
	}
	if err := c.RemoveTXT(ctx, name, "tok-1"); err != nil {
		t.Fatal(err)
	}
	if got := txt(); len(got) != 1 || got[0] != "tok-2" {
		t.Fatalf("after removing tok-1: %v", got)
	}
	if len(aRecords(srv, a)) != 1 {
		t.Fatalf("the A record of %s was touched", a)
	}
	if err := c.SetTXT(ctx, "_acme-challenge.evil.example.org", "x"); err == nil || !strings.Contains(err.Error(), "not under dns.domain") {
		t.Fatalf("a name outside the domain: %v", err)
	}
}
