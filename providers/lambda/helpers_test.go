package lambda

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/openapicheck"
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
	sleeps *sleepLog
}

// sleepLog records the waits the client asked for instead of waiting.
type sleepLog struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleepLog) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleepLog) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
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
	sl := &sleepLog{}
	p.api.Sleep = sl.sleep
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

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitState polls Status until want, failing at the deadline.
func waitState(t *testing.T, p provider.Provider, ref provider.Ref, want provider.State) provider.Instance {
	t.Helper()
	ctx := ctxT(t)
	var last provider.Instance
	var err error
	for ctx.Err() == nil {
		last, err = p.Status(ctx, ref)
		if err == nil && last.State == want {
			return last
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never reached %s: last %+v, %v", ref.Name, want, last, err)
	return last
}

func waitGone(t *testing.T, p provider.Provider, ref provider.Ref) {
	t.Helper()
	ctx := ctxT(t)
	var err error
	for ctx.Err() == nil {
		_, err = p.Status(ctx, ref)
		if provider.IsNotFound(err) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s is not gone: %v", ref.Name, err)
}

func wantKind(t *testing.T, err error, kind provider.ErrorKind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a %s error", kind)
	}
	if k := provider.KindOf(err); k != kind {
		t.Fatalf("got %v (kind %s), want kind %s", err, k, kind)
	}
}

var _ http.Handler = (*openapicheck.Recorder)(nil)
