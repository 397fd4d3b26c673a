package projects

import (
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// The destination's address as the source reaches it.
func TestDirectAddr(t *testing.T) {
	host := func(provider, region, private, public string) model.Host {
		return model.Host{Name: provider + "-" + region, Provider: provider, Region: region,
			Runtime: model.Runtime{PrivateIP: private, PublicIP: public}}
	}
	local := host("local", "local", "", "")
	a := host("gcp", "us-east1", "10.0.0.2", "34.1.1.2")
	b := host("gcp", "us-east1", "10.0.0.3", "34.1.1.3")
	c := host("gcp", "europe-west1", "10.1.0.4", "35.1.1.4")
	d := host("hetzner", "fsn1", "", "")
	for _, tc := range []struct {
		name     string
		from, to model.Host
		want     string
	}{
		{"both on this machine", local, local, "127.0.0.1"},
		{"one region: private", a, b, "10.0.0.3"},
		{"other region: public", a, c, "35.1.1.4"},
		{"no address: relay", a, d, ""},
		{"local to a cloud: public", local, a, "34.1.1.2"},
		{"cloud to local: relay", a, local, ""},
	} {
		if got := directAddr(tc.from, tc.to); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
