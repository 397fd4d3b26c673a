package providertest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// broken is a sim with one contract violation, chosen by mode.
type broken struct {
	*sim.Provider
	mode string
}

func (b *broken) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	if b.mode == "create_not_idempotent" {
		b.Provider.Delete(ctx, provider.Ref{Name: spec.Name}, false) //nolint:errcheck
	}
	return b.Provider.Create(ctx, spec)
}

func (b *broken) Status(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	in, err := b.Provider.Status(ctx, ref)
	if b.mode == "status_unknown_nil" && errkind.Is(err, errkind.NotFound) {
		return provider.Instance{Name: ref.Name, State: provider.StateTerminated}, nil
	}
	return in, err
}

func (b *broken) Stop(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	if b.mode == "stop_noop" {
		return b.Provider.Status(ctx, ref)
	}
	return b.Provider.Stop(ctx, ref)
}

func (b *broken) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	if b.mode == "delete_noop" {
		return nil
	}
	if b.mode == "delete_drops_disk" {
		keepDisk = false
	}
	return b.Provider.Delete(ctx, ref, keepDisk)
}

func (b *broken) List(ctx context.Context) ([]provider.Instance, error) {
	if b.mode == "list_empty" {
		return nil, nil
	}
	return b.Provider.List(ctx)
}

func (b *broken) Catalog(ctx context.Context) ([]provider.CatalogEntry, error) {
	cat, err := b.Provider.Catalog(ctx)
	if b.mode == "catalog_wrong_provider" {
		cat[0].Provider = "other"
	}
	return cat, err
}

const modeEnv = "PROVIDERTEST_BROKEN_MODE"

// TestHelperBrokenProvider runs the suite on a broken sim; it only runs
// as a subprocess of TestSuiteCatchesBrokenProviders.
func TestHelperBrokenProvider(t *testing.T) {
	mode := os.Getenv(modeEnv)
	if mode == "" {
		t.Skip("runs only as a subprocess of TestSuiteCatchesBrokenProviders")
	}
	o := providertest.Options{Deployment: "d", Timeout: time.Second, PollInterval: 5 * time.Millisecond}
	providertest.RunWithOptions(t, o, func(t *testing.T) provider.Provider {
		s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		p, err := sim.New(provider.Config{Deployment: "d", State: s.ProviderState()})
		if err != nil {
			t.Fatal(err)
		}
		return &broken{Provider: p, mode: mode}
	})
}

// TestSuiteCatchesBrokenProviders proves the suite fails providers that
// break the contract, at the step that checks it.
func TestSuiteCatchesBrokenProviders(t *testing.T) {
	if os.Getenv(modeEnv) != "" {
		t.Skip("subprocess")
	}
	for mode, step := range map[string]string{
		"create_not_idempotent":  "create_is_idempotent",
		"status_unknown_nil":     "status_unknown_is_not_found",
		"stop_noop":              "stop",
		"delete_noop":            "delete",
		"delete_drops_disk":      "delete_keep_disk",
		"list_empty":             "list",
		"catalog_wrong_provider": "catalog",
	} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBrokenProvider$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), modeEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a provider with %s:\n%s", mode, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestHelperBrokenProvider/"+step+" ") {
				t.Fatalf("want step %s to fail for %s:\n%s", step, mode, out)
			}
		})
	}
}

// TestSuitePassesSim is the control: the unbroken sim passes.
func TestSuitePassesSim(t *testing.T) {
	if os.Getenv(modeEnv) != "" {
		t.Skip("subprocess")
	}
	providertest.RunWithOptions(t, providertest.Options{Deployment: "d", PollInterval: 5 * time.Millisecond},
		func(t *testing.T) provider.Provider {
			s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			p, err := sim.New(provider.Config{Deployment: "d", State: s.ProviderState()})
			if err != nil {
				t.Fatal(err)
			}
			return p
		})
}
