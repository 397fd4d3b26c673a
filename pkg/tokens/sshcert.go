package tokens

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// HostOption is the critical option that binds a certificate to one
// host: its value is the host id. A server that does not know the option
// must refuse the certificate, so it never opens another server.
const HostOption = "cocalc-host@sagemath.com"

// Extensions of the certificates we sign (OpenSSH's names).
const (
	ExtPTY         = "permit-pty"
	ExtPortForward = "permit-port-forwarding"
)

// CertGrant is what a new SSH user certificate says: Account may log in
// to Project on HostID as user Project, for Validity.
type CertGrant struct {
	Account   string
	Project   string
	HostID    string
	PublicKey ssh.PublicKey
	Validity  time.Duration
	Now       time.Time
}

// SignCert signs an OpenSSH user certificate for g with the current CA:
// principal = project id, key id = account, bound to the host by
// HostOption. It is valid from a minute before now (clock skew) for
// g.Validity.
func (kr *Keyring) SignCert(g CertGrant) (*ssh.Certificate, error) {
	if g.Account == "" || g.Project == "" || g.HostID == "" || g.PublicKey == nil {
		return nil, errors.New("ssh certificate: account, project, host and public key are required")
	}
	if _, ok := g.PublicKey.(*ssh.Certificate); ok {
		return nil, errors.New("ssh certificate: the key to sign is itself a certificate")
	}
	if err := checkTTL(g.Validity); err != nil {
		return nil, fmt.Errorf("ssh certificate: %w", err)
	}
	k, err := kr.current()
	if err != nil {
		return nil, err
	}
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, err
	}
	now := g.Now.UTC()
	c := &ssh.Certificate{
		Key: g.PublicKey, Serial: binary.BigEndian.Uint64(serial[:]), CertType: ssh.UserCert,
		KeyId: g.Account, ValidPrincipals: []string{g.Project},
		ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(g.Validity).Unix()),
		Permissions: ssh.Permissions{
			CriticalOptions: map[string]string{HostOption: g.HostID},
			Extensions:      map[string]string{ExtPTY: "", ExtPortForward: ""},
		},
	}
	if err := c.SignCert(rand.Reader, k.ca); err != nil {
		return nil, fmt.Errorf("ssh certificate: %w", err)
	}
	return c, nil
}

// CheckCert checks an SSH user certificate presented to log in as user
// project on this host, and returns the account it was issued to. The
// signature is checked first, so that every other reason given is about
// a certificate our CA really signed.
func (v *Verifier) CheckCert(cert *ssh.Certificate, project string) (string, error) {
	k, ok := v.cas[AuthorizedKey(cert.SignatureKey)]
	if !ok {
		return "", refuse(UnknownKey, "ssh certificate refused: signed by a CA this host does not trust (%s)", ssh.FingerprintSHA256(cert.SignatureKey))
	}
	if err := cert.SignatureKey.Verify(signedBytes(cert), cert.Signature); err != nil {
		return "", refuse(BadSignature, "ssh certificate refused: bad signature (forged or altered)")
	}
	now := v.now()
	if !acceptedAt(k.AcceptUntil, now) {
		return "", refuse(RetiredKey, "ssh certificate refused: signed by CA %s, which was rotated out and is no longer accepted since %s",
			k.KID, k.AcceptUntil.UTC().Format(time.RFC3339))
	}
	if cert.CertType != ssh.UserCert || cert.KeyId == "" {
		return "", refuse(Malformed, "ssh certificate refused: not a user certificate with an account in its key id")
	}
	for opt := range cert.CriticalOptions {
		if opt != HostOption {
			return "", refuse(Malformed, "ssh certificate refused: unknown critical option %q", opt)
		}
	}
	if host := cert.CriticalOptions[HostOption]; host != v.hostID {
		return "", refuse(WrongAudience, "ssh certificate refused: issued for host %q, not this host (%s)", host, v.hostID)
	}
	if !slices.Contains(cert.ValidPrincipals, project) {
		return "", refuse(WrongProject, "ssh certificate refused: valid for %v, not for %s", cert.ValidPrincipals, project)
	}
	if cert.ValidBefore == ssh.CertTimeInfinity || cert.ValidBefore > 1<<62 || cert.ValidAfter > 1<<62 {
		return "", refuse(Malformed, "ssh certificate refused: it never expires")
	}
	if after := time.Unix(int64(cert.ValidAfter), 0); now.Add(Leeway).Before(after) {
		return "", refuse(NotYetValid, "ssh certificate refused: not valid before %s", after.UTC().Format(time.RFC3339))
	}
	if before := time.Unix(int64(cert.ValidBefore), 0); !now.Add(-Leeway).Before(before) {
		return "", refuse(Expired, "ssh certificate refused: expired at %s", before.UTC().Format(time.RFC3339))
	}
	return cert.KeyId, nil
}

// signedBytes is what a certificate's CA signed: the certificate without
// its signature (as golang.org/x/crypto/ssh computes it).
func signedBytes(cert *ssh.Certificate) []byte {
	c := *cert
	c.Signature = nil
	out := c.Marshal()
	return out[:len(out)-4] // the empty signature's length
}
