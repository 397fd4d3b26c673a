package hosts_test

import (
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	_ "github.com/sagemathinc/cocalc-hosts/providers/builtin"
)

// How an idle host stops follows from what its cloud's stop means: a VM
// that powers itself off stops billing on GCP (and Nebius); Hyperstack bills a
// powered-off VM in full, so the control plane hibernates it; Lambda
// cannot stop; an adopted machine is never stopped; local and sim hosts
// are not bootstrapped (their agents have their own settings).
func TestIdleStopKind(t *testing.T) {
	st := openStore(t)
	for _, tc := range []struct {
		name string
		opts map[string]string
		want provider.StopKind
	}{
		{"gcp", map[string]string{"project": "idle-test", "endpoint": "http://127.0.0.1:1"}, provider.StopReal},
		{"hyperstack", nil, provider.StopHibernate},
		{"lambda", nil, provider.StopNone},
		{"ssh", nil, provider.StopNone},
		{"local", nil, provider.StopNone},
		{"sim", nil, provider.StopNone},
	} {
		p, err := provider.Open(tc.name, provider.Config{Deployment: "d", State: st.ProviderState(), Options: tc.opts, StateDir: t.TempDir()})
		if err != nil {
			t.Fatalf("open %s: %v", tc.name, err)
		}
		if got := hosts.IdleStopKind(p, model.Host{Provider: tc.name}); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	// A machine given by --address is the user's, whatever the provider.
	p, _ := provider.Open("sim", provider.Config{Deployment: "d", State: st.ProviderState()})
	if got := hosts.IdleStopKind(p, model.Host{Spec: model.HostSpec{Address: "root@10.0.0.1"}}); got != provider.StopNone {
		t.Errorf("adopted: %s", got)
	}
}
