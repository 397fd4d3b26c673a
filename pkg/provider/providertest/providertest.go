// Package providertest is the contract every provider must meet. Each
// provider package calls Run from its tests, so the queue, the reconcile
// loop and the CLI can rely on the same behaviour from all of them.
//
// The suite speaks only through the public interface (provider.Provider,
// provider.DiskResizer, Capabilities). It waits for states by polling
// Status until a deadline, never by sleeping a fixed time, because real
// clouds take anywhere from seconds to minutes.
//
// Decisions the suite pins down:
//   - Create with the name of an existing instance returns that instance
//     (same ID); it never makes a second one.
//   - Stop, Start and Delete of an instance already in the wanted state
//     succeed. A second Delete of a gone instance may return nil or a
//     KindNotFound error; callers must treat NotFound from Delete as done.
//   - Status of an instance that does not exist is a KindNotFound error.
//   - Providers whose Capabilities().Stop is StopNone return a
//     KindUnsupported error from Stop.
//   - With PersistentDisk, Delete(keepDisk=true) leaves the data disk, and
//     a later Create with the same name attaches it again (same DataDisk,
//     when the provider reports one).
package providertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
)

// Options tune Run for one provider.
type Options struct {
	// Spec is the base of every instance the suite creates: set the
	// region, zone and machine type the provider should use. The suite
	// fills in HostID, Name and the host label.
	Spec provider.CreateSpec
	// Deployment is the deployment the provider was opened with. When
	// set, listed instances must carry it as their deployment label, and
	// the suite puts it on the spec the way the control plane does.
	Deployment string
	// Timeout bounds each wait for a state. Zero means 5 minutes, enough
	// for a real cloud; simulated providers reach states sooner and the
	// suite moves on as soon as they do.
	Timeout time.Duration
	// PollInterval is the time between Status calls while waiting. Zero
	// means 100ms.
	PollInterval time.Duration
	// ResizeToGB is the size the resize step grows the disk to. Zero
	// means Spec.DiskGB + 10 (Spec.DiskGB counts as 10 when unset).
	ResizeToGB int
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.ResizeToGB <= 0 {
		base := o.Spec.DiskGB
		if base <= 0 {
			base = 10
		}
		o.ResizeToGB = base + 10
	}
	return o
}

// Run checks p's contract with default options.
func Run(t *testing.T, open func(t *testing.T) provider.Provider) {
	RunWithOptions(t, Options{}, open)
}

// RunWithOptions checks the contract of the provider open returns. open
// is called once; the provider must start without instances of the
// suite's (random) host ids.
func RunWithOptions(t *testing.T, o Options, open func(t *testing.T) provider.Provider) {
	o = o.withDefaults()
	p := open(t)
	s := &suite{p: p, o: o, caps: p.Capabilities(), created: map[string]bool{}}
	t.Cleanup(func() { s.cleanup(t) })

	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"capabilities", s.testCapabilities},
		{"catalog", s.testCatalog},
		{"status_unknown_is_not_found", s.testStatusUnknown},
		{"create", s.testCreate},
		{"create_is_idempotent", s.testCreateIdempotent},
		{"list", s.testList},
		{"stop", s.testStop},
		{"start", s.testStart},
		{"resize_disk", s.testResize},
		{"delete", s.testDelete},
		{"delete_is_idempotent", s.testDeleteAgain},
		{"delete_keep_disk", s.testDeleteKeepDisk},
	}
	for _, st := range steps {
		// Later steps build on earlier ones (the same instance goes
		// through its life), so the first failure ends the run.
		if !t.Run(st.name, st.fn) {
			t.Errorf("contract step %s failed; skipping the rest", st.name)
			return
		}
	}
}

type suite struct {
	p    provider.Provider
	o    Options
	caps provider.Capabilities

	hostID string
	spec   provider.CreateSpec
	inst   provider.Instance
	// created remembers instance names to delete at the end, so a failed
	// run against a real cloud does not leave VMs behind.
	created map[string]bool
}

func (s *suite) newSpec() (string, provider.CreateSpec) {
	hostID := uuid.NewString() // the form the control plane uses
	spec := s.o.Spec
	spec.HostID = hostID
	spec.Name = provider.InstanceName(hostID)
	spec.Labels = map[string]string{}
	for k, v := range s.o.Spec.Labels {
		spec.Labels[k] = v
	}
	spec.Labels[provider.LabelHost] = hostID
	if s.o.Deployment != "" {
		spec.Labels[provider.LabelDeployment] = s.o.Deployment
	}
	return hostID, spec
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) testCapabilities(t *testing.T) {
	switch s.caps.Stop {
	case provider.StopReal, provider.StopHibernate, provider.StopNone:
	default:
		t.Fatalf("Capabilities().Stop = %q, want one of %q, %q, %q", s.caps.Stop, provider.StopReal, provider.StopHibernate, provider.StopNone)
	}
	_, resizes := s.p.(provider.DiskResizer)
	_, checks := s.p.(provider.CredentialChecker)
	_, purges := s.p.(provider.Purger)
	_, forgets := s.p.(provider.Forgetter)
	_, usesSSH := s.p.(interface{ UseSSH(*sshpool.Pool) })
	for _, c := range []struct {
		field      string
		says, does bool
		iface      string
	}{
		{"DiskResize", s.caps.DiskResize, resizes, "provider.DiskResizer"},
		{"CheckCredentials", s.caps.CheckCredentials, checks, "provider.CredentialChecker"},
		{"Purge", s.caps.Purge, purges, "provider.Purger"},
		{"Forget", s.caps.Forget, forgets, "provider.Forgetter"},
		{"SSH", s.caps.SSH, usesSSH, "UseSSH(*sshpool.Pool)"},
	} {
		if c.says != c.does {
			t.Errorf("Capabilities().%s is %v, but %T implementing %s is %v", c.field, c.says, s.p, c.iface, c.does)
		}
	}
	if s.caps.DiskResizeRequiresStop && !s.caps.DiskResize {
		t.Error("Capabilities().DiskResizeRequiresStop without DiskResize")
	}
	if s.caps.Adopt && !s.caps.Bootstrap {
		t.Error("Capabilities().Adopt: an adopted machine is bootstrapped over SSH, but Bootstrap is false")
	}
	if reg, err := provider.Lookup(s.p.Name()); err == nil && reg.Capabilities != s.caps {
		t.Errorf("registered capabilities %+v differ from Capabilities() %+v", reg.Capabilities, s.caps)
	}
	if s.p.Name() == "" {
		t.Fatal("Name() is empty")
	}
}

func (s *suite) testCatalog(t *testing.T) {
	ctx := s.ctx(t)
	cat, err := retry(ctx, func() ([]provider.CatalogEntry, error) { return s.p.Catalog(ctx) })
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	if len(cat) == 0 {
		t.Fatal("Catalog returned no entries")
	}
	for i, e := range cat {
		if e.Provider != s.p.Name() {
			t.Fatalf("catalog entry %d (%s) has Provider %q, want %q", i, e.InstanceType, e.Provider, s.p.Name())
		}
		if e.InstanceType == "" {
			t.Fatalf("catalog entry %d has no InstanceType: %+v", i, e)
		}
		if s.caps.Simulated && !e.Simulated {
			t.Fatalf("a simulated provider's catalog entry %s is not marked Simulated", e.InstanceType)
		}
	}
}

func (s *suite) testStatusUnknown(t *testing.T) {
	hostID, _ := s.newSpec()
	ref := provider.Ref{HostID: hostID, Name: provider.InstanceName(hostID)}
	ctx := s.ctx(t)
	_, err := retry(ctx, func() (provider.Instance, error) { return s.p.Status(ctx, ref) })
	if !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("Status of an unknown instance: got %v (kind %s), want a %s error", err, kindOf(err), errkind.NotFound)
	}
}

func (s *suite) testCreate(t *testing.T) {
	ctx := s.ctx(t)
	s.hostID, s.spec = s.newSpec()
	s.created[s.spec.Name] = true
	inst, err := retry(ctx, func() (provider.Instance, error) { return s.p.Create(ctx, s.spec) })
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if inst.ID == "" || inst.Name != s.spec.Name {
		t.Fatalf("Create returned ID %q, name %q; want an ID and name %q", inst.ID, inst.Name, s.spec.Name)
	}
	if inst.State != provider.StatePending && inst.State != provider.StateRunning {
		t.Fatalf("Create returned state %q, want pending or running", inst.State)
	}
	s.inst = s.waitState(t, inst.Ref(s.hostID), provider.StateRunning)
	if s.inst.ID != inst.ID {
		t.Fatalf("Status reports ID %q, Create returned %q", s.inst.ID, inst.ID)
	}
}

func (s *suite) testCreateIdempotent(t *testing.T) {
	ctx := s.ctx(t)
	again, err := retry(ctx, func() (provider.Instance, error) { return s.p.Create(ctx, s.spec) })
	if err != nil {
		t.Fatalf("second Create with the same spec: %v", err)
	}
	if again.ID != s.inst.ID {
		t.Fatalf("second Create returned instance %q, want the existing %q: Create must not make a second VM", again.ID, s.inst.ID)
	}
}

func (s *suite) testList(t *testing.T) {
	ctx := s.ctx(t)
	list, err := retry(ctx, func() ([]provider.Instance, error) { return s.p.List(ctx) })
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var found []provider.Instance
	for _, in := range list {
		if in.Name == s.spec.Name {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		t.Fatalf("List has %d instances named %s, want 1", len(found), s.spec.Name)
	}
	in := found[0]
	if in.ID != s.inst.ID {
		t.Fatalf("List reports ID %q for %s, want %q", in.ID, in.Name, s.inst.ID)
	}
	if hid := hostIDOf(in); hid != s.hostID {
		t.Fatalf("listed instance belongs to host %q (label %q, name %q), want %q", hid, in.HostID, in.Name, s.hostID)
	}
	if s.o.Deployment != "" && in.Labels[provider.LabelDeployment] != s.o.Deployment {
		t.Fatalf("listed instance has deployment label %q, want %q (labels %v)", in.Labels[provider.LabelDeployment], s.o.Deployment, in.Labels)
	}
}

func (s *suite) testStop(t *testing.T) {
	ctx := s.ctx(t)
	ref := s.inst.Ref(s.hostID)
	if s.caps.Stop == provider.StopNone {
		_, err := s.p.Stop(ctx, ref)
		if errkind.Of(err) != errkind.Refused {
			t.Fatalf("Stop on a StopNone provider: got %v (kind %s), want a %s error", err, kindOf(err), errkind.Refused)
		}
		return
	}
	if _, err := retry(ctx, func() (provider.Instance, error) { return s.p.Stop(ctx, ref) }); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	s.waitState(t, ref, provider.StateStopped)
	if _, err := retry(ctx, func() (provider.Instance, error) { return s.p.Stop(ctx, ref) }); err != nil {
		t.Fatalf("Stop of a stopped instance must succeed: %v", err)
	}
}

func (s *suite) testStart(t *testing.T) {
	ctx := s.ctx(t)
	ref := s.inst.Ref(s.hostID)
	if _, err := retry(ctx, func() (provider.Instance, error) { return s.p.Start(ctx, ref) }); err != nil {
		t.Fatalf("Start: %v", err)
	}
	s.inst = s.waitState(t, ref, provider.StateRunning)
	if _, err := retry(ctx, func() (provider.Instance, error) { return s.p.Start(ctx, ref) }); err != nil {
		t.Fatalf("Start of a running instance must succeed: %v", err)
	}
}

func (s *suite) testResize(t *testing.T) {
	r, ok := s.p.(provider.DiskResizer)
	if !ok || !s.caps.DiskResize {
		t.Skip("the provider cannot resize disks")
	}
	ctx := s.ctx(t)
	ref := s.inst.Ref(s.hostID)
	needStop := s.caps.DiskResizeRequiresStop
	if needStop {
		if s.caps.Stop == provider.StopNone {
			t.Skip("resizing needs a stopped VM, and the provider cannot stop")
		}
		if _, err := retry(ctx, func() (provider.Instance, error) { return s.p.Stop(ctx, ref) }); err != nil {
			t.Fatalf("Stop before resize: %v", err)
		}
		s.waitState(t, ref, provider.StateStopped)
	}
	inst, err := retry(ctx, func() (provider.Instance, error) { return r.ResizeDisk(ctx, ref, s.o.ResizeToGB) })
	if err != nil {
		t.Fatalf("ResizeDisk to %d GB: %v", s.o.ResizeToGB, err)
	}
	if inst.ID != s.inst.ID {
		t.Fatalf("ResizeDisk returned instance %q, want %q", inst.ID, s.inst.ID)
	}
	// Growing to the size it already has is a retry of the same request.
	if _, err := retry(ctx, func() (provider.Instance, error) { return r.ResizeDisk(ctx, ref, s.o.ResizeToGB) }); err != nil {
		t.Fatalf("repeating ResizeDisk to %d GB must succeed: %v", s.o.ResizeToGB, err)
	}
	if needStop {
		if _, err := retry(ctx, func() (provider.Instance, error) { return s.p.Start(ctx, ref) }); err != nil {
			t.Fatalf("Start after resize: %v", err)
		}
	}
	s.inst = s.waitState(t, ref, provider.StateRunning)
}

func (s *suite) testDelete(t *testing.T) {
	ctx := s.ctx(t)
	ref := s.inst.Ref(s.hostID)
	if err := retryErr(ctx, func() error { return s.p.Delete(ctx, ref, false) }); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	s.waitGone(t, ref)
	delete(s.created, ref.Name)
}

func (s *suite) testDeleteAgain(t *testing.T) {
	ctx := s.ctx(t)
	err := retryErr(ctx, func() error { return s.p.Delete(ctx, s.inst.Ref(s.hostID), false) })
	if err != nil && !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("second Delete: got %v (kind %s), want nil or a %s error", err, kindOf(err), errkind.NotFound)
	}
}

func (s *suite) testDeleteKeepDisk(t *testing.T) {
	if !s.caps.PersistentDisk {
		t.Skip("the provider has no persistent disks")
	}
	ctx := s.ctx(t)
	hostID, spec := s.newSpec()
	s.created[spec.Name] = true
	first, err := retry(ctx, func() (provider.Instance, error) { return s.p.Create(ctx, spec) })
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	first = s.waitState(t, first.Ref(hostID), provider.StateRunning)
	if err := retryErr(ctx, func() error { return s.p.Delete(ctx, first.Ref(hostID), true) }); err != nil {
		t.Fatalf("Delete keeping the disk: %v", err)
	}
	s.waitGone(t, first.Ref(hostID))

	// The kept disk comes back with an instance of the same name.
	again, err := retry(ctx, func() (provider.Instance, error) { return s.p.Create(ctx, spec) })
	if err != nil {
		t.Fatalf("Create after Delete(keepDisk): %v", err)
	}
	again = s.waitState(t, again.Ref(hostID), provider.StateRunning)
	if first.DataDisk != "" && again.DataDisk != first.DataDisk {
		t.Fatalf("recreated instance has data disk %q, want the kept %q", again.DataDisk, first.DataDisk)
	}
	if err := retryErr(ctx, func() error { return s.p.Delete(ctx, again.Ref(hostID), false) }); err != nil {
		t.Fatalf("final Delete: %v", err)
	}
	s.waitGone(t, again.Ref(hostID))
	delete(s.created, spec.Name)
}

// waitState polls Status until the instance is in want. Transient errors
// while polling are tolerated (that is what retrying is for); any other
// error, or the deadline, fails the test.
func (s *suite) waitState(t *testing.T, ref provider.Ref, want provider.State) provider.Instance {
	t.Helper()
	ctx := s.ctx(t)
	var last provider.Instance
	var lastErr error
	ok := poll(ctx, s.o.PollInterval, func() (bool, error) {
		last, lastErr = s.p.Status(ctx, ref)
		if lastErr != nil {
			if errkind.Retryable(lastErr) {
				return false, nil
			}
			return false, lastErr
		}
		if last.State == provider.StateError {
			return false, fmt.Errorf("instance %s is in state error", ref.Name)
		}
		return last.State == want, nil
	})
	if !ok {
		t.Fatalf("instance %s: waiting for %s: last state %q, last error %v (timeout %s)", ref.Name, want, last.State, lastErr, s.o.Timeout)
	}
	return last
}

// waitGone polls until Status says NotFound and List no longer has the
// instance: clouds delete asynchronously, and some list a terminated VM
// for a while, which the suite accepts as gone.
func (s *suite) waitGone(t *testing.T, ref provider.Ref) {
	t.Helper()
	ctx := s.ctx(t)
	var state string
	ok := poll(ctx, s.o.PollInterval, func() (bool, error) {
		inst, err := s.p.Status(ctx, ref)
		switch {
		case errkind.Is(err, errkind.NotFound):
		case err != nil && errkind.Retryable(err):
			state = "status error: " + err.Error()
			return false, nil
		case err != nil:
			return false, err
		default:
			state = "status " + string(inst.State)
			return false, nil
		}
		list, err := s.p.List(ctx)
		if err != nil {
			if errkind.Retryable(err) {
				return false, nil
			}
			return false, err
		}
		for _, in := range list {
			if in.Name == ref.Name && in.State != provider.StateTerminated {
				state = "still listed as " + string(in.State)
				return false, nil
			}
		}
		return true, nil
	})
	if !ok {
		t.Fatalf("instance %s is not gone after Delete: %s (timeout %s)", ref.Name, state, s.o.Timeout)
	}
}

// cleanup deletes what a failed run left behind.
func (s *suite) cleanup(t *testing.T) {
	for name := range s.created {
		ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
		err := retryErr(ctx, func() error {
			return s.p.Delete(ctx, provider.Ref{HostID: provider.HostIDFromName(name), Name: name}, false)
		})
		cancel()
		if err != nil && !errkind.Is(err, errkind.NotFound) {
			t.Errorf("cleanup: could not delete instance %s: %v", name, err)
		}
	}
	if c, ok := s.p.(provider.Closer); ok {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// poll calls check every interval until it reports done, fails, or ctx
// ends. It reports whether check finished successfully.
func poll(ctx context.Context, interval time.Duration, check func() (bool, error)) bool {
	for {
		done, err := check()
		if err != nil {
			return false
		}
		if done {
			return true
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// retry repeats fn while it fails with a retryable error, waiting what
// the provider asked for (or a short backoff). Real clouds return the
// odd 5xx; the contract is about what happens once a call gets through.
func retry[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	backoff := 50 * time.Millisecond
	for {
		v, err := fn()
		if err == nil || !errkind.Retryable(err) || errkind.Of(err) == errkind.Capacity {
			return v, err
		}
		wait := errkind.RetryAfter(err)
		if wait <= 0 {
			wait = backoff
			backoff = min(backoff*2, 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, fmt.Errorf("%w (gave up retrying: %v)", err, ctx.Err())
		case <-t.C:
		}
	}
}

func retryErr(ctx context.Context, fn func() error) error {
	_, err := retry(ctx, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// hostIDOf is the host an instance belongs to: its label, or failing
// that its name.
func hostIDOf(in provider.Instance) string {
	if in.HostID != "" {
		return in.HostID
	}
	return provider.HostIDFromName(in.Name)
}

func kindOf(err error) string {
	if err == nil {
		return "none"
	}
	return string(errkind.Of(err))
}
