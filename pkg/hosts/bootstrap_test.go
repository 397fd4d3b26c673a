package hosts

import (
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

func TestParseAddress(t *testing.T) {
	good := map[string]string{
		"root@203.0.113.7":             "root@203.0.113.7:22",
		"203.0.113.7":                  "root@203.0.113.7:22",
		"ubuntu@gpu1.example.org:2222": "ubuntu@gpu1.example.org:2222",
		"deploy@[2001:db8::1]:22":      "deploy@[2001:db8::1]:22",
		"deploy@[2001:db8::1]":         "deploy@[2001:db8::1]:22",
		"root@" + longHost(253):        "root@" + longHost(253) + ":22",
		strings.Repeat("u", 32) + "@h": strings.Repeat("u", 32) + "@h:22",
	}
	for in, want := range good {
		a, err := ParseAddress(in)
		if err != nil || a.String() != want {
			t.Fatalf("ParseAddress(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
	for _, in := range []string{"", "root@", "@host", "root@host:0", "root@host:70000", "root@host:x", "Root Admin@host", "root@-bad", "root@host;rm", "root@" + longHost(254), strings.Repeat("u", 33) + "@h"} {
		_, err := ParseAddress(in)
		if !errkind.Is(err, errkind.Invalid) {
			t.Fatalf("ParseAddress(%q): got %v, want an Invalid error", in, err)
		}
	}
}

func TestApplySSHRuntime(t *testing.T) {
	h := model.Host{Spec: model.HostSpec{DataDiskDevice: "/dev/vdc"}}
	applySSHRuntime(&h, provider.Instance{PrivateIP: "10.0.0.5", DataDiskDevice: "/dev/disk/by-id/google-data"})
	if h.Runtime.SSHHost != "10.0.0.5" || h.Runtime.SSHPort != 22 || h.Runtime.SSHUser != "root" || h.Runtime.DataDiskDevice != "/dev/vdc" {
		t.Fatalf("runtime: %+v", h.Runtime)
	}
	applySSHRuntime(&h, provider.Instance{PublicIP: "203.0.113.9", PrivateIP: "10.0.0.5", SSHPort: 2222, SSHUser: "ubuntu"})
	if h.Runtime.SSHHost != "203.0.113.9" || h.Runtime.SSHPort != 2222 || h.Runtime.SSHUser != "ubuntu" {
		t.Fatalf("runtime: %+v", h.Runtime)
	}
}

// longHost is a host name of n bytes (the longest allowed is 253).
func longHost(n int) string { return "h" + strings.Repeat("a", n-1) }
