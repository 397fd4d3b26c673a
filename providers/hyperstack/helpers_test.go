package hyperstack

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/openapicheck"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/providers/hyperstack/hyperstackfake"
)

const (
	testDeployment = "test-dep"
	testRegion     = "CANADA-1"
	testPubKey     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFleetKeyForTestsOnlyxxxxxxxxxxxxxxxxxxxxx fleet@cocalc"
	specFile       = "testdata/hyperstack-infrahub-v1.yaml"
)

type env struct {
	p      *Provider
	fake   *hyperstackfake.Fake
	srv    *httptest.Server
	spec   *openapicheck.Recorder
	creds  string
	sleeps *providertest.SleepLog
}

func fastFake() hyperstackfake.Options {
	return hyperstackfake.Options{BootTime: 30 * time.Millisecond, StopTime: 20 * time.Millisecond, DeleteTime: 20 * time.Millisecond, VolumeTime: 15 * time.Millisecond}
}

var (
	specOnce sync.Once
	specDoc  *openapicheck.Spec
)

// loadSpec parses the 660 kB spec once per test binary.
func loadSpec(t *testing.T) *openapicheck.Spec {
	specOnce.Do(func() {
		specDoc = openapicheck.Load(t, specFile, hyperstackfake.BasePath)
		// Create_Security_Rule_Payload requires virtual_machine_id but
		// leaves it out of its properties: the spec's own slip.
		specDoc.AllowRequestMembers("POST /core/virtual-machines/{vm_id}/sg-rules", "virtual_machine_id")
	})
	return specDoc
}

// newEnv starts a fake behind the spec checker and opens a provider on it.
func newEnv(t *testing.T, fo hyperstackfake.Options, opts map[string]string) *env {
	t.Helper()
	fake := hyperstackfake.New(fo)
	rec := openapicheck.NewRecorder(loadSpec(t), fake)
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	creds := filepath.Join(t.TempDir(), "hyperstack.key")
	if err := os.WriteFile(creds, []byte(hyperstackfake.DefaultAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := map[string]string{"endpoint": hyperstackfake.URL(srv.URL), "region": testRegion, "poll_interval": "5ms"}
	for k, v := range opts {
		if v == "" {
			delete(o, k)
		} else {
			o[k] = v
		}
	}
	p, err := New(provider.Config{Deployment: testDeployment, Options: o, CredentialsFile: creds})
	if err != nil {
		t.Fatal(err)
	}
	sl := &providertest.SleepLog{}
	p.api.Sleep = sl.Sleep
	t.Cleanup(func() {
		if v, _ := rec.Report(); len(v) > 0 {
			t.Errorf("exchanges that break the published spec:\n  %s", strings.Join(v, "\n  "))
		}
	})
	return &env{p: p, fake: fake, srv: srv, spec: rec, creds: creds, sleeps: sl}
}

func testSpec(hostID string) provider.CreateSpec {
	return provider.CreateSpec{
		HostID: hostID, Name: provider.InstanceName(hostID), Region: testRegion, MachineType: "n3-A100x1", DiskGB: 50,
		SSHAuthorizedKey: testPubKey,
		Labels:           map[string]string{provider.LabelHost: hostID, provider.LabelDeployment: testDeployment},
	}
}

func ctxT(t *testing.T) context.Context { return providertest.Ctx(t, 20*time.Second) }

func waitState(t *testing.T, p provider.Provider, ref provider.Ref, want provider.State) provider.Instance {
	t.Helper()
	return providertest.WaitState(t, ctxT(t), p, ref, want)
}

func waitGone(t *testing.T, p provider.Provider, ref provider.Ref) {
	t.Helper()
	providertest.WaitGone(t, ctxT(t), p, ref)
}

var wantKind = providertest.WantKind

// volumeOf returns the fake's volume called name.
func volumeOf(f *hyperstackfake.Fake, name string) (hyperstackfake.Volume, bool) {
	for _, v := range f.Volumes() {
		if v.Name == name {
			return v, true
		}
	}
	return hyperstackfake.Volume{}, false
}
