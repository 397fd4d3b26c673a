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
		parts = append(parts, fmt.Sprintf("https %s (certificate sha256 %s…)", in.HTTPSAddr, in.TLSCertSHA256[:min(16, len(in.TLSCertSHA256))]))
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
