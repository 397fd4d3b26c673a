package ssh_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/fleet"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshboot"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
	sshprov "github.com/sagemathinc/cocalc-hosts/providers/ssh"
)

type env struct {
	st   *store.SQLStore
	id   *fleet.Identity
	pool *sshpool.Pool
}

func newEnv(t *testing.T) *env {
	sshvm.NeedRoot(t)
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id, err := fleet.LoadOrCreate(filepath.Join(dir, "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	pool := sshpool.New(func() (*fleet.Identity, error) { return id, nil }, sshboot.StorePins{Store: st})
	t.Cleanup(func() { pool.Close() })
	return &env{st: st, id: id, pool: pool}
}

func (e *env) provider(t *testing.T, opts map[string]string) provider.Provider {
	p, err := sshprov.New(provider.Config{Deployment: "contract", State: e.st.ProviderState(), Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	p.(*sshprov.Provider).UseSSH(e.pool)
	return p
}

// The provider contract, against a real machine over SSH (one that was
// never bootstrapped: stop, start and delete must work on it too).
func TestContract(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	providertest.RunWithOptions(t, providertest.Options{
		Deployment: "contract",
		Spec:       provider.CreateSpec{Region: sshprov.Region, Address: vm.Addr + ":22", SSHUser: "root"},
		Timeout:    time.Minute,
	}, func(t *testing.T) provider.Provider { return e.provider(t, nil) })
}

func TestCreateRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	ctx := context.Background()
	spec := func(addr string) provider.CreateSpec {
		id := uuid.NewString()
		return provider.CreateSpec{HostID: id, Name: provider.InstanceName(id), Address: addr}
	}
	for _, addr := range []string{"", "10.250.0.2", "10.250.0.2:0", "10.250.0.2:99999"} {
		if _, err := p.Create(ctx, spec(addr)); errkind.Of(err) != errkind.Invalid {
			t.Fatalf("address %q: got %v, want an invalid error", addr, err)
		}
	}
	first := spec("10.250.0.2:22")
	if _, err := p.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	_, err := p.Create(ctx, spec("10.250.0.2:22"))
	if errkind.Of(err) != errkind.Invalid || !strings.Contains(err.Error(), "already adopted as "+first.Name) {
		t.Fatalf("a second host on one machine: %v", err)
	}
	gpu := spec("10.250.0.3:22")
	gpu.GPUModel = "l4"
	if _, err := p.Create(ctx, gpu); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("asking an adopted machine for a GPU: %v", err)
	}
	if _, err := sshprov.New(provider.Config{Deployment: "d", State: e.st.ProviderState(), Options: map[string]string{sshprov.OptionConnectWait: "soon"}}); err == nil {
		t.Fatal("a bad connect_wait must be refused")
	}
}

// A machine that no longer answers cannot be deleted (its agent would
// stay), but it can be forgotten; the error says so.
func TestDeleteUnreachableSaysForget(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, map[string]string{sshprov.OptionConnectWait: "2s"})
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	ctx := context.Background()
	id := uuid.NewString()
	inst, err := p.Create(ctx, provider.CreateSpec{HostID: id, Name: provider.InstanceName(id), Address: vm.Addr + ":2222", SSHUser: "root"})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Delete(ctx, inst.Ref(id), false)
	if err == nil || !strings.Contains(err.Error(), "cannot reach SSH") || !strings.Contains(err.Error(), "delete --forget") {
		t.Fatalf("delete of an unreachable machine: %v", err)
	}
	if _, err := p.Status(ctx, inst.Ref(id)); err != nil {
		t.Fatalf("a failed delete must keep the record: %v", err)
	}
	if err := p.(interface {
		Forget(context.Context, provider.Ref) error
	}).Forget(ctx, inst.Ref(id)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Status(ctx, inst.Ref(id)); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("after forget: %v", err)
	}
}
