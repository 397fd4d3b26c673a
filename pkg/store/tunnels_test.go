package store_test

import (
	"context"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

func TestHostTunnels(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h1")
		if err := s.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		if _, err := s.HostTunnelSum(ctx, h.ID); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("before any: %v", err)
		}
		for _, sum := range []string{"aa", "bb"} {
			if err := s.PutHostTunnel(ctx, h.ID, sum, t0); err != nil {
				t.Fatal(err)
			}
			if got, err := s.HostTunnelSum(ctx, h.ID); err != nil || got != sum {
				t.Fatalf("sum: %q %v; want %q", got, err, sum)
			}
		}
		if err := s.PutHostTunnel(ctx, "no-such-host", "cc", t0); err == nil {
			t.Fatal("a tunnel for a host that does not exist was recorded")
		}

		// Who holds it: none, then serve A; A's late close after B took
		// it over leaves B; B's close leaves none.
		holder := func(want string, wantAt bool) {
			t.Helper()
			got, err := s.HostTunnel(ctx, h.ID)
			if err != nil || got.Holder != want || (got.ConnectedAt != nil) != wantAt {
				t.Fatalf("holder: %+v %v; want %q", got, err, want)
			}
		}
		holder("", false)
		for _, step := range []struct {
			connect bool
			who     string
			want    string
		}{{true, "serve A", "serve A"}, {true, "serve B", "serve B"}, {false, "serve A", "serve B"}, {false, "serve B", ""}} {
			var err error
			if step.connect {
				err = s.TunnelConnected(ctx, h.ID, step.who, t0)
			} else {
				err = s.TunnelClosed(ctx, h.ID, step.who)
			}
			if err != nil {
				t.Fatal(err)
			}
			holder(step.want, step.want != "")
		}
		if _, err := s.HostTunnel(ctx, "no-such-host"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("a host without a tunnel: %v", err)
		}
	})
}
