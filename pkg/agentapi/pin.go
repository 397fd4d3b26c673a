package agentapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
)

// CertPin is the pin of a TLS certificate an agent makes for itself (its
// HTTPS ingress, a direct transfer's port): hex SHA-256 of its DER. The
// control plane learns it from the agent and hands it to whoever connects.
func CertPin(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// PinnedTLS accepts only the certificate whose pin is pin: no CA vouches
// for an agent's own certificates, the control plane does.
func PinnedTLS(pin string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection pins the exact certificate instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the agent sent no certificate")
			}
			if subtle.ConstantTimeCompare([]byte(CertPin(cs.PeerCertificates[0].Raw)), []byte(pin)) != 1 {
				return errors.New("the agent's certificate does not match the pinned fingerprint")
			}
			return nil
		},
	}
}
