package main

import (
	"context"
	"path/filepath"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Commands that change the simulated cloud behind cocalc-hosts' back, the
// way a user clicking in a cloud console would.

// scriptStore opens the state database the script's CLI uses.
func scriptStore(ts *testscript.TestScript) *store.SQLStore {
	dsn := ts.Getenv("PGURL")
	if dsn == "" {
		dsn = filepath.Join(ts.Getenv("XDG_STATE_HOME"), "cocalc-hosts", "state.db")
	}
	st, err := store.Open(context.Background(), dsn, store.Options{})
	ts.Check(err)
	return st
}

func scriptSim(ts *testscript.TestScript, st *store.SQLStore) provider.Provider {
	dep, err := st.Deployment(context.Background())
	ts.Check(err)
	p, err := provider.Open("sim", provider.Config{Deployment: dep, State: st.ProviderState()})
	ts.Check(err)
	return p
}

// cmdSimOrphan makes a sim VM with this deployment's label but no host:
// sim-orphan NAME
func cmdSimOrphan(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sim-orphan NAME")
	}
	st := scriptStore(ts)
	defer st.Close()
	dep, _ := st.Deployment(context.Background())
	_, err := scriptSim(ts, st).Create(context.Background(), provider.CreateSpec{
		HostID: "00000000-0000-0000-0000-00000000dead", Name: args[0], Region: "sim-east1", MachineType: "sim-small",
		Labels: map[string]string{provider.LabelDeployment: dep},
	})
	ts.Check(err)
}

// cmdSimVanish deletes a host's VM at the sim provider: sim-vanish HOST
func cmdSimVanish(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sim-vanish HOST")
	}
	st := scriptStore(ts)
	defer st.Close()
	h, err := st.GetHost(context.Background(), args[0])
	ts.Check(err)
	ts.Check(scriptSim(ts, st).Delete(context.Background(), provider.Ref{HostID: h.ID, Name: provider.InstanceName(h.ID)}, false))
}

// cmdSimStop stops a host's VM at the sim provider: sim-stop HOST
func cmdSimStop(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sim-stop HOST")
	}
	st := scriptStore(ts)
	defer st.Close()
	h, err := st.GetHost(context.Background(), args[0])
	ts.Check(err)
	_, err = scriptSim(ts, st).Stop(context.Background(), provider.Ref{HostID: h.ID, Name: provider.InstanceName(h.ID)})
	ts.Check(err)
}
