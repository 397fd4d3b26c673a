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
	})
}
