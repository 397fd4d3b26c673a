// Package acmecert gets certificates for hosts' public names from an ACME
// CA (Let's Encrypt, or Pebble in tests), answering DNS-01 challenges with
// TXT records. It runs on the control plane, which alone holds the DNS
// token; a host sends only a CSR, so its private key never leaves it.
package acmecert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/crypto/acme"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// TXTRecords publishes DNS-01 answers (pkg/dns.Cloudflare).
type TXTRecords interface {
	SetTXT(ctx context.Context, fqdn, value string) error
	RemoveTXT(ctx context.Context, fqdn, value string) error
}

// Issuer runs ACME orders against one directory with one account.
type Issuer struct {
	// Directory is the ACME directory URL (ingress.acme_directory).
	Directory string
	// Email is the account contact (ingress.acme_email); may be empty.
	Email string
	// AccountKeyFile is a 0600 PEM file with the account's key; it is
	// created on first use.
	AccountKeyFile string
	DNS            TXTRecords
	// HTTPClient talks to the CA (nil: http.DefaultClient).
	HTTPClient *http.Client
}

// Issue checks that csrDER asks for exactly name and nothing else, proves
// control of name over DNS-01 and returns the issued chain as PEM, leaf
// first.
func (is *Issuer) Issue(ctx context.Context, csrDER []byte, name string) ([]byte, error) {
	if err := CheckCSR(csrDER, name); err != nil {
		return nil, err
	}
	cl, err := is.client(ctx)
	if err != nil {
		return nil, err
	}
	order, err := cl.AuthorizeOrder(ctx, acme.DomainIDs(name))
	if err != nil {
		return nil, fmt.Errorf("acme: order a certificate for %s at %s: %w", name, is.Directory, err)
	}
	for _, u := range order.AuthzURLs {
		if err := is.authorize(ctx, cl, u); err != nil {
			return nil, err
		}
	}
	if _, err := cl.WaitOrder(ctx, order.URI); err != nil {
		return nil, fmt.Errorf("acme: order for %s: %w", name, err)
	}
	ders, _, err := cl.CreateCertFromOrder(ctx, order, csrDER, true)
	if err != nil {
		return nil, fmt.Errorf("acme: finalize the order for %s: %w", name, err)
	}
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out, nil
}

func (is *Issuer) authorize(ctx context.Context, cl *acme.Client, url string) (err error) {
	z, err := cl.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("acme: read authorization: %w", err)
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if c.Type == "dns-01" {
			chal = c
		}
	}
	if chal == nil {
		return fmt.Errorf("acme: the CA offers no dns-01 challenge for %s", z.Identifier.Value)
	}
	value, err := cl.DNS01ChallengeRecord(chal.Token)
	if err != nil {
		return fmt.Errorf("acme: dns-01 record: %w", err)
	}
	fqdn := "_acme-challenge." + z.Identifier.Value
	if err := is.DNS.SetTXT(ctx, fqdn, value); err != nil {
		return fmt.Errorf("acme: publish the challenge for %s: %w", z.Identifier.Value, err)
	}
	defer func() {
		// The record is only needed while the CA looks; a failed delete
		// leaves a harmless TXT record, so it is reported, not fatal.
		if rmErr := is.DNS.RemoveTXT(context.WithoutCancel(ctx), fqdn, value); rmErr != nil && err == nil {
			err = fmt.Errorf("acme: certificate authorized but the TXT record %s stays: %w", fqdn, rmErr)
		}
	}()
	if _, err := cl.Accept(ctx, chal); err != nil {
		return fmt.Errorf("acme: accept the dns-01 challenge for %s: %w", z.Identifier.Value, err)
	}
	if _, err := cl.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("acme: the CA did not validate %s over DNS-01: %w", z.Identifier.Value, err)
	}
	return nil
}

// CheckCSR refuses a CSR that is malformed, badly signed, or asks for
// anything other than exactly DNS name (a host may only get its own name).
func CheckCSR(csrDER []byte, name string) error {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return errkind.Wrap(errkind.Invalid, fmt.Errorf("acme: the host's certificate request is malformed: %w", err))
	}
	if err := csr.CheckSignature(); err != nil {
		return errkind.Wrap(errkind.Invalid, fmt.Errorf("acme: the host's certificate request has a bad signature: %w", err))
	}
	if len(csr.DNSNames) != 1 || !strings.EqualFold(csr.DNSNames[0], name) || len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 ||
		(csr.Subject.CommonName != "" && !strings.EqualFold(csr.Subject.CommonName, name)) {
		return errkind.Wrap(errkind.Forbidden, fmt.Errorf("acme: the host asked for %v, but it may only get a certificate for its own name %s",
			append([]string{csr.Subject.CommonName}, csr.DNSNames...), name))
	}
	return nil
}

func (is *Issuer) client(ctx context.Context) (*acme.Client, error) {
	if is.Directory == "" {
		return nil, errkind.Wrap(errkind.Invalid, errors.New("acme: no directory; set ingress.acme_directory"))
	}
	key, err := loadOrCreateKey(is.AccountKeyFile)
	if err != nil {
		return nil, err
	}
	cl := &acme.Client{Key: key, DirectoryURL: is.Directory, HTTPClient: is.HTTPClient, UserAgent: "cocalc-hosts"}
	acct := &acme.Account{}
	if is.Email != "" {
		acct.Contact = []string{"mailto:" + is.Email}
	}
	if _, err := cl.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("acme: register the account at %s: %w", is.Directory, err)
	}
	return cl, nil
}

// loadOrCreateKey reads the account key, making a P-256 key in a new 0600
// file the first time.
func loadOrCreateKey(path string) (crypto.Signer, error) {
	if path == "" {
		return nil, errkind.Wrap(errkind.Invalid, errors.New("acme: no account key file"))
	}
	b, err := secrets.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("acme: create the account key %s: %w", path, err)
		}
		_, werr := f.Write(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("acme: write the account key %s: %w", path, werr)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("acme: account key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errkind.Wrap(errkind.Invalid, fmt.Errorf("acme: account key %s is not PEM; delete it to make a new account", path))
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, errkind.Wrap(errkind.Invalid, fmt.Errorf("acme: account key %s: %w; delete it to make a new account", path, err))
	}
	return k, nil
}
