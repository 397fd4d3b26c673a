package gcp

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/providers/gcp/gcpfake"
)

func TestContract(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	providertest.RunWithOptions(t, providertest.Options{
		Deployment:   "contract",
		Spec:         provider.CreateSpec{Zone: "us-central1-a", MachineType: "e2-standard-2", DiskGB: 10},
		Timeout:      30 * time.Second,
		PollInterval: 5 * time.Millisecond,
	}, func(t *testing.T) provider.Provider {
		p, err := provider.Open(Name, provider.Config{Deployment: "contract", Options: fakeOptions(srv, nil)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
}

// The same contract with service-account credentials: every call needs a
// token from the fake's OAuth endpoint, obtained with the key file.
func TestContractWithServiceAccountKey(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{RequireAuth: true})
	key, err := srv.ServiceAccountKey("cocalc@fake-project.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	file := writeSecret(t, key, 0o600)
	providertest.RunWithOptions(t, providertest.Options{
		Deployment:   "contract",
		Spec:         provider.CreateSpec{Zone: "us-central1-b", MachineType: "n2-standard-2"},
		Timeout:      30 * time.Second,
		PollInterval: 5 * time.Millisecond,
	}, func(t *testing.T) provider.Provider {
		p, err := New(provider.Config{Deployment: "contract", CredentialsFile: file, Options: fakeOptions(srv, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.CheckCredentials(testCtx(t)); err != nil {
			t.Fatalf("CheckCredentials with a good key: %v", err)
		}
		return p
	})
	if srv.Requests("token") == 0 {
		t.Fatal("the clients never fetched a token from the key's token_uri")
	}
}

// The APIs carry 64-bit integers as JSON strings; a bare number or null
// is read too, anything else is refused.
func TestWireIntegers(t *testing.T) {
	for in, want := range map[string]int64{`"20"`: 20, `20`: 20, `null`: 0, `"-3"`: -3} {
		var d struct {
			N i64 `json:"n"`
		}
		if err := json.Unmarshal([]byte(`{"n":`+in+`}`), &d); err != nil || int64(d.N) != want {
			t.Errorf("%s: got %d, %v; want %d", in, d.N, err, want)
		}
	}
	var d disk
	if err := json.Unmarshal([]byte(`{"sizeGb":"abc"}`), &d); err == nil {
		t.Error(`sizeGb "abc" was accepted`)
	}
	var in instance
	if err := json.Unmarshal([]byte(`{"id":"18446744073709551615"}`), &in); err != nil || uint64(in.ID) != 18446744073709551615 {
		t.Errorf("id: got %d, %v", in.ID, err)
	}
	if b, _ := json.Marshal(disk{SizeGb: 20}); string(b) != `{"sizeGb":"20"}` {
		t.Errorf("a disk is sent as %s, want sizeGb as a string", b)
	}
}

func TestRegistered(t *testing.T) {
	r, err := provider.Lookup(Name)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Capabilities.Bootstrap || r.Capabilities.Stop != provider.StopReal || !r.Capabilities.PersistentDisk ||
		!r.Capabilities.DiskResize || r.Capabilities.DiskResizeRequiresStop || !r.Capabilities.GPU || !r.Capabilities.Spot {
		t.Fatalf("capabilities do not describe GCE: %+v", r.Capabilities)
	}
}

func TestOptions(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	for _, tc := range []struct {
		name  string
		opts  map[string]string
		want  string
		creds string
	}{
		{"unknown key", map[string]string{"zones": "us-central1-a"}, `unknown option "zones"`, ""},
		{"no project", map[string]string{"project": ""}, "option project is required", ""},
		{"bad zone", map[string]string{"zone": "us-central1"}, "option zone=", ""},
		{"bad endpoint", map[string]string{"endpoint": "compute.local"}, "option endpoint=", ""},
		{"bad duration", map[string]string{"poll_interval": "soon"}, "option poll_interval=", ""},
		{"small disk", map[string]string{"data_disk_gb": "5"}, "option data_disk_gb=", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(provider.Config{Deployment: "d", Options: fakeOptions(srv, tc.opts)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Without an endpoint there is nothing to talk to but Google, which
	// needs credentials: the error says how to add them.
	opts := fakeOptions(srv, nil)
	delete(opts, "endpoint")
	_, err := New(provider.Config{Deployment: "d", Options: opts})
	wantKind(t, err, errkind.Auth)
	if !strings.Contains(err.Error(), "cocalc-hosts providers add gcp --credentials FILE") {
		t.Fatalf("the error does not say how to add credentials: %v", err)
	}
}

func TestCredentialsFile(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{RequireAuth: true})
	good, err := srv.ServiceAccountKey("ok@fake-project.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	open := func(file string) (*Provider, error) {
		return New(provider.Config{Deployment: "d", CredentialsFile: file, Options: fakeOptions(srv, nil)})
	}
	for _, tc := range []struct {
		name string
		file string
		want string
	}{
		{"missing", "/nonexistent/gcp.json", "does not exist"},
		{"readable by others", writeSecret(t, good, 0o644), "chmod 600"},
		{"not json", writeSecret(t, []byte("hello"), 0o600), "is not JSON"},
		{"not a service account", writeSecret(t, []byte(`{"type":"authorized_user","client_id":"x"}`), 0o600), "not a service-account key"},
		{"key not PEM", writeSecret(t, []byte(`{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"MIIE"}`), 0o600), "not a PEM-encoded RSA key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := open(tc.file)
			wantKind(t, err, errkind.Auth)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want it to mention %q", err, tc.want)
			}
		})
	}

	// A key the cloud does not know (deleted in the console): the first
	// call fails as an auth error, which is never retried.
	p, err := open(writeSecret(t, good, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.CheckCredentials(testCtx(t)); err != nil {
		t.Fatalf("CheckCredentials: %v", err)
	}
	srv.RevokeKeys()
	p2, err := open(writeSecret(t, good, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	err = p2.CheckCredentials(testCtx(t))
	if err == nil || errkind.Retryable(err) {
		t.Fatalf("CheckCredentials with a revoked key: got %v (kind %s), want a non-retryable error", err, kindOf(err))
	}

	// A 403 from the API (the key lacks a role) is an auth error too.
	srv2 := fastFake(t, gcpfake.Options{})
	srv2.InjectFault(gcpfake.Fault{Action: "instances.list", Status: http.StatusForbidden, Reason: "forbidden",
		Message: "Required 'compute.instances.list' permission for 'projects/fake-project'"})
	err = newTestProvider(t, srv2, "d", nil).CheckCredentials(testCtx(t))
	wantKind(t, err, errkind.Auth)
}

// Create sends what GCE needs: labels, the SSH key for the login user, a
// startup script that installs the host key, a boot disk that dies with
// the VM and a data disk that does not.
func TestCreateRequest(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)
	userKey, hostKey := sshKeys(t)
	hostID := uuid.NewString()
	spec := baseSpec(hostID)
	spec.SSHAuthorizedKey = userKey
	spec.HostKey = hostKey
	spec.Labels = map[string]string{"owner": "alice"}
	inst, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != provider.StatePending && inst.State != provider.StateRunning {
		t.Fatalf("new instance is %s", inst.State)
	}
	inst = waitState(t, p, inst.Ref(hostID), provider.StateRunning)
	if inst.PublicIP == "" || inst.PrivateIP == "" {
		t.Fatalf("running instance without addresses: %+v", inst)
	}
	if inst.SSHUser != "cocalc" || inst.SSHPort != 22 {
		t.Fatalf("SSH user %q port %d, want cocalc and 22", inst.SSHUser, inst.SSHPort)
	}
	if inst.HostID != hostID || inst.Zone != "us-central1-a" || inst.Region != "us-central1" {
		t.Fatalf("instance %+v: wrong host, zone or region", inst)
	}
	if inst.DataDisk != spec.Name+"-data" || inst.DataDiskDevice != "/dev/disk/by-id/google-data" || inst.DiskGB != 20 {
		t.Fatalf("data disk %q at %q, %d GB; want %s-data at /dev/disk/by-id/google-data, 20 GB", inst.DataDisk, inst.DataDiskDevice, inst.DiskGB, spec.Name)
	}

	vm, ok := srv.Instance(spec.Name)
	if !ok {
		t.Fatal("the fake has no VM")
	}
	if vm.GetLabels()[provider.LabelDeployment] != "dep1" || vm.GetLabels()[provider.LabelHost] != hostID || vm.GetLabels()["owner"] != "alice" {
		t.Fatalf("labels %v", vm.GetLabels())
	}
	if got := metadataValue(vm, "ssh-keys"); got != "cocalc:"+userKey {
		t.Fatalf("ssh-keys = %q, want %q", got, "cocalc:"+userKey)
	}
	script := metadataValue(vm, "startup-script")
	checkStartupScript(t, script, hostKey)
	if s := vm.GetScheduling(); s.GetOnHostMaintenance() != "MIGRATE" || s.GetProvisioningModel() != "STANDARD" {
		t.Fatalf("a CPU VM should live-migrate and be standard: %v", s)
	}
	var boot, data *computepb.AttachedDisk
	for _, d := range vm.GetDisks() {
		if d.GetBoot() {
			boot = d
		} else {
			data = d
		}
	}
	if boot == nil || !boot.GetAutoDelete() || data == nil || data.GetAutoDelete() || data.GetDeviceName() != "data" {
		t.Fatalf("want an auto-deleted boot disk and a kept data disk named data: %v", vm.GetDisks())
	}
	d, ok := srv.Disk(spec.Name + "-data")
	if !ok || d.GetLabels()[provider.LabelHost] != hostID || d.GetSizeGb() != 20 {
		t.Fatalf("data disk %v", d)
	}
	if ids := srv.RequestIDs("instances.insert"); len(ids) != 1 || uuid.Validate(ids[0]) != nil {
		t.Fatalf("instances.insert request ids %v: want one UUID", ids)
	}
}

// checkStartupScript decodes what the script would install and compares
// it with the host key; sh -n checks that the script parses.
func checkStartupScript(t *testing.T, script string, hk *provider.HostKey) {
	t.Helper()
	if !strings.HasPrefix(script, "#!/bin/sh") || !strings.Contains(script, "/ssh_host_ed25519_key") {
		t.Fatalf("startup script does not install an ed25519 host key:\n%s", script)
	}
	payloads := regexp.MustCompile(`printf '%s' '([A-Za-z0-9+/=]+)' \| base64 -d`).FindAllStringSubmatch(script, -1)
	if len(payloads) != 2 {
		t.Fatalf("want two base64 payloads in the script, got %d:\n%s", len(payloads), script)
	}
	priv, _ := base64.StdEncoding.DecodeString(payloads[0][1])
	pub, _ := base64.StdEncoding.DecodeString(payloads[1][1])
	if strings.TrimSpace(string(priv)) != strings.TrimSpace(hk.PrivatePEM) || strings.TrimSpace(string(pub)) != hk.Public {
		t.Fatalf("the script installs a different key")
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sh -n: %v\n%s", err, out)
		}
	}
}

func TestCreateGPUAndSpot(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)

	t.Run("bundled L4 on spot", func(t *testing.T) {
		hostID := uuid.NewString()
		spec := baseSpec(hostID)
		spec.MachineType, spec.GPUModel, spec.GPUCount, spec.Spot = "g2-standard-4", "l4", 1, true
		if _, err := p.Create(ctx, spec); err != nil {
			t.Fatal(err)
		}
		vm, _ := srv.Instance(spec.Name)
		s := vm.GetScheduling()
		if s.GetOnHostMaintenance() != "TERMINATE" || s.GetProvisioningModel() != "SPOT" || s.GetAutomaticRestart() || s.GetInstanceTerminationAction() != "STOP" {
			t.Fatalf("scheduling %v: want TERMINATE, SPOT, no restart, STOP", s)
		}
		if len(vm.GetGuestAccelerators()) != 0 {
			t.Fatalf("g2 carries its own GPU, yet accelerators were attached: %v", vm.GetGuestAccelerators())
		}
		inst := waitState(t, p, provider.Ref{Name: spec.Name, Zone: spec.Zone}, provider.StateRunning)
		if inst.Meta["spot"] != "true" {
			t.Fatalf("meta %v does not say spot", inst.Meta)
		}
	})
	t.Run("attached T4s on n1", func(t *testing.T) {
		hostID := uuid.NewString()
		spec := baseSpec(hostID)
		spec.MachineType, spec.GPUModel, spec.GPUCount = "n1-standard-8", "t4", 2
		if _, err := p.Create(ctx, spec); err != nil {
			t.Fatal(err)
		}
		vm, _ := srv.Instance(spec.Name)
		ga := vm.GetGuestAccelerators()
		if len(ga) != 1 || !strings.HasSuffix(ga[0].GetAcceleratorType(), "/zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4") || ga[0].GetAcceleratorCount() != 2 {
			t.Fatalf("accelerators %v: want 2× nvidia-tesla-t4", ga)
		}
		if vm.GetScheduling().GetOnHostMaintenance() != "TERMINATE" {
			t.Fatal("a GPU VM must terminate on host maintenance")
		}
	})
	for _, tc := range []struct {
		name, machine, gpu string
		count              int
		want               string
	}{
		{"wrong model for g2", "g2-standard-4", "a100", 0, "comes with 1× l4"},
		{"wrong count for g2", "g2-standard-4", "l4", 2, "comes with 1 GPUs, not 2"},
		{"unknown model", "n1-standard-4", "h100", 1, "attachable there: l4, t4"},
		{"too many", "n1-standard-4", "t4", 8, "at most 4"},
		{"type not in zone", "a2-highgpu-1g", "", 0, "not offered in zone us-central1-a"},
		{"no machine type", "", "", 0, "no machine type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec(uuid.NewString())
			spec.MachineType, spec.GPUModel, spec.GPUCount = tc.machine, tc.gpu, tc.count
			_, err := p.Create(ctx, spec)
			wantKind(t, err, errkind.Invalid)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want it to say %q", err, tc.want)
			}
			if srv.Creations(spec.Name) != 0 {
				t.Fatal("a refused create made a VM")
			}
			if _, ok := srv.Disk(spec.Name + "-data"); ok {
				t.Fatal("a refused create left a data disk")
			}
		})
	}
}

// A capacity error arrives on the insert operation; the empty data disk
// made for the VM is removed, so falling back to another zone leaves
// nothing behind.
func TestCreateCapacityErrorAndFallback(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)
	hostID := uuid.NewString()
	spec := baseSpec(hostID)
	spec.MachineType = "g2-standard-4"
	srv.InjectFault(gcpfake.Fault{Action: "instances.insert", Zone: "us-central1-a",
		OpError: "ZONE_RESOURCE_POOL_EXHAUSTED", OpHTTPStatus: http.StatusServiceUnavailable})
	_, err := p.Create(ctx, spec)
	wantKind(t, err, errkind.Capacity)
	if srv.Creations(spec.Name) != 0 {
		t.Fatal("a VM was made despite the capacity error")
	}
	waitNoDisk(t, srv, spec.Name+"-data")

	spec.Zone = "us-central1-b" // what the caller's fallback does
	inst, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create in the next zone: %v", err)
	}
	if inst.Zone != "us-central1-b" || srv.Creations(spec.Name) != 1 {
		t.Fatalf("fallback made %d VMs, in %s", srv.Creations(spec.Name), inst.Zone)
	}
}

// An attempt that failed transiently after making the data disk leaves
// it (the VM may still come); a later attempt in another zone moves the
// never-used disk there instead of refusing.
func TestCreateFallbackMovesUnusedDisk(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)
	spec := baseSpec(uuid.NewString())
	srv.InjectFault(gcpfake.Fault{Action: "instances.insert", Status: http.StatusServiceUnavailable, Times: 3})
	_, err := p.Create(ctx, spec)
	wantKind(t, err, errkind.Transient)
	if d, ok := srv.Disk(spec.Name + "-data"); !ok || !strings.HasSuffix(d.GetZone(), "us-central1-a") {
		t.Fatalf("after a transient failure the disk should wait in us-central1-a: %v", d)
	}
	spec.Zone = "europe-west4-a"
	inst, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create in another zone: %v", err)
	}
	d, ok := srv.Disk(spec.Name + "-data")
	if !ok || !strings.HasSuffix(d.GetZone(), "europe-west4-a") || inst.Zone != "europe-west4-a" {
		t.Fatalf("VM in %s, disk %v; want both in europe-west4-a", inst.Zone, d)
	}
	// A disk that has been attached holds data and is never moved.
	if err := p.Delete(ctx, inst.Ref(spec.HostID), true); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p, inst.Ref(spec.HostID))
	spec.Zone = "us-central1-a"
	_, err = p.Create(ctx, spec)
	wantKind(t, err, errkind.Invalid)
	if !strings.Contains(err.Error(), "is in zone europe-west4-a") {
		t.Fatalf("the error should say where the kept disk is: %v", err)
	}
}

// The SDK trap: an operation that is DONE with an error but without
// httpErrorStatusCode made the official client's Operation.Wait return
// nil. The provider checks the operation's error list itself.
func TestOperationErrorWithoutHTTPStatus(t *testing.T) {
	srv := gcpfake.New(gcpfake.Options{}) // operations finish at once
	t.Cleanup(srv.Close)

	t.Run("the fake sends the trap", func(t *testing.T) {
		srv.InjectFault(gcpfake.Fault{Action: "disks.insert", OpError: "QUOTA_EXCEEDED", OpMessage: "Quota 'SSD_TOTAL_GB' exceeded."})
		resp, err := http.Post(srv.URL+"/compute/v1/projects/"+srv.Project()+"/zones/us-central1-a/disks", "application/json",
			strings.NewReader(`{"name":"trap","sizeGb":"10"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var o operation
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("insert: HTTP %d, %v", resp.StatusCode, err)
		}
		if !o.done() || o.Error == nil || len(o.Error.Errors) == 0 || o.HTTPErrorStatusCode != 0 {
			t.Fatalf("operation %+v: want DONE with an error and no httpErrorStatusCode", o)
		}
	})
	t.Run("the provider does not", func(t *testing.T) {
		p := newTestProvider(t, srv, "dep1", nil)
		srv.InjectFault(gcpfake.Fault{Action: "instances.insert", OpError: "QUOTA_EXCEEDED", OpMessage: "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally."})
		spec := baseSpec(uuid.NewString())
		_, err := p.Create(testCtx(t), spec)
		wantKind(t, err, errkind.Quota)
		if !strings.Contains(err.Error(), "GPUS_ALL_REGIONS") {
			t.Fatalf("the error hides the cloud's message: %v", err)
		}
	})
}

// A create whose response is lost after GCE made the VM is repeated with
// the same requestId, which GCE (and the fake) answer with the first
// operation: one VM.
func TestCreateRetriedWithSameRequestID(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault gcpfake.Fault
	}{
		{"500 after the VM was made", gcpfake.Fault{Action: "instances.insert", Status: http.StatusInternalServerError, AfterApply: true}},
		{"timeout after the VM was made", gcpfake.Fault{Action: "instances.insert", Hang: 5 * time.Second, AfterApply: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fastFake(t, gcpfake.Options{})
			p := newTestProvider(t, srv, "dep1", map[string]string{"request_timeout": "300ms"})
			srv.InjectFault(tc.fault)
			spec := baseSpec(uuid.NewString())
			inst, err := p.Create(testCtx(t), spec)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if n := srv.Creations(spec.Name); n != 1 {
				t.Fatalf("%d VMs made, want 1", n)
			}
			ids := srv.RequestIDs("instances.insert")
			if len(ids) != 2 || ids[0] != ids[1] {
				t.Fatalf("insert request ids %v: want the same id twice", ids)
			}
			waitState(t, p, inst.Ref(spec.HostID), provider.StateRunning)
		})
	}
}

// When the error reaches the caller (here a 429, which Create does not
// retry itself), the queue's next attempt finds the VM by name.
func TestCreateErrorAfterCreateIsFoundNotDuplicated(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)
	srv.InjectFault(gcpfake.Fault{Action: "instances.insert", Status: http.StatusTooManyRequests, RetryAfter: "3", AfterApply: true})
	spec := baseSpec(uuid.NewString())
	_, err := p.Create(ctx, spec)
	wantKind(t, err, errkind.RateLimited)
	if d := errkind.RetryAfter(err); d != 3*time.Second {
		t.Fatalf("RetryAfter = %s, want 3s", d)
	}
	again, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	vm, _ := srv.Instance(spec.Name)
	if n := srv.Creations(spec.Name); n != 1 || again.ID != strconv.FormatUint(vm.GetId(), 10) {
		t.Fatalf("%d VMs made (want 1); Create returned %s, the VM is %d", n, again.ID, vm.GetId())
	}
	if srv.Requests("instances.insert") != 1 {
		t.Fatalf("the second Create sent another insert (%d in all)", srv.Requests("instances.insert"))
	}
}

func TestStartStop(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{StoppingTime: 200 * time.Millisecond})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)
	hostID := uuid.NewString()
	spec := baseSpec(hostID)
	inst, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	ref := inst.Ref(hostID)
	waitState(t, p, ref, provider.StateRunning)

	got, err := p.Stop(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != provider.StateStopping && got.State != provider.StateStopped {
		t.Fatalf("Stop returned %s", got.State)
	}
	// Starting a VM that is still stopping fails for now, and says so.
	if got.State == provider.StateStopping {
		_, err := p.Start(ctx, ref)
		wantKind(t, err, errkind.Transient)
	}
	stopped := waitState(t, p, ref, provider.StateStopped)
	if stopped.Meta["status"] != "TERMINATED" || stopped.PublicIP != "" {
		t.Fatalf("stopped VM: status %s, public IP %q", stopped.Meta["status"], stopped.PublicIP)
	}
	if _, err := p.Stop(ctx, ref); err != nil {
		t.Fatalf("Stop of a stopped VM: %v", err)
	}
	if srv.Requests("instances.stop") != 1 {
		t.Fatalf("%d stop requests; stopping a stopped VM must not call the API", srv.Requests("instances.stop"))
	}
	if _, err := p.Start(ctx, ref); err != nil {
		t.Fatal(err)
	}
	running := waitState(t, p, ref, provider.StateRunning)
	if running.PublicIP == "" || running.ID != inst.ID {
		t.Fatalf("restarted VM %+v", running)
	}
	if _, err := p.Start(ctx, ref); err != nil {
		t.Fatalf("Start of a running VM: %v", err)
	}
	if srv.Requests("instances.start") != 1 {
		t.Fatalf("%d start requests, want 1", srv.Requests("instances.start"))
	}
	// A start that fails for lack of capacity (GPU zones do that).
	if _, err := p.Stop(ctx, ref); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, ref, provider.StateStopped)
	srv.InjectFault(gcpfake.Fault{Action: "instances.start", OpError: "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"})
	_, err = p.Start(ctx, ref)
	wantKind(t, err, errkind.Capacity)
}

func TestResizeDisk(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)
	hostID := uuid.NewString()
	inst, err := p.Create(ctx, baseSpec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	ref := inst.Ref(hostID)
	waitState(t, p, ref, provider.StateRunning)
	got, err := p.ResizeDisk(ctx, ref, 50)
	if err != nil {
		t.Fatal(err)
	}
	if got.DiskGB != 50 || got.State != provider.StateRunning {
		t.Fatalf("after resize: %d GB, %s; want 50 GB while running", got.DiskGB, got.State)
	}
	if d, _ := srv.Disk(inst.DataDisk); d.GetSizeGb() != 50 {
		t.Fatalf("the disk is %d GB", d.GetSizeGb())
	}
	if _, err := p.ResizeDisk(ctx, ref, 50); err != nil {
		t.Fatalf("repeating the resize: %v", err)
	}
	if n := srv.Requests("disks.resize"); n != 1 {
		t.Fatalf("%d resize requests, want 1", n)
	}
	_, err = p.ResizeDisk(ctx, ref, 30)
	wantKind(t, err, errkind.Invalid)
}

func TestDelete(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)

	t.Run("keep disk, then re-create", func(t *testing.T) {
		hostID := uuid.NewString()
		spec := baseSpec(hostID)
		first, err := p.Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		first = waitState(t, p, first.Ref(hostID), provider.StateRunning)
		if _, err := p.ResizeDisk(ctx, first.Ref(hostID), 40); err != nil {
			t.Fatal(err)
		}
		if err := p.Delete(ctx, first.Ref(hostID), true); err != nil {
			t.Fatal(err)
		}
		waitGone(t, p, first.Ref(hostID))
		d, ok := srv.Disk(spec.Name + "-data")
		if !ok || len(d.GetUsers()) != 0 {
			t.Fatalf("the kept disk is gone or still attached: %v", d)
		}
		if _, ok := srv.Disk(spec.Name); ok {
			t.Fatal("the boot disk outlived its VM")
		}
		// A create elsewhere cannot use a zonal disk.
		other := spec
		other.Zone = "us-central1-b"
		_, err = p.Create(ctx, other)
		wantKind(t, err, errkind.Invalid)
		// Without a zone, the disk's zone is used.
		noZone := spec
		noZone.Zone = ""
		p2 := newTestProvider(t, srv, "dep1", map[string]string{"zone": "europe-west4-a"})
		again, err := p2.Create(ctx, noZone)
		if err != nil {
			t.Fatal(err)
		}
		again = waitState(t, p, again.Ref(hostID), provider.StateRunning)
		if again.DataDisk != first.DataDisk || again.DiskGB != 40 || again.Zone != "us-central1-a" || again.ID == first.ID {
			t.Fatalf("re-created %+v; want a new VM in us-central1-a with the kept 40 GB disk %s", again, first.DataDisk)
		}
		if err := p.Delete(ctx, again.Ref(hostID), false); err != nil {
			t.Fatal(err)
		}
		waitGone(t, p, again.Ref(hostID))
		waitNoDisk(t, srv, spec.Name+"-data")
	})
	t.Run("delete the disk later", func(t *testing.T) {
		hostID := uuid.NewString()
		spec := baseSpec(hostID)
		inst, err := p.Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Delete(ctx, inst.Ref(hostID), true); err != nil {
			t.Fatal(err)
		}
		waitGone(t, p, inst.Ref(hostID))
		// The host is deprovisioned later: the VM is gone, the disk goes.
		if err := p.Delete(ctx, provider.Ref{HostID: hostID}, false); err != nil {
			t.Fatal(err)
		}
		waitNoDisk(t, srv, spec.Name+"-data")
		if err := p.Delete(ctx, provider.Ref{HostID: hostID}, false); err != nil {
			t.Fatalf("deleting what is gone: %v", err)
		}
	})
}

func TestStatusMapping(t *testing.T) {
	for status, want := range map[string]provider.State{
		"PROVISIONING": provider.StatePending, "STAGING": provider.StatePending, "REPAIRING": provider.StatePending,
		"RUNNING": provider.StateRunning, "STOPPING": provider.StateStopping, "SUSPENDING": provider.StateStopping,
		"TERMINATED": provider.StateStopped, "SUSPENDED": provider.StateStopped, "PENDING_STOP": provider.StatePending,
		"SOMETHING_NEW": provider.StateError,
	} {
		if got := stateOf(status); got != want {
			t.Errorf("stateOf(%s) = %s, want %s", status, got, want)
		}
	}
	// Through the API: the cloud changes a VM on its own.
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)
	hostID := uuid.NewString()
	inst, err := p.Create(ctx, baseSpec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	ref := inst.Ref(hostID)
	waitState(t, p, ref, provider.StateRunning)
	for _, tc := range []struct {
		status string
		want   provider.State
	}{{"TERMINATED", provider.StateStopped}, {"REPAIRING", provider.StatePending}, {"SUSPENDED", provider.StateStopped}} {
		if err := srv.SetStatus(inst.Name, tc.status); err != nil {
			t.Fatal(err)
		}
		got, err := p.Status(ctx, ref)
		if err != nil || got.State != tc.want {
			t.Fatalf("VM %s: Status gave %s, %v; want %s", tc.status, got.State, err, tc.want)
		}
	}
	// A suspended VM is started by resuming it.
	if _, err := p.Start(ctx, ref); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, ref, provider.StateRunning)
	if srv.Requests("instances.resume") != 1 {
		t.Fatal("a suspended VM was not resumed")
	}
	// Status of a ref without a zone looks in every zone.
	other := baseSpec(uuid.NewString())
	other.Zone = "europe-west4-a"
	if _, err := p.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	got, err := p.Status(ctx, provider.Ref{HostID: other.HostID})
	if err != nil || got.Zone != "europe-west4-a" {
		t.Fatalf("Status without a zone: %+v, %v", got, err)
	}
	_, err = p.Status(ctx, provider.Ref{HostID: uuid.NewString()})
	wantKind(t, err, errkind.NotFound)
}

func TestListByLabel(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{PageSize: 2}) // several pages
	mine := newTestProvider(t, srv, "mine", nil)
	theirs := newTestProvider(t, srv, "theirs", nil)
	ctx := testCtx(t)
	want := map[string]string{}
	for i, zone := range []string{"us-central1-a", "us-central1-b", "europe-west4-a", "us-central1-a", "us-central1-b"} {
		spec := baseSpec(uuid.NewString())
		spec.Zone = zone
		p := mine
		if i == 3 {
			p = theirs
		}
		inst, err := p.Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if p == mine {
			want[inst.Name] = spec.HostID
		}
	}
	list, err := mine.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want) {
		t.Fatalf("List returned %d instances, want %d: %+v", len(list), len(want), list)
	}
	for _, in := range list {
		if want[in.Name] != in.HostID || in.Labels[provider.LabelDeployment] != "mine" {
			t.Fatalf("listed %s (host %s, labels %v), not one of ours", in.Name, in.HostID, in.Labels)
		}
	}
	if srv.Requests("instances.aggregatedList") < 2 {
		t.Fatal("the listing did not page")
	}
}

func TestErrorClassification(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", map[string]string{"request_timeout": "200ms"})
	ctx := testCtx(t)
	hostID := uuid.NewString()
	inst, err := p.Create(ctx, baseSpec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	ref := inst.Ref(hostID)
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name       string
		fault      gcpfake.Fault
		kind       errkind.Kind
		retryAfter time.Duration
	}{
		{"429 with seconds", gcpfake.Fault{Status: 429, RetryAfter: "7"}, errkind.RateLimited, 7 * time.Second},
		{"429 with a date", gcpfake.Fault{Status: 429, RetryAfter: date}, errkind.RateLimited, 80 * time.Second},
		{"403 rate limit", gcpfake.Fault{Status: 403, Reason: "rateLimitExceeded"}, errkind.RateLimited, 0},
		{"403 quota", gcpfake.Fault{Status: 403, Reason: "quotaExceeded", Message: "Quota 'CPUS' exceeded. Limit: 24.0 in region us-central1."}, errkind.Quota, 0},
		{"401", gcpfake.Fault{Status: 401}, errkind.Auth, 0},
		{"500", gcpfake.Fault{Status: 500}, errkind.Transient, 0},
		{"503", gcpfake.Fault{Status: 503}, errkind.Transient, 0},
		{"timeout", gcpfake.Fault{Hang: 3 * time.Second}, errkind.Transient, 0},
		{"400", gcpfake.Fault{Status: 400, Reason: "invalid"}, errkind.Invalid, 0},
		{"404", gcpfake.Fault{Status: 404}, errkind.NotFound, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fault
			f.Action = "instances.get"
			srv.InjectFault(f)
			before := srv.Requests("instances.get")
			_, err := p.Status(ctx, ref)
			wantKind(t, err, tc.kind)
			if got := errkind.RetryAfter(err); tc.retryAfter > 0 && (got < tc.retryAfter || got > tc.retryAfter+15*time.Second) {
				t.Fatalf("RetryAfter = %s, want about %s", got, tc.retryAfter)
			}
			if n := srv.Requests("instances.get") - before; n != 1 {
				t.Fatalf("%d requests: the SDK retried by itself", n)
			}
			// The fault is spent: the retry the queue makes succeeds.
			if _, err := p.Status(ctx, ref); err != nil {
				t.Fatalf("retry after the fault: %v", err)
			}
		})
	}
}

// The queue retries a rate-limited call after the Retry-After it was
// given; this is that loop, against the fake.
func TestRetryHonoursRetryAfter(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", nil)
	ctx := testCtx(t)
	srv.InjectFault(gcpfake.Fault{Action: "instances.aggregatedList", Status: 429, RetryAfter: "1"})
	var waited time.Duration
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		_, err = p.List(ctx)
		if err == nil || !errkind.Retryable(err) {
			break
		}
		d := errkind.RetryAfter(err)
		if d <= 0 {
			t.Fatalf("a 429 without a delay: %v", err)
		}
		waited += d
		time.Sleep(d)
	}
	if err != nil {
		t.Fatalf("List after retrying: %v (waited %s)", err, waited)
	}
	if waited != time.Second || srv.Requests("instances.aggregatedList") != 2 {
		t.Fatalf("waited %s over %d requests; want 1s over 2", waited, srv.Requests("instances.aggregatedList"))
	}
}

// The data disk Create makes is DataDiskGB's size, which estimates price:
// data_disk_gb when the spec gives none, at least GCP's smallest.
func TestDataDiskGBIsWhatCreateMakes(t *testing.T) {
	srv := fastFake(t, gcpfake.Options{})
	p := newTestProvider(t, srv, "dep1", map[string]string{"data_disk_gb": "25"})
	for asked, want := range map[int]int64{0: 25, 5: 10} {
		spec := baseSpec(uuid.NewString())
		spec.DiskGB = asked
		inst, err := p.Create(testCtx(t), spec)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := srv.Disk(inst.DataDisk); d.GetSizeGb() != want || int64(p.DataDiskGB(asked)) != want {
			t.Errorf("asked %d GB: made %d GB, DataDiskGB says %d; want %d", asked, d.GetSizeGb(), p.DataDiskGB(asked), want)
		}
	}
}
