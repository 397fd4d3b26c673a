package hosts

import (
	"context"
	"fmt"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// DNSRecords publishes hosts' public names (pkg/dns does it with
// Cloudflare).
type DNSRecords interface {
	// Ensure makes name's A record point at ip, creating or updating it,
	// and returns the fully qualified name.
	Ensure(ctx context.Context, name, ip string) (string, error)
	// Remove deletes name's A record; a missing record is not an error.
	Remove(ctx context.Context, name string) error
}

// SyncDNS runs after every successful action (and when reconcile changes a host), before the host row is
// committed: a running host with a public address gets (or keeps) its A
// record NAME.DOMAIN pointing at that address, and a deprovisioned host
// loses it. A stopped host keeps its record, which its next start
// updates. A DNS failure does not fail the action — the VM is as the
// action left it — but is recorded as the host's last error, and the
// host's name is then not shown as its address; the next start or refresh
// tries again.
func (s *Service) SyncDNS(ctx context.Context, h *model.Host, progress func(string)) {
	if s.DNS == nil {
		return
	}
	switch {
	case h.Status == model.StatusDeprovisioned:
		if err := s.DNS.Remove(ctx, h.Name); err != nil {
			h.LastError = fmt.Sprintf("dns: removing the record of %s: %v", h.Name, err)
			progress(h.LastError)
			return
		}
		h.Runtime.DNSName = ""
	case h.Status == model.StatusRunning && h.Runtime.PublicIP != "":
		fqdn, err := s.DNS.Ensure(ctx, h.Name, h.Runtime.PublicIP)
		if err != nil {
			h.Runtime.DNSName = ""
			h.LastError = fmt.Sprintf("dns: publishing %s at %s: %v", h.Name, h.Runtime.PublicIP, err)
			progress(h.LastError)
			return
		}
		if fqdn != h.Runtime.DNSName {
			progress(fmt.Sprintf("%s is %s", fqdn, h.Runtime.PublicIP))
		}
		h.Runtime.DNSName = fqdn
	}
}
