package hyperstack

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/providers/hyperstack/hyperstackfake"
)

func TestContract(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	providertest.RunWithOptions(t, providertest.Options{
		Deployment:   testDeployment,
		Spec:         provider.CreateSpec{Region: testRegion, MachineType: "n3-A100x1", DiskGB: 50, SSHAuthorizedKey: testPubKey},
		Timeout:      20 * time.Second,
		PollInterval: 5 * time.Millisecond,
	}, func(t *testing.T) provider.Provider { return e.p })
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	spec.HostKey = &provider.HostKey{PrivatePEM: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----", Public: "ssh-ed25519 AAAAHOST h"}
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Create returns once the VM is ACTIVE with its data volume attached.
	if in.State != provider.StateRunning || in.PublicIP == "" || in.PrivateIP == "" || in.Region != testRegion || in.HostID != hostID {
		t.Fatalf("Create returned %+v, want a running instance with addresses", in)
	}
	vol, ok := volumeOf(e.fake, spec.Name+"-data")
	if !ok || vol.Size != 50 || vol.Type != DefaultVolumeType || strconv.Itoa(vol.AttachedTo) != in.ID {
		t.Fatalf("data volume %+v (found %v), want 50 GB attached to %s", vol, ok, in.ID)
	}
	if in.DataDisk != strconv.Itoa(vol.ID) || in.DataDiskDevice != "/dev/vdb" || in.DiskGB != 50 {
		t.Fatalf("instance reports data disk %q at %q (%d GB), want %d at /dev/vdb", in.DataDisk, in.DataDiskDevice, in.DiskGB, vol.ID)
	}
	envName := "cocalc-hosts-test-dep-canada-1"
	if envs := e.fake.Environments(); !slices.Equal(envs, []string{envName}) {
		t.Fatalf("environments %v, want [%s]", envs, envName)
	}
	if kps := e.fake.Keypairs(); len(kps) != 1 || !strings.HasPrefix(kps[0], envName+"/"+envName+"-") {
		t.Fatalf("key pairs %v, want one in %s", kps, envName)
	}
	vms := e.fake.VMs()
	if len(vms) != 1 {
		t.Fatalf("%d VMs, want 1", len(vms))
	}
	v := vms[0]
	if v.Image != DefaultImage || v.Flavor != "n3-A100x1" || len(v.Rules) != 3 || v.Rules[0].PortRangeMin != 22 || v.Rules[0].Direction != "ingress" {
		t.Fatalf("VM made with image %q flavor %q rules %+v", v.Image, v.Flavor, v.Rules)
	}
	if !strings.Contains(v.UserData, "ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----") {
		t.Fatalf("user data lacks the host key:\n%s", v.UserData)
	}
	if in.Labels[provider.LabelDeployment] != testDeployment || in.Labels[provider.LabelHost] != hostID {
		t.Fatalf("labels %v", in.Labels)
	}

	// List: ours only, not a VM in someone else's environment nor a VM
	// of another name scheme in ours.
	e.fake.AddForeignVM("cocalc-hosts-other-dep-canada-1", testRegion, provider.InstanceName(uuid.NewString()))
	e.fake.AddForeignVM("my-env", testRegion, "training")
	e.fake.AddForeignVM(envName, testRegion, "not-a-host")
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != in.ID || list[0].DataDisk != in.DataDisk {
		t.Fatalf("List = %+v, want only %s", list, in.ID)
	}
	// An id that is not ours is not found.
	foreign := e.fake.VMs()[1].ID
	if _, err := e.p.Status(ctx, provider.Ref{Name: spec.Name, InstanceID: strconv.Itoa(foreign)}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("Status of a foreign VM id: %v, want not found", err)
	}

	// Stop hibernates; the address goes (retain_ip=false by default).
	st, err := e.p.Stop(ctx, in.Ref(hostID))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != provider.StateStopping && st.State != provider.StateStopped {
		t.Fatalf("after Stop: %s", st.State)
	}
	stopped := waitState(t, e.p, in.Ref(hostID), provider.StateStopped)
	if stopped.Meta["status"] != "HIBERNATED" || stopped.PublicIP != "" || stopped.DataDisk != in.DataDisk {
		t.Fatalf("stopped: %+v, want HIBERNATED without address, data disk kept", stopped)
	}
	if _, err := e.p.Stop(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.Requests("GET /core/virtual-machines/{vm_id}/hibernate"); n != 1 {
		t.Fatalf("%d hibernate calls, want 1", n)
	}
	if n := e.fake.Requests("GET /core/virtual-machines/{vm_id}/stop"); n != 0 {
		t.Fatalf("Stop shut the VM off (%d), which is still billed", n)
	}

	// Start restores from hibernation.
	if _, err := e.p.Start(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	run := waitState(t, e.p, in.Ref(hostID), provider.StateRunning)
	if run.PublicIP == "" || run.PublicIP == in.PublicIP {
		t.Fatalf("restored VM has address %q, want a new one (old %s)", run.PublicIP, in.PublicIP)
	}
	if _, err := e.p.Start(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.Requests("GET /core/virtual-machines/{vm_id}/hibernate-restore"); n != 1 {
		t.Fatalf("%d restores, want 1", n)
	}

	// Delete keeping the disk: the VM goes, the volume stays, and the
	// next Create of the name attaches it again.
	if err := e.p.Delete(ctx, run.Ref(hostID), true); err != nil {
		t.Fatal(err)
	}
	waitGone(t, e.p, run.Ref(hostID))
	kept, ok := volumeOf(e.fake, spec.Name+"-data")
	if !ok || kept.ID != vol.ID || kept.AttachedTo != 0 {
		t.Fatalf("kept volume %+v (found %v), want %d detached", kept, ok, vol.ID)
	}
	again, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == in.ID || again.DataDisk != in.DataDisk {
		t.Fatalf("recreated instance %s has data disk %s, want a new VM with disk %s", again.ID, again.DataDisk, in.DataDisk)
	}
	if n := len(e.fake.Volumes()); n != 1 {
		t.Fatalf("%d volumes, want the one kept", n)
	}

	// Delete without keeping: the volume goes once the VM is gone.
	if err := e.p.Delete(ctx, again.Ref(hostID), false); err != nil {
		t.Fatal(err)
	}
	if _, ok := volumeOf(e.fake, spec.Name+"-data"); ok {
		t.Fatal("the data volume survived Delete(keepDisk=false)")
	}
	waitGone(t, e.p, again.Ref(hostID))
	if err := e.p.Delete(ctx, again.Ref(hostID), false); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("second Delete: %v, want not found", err)
	}
}

func TestDeleteKeptVolumeLater(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	in, err := e.p.Create(ctx, testSpec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.Delete(ctx, in.Ref(hostID), true); err != nil {
		t.Fatal(err)
	}
	waitGone(t, e.p, in.Ref(hostID))
	// Deprovisioning the host later deletes the kept volume, by name.
	if err := e.p.Delete(ctx, provider.Ref{HostID: hostID}, false); err != nil {
		t.Fatal(err)
	}
	if n := len(e.fake.Volumes()); n != 0 {
		t.Fatalf("%d volumes left", n)
	}
	if err := e.p.Delete(ctx, provider.Ref{HostID: hostID}, false); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("nothing left to delete: %v, want not found", err)
	}
	if err := e.p.Delete(ctx, provider.Ref{HostID: hostID}, true); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("keep-disk delete of nothing: %v, want not found", err)
	}
}

// A SHUTOFF VM (stopped outside this program) is billed in full: Stop
// brings it up and hibernates it.
func TestStopHibernatesShutoffVM(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	in, err := e.p.Create(ctx, testSpec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.Atoi(in.ID)
	e.fake.SetStatus(id, "SHUTOFF")
	st, err := e.p.Status(ctx, in.Ref(hostID))
	if err != nil || st.State != provider.StateStopped {
		t.Fatalf("SHUTOFF VM: %+v, %v; want stopped", st, err)
	}
	if _, err := e.p.Stop(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, e.p, in.Ref(hostID), provider.StateStopped)
	if st.Meta["status"] != "HIBERNATED" {
		t.Fatalf("status %s, want HIBERNATED", st.Meta["status"])
	}
	if s, h := e.fake.Requests("GET /core/virtual-machines/{vm_id}/start"), e.fake.Requests("GET /core/virtual-machines/{vm_id}/hibernate"); s != 1 || h != 1 {
		t.Fatalf("start %d, hibernate %d; want 1 each", s, h)
	}
	// And Start of a SHUTOFF VM starts it.
	e.fake.SetStatus(id, "SHUTOFF")
	if _, err := e.p.Start(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.p, in.Ref(hostID), provider.StateRunning)
}

func TestStopFlavorWithoutHibernation(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	spec.MachineType = "n1-cpu-small"
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.p.Stop(ctx, in.Ref(hostID))
	wantKind(t, err, errkind.Invalid)
	if !strings.Contains(err.Error(), "stop --deprovision") || !strings.Contains(err.Error(), "n1-cpu-small") {
		t.Fatalf("error %q does not explain what to do", err)
	}
}

func TestVMInErrorState(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.Atoi(in.ID)
	e.fake.SetStatus(id, "ERROR")
	st, err := e.p.Status(ctx, in.Ref(hostID))
	if err != nil || st.State != provider.StateError {
		t.Fatalf("ERROR VM: %+v, %v", st, err)
	}
	_, err = e.p.Start(ctx, in.Ref(hostID))
	wantKind(t, err, errkind.Invalid)
	// Create on a failed VM deletes it; the retry makes a new one with
	// the same volume.
	_, err = e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Transient)
	var again provider.Instance
	deadline := time.Now().Add(10 * time.Second)
	for {
		again, err = e.p.Create(ctx, spec)
		if err == nil || time.Now().After(deadline) {
			break
		}
		if !errkind.Retryable(err) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == in.ID || again.DataDisk != in.DataDisk || again.State != provider.StateRunning {
		t.Fatalf("after the failed VM: %+v, want a new running VM with disk %s", again, in.DataDisk)
	}
	if n := e.fake.Creations(spec.Name); n != 2 {
		t.Fatalf("%d VMs made, want 2", n)
	}
}

func TestCreateCapacity(t *testing.T) {
	e := newEnv(t, fastFake(), map[string]string{"region": ""})
	ctx := ctxT(t)
	spec := testSpec(uuid.NewString())
	spec.MachineType = "n3-H100x1" // out of stock in the default catalog
	_, err := e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Capacity)
	if n := len(e.fake.VMs()) + len(e.fake.Volumes()) + len(e.fake.Environments()); n != 0 {
		t.Fatalf("a capacity error left %d resources behind", n)
	}
	// With only a GPU model and no region, the cheapest flavor in stock.
	spec = testSpec(uuid.NewString())
	spec.MachineType, spec.Region, spec.GPUModel = "", "", "A100"
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.Meta["flavor"] != "n3-A100x1" || in.Region != "CANADA-1" {
		t.Fatalf("chose %s in %s, want n3-A100x1 in CANADA-1", in.Meta["flavor"], in.Region)
	}
	// When it runs out, the next cheapest that has stock.
	e.fake.SetStock("n3-A100x1", "CANADA-1", false)
	spec = testSpec(uuid.NewString())
	spec.MachineType, spec.Region, spec.GPUModel = "", "", "a100"
	in, err = e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.Meta["flavor"] != "n3-A100x2" {
		t.Fatalf("fell back to %s, want n3-A100x2", in.Meta["flavor"])
	}
	e.fake.SetStock("n3-A100x2", "CANADA-1", false)
	spec.Name, spec.HostID = provider.InstanceName(uuid.NewString()), ""
	_, err = e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Capacity)
	if !strings.Contains(err.Error(), "a100") {
		t.Fatalf("capacity error %q does not name the GPU", err)
	}
	// Stock that runs out between the check and the create: the API's
	// refusal is a capacity error too.
	e.fake.InjectFault(hyperstackfake.Fault{Method: "POST", Path: "/core/virtual-machines", Status: 400, Reason: "bad_request",
		Message: "Insufficient stock for flavor n3-L40x1 in CANADA-1"})
	spec = testSpec(uuid.NewString())
	spec.MachineType = "n3-L40x1"
	_, err = e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Capacity)
	// An unknown flavor is invalid, not capacity.
	spec.MachineType = "n9-nope"
	_, err = e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Invalid)
}

func TestCreateRefusals(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	for name, change := range map[string]func(*provider.CreateSpec){
		"no ssh key":    func(s *provider.CreateSpec) { s.SSHAuthorizedKey = "" },
		"spot":          func(s *provider.CreateSpec) { s.Spot = true },
		"zone":          func(s *provider.CreateSpec) { s.Zone = "a" },
		"bad name":      func(s *provider.CreateSpec) { s.Name = "-x" },
		"negative disk": func(s *provider.CreateSpec) { s.DiskGB = -1 },
	} {
		spec := testSpec(uuid.NewString())
		change(&spec)
		if _, err := e.p.Create(ctx, spec); errkind.Of(err) != errkind.Invalid {
			t.Errorf("%s: got %v, want invalid", name, err)
		}
	}
	if n := e.fake.Requests("POST /core/virtual-machines"); n != 0 {
		t.Fatalf("%d VM creations for refused specs", n)
	}
}

// Every step of Create may fail after it took effect; the retry must
// finish the job with exactly one of each resource.
func TestCreateIdempotentAfterErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault hyperstackfake.Fault
	}{
		{"VM create 500 after effect", hyperstackfake.Fault{Method: "POST", Path: "/core/virtual-machines", Status: 500, AfterEffect: true}},
		{"VM create reply lost", hyperstackfake.Fault{Method: "POST", Path: "/core/virtual-machines", Hang: 5 * time.Second, AfterEffect: true}},
		{"volume create 502 after effect", hyperstackfake.Fault{Method: "POST", Path: "/core/volumes", Status: 502, AfterEffect: true}},
		{"environment create 500 after effect", hyperstackfake.Fault{Method: "POST", Path: "/core/environments", Status: 500, AfterEffect: true}},
		{"environment create conflict", hyperstackfake.Fault{Method: "POST", Path: "/core/environments", Status: 409, AfterEffect: true, Message: "already exists"}},
		{"key pair create 500 after effect", hyperstackfake.Fault{Method: "POST", Path: "/core/keypairs", Status: 500, AfterEffect: true}},
		{"attach 500 after effect", hyperstackfake.Fault{Method: "POST", Path: "/core/virtual-machines/{vm_id}/attach-volumes", Status: 500, AfterEffect: true}},
		{"attach 500 before effect", hyperstackfake.Fault{Method: "POST", Path: "/core/virtual-machines/{vm_id}/attach-volumes", Status: 500}},
		{"rule 500 after effect", hyperstackfake.Fault{Method: "POST", Path: "/core/virtual-machines/{vm_id}/sg-rules", Status: 500, AfterEffect: true}},
		{"rule 503 before effect", hyperstackfake.Fault{Method: "POST", Path: "/core/virtual-machines/{vm_id}/sg-rules", Status: 503}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fastFake(), map[string]string{"timeout": "300ms"})
			ctx := ctxT(t)
			hostID := uuid.NewString()
			spec := testSpec(hostID)
			e.fake.InjectFault(tc.fault)
			var in provider.Instance
			var err error
			failures := 0
			deadline := time.Now().Add(10 * time.Second)
			for {
				in, err = e.p.Create(ctx, spec)
				if err == nil || !errkind.Retryable(err) || time.Now().After(deadline) {
					break
				}
				failures++
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("Create never succeeded: %v", err)
			}
			if failures == 0 && tc.fault.Status != 409 {
				t.Fatal("the fault never surfaced; the test tests nothing")
			}
			if n := e.fake.Creations(spec.Name); n != 1 {
				t.Fatalf("%d VMs made for %s, want 1", n, spec.Name)
			}
			if n, e2, k := len(e.fake.Volumes()), len(e.fake.Environments()), len(e.fake.Keypairs()); n != 1 || e2 != 1 || k != 1 {
				t.Fatalf("%d volumes, %d environments, %d key pairs; want 1 each", n, e2, k)
			}
			if in.DataDisk == "" || in.State != provider.StateRunning {
				t.Fatalf("finished instance %+v lacks its data disk", in)
			}
			// Each default port is open once: a retry adds only what is missing.
			if rules := e.fake.VMs()[0].Rules; len(rules) != 3 {
				t.Fatalf("rules %+v, want one for each of 22, 80, 443", rules)
			}
		})
	}
}

func TestRetryOn429HonoursRetryAfter(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	e.fake.InjectFault(hyperstackfake.Fault{Method: "GET", Path: "/core/environments", Status: 429, RetryAfter: "4", Times: 2})
	if _, err := e.p.List(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.sleeps.Waits(); !slices.Equal(got, []time.Duration{4 * time.Second, 4 * time.Second}) {
		t.Fatalf("waited %v, want 4s twice", got)
	}
	e.fake.InjectFault(hyperstackfake.Fault{Method: "GET", Path: "/core/environments", Status: 429, RetryAfter: "90"})
	_, err := e.p.List(ctx)
	wantKind(t, err, errkind.RateLimited)
	if d := errkind.RetryAfter(err); d != 90*time.Second {
		t.Fatalf("RetryAfter %s, want 90s", d)
	}
	e2 := newEnv(t, fastFake(), map[string]string{"max_retries": "0"})
	e2.fake.InjectFault(hyperstackfake.Fault{Method: "GET", Path: "/core/environments", Status: 429, RetryAfter: "1"})
	_, err = e2.p.List(ctx)
	wantKind(t, err, errkind.RateLimited)
}

func TestErrorClassification(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	for _, tc := range []struct {
		fault hyperstackfake.Fault
		want  errkind.Kind
	}{
		{hyperstackfake.Fault{Status: 500}, errkind.Transient},
		{hyperstackfake.Fault{Status: 503}, errkind.Transient},
		{hyperstackfake.Fault{Status: 401, Message: "Invalid API key"}, errkind.Auth},
		{hyperstackfake.Fault{Status: 403}, errkind.Auth},
		{hyperstackfake.Fault{Status: 404, Reason: "not_found"}, errkind.NotFound},
		{hyperstackfake.Fault{Status: 400, Message: "VM quota exceeded for this organization"}, errkind.Quota},
		{hyperstackfake.Fault{Status: 400, Message: "Not enough resources available"}, errkind.Capacity},
		{hyperstackfake.Fault{Status: 400, Message: "flavor_name is required"}, errkind.Invalid},
		{hyperstackfake.Fault{Status: 409, Message: "already exists"}, errkind.Invalid},
	} {
		tc.fault.Method, tc.fault.Path = "GET", "/core/flavors"
		e.fake.InjectFault(tc.fault)
		_, err := e.p.Catalog(ctx)
		if errkind.Of(err) != tc.want {
			t.Errorf("HTTP %d %q: got %v (kind %s), want %s", tc.fault.Status, tc.fault.Message, err, errkind.Of(err), tc.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "hyperstack ") {
			t.Errorf("error %q does not name the provider", err)
		}
	}
	_, err := e.p.Status(ctx, provider.Ref{Name: "ch-x", InstanceID: "999999"})
	wantKind(t, err, errkind.NotFound)
	p, err := New(provider.Config{Deployment: "d", CredentialsFile: e.creds, Options: map[string]string{"endpoint": "http://127.0.0.1:1/v1"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.List(ctx)
	wantKind(t, err, errkind.Transient)
}

func TestCredentials(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	if err := e.p.CheckCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("nope"), 0o600) //nolint:errcheck
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte(hyperstackfake.DefaultAPIKey), 0o640) //nolint:errcheck
	for name, tc := range map[string]struct{ creds, mention string }{
		"wrong key":  {wrong, "Invalid API key"},
		"no file":    {filepath.Join(dir, "missing"), "providers add hyperstack"},
		"unset":      {"", "providers add hyperstack"},
		"loose mode": {loose, "chmod 600"},
	} {
		p, err := New(provider.Config{Deployment: "d", CredentialsFile: tc.creds, Options: map[string]string{"endpoint": hyperstackfake.URL(e.srv.URL)}})
		if err != nil {
			t.Fatal(err)
		}
		err = p.CheckCredentials(ctx)
		if errkind.Of(err) != errkind.Auth || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: got %v, want an auth error mentioning %q", name, err, tc.mention)
		}
	}
}

func TestPaging(t *testing.T) {
	fo := fastFake()
	fo.MaxPageSize = 2
	e := newEnv(t, fo, nil)
	ctx := ctxT(t)
	for i := range 3 {
		e.fake.AddForeignVM("someone-else", testRegion, "vm-"+strconv.Itoa(i))
	}
	var ids []string
	for range 3 {
		in, err := e.p.Create(ctx, testSpec(uuid.NewString()))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range list {
		got = append(got, in.ID)
	}
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Fatalf("List across pages = %v, want %v", got, ids)
	}
}

func TestMapStatus(t *testing.T) {
	for in, want := range map[string]provider.State{
		"CREATING": provider.StatePending, "BUILD": provider.StatePending, "STARTING": provider.StatePending,
		"RESTORING": provider.StatePending, "REBOOTING": provider.StatePending, "ACTIVE": provider.StateRunning,
		"STOPPING": provider.StateStopping, "HIBERNATING": provider.StateStopping, "SHUTOFF": provider.StateStopped,
		"HIBERNATED": provider.StateStopped, "DELETING": provider.StateTerminating, "ERROR": provider.StateError,
		"SOMETHING_NEW": provider.StateError,
	} {
		if got := mapStatus(in); got != want {
			t.Errorf("mapStatus(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		opts    map[string]string
		mention string
	}{
		{map[string]string{"zone": "x"}, `"zone"`},
		{map[string]string{"endpoint": "infrahub"}, "endpoint"},
		{map[string]string{"open_ports": "22,http"}, "open_ports"},
		{map[string]string{"retain_ip": "maybe"}, "retain_ip"},
		{map[string]string{"poll_interval": "0s"}, "poll_interval"},
		{map[string]string{"image": ""}, "image"},
	} {
		if _, err := New(provider.Config{Deployment: "d", Options: tc.opts}); err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("options %v: got %v, want an error naming %s", tc.opts, err, tc.mention)
		}
	}
	if _, err := New(provider.Config{}); err == nil {
		t.Error("New without a deployment succeeded")
	}
	e := newEnv(t, fastFake(), map[string]string{"retain_ip": "true", "open_ports": "22", "image": "Ubuntu Server 22.04 LTS R535 CUDA 12.2", "volume_type": "Cloud-SSD"})
	ctx := ctxT(t)
	hostID := uuid.NewString()
	in, err := e.p.Create(ctx, testSpec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	v := e.fake.VMs()[0]
	if len(v.Rules) != 1 || v.Image != "Ubuntu Server 22.04 LTS R535 CUDA 12.2" {
		t.Fatalf("options not applied: rules %+v image %q", v.Rules, v.Image)
	}
	if _, err := e.p.Stop(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	if st := waitState(t, e.p, in.Ref(hostID), provider.StateStopped); st.PublicIP != in.PublicIP {
		t.Fatalf("retain_ip=true: address %q after hibernation, want %q", st.PublicIP, in.PublicIP)
	}
	c := e.p.Capabilities()
	if c.Stop != provider.StopHibernate || !c.PersistentDisk || c.DiskResize || c.Spot || !c.Bootstrap || !c.GPU {
		t.Fatalf("capabilities %+v do not match Hyperstack", c)
	}
	if _, ok := any(e.p).(provider.DiskResizer); ok {
		t.Fatal("volumes cannot be resized through the API, but the provider implements DiskResizer")
	}
}

// A kept volume can only be attached in its region: it decides where a
// recreated host goes, and an explicit other region is refused.
func TestKeptVolumeDecidesRegion(t *testing.T) {
	e := newEnv(t, fastFake(), nil) // default region CANADA-1
	ctx := ctxT(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	spec.Region, spec.MachineType = "NORWAY-1", "n3-RTX-A6000x1"
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Found without naming its region, although the default is elsewhere.
	if st, err := e.p.Status(ctx, provider.Ref{HostID: hostID}); err != nil || st.ID != in.ID {
		t.Fatalf("Status by name: %+v, %v", st, err)
	}
	if err := e.p.Delete(ctx, provider.Ref{HostID: hostID}, true); err != nil {
		t.Fatal(err)
	}
	waitGone(t, e.p, in.Ref(hostID))
	spec.Region = "CANADA-1"
	_, err = e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Invalid)
	if !strings.Contains(err.Error(), "NORWAY-1") {
		t.Fatalf("refusal %q does not say where the volume is", err)
	}
	spec.Region = ""
	again, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if again.Region != "NORWAY-1" || again.DataDisk != in.DataDisk {
		t.Fatalf("recreated in %s with disk %s, want NORWAY-1 with %s", again.Region, again.DataDisk, in.DataDisk)
	}
}

// Names are at most 63 characters; the length is checked apart from the
// pattern.
func TestNameLength(t *testing.T) {
	if err := validName("op", "a"+strings.Repeat("b", 62)); err != nil {
		t.Errorf("a 63-character name was refused: %v", err)
	}
	if err := validName("op", "a"+strings.Repeat("b", 63)); err == nil {
		t.Error("a 64-character name was accepted")
	}
}
