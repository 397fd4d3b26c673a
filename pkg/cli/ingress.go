package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// ingressLine says where a host's ingress listens and when it last got
// its access list.
func ingressLine(in model.HostIngress, now time.Time) string {
	var parts []string
	if in.HTTPSAddr != "" {
		cert := fmt.Sprintf("self-signed certificate sha256 %s…", in.TLSCertSHA256[:min(16, len(in.TLSCertSHA256))])
		if c := in.Cert; c != nil {
			cert = fmt.Sprintf("certificate for %s from %s until %s", c.Name, c.Issuer, c.NotAfter.Format("2006-01-02"))
		}
		if in.CertError != "" {
			cert += "; the last attempt to get a CA certificate failed: " + in.CertError
		}
		parts = append(parts, fmt.Sprintf("https %s (%s)", in.HTTPSAddr, cert))
	}
	if in.SSHAddr != "" {
		parts = append(parts, "ssh "+in.SSHAddr)
	}
	if len(parts) == 0 {
		parts = append(parts, "off")
	}
	s := strings.Join(parts, ", ") + "; access list pushed " + ago(now, in.PushedAt)
	if in.Error != "" {
		s += "; " + in.Error
	}
	return s
}
