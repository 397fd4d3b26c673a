package userdata

import (
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

const testPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFleetKeyForTestsOnlyxxxxxxxxxxxxxxxxxxxxx fleet@cocalc"

func TestCloudConfig(t *testing.T) {
	if s := CloudConfig("ubuntu", "ubuntu", testPubKey, nil); s != "" {
		t.Fatalf("nothing to configure, got user data %q", s)
	}
	s := CloudConfig("ubuntu", "ubuntu", testPubKey, &provider.HostKey{PrivatePEM: "-----BEGIN X-----\nK\n-----END X-----", Public: "ecdsa-sha2-nistp256 AAAA h"})
	if !strings.Contains(s, "ecdsa_private: |\n    -----BEGIN X-----\n    K\n    -----END X-----\n") || !strings.Contains(s, `ecdsa_public: "ecdsa-sha2-nistp256 AAAA h"`) {
		t.Fatalf("ecdsa host key not installed:\n%s", s)
	}
	if s := CloudConfig("ubuntu", "ubuntu", testPubKey, &provider.HostKey{PrivatePEM: "x", Public: "ssh-dss AAAA"}); s != "" {
		t.Fatalf("a key type cloud-init cannot install must be skipped, got:\n%s", s)
	}
}
