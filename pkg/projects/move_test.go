package projects

import (
	"testing"
	"time"

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

// A move's ETA: its rate since the attempt began (bytes sent before it
// do not count toward the rate), the time left to its planned size, and
// nothing when there is nothing to go by.
func TestMoveETA(t *testing.T) {
	for _, tc := range []struct {
		name                string
		planned, sent, base int64
		elapsed             time.Duration
		ok                  bool
		rate                float64
		left                time.Duration
		text                string
	}{
		{"half way", 100 << 20, 50 << 20, 0, 5 * time.Second, true, 10 << 20, 5 * time.Second,
			"the move has sent 50 MiB of 100 MiB, about 5s left"},
		{"resumed: the rate is of this attempt", 100 << 20, 60 << 20, 40 << 20, 2 * time.Second, true, 10 << 20, 4 * time.Second,
			"the move has sent 60 MiB of 100 MiB, about 4s left"},
		{"more than planned", 100 << 20, 120 << 20, 0, 12 * time.Second, true, 10 << 20, 0,
			"the move has sent 120 MiB (planned 100 MiB), finishing"},
		{"no plan", 0, 50 << 20, 0, 5 * time.Second, false, 0, 0, ""},
		{"nothing sent yet", 100 << 20, 40 << 20, 40 << 20, 5 * time.Second, false, 0, 0, ""},
		{"no time yet", 100 << 20, 1 << 20, 0, 0, false, 0, 0, ""},
	} {
		e, ok := estimate(tc.planned, tc.sent, tc.base, tc.elapsed)
		if ok != tc.ok {
			t.Errorf("%s: ok = %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if e.Rate != tc.rate || e.Left != tc.left || e.String() != tc.text {
			t.Errorf("%s: rate %.0f B/s, %s left, %q; want %.0f B/s, %s left, %q", tc.name, e.Rate, e.Left, e, tc.rate, tc.left, tc.text)
		}
	}
}
