package agentapi

import (
	"context"
	"net/http"
	"time"
)

// IngressCSRPath is where the control plane asks the host for a
// certificate request (POST); IngressCertPath is where it hands back the
// issued chain (PUT). The host's private key never leaves the host.
const (
	IngressCSRPath  = "/v1/ingress/csr"
	IngressCertPath = "/v1/ingress/cert"
)

// CSRRequest asks for a CSR for the host's public DNS name.
type CSRRequest struct {
	Name string `json:"name"`
}

// CSRReply is a DER certificate request signed by a new key kept on the
// host.
type CSRReply struct {
	CSR []byte `json:"csr"`
}

// InstallCertRequest is an issued chain (PEM, leaf first) for the key of
// the host's last CSR.
type InstallCertRequest struct {
	ChainPEM string `json:"chain_pem"`
}

// IngressCert says which certificate the HTTPS ingress serves.
type IngressCert struct {
	// Issuer is the CA's name for an ACME certificate; empty: the host's
	// self-signed certificate, which clients pin.
	Issuer   string    `json:"issuer,omitempty"`
	Name     string    `json:"name,omitempty"`
	NotAfter time.Time `json:"not_after"`
	// NotBefore is for renewal at 2/3 of the lifetime.
	NotBefore time.Time `json:"not_before"`
}

// IngressCSR asks the host for a CSR for name.
func (c *Client) IngressCSR(ctx context.Context, name string) (CSRReply, error) {
	var out CSRReply
	return out, c.do(ctx, http.MethodPost, IngressCSRPath, CSRRequest{Name: name}, &out)
}

// InstallIngressCert gives the host its issued chain, which it serves at
// once; the reply is what the ingress then serves.
func (c *Client) InstallIngressCert(ctx context.Context, chainPEM []byte) (IngressInfo, error) {
	var out IngressInfo
	return out, c.do(ctx, http.MethodPut, IngressCertPath, InstallCertRequest{ChainPEM: string(chainPEM)}, &out)
}
