package projects

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// CertIssuer gets a CA-issued certificate for a host's public name from a
// CSR the host made (pkg/acmecert over DNS-01): the host's key never
// leaves it.
type CertIssuer interface {
	Issue(ctx context.Context, csrDER []byte, name string) (chainPEM []byte, err error)
}

// CertRetry is how long a host waits after a failed certificate attempt
// before the next: ACME CAs limit failed validations (Let's Encrypt: 5 per
// name an hour), so a broken DNS setup must not retry every pass.
const CertRetry = time.Hour

// CertReport is what one RenewCertificates pass did.
type CertReport struct {
	Issued []CertResult `json:"issued"`
	Failed []CertResult `json:"failed"`
}

// CertResult is one host's certificate attempt.
type CertResult struct {
	Host     string `json:"host"`
	Name     string `json:"name"`
	CertName string `json:"cert_name"`
	Error    string `json:"error,omitempty"`
	// Retry is when a failed attempt is tried again.
	Retry *time.Time `json:"retry,omitempty"`
}

// certDue says whether a host whose public name is name needs a new
// certificate at now: it serves none from a CA, or one for another name,
// or one past two thirds of its lifetime (Let's Encrypt's advice: a
// 90-day certificate is renewed with 30 days left).
func certDue(c *model.HostCert, name string, now time.Time) bool {
	if c == nil || !strings.EqualFold(c.Name, name) {
		return true
	}
	return !now.Before(c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3))
}

// RenewCertificates gets a CA-issued certificate for the HTTPS ingress
// of every running host with a public DNS name that lacks a current one
// (the worker's duty, after each access-list push, which records what
// each host serves). A host whose last attempt failed waits CertRetry.
// Without s.Certs (no ingress.acme_directory) it does nothing: hosts keep
// their self-signed certificates, which clients pin.
func (s *Service) RenewCertificates(ctx context.Context) (CertReport, error) {
	rep := CertReport{Issued: []CertResult{}, Failed: []CertResult{}}
	if s.Certs == nil {
		return rep, nil
	}
	hs, err := s.Store.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return rep, fmt.Errorf("renew certificates: %w", err)
	}
	now := s.Now()
	for _, h := range hs {
		name := h.Runtime.DNSName
		if h.Status != model.StatusRunning || name == "" {
			continue
		}
		in, err := s.Store.GetHostIngress(ctx, h.ID)
		if errkind.Is(err, errkind.NotFound) {
			continue // not pushed yet: the next pass
		}
		if err != nil {
			return rep, fmt.Errorf("renew certificates: %w", err)
		}
		if in.HTTPSAddr == "" || !certDue(in.Cert, name, now) ||
			(in.CertError != "" && in.CertTriedAt != nil && now.Before(in.CertTriedAt.Add(CertRetry))) {
			continue
		}
		res := CertResult{Host: h.ID, Name: h.Name, CertName: name}
		if err := s.renewCert(ctx, h, name, in); err != nil {
			retry := now.Add(CertRetry)
			res.Error, res.Retry = err.Error(), &retry
			rep.Failed = append(rep.Failed, res)
		} else {
			rep.Issued = append(rep.Issued, res)
		}
		if err := s.Store.RecordCertAttempt(ctx, h.ID, now, res.Error); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// renewCert has host h make a key and CSR for name, gets the CA to sign
// it and gives the host the chain, which it serves at once.
func (s *Service) renewCert(ctx context.Context, h model.Host, name string, in model.HostIngress) error {
	client, err := s.client(ctx, h)
	if err != nil {
		return err
	}
	csr, err := client.IngressCSR(ctx, name)
	if err != nil {
		return hostErr(h, err)
	}
	chain, err := s.Certs.Issue(ctx, csr.CSR, name)
	if err != nil {
		return err
	}
	info, err := client.InstallIngressCert(ctx, chain)
	if err != nil {
		return hostErr(h, err)
	}
	in.TLSCertSHA256, in.Cert = info.TLSCertSHA256, hostCert(info.Cert)
	return s.Store.PutHostIngress(ctx, in)
}

// hostCert is the CA-issued certificate an agent reports, nil for its
// self-signed one.
func hostCert(c *agentapi.IngressCert) *model.HostCert {
	if c == nil || c.Issuer == "" {
		return nil
	}
	return &model.HostCert{Issuer: c.Issuer, Name: c.Name, NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
}
