package hosts_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/dns"
	"github.com/sagemathinc/cocalc-hosts/pkg/dns/dnsfake"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

func dnsClient(t *testing.T, srv *dnsfake.Server) *dns.Cloudflare {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "cf.token")
	if err := os.WriteFile(tok, []byte(srv.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := dns.New(dns.Config{Domain: srv.ZoneName, ZoneID: srv.ZoneID, TokenFile: tok, Endpoint: srv.BaseURL(), MaxRetries: 0})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func aRecord(srv *dnsfake.Server, name string) []dnsfake.Record {
	var out []dnsfake.Record
	for _, r := range srv.Records() {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// A running host gets NAME.DOMAIN; the record follows its address when
// the VM is re-created with a new one, survives a stop, and goes away
// when the host is deprovisioned.
func TestDNSFollowsTheHost(t *testing.T) {
	srv := dnsfake.New("zone1", "hosts.example.org", "tok")
	defer srv.Close()
	st := openStore(t)
	ctx := context.Background()
	svc := hosts.New(st, configured{"sim": openSim(t, st, nil)})
	svc.DNS = dnsClient(t, srv)
	const fqdn = "gpu.hosts.example.org"

	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Provider: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	h, _ := st.GetHost(ctx, sub.Host.ID)
	recs := aRecord(srv, fqdn)
	if h.Runtime.DNSName != fqdn || len(recs) != 1 || recs[0].Content != h.Runtime.PublicIP || h.Runtime.PublicIP == "" {
		t.Fatalf("after create: dns %q ip %q records %+v (%s)", h.Runtime.DNSName, h.Runtime.PublicIP, recs, h.LastError)
	}
	firstIP := h.Runtime.PublicIP

	// Stopped: the record stays (the name is the host's), the IP is gone.
	if _, err := svc.Stop(ctx, "gpu", hosts.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	h, _ = st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusOff || len(aRecord(srv, fqdn)) != 1 || h.Runtime.DNSName != fqdn {
		t.Fatalf("after stop: %s %+v", h.Status, aRecord(srv, fqdn))
	}

	// Deleted keeping the disk, then started: a new VM with a new address.
	if _, err := svc.Stop(ctx, "gpu", hosts.StopOptions{Deprovision: true}); err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	if _, err := svc.Start(ctx, "gpu"); err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	h, _ = st.GetHost(ctx, sub.Host.ID)
	recs2 := aRecord(srv, fqdn)
	if h.Runtime.PublicIP == firstIP || len(recs2) != 1 || recs2[0].Content != h.Runtime.PublicIP || recs2[0].ID != recs[0].ID {
		t.Fatalf("after a new VM: ip %q (was %q) records %+v", h.Runtime.PublicIP, firstIP, recs2)
	}

	// A refresh with an unchanged address writes nothing.
	writes := srv.Calls("POST create") + srv.Calls("PUT update")
	if _, err := svc.Refresh(ctx, "gpu"); err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	if srv.Calls("POST create")+srv.Calls("PUT update") != writes {
		t.Fatal("a refresh rewrote an unchanged record")
	}

	if _, err := svc.Delete(ctx, "gpu", hosts.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	h, _ = st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusDeprovisioned || len(aRecord(srv, fqdn)) != 0 {
		t.Fatalf("after delete: %s %+v", h.Status, srv.Records())
	}
}

// A DNS outage does not fail the action; it is the host's last error and
// the host shows no public name until a later action publishes it.
func TestDNSFailureDoesNotFailTheAction(t *testing.T) {
	srv := dnsfake.New("zone1", "hosts.example.org", "tok")
	defer srv.Close()
	st := openStore(t)
	ctx := context.Background()
	svc := hosts.New(st, configured{"sim": openSim(t, st, nil)})
	svc.DNS = dnsClient(t, srv)
	srv.FailNext(1, 503, "")
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "gpu", Owner: "a", Provider: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	h, _ := st.GetHost(ctx, sub.Host.ID)
	if h.Status != model.StatusRunning || h.Runtime.DNSName != "" || !strings.Contains(h.LastError, "dns: publishing gpu") ||
		!strings.Contains(h.LastError, "HTTP 503") {
		t.Fatalf("after a DNS failure: %s %q %q", h.Status, h.Runtime.DNSName, h.LastError)
	}
	if _, err := svc.Refresh(ctx, "gpu"); err != nil {
		t.Fatal(err)
	}
	runAllProgress(t, svc, st)
	h, _ = st.GetHost(ctx, sub.Host.ID)
	if h.Runtime.DNSName != "gpu.hosts.example.org" || h.LastError != "" || len(aRecord(srv, "gpu.hosts.example.org")) != 1 {
		t.Fatalf("after refresh: %q %q", h.Runtime.DNSName, h.LastError)
	}
}
