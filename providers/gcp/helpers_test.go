package gcp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/providers/gcp/gcpfake"
)

// fastFake is a fake whose state sequences take milliseconds.
func fastFake(t *testing.T, o gcpfake.Options) *gcpfake.Server {
	t.Helper()
	if o.OperationTime == 0 {
		o.OperationTime = 20 * time.Millisecond
	}
	if o.ProvisioningTime == 0 {
		o.ProvisioningTime = 10 * time.Millisecond
	}
	if o.StagingTime == 0 {
		o.StagingTime = 10 * time.Millisecond
	}
	if o.StoppingTime == 0 {
		o.StoppingTime = 10 * time.Millisecond
	}
	srv := gcpfake.New(o)
	t.Cleanup(srv.Close)
	return srv
}

func fakeOptions(srv *gcpfake.Server, extra map[string]string) map[string]string {
	o := map[string]string{
		"project":          srv.Project(),
		"zone":             "us-central1-a",
		"endpoint":         srv.URL,
		"billing_endpoint": srv.URL,
		"poll_interval":    "5ms",
		"request_timeout":  "2s",
	}
	for k, v := range extra {
		o[k] = v
	}
	return o
}

func newTestProvider(t *testing.T, srv *gcpfake.Server, deployment string, extra map[string]string) *Provider {
	t.Helper()
	p, err := New(provider.Config{Deployment: deployment, Options: fakeOptions(srv, extra)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testCtx(t *testing.T) context.Context { return providertest.Ctx(t, 30*time.Second) }

func baseSpec(hostID string) provider.CreateSpec {
	return provider.CreateSpec{
		HostID: hostID, Name: provider.InstanceName(hostID), Zone: "us-central1-a",
		MachineType: "e2-standard-2", DiskGB: 20,
	}
}

func waitState(t *testing.T, p *Provider, ref provider.Ref, want provider.State) provider.Instance {
	t.Helper()
	return providertest.WaitState(t, testCtx(t), p, ref, want)
}

func waitGone(t *testing.T, p *Provider, ref provider.Ref) {
	t.Helper()
	providertest.WaitGone(t, testCtx(t), p, ref)
}

// waitNoDisk polls until the fake has no disk of that name.
func waitNoDisk(t *testing.T, srv *gcpfake.Server, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := srv.Disk(name); !ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("disk %s still exists", name)
}

var (
	kindOf   = providertest.KindOf
	wantKind = providertest.WantKind
)

// sshKeys makes a user key (authorized_keys line) and a host key pair.
func sshKeys(t *testing.T) (string, *provider.HostKey) {
	t.Helper()
	userPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	up, err := ssh.NewPublicKey(userPub)
	if err != nil {
		t.Fatal(err)
	}
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hp, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(up))) + " fleet@cocalc-hosts"
	return authorized, &provider.HostKey{
		PrivatePEM: string(pem.EncodeToMemory(block)),
		Public:     strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hp))),
	}
}

func writeSecret(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gcp-key.json")
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func metadataValue(in *computepb.Instance, key string) string {
	for _, it := range in.GetMetadata().GetItems() {
		if it.GetKey() == key {
			return it.GetValue()
		}
	}
	return ""
}
