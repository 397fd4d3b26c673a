package model

import "time"

// SSHKey is an account's SSH public key: with it the account logs in to
// the SSH ingress of the projects it may use, without a certificate.
type SSHKey struct {
	Account     string    `json:"account"`
	Fingerprint string    `json:"fingerprint"`
	PublicKey   string    `json:"public_key"`
	Comment     string    `json:"comment,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// HostIngress is what a host's agent last said about its ingress when
// the control plane pushed it its access list.
type HostIngress struct {
	HostID string `json:"host_id"`
	// HTTPSAddr and SSHAddr are where the listeners are bound (an
	// unspecified host means every address of the host).
	HTTPSAddr string `json:"https_addr,omitempty"`
	SSHAddr   string `json:"ssh_addr,omitempty"`
	// TLSCertSHA256 pins the HTTPS certificate; SSHHostKey is the SSH
	// ingress's host key (authorized_keys format).
	TLSCertSHA256 string    `json:"tls_cert_sha256,omitempty"`
	SSHHostKey    string    `json:"ssh_host_key,omitempty"`
	Error         string    `json:"error,omitempty"`
	PushedAt      time.Time `json:"pushed_at"`
	// Cert is the CA-issued certificate the HTTPS ingress serves; nil:
	// its self-signed one, which clients pin by TLSCertSHA256.
	Cert *HostCert `json:"cert,omitempty"`
	// CertError says why the control plane's last attempt to get the host
	// a certificate (ACME, at CertTriedAt) failed; empty: it worked.
	CertError   string     `json:"cert_error,omitempty"`
	CertTriedAt *time.Time `json:"cert_tried_at,omitempty"`
}

// HostCert is a CA-issued certificate for a host's public name.
type HostCert struct {
	Issuer    string    `json:"issuer"`
	Name      string    `json:"name"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// HostTunnel is where a reverse-connected host's tunnel is held: the
// `serve` process that holds it now (empty: none) and since when.
type HostTunnel struct {
	Holder      string     `json:"holder,omitempty"`
	ConnectedAt *time.Time `json:"connected_at,omitempty"`
}
