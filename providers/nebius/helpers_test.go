package nebius

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

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/providers/nebius/nebiusfake"
)

const testRegion = "eu-north1"

// fastFake is a fake whose transitions take milliseconds: every
// intermediate state exists, tests just do not wait long for it.
func fastFake() nebiusfake.Options {
	return nebiusfake.Options{
		CreateDelay: 4 * time.Millisecond, BootDelay: 4 * time.Millisecond, StopDelay: 4 * time.Millisecond,
		DeleteDelay: 4 * time.Millisecond, DiskDelay: 2 * time.Millisecond,
	}
}

func startFake(t *testing.T, o nebiusfake.Options) *nebiusfake.Server {
	t.Helper()
	srv, err := nebiusfake.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// writeSecret writes a 0600 file, as `providers add` expects them.
func writeSecret(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nebius-credentials")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testOptions point the provider at srv through the real SDK.
func testOptions(srv *nebiusfake.Server, extra map[string]string) map[string]string {
	o := map[string]string{
		"endpoint": srv.Addr(), "insecure": "true",
		"project_id": srv.ProjectID(), "region": testRegion, "subnet_id": srv.SubnetID(),
		"poll_interval": "2ms", "request_timeout": "10s", "data_disk_gb": "20",
	}
	for k, v := range extra {
		o[k] = v
	}
	return o
}

func openProvider(t *testing.T, srv *nebiusfake.Server, deployment string, extra map[string]string) *Provider {
	t.Helper()
	p, err := New(provider.Config{
		Deployment: deployment, Options: testOptions(srv, extra),
		CredentialsFile: writeSecret(t, nebiusfake.DefaultToken+"\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testCtx(t *testing.T) context.Context { return providertest.Ctx(t, time.Minute) }

// testKeys makes a fleet key line and a host key pair like the control
// plane's.
func testKeys(t *testing.T) (string, *provider.HostKey) {
	t.Helper()
	mk := func() (ssh.PublicKey, ed25519.PrivateKey) {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return sp, priv
	}
	fleet, _ := mk()
	hostPub, hostPriv := mk()
	block, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fleet))) + " fleet@cocalc",
		&provider.HostKey{PrivatePEM: string(pem.EncodeToMemory(block)), Public: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub)))}
}

func testSpec(hostID string) provider.CreateSpec {
	return provider.CreateSpec{
		HostID: hostID, Name: provider.InstanceName(hostID),
		Labels: map[string]string{provider.LabelHost: hostID},
	}
}

func waitState(t *testing.T, p *Provider, ref provider.Ref, want provider.State) provider.Instance {
	t.Helper()
	return providertest.WaitState(t, testCtx(t), p, ref, want)
}

var kindOf = providertest.KindOf
