package nebius

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/providers/nebius/nebiusfake"
)

// Config.OnCall hears of each gRPC call by service and method, with a
// failed call's error classified as the provider reports it.
func TestOnCallHearsGRPCCalls(t *testing.T) {
	srv := startFake(t, fastFake())
	var mu sync.Mutex
	heard := map[string]errkind.Kind{} // "" when it succeeded
	p, err := New(provider.Config{
		Deployment: "dep", Options: testOptions(srv, map[string]string{"retries": "0"}),
		CredentialsFile: writeSecret(t, nebiusfake.DefaultToken+"\n"),
		OnCall: func(op string, _ time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			heard[op] = ""
			if err != nil {
				heard[op] = errkind.Of(err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.List(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Status(ctx, provider.Ref{HostID: "h1", Name: "nosuch", InstanceID: "computeinstance-nosuchthing"}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("status of a missing instance: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if k, ok := heard["InstanceService/List"]; !ok || k != "" {
		t.Errorf("List: heard %q (%t), want a successful InstanceService/List; heard %v", k, ok, heard)
	}
	if k := heard["InstanceService/Get"]; k != errkind.NotFound {
		t.Errorf("Get of a missing instance: heard %q, want not_found; heard %v", k, heard)
	}
}
