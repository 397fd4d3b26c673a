// Package dns publishes project hosts' public names as Cloudflare A
// records (NAME.DOMAIN → the host's public IPv4 address), and the TXT
// records that answer ACME DNS-01 challenges for those names, through
// cloudflare-go's dns and option packages only: the root package would
// read CLOUDFLARE_* environment variables, and secrets here come only from
// 0600 files.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	cfdns "github.com/cloudflare/cloudflare-go/v7/dns"
	"github.com/cloudflare/cloudflare-go/v7/option"

	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// DefaultEndpoint is Cloudflare's API base URL.
const DefaultEndpoint = "https://api.cloudflare.com/client/v4"

// Config says where and how to publish names.
type Config struct {
	// Domain is the parent of every host name: host NAME gets NAME.Domain.
	Domain string
	// ZoneID is the Cloudflare zone the domain is in.
	ZoneID string
	// TokenFile is a 0600 file holding an API token that may edit DNS in
	// the zone.
	TokenFile string
	// Endpoint is the API base URL (default DefaultEndpoint).
	Endpoint string
	// HTTPClient, MaxRetries: for private networks and tests; a negative
	// MaxRetries keeps the client's default (two retries).
	HTTPClient *http.Client
	MaxRetries int
}

// Cloudflare manages A records in one zone.
type Cloudflare struct {
	records *cfdns.RecordService
	zone    string
	domain  string
}

// New reads the token file and returns a client. Nothing is contacted.
func New(cfg Config) (*Cloudflare, error) {
	domain := strings.Trim(strings.ToLower(strings.TrimSpace(cfg.Domain)), ".")
	switch {
	case domain == "":
		return nil, errors.New("dns: no domain; set dns.domain")
	case cfg.ZoneID == "":
		return nil, errors.New("dns: no Cloudflare zone; set dns.zone_id to the zone id of " + domain)
	case cfg.TokenFile == "":
		return nil, errors.New("dns: no token file; set dns.token_file to a 0600 file with a Cloudflare API token")
	}
	tok, err := secrets.Read(cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("dns token: %w", err)
	}
	if len(tok) == 0 {
		return nil, fmt.Errorf("dns token file %s is empty; put a Cloudflare API token in it", cfg.TokenFile)
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	opts := []option.RequestOption{option.WithBaseURL(endpoint), option.WithAPIToken(string(tok))}
	if cfg.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
	}
	if cfg.MaxRetries >= 0 {
		opts = append(opts, option.WithMaxRetries(cfg.MaxRetries))
	}
	return &Cloudflare{records: cfdns.NewRecordService(opts...), zone: cfg.ZoneID, domain: domain}, nil
}

// FQDN is the public name of host name.
func (c *Cloudflare) FQDN(name string) string { return name + "." + c.domain }

// Ensure makes NAME.DOMAIN's A record point at ip: it creates the record,
// updates one that points elsewhere, and leaves a correct one alone.
func (c *Cloudflare) Ensure(ctx context.Context, name, ip string) (string, error) {
	fqdn := c.FQDN(name)
	if parsed := net.ParseIP(ip); parsed == nil || parsed.To4() == nil {
		return "", fmt.Errorf("dns: %q is not an IPv4 address for the A record of %s", ip, fqdn)
	}
	existing, err := c.find(ctx, fqdn)
	if err != nil {
		return "", err
	}
	body := aRecord(fqdn, ip)
	if len(existing) == 0 {
		var p cfdns.RecordNewParams
		p.ZoneID.Value, p.ZoneID.Present, p.Body = c.zone, true, body
		rec, err := c.records.New(ctx, p)
		if err != nil {
			return "", c.wrap("create the A record of "+fqdn, err)
		}
		// A 200 reply with an empty result is not an error to the client.
		if rec == nil || rec.ID == "" {
			return "", fmt.Errorf("dns: creating the A record of %s: Cloudflare replied without a record", fqdn)
		}
		return fqdn, nil
	}
	keep := existing[0]
	for _, extra := range existing[1:] {
		// Duplicates (from an earlier race) would serve two addresses.
		if _, err := c.records.Delete(ctx, extra.ID, c.deleteParams()); err != nil {
			return "", c.wrap("delete a duplicate A record of "+fqdn, err)
		}
	}
	if keep.Content == ip {
		return fqdn, nil
	}
	var p cfdns.RecordUpdateParams
	p.ZoneID.Value, p.ZoneID.Present, p.Body = c.zone, true, body
	rec, err := c.records.Update(ctx, keep.ID, p)
	if err != nil {
		return "", c.wrap("update the A record of "+fqdn, err)
	}
	if rec == nil || rec.ID == "" {
		return "", fmt.Errorf("dns: updating the A record of %s: Cloudflare replied without a record", fqdn)
	}
	return fqdn, nil
}

// Remove deletes NAME.DOMAIN's A records; none is not an error.
func (c *Cloudflare) Remove(ctx context.Context, name string) error {
	fqdn := c.FQDN(name)
	existing, err := c.find(ctx, fqdn)
	if err != nil {
		return err
	}
	for _, r := range existing {
		if _, err := c.records.Delete(ctx, r.ID, c.deleteParams()); err != nil {
			var apiErr *cfdns.Error
			if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound {
				continue // deleted meanwhile: that is what we wanted
			}
			return c.wrap("delete the A record of "+fqdn, err)
		}
	}
	return nil
}

// Lookup returns the address NAME.DOMAIN points at, or "" without record.
func (c *Cloudflare) Lookup(ctx context.Context, name string) (string, error) {
	existing, err := c.find(ctx, c.FQDN(name))
	if err != nil || len(existing) == 0 {
		return "", err
	}
	return existing[0].Content, nil
}

// Check makes one cheap read to prove the token and zone work.
func (c *Cloudflare) Check(ctx context.Context) error {
	var p cfdns.RecordListParams
	p.ZoneID.Value, p.ZoneID.Present = c.zone, true
	p.PerPage.Value, p.PerPage.Present = 5, true
	_, err := c.records.List(ctx, p)
	return c.wrap("list records of zone "+c.zone, err)
}

func (c *Cloudflare) find(ctx context.Context, fqdn string) ([]cfdns.RecordResponse, error) {
	return c.findType(ctx, fqdn, cfdns.RecordListParamsTypeA)
}

// SetTXT adds a TXT record fqdn → value (an ACME DNS-01 answer); an
// identical record already there is left alone.
func (c *Cloudflare) SetTXT(ctx context.Context, fqdn, value string) error {
	if !strings.HasSuffix(strings.ToLower(fqdn), "."+c.domain) {
		return fmt.Errorf("dns: %s is not under dns.domain %s; no TXT record made", fqdn, c.domain)
	}
	existing, err := c.findType(ctx, fqdn, cfdns.RecordListParamsTypeTXT)
	if err != nil {
		return err
	}
	for _, r := range existing {
		if txtContent(r.Content) == value {
			return nil
		}
	}
	var body cfdns.TXTRecordParam
	body.Name.Value, body.Name.Present = fqdn, true
	body.Type.Value, body.Type.Present = cfdns.TXTRecordTypeTXT, true
	body.Content.Value, body.Content.Present = value, true
	body.TTL.Value, body.TTL.Present = cfdns.TTL(60), true
	body.Comment.Value, body.Comment.Present = "cocalc-hosts ACME challenge", true
	var p cfdns.RecordNewParams
	p.ZoneID.Value, p.ZoneID.Present, p.Body = c.zone, true, body
	rec, err := c.records.New(ctx, p)
	if err != nil {
		return c.wrap("create the TXT record "+fqdn, err)
	}
	if rec == nil || rec.ID == "" {
		return fmt.Errorf("dns: creating the TXT record %s: Cloudflare replied without a record", fqdn)
	}
	return nil
}

// RemoveTXT deletes the TXT records fqdn → value; none is not an error.
func (c *Cloudflare) RemoveTXT(ctx context.Context, fqdn, value string) error {
	existing, err := c.findType(ctx, fqdn, cfdns.RecordListParamsTypeTXT)
	if err != nil {
		return err
	}
	for _, r := range existing {
		if txtContent(r.Content) != value {
			continue
		}
		if _, err := c.records.Delete(ctx, r.ID, c.deleteParams()); err != nil {
			var apiErr *cfdns.Error
			if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound {
				continue
			}
			return c.wrap("delete the TXT record "+fqdn, err)
		}
	}
	return nil
}

// txtContent drops the quotes Cloudflare may return around TXT content.
func txtContent(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

func (c *Cloudflare) findType(ctx context.Context, fqdn string, typ cfdns.RecordListParamsType) ([]cfdns.RecordResponse, error) {
	var out []cfdns.RecordResponse
	var p cfdns.RecordListParams
	p.ZoneID.Value, p.ZoneID.Present = c.zone, true
	p.Type.Value, p.Type.Present = typ, true
	var name cfdns.RecordListParamsName
	name.Exact.Value, name.Exact.Present = fqdn, true
	p.Name.Value, p.Name.Present = name, true
	iter := c.records.ListAutoPaging(ctx, p)
	for iter.Next() {
		r := iter.Current()
		// The filter is the server's; check it, so a server that ignores
		// it cannot make us touch other records.
		if strings.EqualFold(r.Name, fqdn) && string(r.Type) == string(typ) {
			out = append(out, r)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, c.wrap("look up "+fqdn, err)
	}
	return out, nil
}

// The client's params are fields of an internal type that only the SDK's
// heavy root package can construct (cloudflare.F); setting their exported
// members directly keeps that package out of the binary.

func (c *Cloudflare) deleteParams() cfdns.RecordDeleteParams {
	var p cfdns.RecordDeleteParams
	p.ZoneID.Value, p.ZoneID.Present = c.zone, true
	return p
}

func aRecord(fqdn, ip string) cfdns.ARecordParam {
	var r cfdns.ARecordParam
	r.Name.Value, r.Name.Present = fqdn, true
	r.Type.Value, r.Type.Present = cfdns.ARecordTypeA, true
	r.Content.Value, r.Content.Present = ip, true
	r.TTL.Value, r.TTL.Present = cfdns.TTL(1), true // automatic
	r.Proxied.Value, r.Proxied.Present = false, true
	r.Comment.Value, r.Comment.Present = "cocalc-hosts project host", true
	return r
}

// wrap names what failed and, for refused credentials, what to fix.
func (c *Cloudflare) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var apiErr *cfdns.Error
	if errors.As(err, &apiErr) {
		switch apiErr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("dns: %s: Cloudflare refused the token (HTTP %d); it needs DNS edit permission on zone %s (dns.token_file)",
				what, apiErr.StatusCode, c.zone)
		case http.StatusNotFound:
			return fmt.Errorf("dns: %s: Cloudflare has no zone %s (HTTP 404); check dns.zone_id", what, c.zone)
		}
		msg := ""
		if len(apiErr.Errors) > 0 {
			msg = ": " + apiErr.Errors[0].Message
		}
		return fmt.Errorf("dns: %s: Cloudflare answered HTTP %d%s", what, apiErr.StatusCode, msg)
	}
	return fmt.Errorf("dns: %s: %w", what, err)
}
