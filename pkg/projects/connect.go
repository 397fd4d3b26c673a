package projects

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/proxypath"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// TokenParam is the URL parameter the HTTPS ingress takes a token from
// (agent.TokenParam; the control plane does not import the agent).
const TokenParam = "cocalc_token"

// usable finds a live project that a may use: its owner, a collaborator
// on it, or an admin.
func (s *Service) usable(ctx context.Context, a actor, id string) (model.Project, error) {
	if err := CheckID(id); err != nil {
		return model.Project{}, err
	}
	p, err := s.Store.GetProject(ctx, id)
	if err != nil {
		return p, err
	}
	if p.DeletedAt != nil {
		return p, errkind.Errorf(errkind.NotFound, "project %s was deleted", id)
	}
	if p.Owner == a.ID || a.Admin {
		return p, nil
	}
	cs, err := s.Store.ListProjectCollaborators(ctx, p.ID)
	if err != nil {
		return p, err
	}
	if !slices.Contains(cs, a.ID) {
		return p, refused("project %s belongs to %s and %s is not a collaborator on it", id, p.Owner, a.ID)
	}
	return p, nil
}

// ProjectCollaborators lists a project's collaborators.
func (s *Service) ProjectCollaborators(ctx context.Context, c Caller, id string) ([]string, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return nil, err
	}
	p, err := s.usable(ctx, a, id)
	if err != nil {
		return nil, err
	}
	return s.Store.ListProjectCollaborators(ctx, p.ID)
}

// AddProjectCollaborator lets account use project id (its ingress);
// owners and admins may. The host is told at once when it can be; the
// returned warning says when not.
func (s *Service) AddProjectCollaborator(ctx context.Context, c Caller, id, account string) (string, error) {
	return s.changeCollaborator(ctx, c, id, account, true)
}

// RemoveProjectCollaborator takes account's use of project id away; the
// host refuses it from its next access list on, which it gets at once or
// within ingress.acl_ttl.
func (s *Service) RemoveProjectCollaborator(ctx context.Context, c Caller, id, account string) (string, error) {
	return s.changeCollaborator(ctx, c, id, account, false)
}

func (s *Service) changeCollaborator(ctx context.Context, c Caller, id, account string, add bool) (string, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return "", err
	}
	if err := CheckAccount(account); err != nil {
		return "", err
	}
	p, err := s.live(ctx, a, id)
	if err != nil {
		return "", err
	}
	if add {
		if account == p.Owner {
			return "", invalid("%s owns project %s already", account, p.ID)
		}
		if _, err := s.Store.EnsureAccount(ctx, account); err != nil {
			return "", err
		}
		err = s.Store.AddProjectCollaborator(ctx, p.ID, account, s.Now())
	} else {
		err = s.Store.RemoveProjectCollaborator(ctx, p.ID, account)
	}
	if err != nil {
		return "", err
	}
	return s.pushSoon(ctx, p.HostID), nil
}

// AddSSHKey records a public key (an authorized_keys line) of the
// caller's account: the account may log in with it to the SSH ingress of
// every project it may use.
func (s *Service) AddSSHKey(ctx context.Context, c Caller, line string) (model.SSHKey, []string, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return model.SSHKey{}, nil, err
	}
	k, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return model.SSHKey{}, nil, invalid("not an SSH public key (a line such as `ssh-ed25519 AAAA... me@laptop`, as in ~/.ssh/id_ed25519.pub): %v", err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return model.SSHKey{}, nil, invalid("give one public key at a time")
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return model.SSHKey{}, nil, invalid("that is a certificate, not a public key")
	}
	key := model.SSHKey{Account: a.ID, Fingerprint: ssh.FingerprintSHA256(k), PublicKey: tokens.AuthorizedKey(k),
		Comment: comment, CreatedAt: s.Now().UTC().Truncate(time.Millisecond)}
	if err := s.Store.AddSSHKey(ctx, key); err != nil {
		return key, nil, err
	}
	return key, s.pushHostsOf(ctx, a.ID), nil
}

// RemoveSSHKey removes one of the caller's keys by fingerprint.
func (s *Service) RemoveSSHKey(ctx context.Context, c Caller, fingerprint string) ([]string, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := s.Store.RemoveSSHKey(ctx, a.ID, fingerprint); err != nil {
		return nil, err
	}
	return s.pushHostsOf(ctx, a.ID), nil
}

// SSHKeys lists the caller's keys.
func (s *Service) SSHKeys(ctx context.Context, c Caller) ([]model.SSHKey, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return nil, err
	}
	return s.Store.ListSSHKeys(ctx, []string{a.ID})
}

// pushHostsOf tells the hosts of account's projects about a change of its
// keys; it returns warnings for hosts that could not be told.
func (s *Service) pushHostsOf(ctx context.Context, account string) []string {
	ps, err := s.Store.ListProjects(ctx, store.ProjectFilter{})
	if err != nil {
		return []string{fmt.Sprintf("hosts not told yet (%v); the worker tells them within ingress.acl_ttl", err)}
	}
	hostsOf := map[string]bool{}
	for _, p := range ps {
		if hostsOf[p.HostID] {
			continue
		}
		if p.Owner == account {
			hostsOf[p.HostID] = true
			continue
		}
		if cs, err := s.Store.ListProjectCollaborators(ctx, p.ID); err == nil && slices.Contains(cs, account) {
			hostsOf[p.HostID] = true
		}
	}
	var warns []string
	for h := range hostsOf {
		if w := s.pushSoon(ctx, h); w != "" {
			warns = append(warns, w)
		}
	}
	return warns
}

// Endpoint is where a project's host's ingress is reached.
type Endpoint struct {
	Project string `json:"project"`
	HostID  string `json:"host_id"`
	Host    string `json:"host"`
	// Address is the host's name or IP address as clients reach it.
	Address   string `json:"address"`
	HTTPSPort int    `json:"https_port,omitempty"`
	SSHPort   int    `json:"ssh_port,omitempty"`
	// TLSCertSHA256 pins the HTTPS certificate (self-signed); SSHHostKey
	// is the SSH ingress's host key.
	TLSCertSHA256 string `json:"tls_cert_sha256,omitempty"`
	SSHHostKey    string `json:"ssh_host_key,omitempty"`
	// TLSIssuer is the CA that signed the HTTPS certificate for Address,
	// which browsers then trust without a pin; empty: self-signed.
	TLSIssuer string `json:"tls_issuer,omitempty"`
	// Reverse: the host is reverse-connected; clients reach its ingress
	// through the server's relay (`cocalc-hosts relay`), not Address.
	Reverse bool `json:"reverse,omitempty"`
}

// endpoint checks that a may use project id on its running host, makes
// sure the host has the current access list, and says where its ingress
// is.
func (s *Service) endpoint(ctx context.Context, c Caller, id string) (actor, model.Project, Endpoint, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return a, model.Project{}, Endpoint{}, err
	}
	p, err := s.usable(ctx, a, id)
	if err != nil {
		return a, p, Endpoint{}, err
	}
	h, err := s.hostOf(ctx, p, "connect to")
	if err != nil {
		return a, p, Endpoint{}, err
	}
	// The list the host has may predate this project or this account's
	// access: bring it up to date before handing out a credential.
	in, err := s.PushAccess(ctx, h)
	if err != nil {
		return a, p, Endpoint{}, err
	}
	e := Endpoint{Project: p.ID, HostID: h.ID, Host: h.Name, TLSCertSHA256: in.TLSCertSHA256, SSHHostKey: in.SSHHostKey, Reverse: h.Spec.Reverse}
	var httpsHost, sshHost string
	httpsHost, e.HTTPSPort = splitAddr(in.HTTPSAddr)
	sshHost, e.SSHPort = splitAddr(in.SSHAddr)
	e.Address = reachable(h, httpsHost, sshHost)
	if in.Cert != nil && strings.EqualFold(in.Cert.Name, h.Runtime.DNSName) {
		// The name the certificate is for, so that it verifies.
		e.Address, e.TLSIssuer = in.Cert.Name, in.Cert.Issuer
	}
	return a, p, e, nil
}

func splitAddr(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// reachable is the address clients use for host h: the address its
// listeners are bound to when that is one address, else its DNS name or
// public address, else the address the control plane reaches it at.
func reachable(h model.Host, bound ...string) string {
	for _, b := range bound {
		if ip := net.ParseIP(b); b != "" && (ip == nil || !ip.IsUnspecified()) {
			return b
		}
	}
	for _, a := range []string{h.Runtime.DNSName, h.Runtime.PublicIP, h.Runtime.SSHHost, h.Runtime.PrivateIP} {
		if a != "" {
			return a
		}
	}
	return "127.0.0.1"
}

// Opened is a URL into a project's port, with the token in it.
type Opened struct {
	Endpoint
	Port      int       `json:"port"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Open makes a URL that reaches port inside project id through its host's
// HTTPS ingress, with a connect token for the caller (valid for
// ingress.TokenTTL; a browser exchanges it for a session cookie).
func (s *Service) Open(ctx context.Context, c Caller, id string, port int) (Opened, error) {
	if port < 1 || port > 65535 {
		return Opened{}, invalid("--port %d: use a port between 1 and 65535", port)
	}
	kr, err := s.keyring()
	if err != nil {
		return Opened{}, err
	}
	a, p, e, err := s.endpoint(ctx, c, id)
	if err != nil {
		return Opened{}, err
	}
	if e.HTTPSPort == 0 {
		return Opened{}, refused("host %s has no HTTPS ingress running (see `cocalc-hosts show %s`)", e.Host, e.Host)
	}
	tok, claims, err := kr.Mint(tokens.Grant{Account: a.ID, Project: p.ID, HostID: e.HostID, Perms: []string{tokens.PermHTTP},
		Ports: []int{port}, TTL: s.ingress().TokenTTL, Now: s.Now()})
	if err != nil {
		return Opened{}, err
	}
	u := url.URL{Scheme: "https", Host: net.JoinHostPort(e.Address, strconv.Itoa(e.HTTPSPort)), Path: proxypath.Prefix(p.ID, port),
		RawQuery: url.Values{TokenParam: {tok}}.Encode()}
	if e.HTTPSPort == 443 {
		u.Host = hostForURL(e.Address)
	}
	return Opened{Endpoint: e, Port: port, URL: u.String(), ExpiresAt: claims.ExpiresAt.UTC()}, nil
}

func hostForURL(addr string) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]"
	}
	return addr
}

// SSHAccess is a certificate to log in to a project and where to.
type SSHAccess struct {
	Endpoint
	// User is the login name: the project id.
	User        string    `json:"user"`
	Certificate string    `json:"certificate"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// SSHCertificate signs pub for the caller to log in to project id over its
// host's SSH ingress, valid for ingress.CertValidity.
func (s *Service) SSHCertificate(ctx context.Context, c Caller, id string, pub ssh.PublicKey) (SSHAccess, error) {
	kr, err := s.keyring()
	if err != nil {
		return SSHAccess{}, err
	}
	a, p, e, err := s.endpoint(ctx, c, id)
	if err != nil {
		return SSHAccess{}, err
	}
	if e.SSHPort == 0 {
		return SSHAccess{}, refused("host %s has no SSH ingress running (see `cocalc-hosts show %s`)", e.Host, e.Host)
	}
	cert, err := kr.SignCert(tokens.CertGrant{Account: a.ID, Project: p.ID, HostID: e.HostID, PublicKey: pub,
		Validity: s.ingress().CertValidity, Now: s.Now()})
	if err != nil {
		return SSHAccess{}, err
	}
	return SSHAccess{Endpoint: e, User: p.ID, Certificate: string(ssh.MarshalAuthorizedKey(cert)),
		ExpiresAt: time.Unix(int64(cert.ValidBefore), 0).UTC()}, nil
}

// IsNoKeys reports whether err says that no signing keys are configured.
func IsNoKeys(err error) bool { return errors.Is(err, errNoKeys) }
