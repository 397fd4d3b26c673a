package hosts_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

// On a cloud whose names are not unique, a Create that made the VM but
// returned an error is retried without making a second VM: the retry
// finds the first by its host label and keeps its id. Every Create of
// this sim fails after making its VM, so without the lookup each of the
// three attempts makes one more VM and the action never succeeds.
func TestRetriedCreateMakesNoDuplicate(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	svc := hosts.New(st, configured{"sim": openSim(t, st, map[string]string{"duplicate_names": "true", "create_ghost_rate": "1"})})
	svc.MaxAttempts = 3
	sub, err := svc.Create(ctx, hosts.CreateRequest{Name: "dup", Owner: "a", Provider: "sim", Region: "sim-east1",
		Spec: model.HostSpec{MachineType: "sim-small"}})
	if err != nil {
		t.Fatal(err)
	}
	w := queue.NewWorker(st, svc)
	w.Idle, w.BaseBackoff, w.MaxBackoff = time.Millisecond, time.Millisecond, time.Millisecond
	if err := w.Run(ctx, true); err != nil {
		t.Fatal(err)
	}
	h, _ := st.GetHost(ctx, sub.Host.ID)
	job, _ := st.GetJob(ctx, sub.Job.ID)
	if h.Status != model.StatusRunning || job.State != model.JobDone || job.Attempts != 2 {
		t.Fatalf("host %s (%s), job %s after %d attempts; want running, done after 2", h.Status, h.LastError, job.State, job.Attempts)
	}
	recs, _ := sim.Records(ctx, st.ProviderState())
	var mine []sim.Record
	for _, r := range recs {
		if r.Labels[provider.LabelHost] == h.ID {
			mine = append(mine, r)
		}
	}
	if len(mine) != 1 || h.Runtime.InstanceID != mine[0].ID {
		t.Fatalf("host %s keeps instance %q; the cloud has %d VMs labelled with it: %+v", h.ID, h.Runtime.InstanceID, len(mine), mine)
	}
}
