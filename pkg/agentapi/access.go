package agentapi

import (
	"context"
	"net/http"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// AccessPath is where the control plane puts a host's access list (PUT)
// and reads what the host holds (GET).
const AccessPath = "/v1/access"

// AccessList is who may reach which project on a host through its
// ingress, and the public keys that check their tokens and certificates.
// The control plane pushes it every ingress.acl_ttl; the host keeps using
// the last one it got for MaxStaleSeconds, then refuses everyone until a
// new one arrives.
type AccessList struct {
	HostID string `json:"host_id"`
	// IssuedAt is the control plane's clock when it made the list.
	IssuedAt        time.Time         `json:"issued_at"`
	MaxStaleSeconds int64             `json:"max_stale_seconds"`
	Keys            tokens.PublicKeys `json:"keys"`
	// Admins may use every project.
	Admins   []string        `json:"admins"`
	Projects []ProjectAccess `json:"projects"`
	// SSHKeys are the public keys (authorized_keys lines) of the accounts
	// in this list, by account: a user may log in with one of those
	// instead of a certificate.
	SSHKeys map[string][]string `json:"ssh_keys,omitempty"`
}

// ProjectAccess is one project's accounts (owner and collaborators).
type ProjectAccess struct {
	ID       string   `json:"id"`
	Accounts []string `json:"accounts"`
	// Start is how to start the project when someone logs in while it is
	// stopped; nil means it is not started by a login.
	Start *StartProjectRequest `json:"start,omitempty"`
}

// AccessStatus is what a host holds: when it got its access list, whether
// the list is stale, and where its ingress listens.
type AccessStatus struct {
	IssuedAt   *time.Time `json:"issued_at,omitempty"`
	ReceivedAt *time.Time `json:"received_at,omitempty"`
	// Stale: the list is older than its MaxStaleSeconds (or there is
	// none), so the ingress refuses everyone.
	Stale    bool        `json:"stale"`
	Projects int         `json:"projects"`
	Ingress  IngressInfo `json:"ingress"`
}

// IngressInfo says where a host's ingress listens and how clients
// recognize it.
type IngressInfo struct {
	// HTTPSAddr and SSHAddr are the listeners' addresses (host:port as
	// bound; an unspecified host means every address). Empty: off.
	HTTPSAddr string `json:"https_addr,omitempty"`
	SSHAddr   string `json:"ssh_addr,omitempty"`
	// TLSCertSHA256 is the hex SHA-256 of the HTTPS certificate (DER),
	// which clients of a self-signed certificate pin.
	TLSCertSHA256 string `json:"tls_cert_sha256,omitempty"`
	// SSHHostKey is the SSH ingress's host key (authorized_keys format).
	SSHHostKey string `json:"ssh_host_key,omitempty"`
	// Cert is the HTTPS ingress's certificate (nil: HTTPS off).
	Cert *IngressCert `json:"cert,omitempty"`
	// Error says why a listener that should run does not.
	Error string `json:"error,omitempty"`
}

// PutAccess gives the agent a new access list and returns what it holds.
func (c *Client) PutAccess(ctx context.Context, l AccessList) (AccessStatus, error) {
	var out AccessStatus
	return out, c.do(ctx, http.MethodPut, AccessPath, l, &out)
}

// Access returns what the agent holds.
func (c *Client) Access(ctx context.Context) (AccessStatus, error) {
	var out AccessStatus
	return out, c.do(ctx, http.MethodGet, AccessPath, nil, &out)
}
