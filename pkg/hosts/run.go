package hosts

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/telemetry"
)

// transitional is the status a host shows while an action runs.
var transitional = map[model.Action]model.Status{
	model.ActionCreate: model.StatusProvisioning,
	model.ActionStart:  model.StatusStarting,
	model.ActionStop:   model.StatusStopping,
	model.ActionDelete: model.StatusDeprovisioning,
}

// Run executes one attempt of job. Every step is idempotent, so a job taken
// over from a crashed worker simply runs again.
func (s *Service) Run(ctx context.Context, job model.Job, progress func(string)) (queue.Result, error) {
	h, err := s.Store.GetHost(ctx, job.Subject.ID)
	if err != nil {
		return queue.Result{}, fmt.Errorf("%s: %w", job.Action, err)
	}
	p, err := s.Providers.Get(ctx, h.Provider)
	if err != nil {
		return queue.Result{}, err
	}
	if st, ok := transitional[job.Action]; ok && h.Status != st {
		h.Status, h.LastAction, h.UpdatedAt = st, string(job.Action), s.Now()
		if err := s.Store.UpdateHost(ctx, h); err != nil {
			return queue.Result{}, err
		}
	}
	ref := refOf(h)
	var inst provider.Instance
	pricing := ""
	switch job.Action {
	case model.ActionCreate:
		var pl createPayload
		json.Unmarshal(job.Payload, &pl) //nolint:errcheck // written by us
		pricing = pl.PricingVersion
		progress(fmt.Sprintf("creating %s instance %s (%s in %s)", p.Name(), provider.InstanceName(h.ID), h.Spec.MachineType, h.Region))
		var earlier bool
		cctx, end := telemetry.Start(ctx, "cloud create", attribute.String("provider", p.Name()))
		inst, earlier, err = s.earlierInstance(cctx, p, h, job.Attempts)
		if earlier {
			progress(fmt.Sprintf("instance %s (%s) made by an earlier attempt found", inst.Name, inst.ID))
		} else if err == nil {
			p, inst, err = s.createWithFallback(cctx, p, &h, &pl, progress)
		}
		end(err)
		pricing = pl.PricingVersion
		if err == nil && (inst.State != provider.StateRunning || p.Capabilities().Bootstrap) {
			// A wait or a bootstrap follows, either of which may fail.
			err = s.saveInstanceID(ctx, &h, inst)
		}
		if err == nil {
			inst, err = s.waitFor(ctx, p, inst, h.ID, provider.StateRunning, progress)
		}
		if err == nil {
			inst, err = s.bootstrapInstance(ctx, p, &h, inst, job.ID, false, progress)
		}
	case model.ActionStart:
		progress(fmt.Sprintf("starting %s", h.Name))
		inst, err = p.Status(ctx, ref)
		switch {
		case errkind.Is(err, errkind.NotFound) || (err == nil && inst.State == provider.StateTerminated):
			// The VM was deleted keeping its disk: make it again.
			progress("no VM: creating it again with the kept data disk")
			inst, err = s.createInstance(ctx, p, h)
		case err == nil && inst.State != provider.StateRunning:
			inst, err = p.Start(ctx, inst.Ref(h.ID))
		}
		if err == nil {
			inst, err = s.waitFor(ctx, p, inst, h.ID, provider.StateRunning, progress)
		}
		if err == nil {
			inst, err = s.bootstrapInstance(ctx, p, &h, inst, job.ID, false, progress)
		}
	case model.ActionUpgrade:
		progress(fmt.Sprintf("upgrading the agent of %s", h.Name))
		inst, err = p.Status(ctx, ref)
		if err == nil {
			inst, err = s.bootstrapInstance(ctx, p, &h, inst, job.ID, true, progress)
		}
	case model.ActionStop:
		progress(fmt.Sprintf("stopping %s", h.Name))
		inst, err = p.Stop(ctx, ref)
		if err == nil {
			inst, err = s.waitFor(ctx, p, inst, h.ID, provider.StateStopped, progress)
		}
	case model.ActionDelete:
		var pl deletePayload
		json.Unmarshal(job.Payload, &pl) //nolint:errcheck
		progress(fmt.Sprintf("deleting %s (keep data disk: %v)", h.Name, pl.KeepDisk))
		err = s.deleteInstance(ctx, p, h, ref, pl)
		if err == nil {
			h.Runtime.InstanceID = ""
			inst = provider.Instance{State: provider.StateTerminated}
			if pl.KeepDisk && p.Capabilities().PersistentDisk {
				inst.State = provider.StateStopped
				inst.DataDisk = h.Runtime.DataDisk
			}
		}
	case model.ActionResize:
		var pl resizePayload
		json.Unmarshal(job.Payload, &pl) //nolint:errcheck
		r, ok := p.(provider.DiskResizer)
		if !ok {
			return queue.Result{}, provider.Errorf(errkind.Refused, p.Name(), "resize", "cannot resize disks")
		}
		progress(fmt.Sprintf("growing the data disk of %s to %d GB", h.Name, pl.DiskGB))
		inst, err = r.ResizeDisk(ctx, ref, pl.DiskGB)
		if err == nil {
			h.Spec.DiskGB = pl.DiskGB
		}
	case model.ActionRefresh:
		inst, err = p.Status(ctx, ref)
		if errkind.Is(err, errkind.NotFound) {
			// One look is not proof: reconcile decides after two strikes.
			return queue.Result{}, fmt.Errorf("refresh %s: %w", h.Name, err)
		}
	default:
		return queue.Result{}, provider.Errorf(errkind.Invalid, p.Name(), string(job.Action), "unknown action")
	}
	if err != nil {
		return queue.Result{}, err
	}
	now := s.Now()
	h.Status = StatusFromState(inst.State)
	applyRuntime(&h, inst)
	h.LastAction, h.LastError, h.UpdatedAt, h.MissingCount = string(job.Action), "", now, 0
	if h.Status == model.StatusDeprovisioned {
		h.DeletedAt = &now
		h.Runtime = model.Runtime{}
	}
	s.SyncDNS(ctx, &h, progress)
	return s.result(job, h, "done", "", pricing), nil
}

// Failed records a failed attempt. A failed refresh changes no status: an
// API error says nothing about the VM.
func (s *Service) Failed(ctx context.Context, job model.Job, err error, final bool) queue.Result {
	h, gerr := s.Store.GetHost(ctx, job.Subject.ID)
	if gerr != nil {
		return queue.Result{}
	}
	status := "retry"
	msg := fmt.Sprintf("attempt %d of %d failed, will retry: %v", job.Attempts, job.MaxAttempts, err)
	if final {
		status = "failed"
		msg = err.Error()
		if job.Action != model.ActionRefresh {
			h.Status = model.StatusError
		}
	}
	h.LastAction, h.LastError, h.UpdatedAt = string(job.Action), msg, s.Now()
	return s.result(job, h, status, err.Error(), "")
}

// result is what an attempt commits with the job: the host's new row and
// its cloud_vm_log entry.
func (s *Service) result(job model.Job, h model.Host, status, errMsg, pricing string) queue.Result {
	spec, _ := json.Marshal(h.Spec)
	rt, _ := json.Marshal(h.Runtime)
	return queue.Result{Writes: []store.Write{store.HostWrite{Host: h}, store.LogWrite{Entry: model.LogEntry{
		HostID: h.ID, JobID: job.ID, TS: s.Now(), Action: string(job.Action), Status: status, Provider: h.Provider,
		Spec: spec, Runtime: rt, Error: errMsg, PricingVersion: pricing, HostStatus: h.Status,
	}}}}
}

func (s *Service) createInstance(ctx context.Context, p provider.Provider, h model.Host) (provider.Instance, error) {
	dep := ""
	if d, err := s.Store.Deployment(ctx); err == nil {
		dep = d
	} else {
		return provider.Instance{}, err
	}
	spec := provider.CreateSpec{
		HostID: h.ID, Name: provider.InstanceName(h.ID), Region: h.Region, Zone: h.Zone,
		MachineType: h.Spec.MachineType, DiskGB: h.Spec.DiskGB, GPUModel: h.Spec.GPUModel, GPUCount: h.Spec.GPUCount,
		Image: h.Spec.Image, Spot: h.Spec.Spot,
		Labels: map[string]string{provider.LabelDeployment: dep, provider.LabelHost: h.ID},
	}
	if err := s.prepareBootstrap(ctx, p, h, &spec); err != nil {
		return provider.Instance{}, err
	}
	return p.Create(ctx, spec)
}

// earlierInstance finds the VM an earlier attempt of this create made,
// when there may be one: an attempt that was killed, or whose Create
// reached the cloud but failed (a lost reply, an error returned for a VM
// made anyway). On clouds whose names are not unique (Lambda, Hyperstack,
// the sim's duplicate_names) a second Create would make a second VM. It
// looks by the instance id kept on the host, else for the host label the
// control plane puts on every VM among the provider's instances. A first
// attempt of a host without an instance skips it: nothing has made a VM
// for it yet, and a List per create would cost a call over the whole fleet.
func (s *Service) earlierInstance(ctx context.Context, p provider.Provider, h model.Host, attempt int) (provider.Instance, bool, error) {
	if attempt <= 1 && h.Runtime.InstanceID == "" {
		return provider.Instance{}, false, nil
	}
	live := func(in provider.Instance) bool {
		return in.State != provider.StateTerminated && in.State != provider.StateTerminating
	}
	if h.Runtime.InstanceID != "" {
		inst, err := p.Status(ctx, refOf(h))
		switch {
		case err == nil && live(inst):
			return inst, true, nil
		case err != nil && !errkind.Is(err, errkind.NotFound):
			return inst, false, fmt.Errorf("look for the instance of an earlier attempt: %w", err)
		}
	}
	all, err := p.List(ctx)
	if err != nil {
		return provider.Instance{}, false, fmt.Errorf("look for the instance of an earlier attempt: %w", err)
	}
	for _, in := range all {
		if (in.HostID == h.ID || in.Labels[provider.LabelHost] == h.ID) && live(in) {
			return in, true, nil
		}
	}
	return provider.Instance{}, false, nil
}

// saveInstanceID writes the id of the instance just created to the host
// at once, before waiting for it: if the wait or the bootstrap fails,
// the retry and reconcile find the instance by this id rather than by
// what a list reply calls it. An instance running at once on a cloud
// without bootstrap needs no early write: the attempt's result, committed
// next, records the id (and a retry after a lost commit finds the
// instance by its host label, as after any lost reply).
func (s *Service) saveInstanceID(ctx context.Context, h *model.Host, inst provider.Instance) error {
	if inst.ID == "" || inst.ID == h.Runtime.InstanceID {
		return nil
	}
	h.Runtime.InstanceID, h.UpdatedAt = inst.ID, s.Now()
	return s.Store.UpdateHost(ctx, *h)
}

// waitFor polls until the instance reaches want, the VM fails, or the
// ready timeout passes. An instance already in want (as the provider's
// reply to the action said) needs no call.
func (s *Service) waitFor(ctx context.Context, p provider.Provider, inst provider.Instance, hostID string, want provider.State, progress func(string)) (_ provider.Instance, err error) {
	ctx, end := telemetry.Start(ctx, "wait "+string(want), attribute.String("provider", p.Name()))
	defer func() { end(err) }()
	if inst.State == want {
		return inst, nil
	}
	ref := inst.Ref(hostID)
	deadline := s.Now().Add(s.ReadyTimeout)
	last := provider.State("")
	for {
		inst, err := p.Status(ctx, ref)
		if err != nil {
			return inst, err
		}
		if inst.State == want {
			return inst, nil
		}
		if inst.State == provider.StateError {
			return inst, provider.Errorf(errkind.Transient, p.Name(), "wait", "instance %s is in error state", ref.Name)
		}
		if inst.State != last {
			progress(fmt.Sprintf("instance %s is %s, waiting for %s", ref.Name, inst.State, want))
			last = inst.State
		}
		if s.Now().After(deadline) {
			return inst, provider.Errorf(errkind.Transient, p.Name(), "wait", "instance %s still %s after %s", ref.Name, inst.State, s.ReadyTimeout)
		}
		t := time.NewTimer(s.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return inst, ctx.Err()
		case <-t.C:
		}
	}
}

func refOf(h model.Host) provider.Ref {
	return provider.Ref{HostID: h.ID, Name: provider.InstanceName(h.ID), InstanceID: h.Runtime.InstanceID,
		Region: h.Region, Zone: h.Zone, Meta: h.Runtime.Meta}
}

func applyRuntime(h *model.Host, inst provider.Instance) {
	if inst.ID != "" {
		h.Runtime.InstanceID = inst.ID
	}
	if inst.State == provider.StateStopped || inst.State == provider.StateTerminated {
		h.Runtime.PublicIP, h.Runtime.PrivateIP = "", ""
	} else {
		h.Runtime.PublicIP, h.Runtime.PrivateIP = inst.PublicIP, inst.PrivateIP
	}
	if inst.DataDisk != "" {
		h.Runtime.DataDisk = inst.DataDisk
	}
	if inst.DiskGB > 0 {
		// The size the provider made is the one shown and billed (a
		// spec without --disk gets the provider's default).
		h.Spec.DiskGB = inst.DiskGB
	}
	if inst.Meta != nil {
		h.Runtime.Meta = inst.Meta
	}
	if inst.Zone != "" {
		h.Zone = inst.Zone
	}
}
