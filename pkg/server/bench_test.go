package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil"
)

// BenchmarkAPI compares requests through the server (real HTTP on
// loopback, authenticated, JSON both ways) with the same calls on the
// domain services, on one Postgres: listing 10,000 hosts (BENCH_HOSTS),
// and a cheap authenticated GET (whoami: the key's lookup by hash).
//
//	go test -run '^$' -bench BenchmarkAPI -benchtime 20x ./pkg/server/
func BenchmarkAPI(b *testing.B) {
	e := newEnv(b, "postgres", nil)
	ctx := context.Background()
	n := testutil.BenchSize(10000)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range n {
		h := model.Host{ID: uuid.NewString(), Name: fmt.Sprintf("h%05d", i), Owner: "root", Provider: "sim", Region: "sim-east1",
			Status: model.StatusRunning, Spec: model.HostSpec{MachineType: "sim-small", DiskGB: 10}, CreatedAt: now, UpdatedAt: now}
		if err := e.st.CreateHost(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
	c, err := client.New(e.http.URL, e.keys["root"])
	if err != nil {
		b.Fatal(err)
	}
	check := func(hs []model.Host, err error) {
		if err != nil || len(hs) != n {
			b.Fatalf("listed %d of %d hosts: %v", len(hs), n, err)
		}
	}
	b.Run(fmt.Sprintf("list-%d/direct", n), func(b *testing.B) {
		for b.Loop() {
			check(e.srv.Hosts.List(ctx, store.HostFilter{}))
		}
	})
	b.Run(fmt.Sprintf("list-%d/server", n), func(b *testing.B) {
		for b.Loop() {
			check(client.Hosts{C: c}.List(ctx, store.HostFilter{}))
		}
	})
	b.Run("whoami/direct", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := e.srv.Accounts.Authenticate(ctx, e.keys["root"]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("whoami/server", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Whoami(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
