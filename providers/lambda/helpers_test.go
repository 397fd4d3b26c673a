package lambda

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/openapicheck"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/providers/lambda/lambdafake"
)

const (
	testDeployment = "test-dep"
	testPubKey     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFleetKeyForTestsOnlyxxxxxxxxxxxxxxxxxxxxx fleet@cocalc"
	specFile       = "testdata/lambda-cloud-v1.5.3.yaml"
)

// env is a provider wired to a fake through the spec checker.
type env struct {
	p      *Provider
	fake   *lambdafake.Fake
	srv    *httptest.Server
	spec   *openapicheck.Recorder
	creds  string
	sleeps *providertest.SleepLog
}

func fastFake() lambdafake.Options {
	return lambdafake.Options{BootTime: 30 * time.Millisecond, TerminateTime: 20 * time.Millisecond, TerminatedTTL: 20 * time.Millisecond}
}

// newEnv starts a fake behind the spec checker and opens a provider on it.
// Every exchange of every test is checked against the published spec;
// replies to injected faults are exempt (the fake marks them).
func newEnv(t *testing.T, fo lambdafake.Options, opts map[string]string) *env {
	t.Helper()
	fake := lambdafake.New(fo)
	spec := openapicheck.Load(t, specFile, lambdafake.BasePath)
	spec.AllowRequestMembers("POST /instance-operations/launch", "user_data", "image")
	rec := openapicheck.NewRecorder(spec, fake)
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	creds := filepath.Join(t.TempDir(), "lambda.key")
	if err := os.WriteFile(creds, []byte(lambdafake.DefaultAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := map[string]string{"endpoint": lambdafake.URL(srv.URL)}
	for k, v := range opts {
		o[k] = v
	}
	p, err := New(provider.Config{Deployment: testDeployment, Options: o, CredentialsFile: creds})
	if err != nil {
		t.Fatal(err)
	}
	sl := &providertest.SleepLog{}
	p.api.Sleep = sl.Sleep
	e := &env{p: p, fake: fake, srv: srv, spec: rec, creds: creds, sleeps: sl}
	t.Cleanup(func() {
		if v, _ := rec.Report(); len(v) > 0 {
			t.Errorf("exchanges that break the published spec:\n  %s", joinLines(v))
		}
	})
	return e
}

func joinLines(v []string) string {
	out := ""
	for i, s := range v {
		if i > 0 {
			out += "\n  "
		}
		out += s
	}
	return out
}

func testSpec(hostID string) provider.CreateSpec {
	return provider.CreateSpec{
		HostID: hostID, Name: provider.InstanceName(hostID), Region: "us-east-1", MachineType: "gpu_1x_a10",
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

var _ http.Handler = (*openapicheck.Recorder)(nil)
