package reconcile_test

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/providers/sim"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const deployment = "test-deployment"

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// env is one control plane: a real store and a sim cloud kept in it.
type env struct {
	t   *testing.T
	ctx context.Context
	s   *store.SQLStore
	p   *sim.Provider
}

// eachBackend runs fn on each store backend with a fresh sim cloud.
func eachBackend(t *testing.T, fn func(e *env)) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		e := &env{t: t, ctx: context.Background(), s: s}
		e.p = e.sim(nil)
		fn(e)
	})
}

func (e *env) sim(opts map[string]string) *sim.Provider {
	e.t.Helper()
	p, err := sim.New(provider.Config{Deployment: deployment, State: e.s.ProviderState(), Options: opts})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func createSpec(hostID string) provider.CreateSpec {
	return provider.CreateSpec{
		HostID: hostID, Name: provider.InstanceName(hostID), Region: "sim-east1", MachineType: "sim-small", DiskGB: 10,
		Labels: map[string]string{provider.LabelDeployment: deployment, provider.LabelHost: hostID},
	}
}

// host stores a host row and, with vm, its running VM, as a finished
// create job would have left them.
func (e *env) host(name string, vm bool) model.Host {
	e.t.Helper()
	h := model.Host{
		ID: uuid.NewString(), Name: name, Owner: "alice", Provider: "sim", Region: "sim-east1",
		Status: model.StatusRunning, Spec: model.HostSpec{MachineType: "sim-small", DiskGB: 10},
		LastAction: "create", CreatedAt: t0, UpdatedAt: t0,
	}
	if vm {
		in, err := e.p.Create(e.ctx, createSpec(h.ID))
		if err != nil {
			e.t.Fatal(err)
		}
		h.Zone = in.Zone
		h.Runtime = model.Runtime{InstanceID: in.ID, PublicIP: in.PublicIP, PrivateIP: in.PrivateIP, DataDisk: in.DataDisk, Meta: in.Meta}
	}
	if err := e.s.CreateHost(e.ctx, h); err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *env) get(id string) model.Host {
	e.t.Helper()
	h, err := e.s.GetHost(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *env) enqueue(hostID string, a model.Action) {
	e.t.Helper()
	_, _, err := e.s.EnqueueJob(e.ctx, model.Job{ID: uuid.NewString(), Subject: model.HostSubject(hostID), Action: a, MaxAttempts: 3, RunAfter: t0, CreatedAt: t0})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) ref(h model.Host) provider.Ref {
	return provider.Ref{HostID: h.ID, Name: provider.InstanceName(h.ID), InstanceID: h.Runtime.InstanceID}
}

// pass runs one reconcile pass at t0+n minutes with the env's sim.
func (e *env) pass(n int, mod func(*reconcile.Options)) reconcile.ProviderReport {
	e.t.Helper()
	o := reconcile.Options{
		Store: e.s, Providers: map[string]provider.Provider{"sim": e.p},
		Now: func() time.Time { return t0.Add(time.Duration(n) * time.Minute) },
	}
	if mod != nil {
		mod(&o)
	}
	rep, err := reconcile.Run(e.ctx, o)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(rep.Providers) != 1 {
		e.t.Fatalf("%d provider reports", len(rep.Providers))
	}
	return rep.Providers[0]
}

func (e *env) logs(hostID string) []model.LogEntry {
	e.t.Helper()
	l, err := e.s.ListLog(e.ctx, store.LogFilter{HostID: hostID})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// snapshot is everything a pass could change: hosts, jobs, the log and
// the simulated cloud.
func (e *env) snapshot() string {
	e.t.Helper()
	hosts, err1 := e.s.ListHosts(e.ctx, store.HostFilter{IncludeDeleted: true})
	jobs, err2 := e.s.ListJobs(e.ctx, store.JobFilter{})
	logs, err3 := e.s.ListLog(e.ctx, store.LogFilter{})
	cloud, err4 := e.s.ProviderState().List(e.ctx, sim.Name) // its VMs and kept disks
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			e.t.Fatal(err)
		}
	}
	b, _ := json.Marshal([]any{hosts, jobs, logs, cloud})
	return string(b)
}

func TestMissingTakesTwoStrikes(t *testing.T) {
	eachBackend(t, func(e *env) {
		gone := e.host("gone", true)
		back := e.host("back", true)
		kept := e.host("kept", false) // deleted keeping its disk: off, no VM on purpose
		kept.Status, kept.Runtime = model.StatusOff, model.Runtime{DataDisk: "simdisk-1"}
		if err := e.s.UpdateHost(e.ctx, kept); err != nil {
			t.Fatal(err)
		}
		for _, h := range []model.Host{gone, back} {
			if err := e.p.Delete(e.ctx, e.ref(h), false); err != nil {
				t.Fatal(err)
			}
		}

		r1 := e.pass(1, nil)
		if r1.HostsChecked != 3 || len(r1.Missing) != 2 || len(r1.Updated) != 0 {
			t.Fatalf("pass 1: %+v", r1)
		}
		for _, m := range r1.Missing {
			if m.Strikes != 1 || m.Marked {
				t.Fatalf("first miss must only count: %+v", m)
			}
		}
		if g := e.get(gone.ID); g.Status != model.StatusRunning || g.MissingCount != 1 || len(e.logs(gone.ID)) != 0 {
			t.Fatalf("after one miss: %s, count %d, %d log rows", g.Status, g.MissingCount, len(e.logs(gone.ID)))
		}

		// The VM of "back" reappears (a flaky list, or someone recreated it).
		in, err := e.p.Create(e.ctx, createSpec(back.ID))
		if err != nil {
			t.Fatal(err)
		}

		r2 := e.pass(2, nil)
		if len(r2.Missing) != 1 || r2.Missing[0].HostID != gone.ID || r2.Missing[0].Strikes != 2 || !r2.Missing[0].Marked {
			t.Fatalf("pass 2 missing: %+v", r2.Missing)
		}
		g := e.get(gone.ID)
		if g.Status != model.StatusDeprovisioned || g.LastError != "VM not found at sim on 2 consecutive checks" ||
			g.Runtime.PublicIP != "" || g.DeletedAt != nil {
			t.Fatalf("after two misses: %+v", g)
		}
		logs := e.logs(gone.ID)
		if len(logs) != 1 || logs[0].Action != "reconcile" || logs[0].Status != "changed" ||
			logs[0].HostStatus != model.StatusDeprovisioned || logs[0].Provider != "sim" || logs[0].Error != g.LastError ||
			!logs[0].TS.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("log: %+v", logs)
		}
		b := e.get(back.ID)
		if b.MissingCount != 0 || b.Status != model.StatusRunning || b.Runtime.InstanceID != in.ID {
			t.Fatalf("a reappearing VM must reset the count: %+v", b)
		}
		if len(r2.Updated) != 1 || r2.Updated[0].HostID != back.ID || !contains(r2.Updated[0].Changes, "missing_count") {
			t.Fatalf("pass 2 updated: %+v", r2.Updated)
		}
		if k := e.get(kept.ID); k.MissingCount != 0 || k.Status != model.StatusOff {
			t.Fatalf("a host without a VM on purpose is not missing: %+v", k)
		}

		// A deprovisioned host is not checked again.
		r3 := e.pass(3, nil)
		if r3.HostsChecked != 2 || len(r3.Missing) != 0 || len(r3.Updated) != 0 {
			t.Fatalf("pass 3: %+v", r3)
		}
	})
}

func TestStrikesOption(t *testing.T) {
	eachBackend(t, func(e *env) {
		h := e.host("h", true)
		e.p.Delete(e.ctx, e.ref(h), false) //nolint:errcheck
		three := func(o *reconcile.Options) { o.Strikes = 3 }
		for i := 1; i <= 3; i++ {
			r := e.pass(i, three)
			if len(r.Missing) != 1 || r.Missing[0].Strikes != i || r.Missing[0].Marked != (i == 3) {
				t.Fatalf("pass %d: %+v", i, r.Missing)
			}
		}
		if got := e.get(h.ID); got.Status != model.StatusDeprovisioned {
			t.Fatalf("status %s", got.Status)
		}
	})
}

func TestStatusDrift(t *testing.T) {
	eachBackend(t, func(e *env) {
		h := e.host("h", true)
		steady := e.host("steady", true)
		if _, err := e.p.Stop(e.ctx, e.ref(h)); err != nil { // behind our back
			t.Fatal(err)
		}
		r := e.pass(1, nil)
		if r.HostsChecked != 2 || r.Instances != 2 || len(r.Updated) != 1 {
			t.Fatalf("pass: %+v", r)
		}
		u := r.Updated[0]
		if u.HostID != h.ID || u.Name != "h" || u.From != model.StatusRunning || u.To != model.StatusOff ||
			!reflect.DeepEqual(u.Changes, []string{"status", "public_ip", "private_ip"}) {
			t.Fatalf("update: %+v", u)
		}
		got := e.get(h.ID)
		if got.Status != model.StatusOff || got.Runtime.PublicIP != "" || !got.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("host: %+v", got)
		}
		logs := e.logs(h.ID)
		if len(logs) != 1 || logs[0].HostStatus != model.StatusOff || logs[0].Action != "reconcile" || logs[0].Status != "changed" ||
			!strings.Contains(logs[0].Error, "stopped") {
			t.Fatalf("log: %+v", logs)
		}
		var rt model.Runtime
		if err := json.Unmarshal(logs[0].Runtime, &rt); err != nil || rt.InstanceID != h.Runtime.InstanceID {
			t.Fatalf("logged runtime %s: %v", logs[0].Runtime, err)
		}
		if s := e.get(steady.ID); !s.UpdatedAt.Equal(t0) || len(e.logs(steady.ID)) != 0 {
			t.Fatalf("a host in line with its VM must not be written: %+v", s)
		}

		// A second pass finds nothing to do.
		if r := e.pass(2, nil); len(r.Updated) != 0 || len(r.Missing) != 0 {
			t.Fatalf("second pass: %+v", r)
		}
		// Started behind our back: running again, with addresses.
		in, err := e.p.Start(e.ctx, e.ref(h))
		if err != nil {
			t.Fatal(err)
		}
		if r := e.pass(3, nil); len(r.Updated) != 1 || r.Updated[0].To != model.StatusRunning {
			t.Fatalf("third pass: %+v", r)
		}
		if got := e.get(h.ID); got.Status != model.StatusRunning || got.Runtime.PublicIP != in.PublicIP || got.Runtime.PrivateIP != in.PrivateIP {
			t.Fatalf("host: %+v", got)
		}
	})
}

func TestPendingWorkIsSkipped(t *testing.T) {
	eachBackend(t, func(e *env) {
		stopping := e.host("stopping", true)
		deleting := e.host("deleting", true)
		if _, err := e.p.Stop(e.ctx, e.ref(stopping)); err != nil {
			t.Fatal(err)
		}
		if err := e.p.Delete(e.ctx, e.ref(deleting), false); err != nil {
			t.Fatal(err)
		}
		e.enqueue(stopping.ID, model.ActionStop)
		e.enqueue(deleting.ID, model.ActionDelete)
		before := e.snapshot()
		for i := 1; i <= 3; i++ {
			r := e.pass(i, nil)
			if r.SkippedPending != 2 || r.HostsChecked != 0 || len(r.Updated)+len(r.Missing)+len(r.Orphans) != 0 {
				t.Fatalf("pass %d: %+v", i, r)
			}
		}
		if after := e.snapshot(); after != before {
			t.Fatalf("hosts with pending work were changed:\nbefore %s\nafter  %s", before, after)
		}
	})
}

func TestFailedListChangesNothing(t *testing.T) {
	eachBackend(t, func(e *env) {
		a := e.host("a", true)
		b := e.host("b", true)
		e.p.Delete(e.ctx, e.ref(a), false) //nolint:errcheck
		e.p.Stop(e.ctx, e.ref(b))          //nolint:errcheck
		orphan := uuid.NewString()
		if _, err := e.p.Create(e.ctx, createSpec(orphan)); err != nil {
			t.Fatal(err)
		}
		before := e.snapshot()
		broken := e.sim(map[string]string{"error_rate": "1"})
		for i := 1; i <= 3; i++ { // more passes than strikes
			r := e.pass(i, func(o *reconcile.Options) {
				o.Providers = map[string]provider.Provider{"sim": broken}
				o.DeleteOrphans = true
			})
			if !strings.Contains(r.Error, "list instances") || !strings.Contains(r.Error, "503") ||
				r.HostsChecked != 0 || len(r.Updated)+len(r.Missing)+len(r.Orphans) != 0 {
				t.Fatalf("pass %d: %+v", i, r)
			}
		}
		if after := e.snapshot(); after != before {
			t.Fatalf("a failed List changed state:\nbefore %s\nafter  %s", before, after)
		}
	})
}

func TestOrphans(t *testing.T) {
	eachBackend(t, func(e *env) {
		ours := e.host("ours", true)
		// A VM whose host row never existed (a create that crashed after
		// the VM and before the row — or another control plane's bug).
		noRow := uuid.NewString()
		if _, err := e.p.Create(e.ctx, createSpec(noRow)); err != nil {
			t.Fatal(err)
		}
		// A VM of a deleted host.
		deleted := e.host("deleted", true)
		now := t0
		deleted.DeletedAt, deleted.Status = &now, model.StatusDeprovisioned
		if err := e.s.UpdateHost(e.ctx, deleted); err != nil {
			t.Fatal(err)
		}
		// A VM with our deployment label but no host at all.
		stray := provider.CreateSpec{Name: "stray-vm", Region: "sim-east1", Labels: map[string]string{provider.LabelDeployment: deployment}}
		if _, err := e.p.Create(e.ctx, stray); err != nil {
			t.Fatal(err)
		}
		// A deleted host whose delete job is still running: its VM is the
		// job's business (it may be keeping the disk), not an orphan.
		busy := e.host("busy", true)
		busy.DeletedAt = &now
		if err := e.s.UpdateHost(e.ctx, busy); err != nil {
			t.Fatal(err)
		}
		e.enqueue(busy.ID, model.ActionDelete)
		// A live host marked deprovisioned whose VM shows up again.
		zombie := e.host("zombie", true)
		zombie.Status = model.StatusDeprovisioned
		if err := e.s.UpdateHost(e.ctx, zombie); err != nil {
			t.Fatal(err)
		}
		// Another deployment's VM in the same cloud is none of our business.
		other, err := sim.New(provider.Config{Deployment: "other", State: e.s.ProviderState()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Create(e.ctx, createSpec(uuid.NewString())); err != nil {
			t.Fatal(err)
		}

		wantNames := []string{provider.InstanceName(deleted.ID), provider.InstanceName(noRow), "stray-vm"}
		sort.Strings(wantNames)
		orphanNames := func(r reconcile.ProviderReport) []string {
			var out []string
			for _, o := range r.Orphans {
				out = append(out, o.Name)
			}
			return out
		}

		r := e.pass(1, nil)
		if !reflect.DeepEqual(orphanNames(r), wantNames) {
			t.Fatalf("orphans %v, want %v", orphanNames(r), wantNames)
		}
		for _, o := range r.Orphans {
			if o.Deleted || o.Provider != "sim" || o.InstanceID == "" || o.Labels[provider.LabelDeployment] != deployment {
				t.Fatalf("orphan without --delete-orphans: %+v", o)
			}
			if o.Name == provider.InstanceName(noRow) && o.HostID != noRow {
				t.Fatalf("orphan host id: %+v", o)
			}
		}
		if len(r.Unexpected) != 1 || r.Unexpected[0].HostID != zombie.ID || r.Unexpected[0].Reason != "host_deprovisioned" {
			t.Fatalf("unexpected: %+v", r.Unexpected)
		}
		if recs, _ := sim.Records(e.ctx, e.s.ProviderState()); len(recs) != 7 {
			t.Fatalf("nothing may be deleted without DeleteOrphans: %d VMs", len(recs))
		}

		r = e.pass(2, func(o *reconcile.Options) { o.DeleteOrphans = true })
		if !reflect.DeepEqual(orphanNames(r), wantNames) {
			t.Fatalf("orphans %v, want %v", orphanNames(r), wantNames)
		}
		for _, o := range r.Orphans {
			if !o.Deleted || o.Error != "" {
				t.Fatalf("orphan with DeleteOrphans: %+v", o)
			}
		}
		recs, _ := sim.Records(e.ctx, e.s.ProviderState())
		for _, n := range wantNames {
			if _, ok := recs[n]; ok {
				t.Fatalf("orphan %s still exists", n)
			}
		}
		for _, h := range []model.Host{ours, busy, zombie} {
			if _, ok := recs[provider.InstanceName(h.ID)]; !ok {
				t.Fatalf("the VM of %s was deleted", h.Name)
			}
		}
		if len(recs) != 4 {
			t.Fatalf("%d VMs left, want 4 (ours, busy, zombie, other deployment)", len(recs))
		}
		if r := e.pass(3, func(o *reconcile.Options) { o.DeleteOrphans = true }); len(r.Orphans) != 0 {
			t.Fatalf("orphans after deleting them: %+v", r.Orphans)
		}
	})
}

func TestDryRunChangesNothing(t *testing.T) {
	eachBackend(t, func(e *env) {
		drift := e.host("drift", true)
		gone := e.host("gone", true)
		e.p.Stop(e.ctx, e.ref(drift))         //nolint:errcheck
		e.p.Delete(e.ctx, e.ref(gone), false) //nolint:errcheck
		gone.MissingCount = 1                 // one strike already: this pass would mark it
		if err := e.s.UpdateHost(e.ctx, gone); err != nil {
			t.Fatal(err)
		}
		orphan := uuid.NewString()
		if _, err := e.p.Create(e.ctx, createSpec(orphan)); err != nil {
			t.Fatal(err)
		}
		before := e.snapshot()
		dry := e.pass(1, func(o *reconcile.Options) { o.DryRun, o.DeleteOrphans = true, true })
		if after := e.snapshot(); after != before {
			t.Fatalf("dry run changed state:\nbefore %s\nafter  %s", before, after)
		}
		if len(dry.Updated) != 1 || dry.Updated[0].To != model.StatusOff ||
			len(dry.Missing) != 1 || !dry.Missing[0].Marked || dry.Missing[0].Strikes != 2 ||
			len(dry.Orphans) != 1 || dry.Orphans[0].Deleted {
			t.Fatalf("dry run report: %+v", dry)
		}
		// The real pass does what the dry run said it would.
		real := e.pass(1, func(o *reconcile.Options) { o.DeleteOrphans = true })
		if !reflect.DeepEqual(real.Updated, dry.Updated) || !reflect.DeepEqual(real.Missing, dry.Missing) ||
			len(real.Orphans) != 1 || !real.Orphans[0].Deleted || real.Orphans[0].InstanceID != dry.Orphans[0].InstanceID {
			t.Fatalf("real pass differs from the dry run:\ndry  %+v\nreal %+v", dry, real)
		}
	})
}

// racingStore plays a queue worker that finishes a job on a host right
// after reconcile listed the hosts, as can happen in production.
type racingStore struct {
	store.Store
	race func()
}

func (r *racingStore) ListJobs(ctx context.Context, f store.JobFilter) ([]model.Job, error) {
	if r.race != nil && f.Subject.ID == "" {
		r.race()
		r.race = nil
	}
	return r.Store.ListJobs(ctx, f)
}

func TestNewerRowIsNotOverwritten(t *testing.T) {
	eachBackend(t, func(e *env) {
		h := e.host("h", true)
		e.p.Stop(e.ctx, e.ref(h)) //nolint:errcheck
		rs := &racingStore{Store: e.s, race: func() {
			// The worker's stop job finished: host off, stamped later.
			w := e.get(h.ID)
			w.Status, w.LastAction, w.UpdatedAt = model.StatusOff, "stop", t0.Add(30*time.Second)
			w.Runtime.PublicIP = ""
			if err := e.s.UpdateHost(e.ctx, w); err != nil {
				t.Fatal(err)
			}
		}}
		r := e.pass(1, func(o *reconcile.Options) { o.Store = rs })
		if r.SkippedChanged != 1 || len(r.Updated) != 0 {
			t.Fatalf("report: %+v", r)
		}
		if got := e.get(h.ID); got.LastAction != "stop" || !got.UpdatedAt.Equal(t0.Add(30*time.Second)) || len(e.logs(h.ID)) != 0 {
			t.Fatalf("the worker's row was overwritten: %+v", got)
		}
	})
}

func TestReportJSON(t *testing.T) {
	eachBackend(t, func(e *env) {
		h := e.host("h", true)
		e.p.Delete(e.ctx, e.ref(h), false) //nolint:errcheck
		rep, err := reconcile.Run(e.ctx, reconcile.Options{
			Store: e.s, Providers: map[string]provider.Provider{"sim": e.p, "zzz-broken": e.sim(map[string]string{"error_rate": "1"})},
			Now: func() time.Time { return t0 },
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var generic struct {
			DryRun    *bool            `json:"dry_run"`
			CheckedAt string           `json:"checked_at"`
			Providers []map[string]any `json:"providers"`
		}
		if err := json.Unmarshal(b, &generic); err != nil {
			t.Fatal(err)
		}
		if generic.DryRun == nil || generic.CheckedAt != "2026-11-01T12:00:00Z" || len(generic.Providers) != 2 {
			t.Fatalf("report %s", b)
		}
		if generic.Providers[0]["provider"] != "sim" || generic.Providers[1]["provider"] != "zzz-broken" {
			t.Fatalf("providers must be sorted by name: %s", b)
		}
		for _, k := range []string{"provider", "instances", "hosts_checked", "skipped_pending", "skipped_changed",
			"updated", "missing", "orphans", "unexpected", "error"} {
			for i, p := range generic.Providers {
				if _, ok := p[k]; !ok {
					t.Fatalf("provider %d lacks %q: %s", i, k, b)
				}
			}
		}
		if !strings.Contains(string(b), `"missing":[{"host_id":"`+h.ID+`","name":"h","strikes":1,"marked":false}]`) {
			t.Fatalf("missing entry: %s", b)
		}
		if !strings.Contains(string(b), `"updated":[]`) || !strings.Contains(string(b), `"orphans":[]`) {
			t.Fatalf("empty lists must be [] not null: %s", b)
		}
	})
}

func TestBadOptions(t *testing.T) {
	if _, err := reconcile.Run(context.Background(), reconcile.Options{}); err == nil {
		t.Fatal("no store: want an error")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
