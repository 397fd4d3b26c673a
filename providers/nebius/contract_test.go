package nebius

import (
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/providers/nebius/nebiusfake"
)

// TestContract runs the provider contract through the real gosdk client
// against the in-process gRPC fake.
func TestContract(t *testing.T) {
	srv := startFake(t, fastFake())
	fleet, hostKey := testKeys(t)
	providertest.RunWithOptions(t, providertest.Options{
		Deployment:   "contract",
		Spec:         provider.CreateSpec{DiskGB: 20, SSHAuthorizedKey: fleet, HostKey: hostKey},
		ResizeToGB:   30,
		Timeout:      30 * time.Second,
		PollInterval: 5 * time.Millisecond,
	}, func(t *testing.T) provider.Provider {
		return openProvider(t, srv, "contract", nil)
	})
}

// TestContractWithFaults runs the contract while the API fails now and
// then: every third instance read is UNAVAILABLE and operation polls are
// rate limited once, which the provider's own retries absorb.
func TestContractWithFaults(t *testing.T) {
	srv := startFake(t, fastFake())
	srv.Inject(nebiusfake.MethodOperationGet, 1, nebiusfake.RateLimited(20*time.Millisecond))
	srv.Inject(nebiusfake.MethodInstanceGet, 2, nebiusfake.Unavailable())
	srv.Inject(nebiusfake.MethodInstanceCreate, 1, nebiusfake.ErrorAfterCreate())
	srv.Inject(nebiusfake.MethodDiskCreate, 1, nebiusfake.DeadlineExceeded())
	providertest.RunWithOptions(t, providertest.Options{
		Deployment:   "faults",
		Spec:         provider.CreateSpec{DiskGB: 20},
		ResizeToGB:   25,
		Timeout:      30 * time.Second,
		PollInterval: 5 * time.Millisecond,
	}, func(t *testing.T) provider.Provider {
		return openProvider(t, srv, "faults", nil)
	})
	for _, in := range srv.Instances() {
		t.Errorf("instance %s left behind", in.GetMetadata().GetName())
	}
	for _, d := range srv.Disks() {
		t.Errorf("disk %s left behind", d.GetMetadata().GetName())
	}
}
