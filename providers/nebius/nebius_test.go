package nebius

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gopkg.in/yaml.v3"

	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/providers/nebius/nebiusfake"
)

func TestCreateInstanceShape(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	fleet, hostKey := testKeys(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	spec.SSHUser, spec.SSHAuthorizedKey, spec.HostKey = "cocalc", fleet, hostKey
	spec.DiskGB = 40
	spec.Labels["team"] = "math"

	inst, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if inst.State != provider.StateRunning || net.ParseIP(inst.PublicIP) == nil || net.ParseIP(inst.PrivateIP) == nil {
		t.Fatalf("Create returned state %s, public %q, private %q; want running with bare addresses", inst.State, inst.PublicIP, inst.PrivateIP)
	}
	if inst.SSHUser != "cocalc" || inst.SSHPort != 22 || inst.HostID != hostID || inst.Region != testRegion {
		t.Fatalf("Create returned user %q port %d host %q region %q", inst.SSHUser, inst.SSHPort, inst.HostID, inst.Region)
	}
	if inst.DiskGB != 40 || inst.DataDiskDevice != "/dev/disk/by-id/virtio-cocalc-data" || inst.Meta["machine_type"] != "cpu-d3/2vcpu-8gb" {
		t.Fatalf("Create returned disk %d GB at %q, machine %q", inst.DiskGB, inst.DataDiskDevice, inst.Meta["machine_type"])
	}

	in, ok := srv.Instance(spec.Name)
	if !ok {
		t.Fatal("the fake has no instance")
	}
	labels := in.GetMetadata().GetLabels()
	if labels[provider.LabelDeployment] != "dep" || labels[provider.LabelHost] != hostID || labels["team"] != "math" {
		t.Fatalf("instance labels %v", labels)
	}
	is := in.GetSpec()
	if is.GetResources().GetPlatform() != "cpu-d3" || is.GetPreemptible() != nil || is.GetNetworkInterfaces()[0].GetPublicIpAddress() == nil {
		t.Fatalf("instance spec %v", is)
	}
	boot, ok := srv.Disk(spec.Name + "-boot")
	if !ok || is.GetBootDisk().GetExistingDisk().GetId() != boot.GetMetadata().GetId() {
		t.Fatalf("boot disk %v is not the instance's boot disk %v", boot, is.GetBootDisk())
	}
	if boot.GetSpec().GetSourceImageFamily().GetImageFamily() != "ubuntu22.04-driverless" {
		t.Fatalf("boot disk source %v", boot.GetSpec().GetSource())
	}
	data, ok := srv.Disk(spec.Name + "-data")
	if !ok || inst.DataDisk != data.GetMetadata().GetId() || data.GetStatus().GetSizeBytes() != 40<<30 {
		t.Fatalf("data disk %v, instance reports %q", data, inst.DataDisk)
	}
	if data.GetMetadata().GetLabels()[provider.LabelDeployment] != "dep" || data.GetMetadata().GetLabels()[labelDisk] != "data" {
		t.Fatalf("data disk labels %v", data.GetMetadata().GetLabels())
	}

	// The cloud-init user data is valid YAML with the login user, the
	// fleet key and the host key pair.
	ud := is.GetCloudInitUserData()
	if !strings.HasPrefix(ud, "#cloud-config\n") {
		t.Fatalf("user data does not start with #cloud-config: %q", ud)
	}
	var cc struct {
		Users []struct {
			Name              string   `yaml:"name"`
			Sudo              string   `yaml:"sudo"`
			SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
		} `yaml:"users"`
		SSHDeleteKeys bool              `yaml:"ssh_deletekeys"`
		SSHKeys       map[string]string `yaml:"ssh_keys"`
	}
	if err := yaml.Unmarshal([]byte(ud), &cc); err != nil {
		t.Fatalf("user data is not YAML: %v\n%s", err, ud)
	}
	if len(cc.Users) != 1 || cc.Users[0].Name != "cocalc" || len(cc.Users[0].SSHAuthorizedKeys) != 1 || cc.Users[0].SSHAuthorizedKeys[0] != fleet {
		t.Fatalf("cloud-init users %+v", cc.Users)
	}
	if !strings.Contains(cc.Users[0].Sudo, "NOPASSWD") {
		t.Fatalf("user has no passwordless sudo: %q", cc.Users[0].Sudo)
	}
	if !cc.SSHDeleteKeys || cc.SSHKeys["ed25519_private"] != strings.TrimSpace(hostKey.PrivatePEM)+"\n" || cc.SSHKeys["ed25519_public"] != hostKey.Public {
		t.Fatalf("cloud-init ssh_keys %v (delete %v)", cc.SSHKeys, cc.SSHDeleteKeys)
	}
}

func TestCreateGPUSpotPicksPresetAndImage(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	spec := testSpec(uuid.NewString())
	spec.GPUModel, spec.GPUCount, spec.Spot = "H100", 1, true
	inst, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if inst.Meta["machine_type"] != "gpu-h100-sxm/1gpu-16vcpu-200gb" || inst.Meta["preemptible"] != "true" {
		t.Fatalf("machine %q preemptible %q", inst.Meta["machine_type"], inst.Meta["preemptible"])
	}
	in, _ := srv.Instance(spec.Name)
	if pr := in.GetSpec().GetPreemptible(); pr.GetOnPreemption() != compute.PreemptibleSpec_STOP || in.GetSpec().GetRecoveryPolicy() != compute.InstanceRecoveryPolicy_FAIL {
		t.Fatalf("preemptible spec %v, recovery %v", pr, in.GetSpec().GetRecoveryPolicy())
	}
	boot, _ := srv.Disk(spec.Name + "-boot")
	if boot.GetSpec().GetSourceImageFamily().GetImageFamily() != "ubuntu22.04-cuda12" {
		t.Fatalf("GPU boot image %v", boot.GetSpec().GetSource())
	}
}

func TestCreateRefusesBadRequests(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	for name, mod := range map[string]func(*provider.CreateSpec){
		"machine type without preset": func(s *provider.CreateSpec) { s.MachineType = "gpu-h100-sxm" },
		"unknown platform":            func(s *provider.CreateSpec) { s.MachineType = "gpu-x9000/1gpu" },
		"unknown preset":              func(s *provider.CreateSpec) { s.MachineType = "cpu-d3/3vcpu-7gb" },
		"unknown GPU model":           func(s *provider.CreateSpec) { s.GPUModel = "a100" },
		"too many GPUs":               func(s *provider.CreateSpec) { s.GPUModel, s.GPUCount = "l40s", 2 },
		"spot on L40S":                func(s *provider.CreateSpec) { s.GPUModel, s.Spot = "l40s", true },
		"other region":                func(s *provider.CreateSpec) { s.Region = "us-central1" },
		"zone":                        func(s *provider.CreateSpec) { s.Zone = "eu-north1-a" },
		"GPUs without model":          func(s *provider.CreateSpec) { s.GPUCount = 1 },
		"bad ssh user":                func(s *provider.CreateSpec) { s.SSHUser = "Root User" },
		"ssh user of 33":              func(s *provider.CreateSpec) { s.SSHUser = "u" + strings.Repeat("x", 32) },
		"name of 59":                  func(s *provider.CreateSpec) { s.Name = "a" + strings.Repeat("b", 58) },
	} {
		t.Run(name, func(t *testing.T) {
			spec := testSpec(uuid.NewString())
			mod(&spec)
			_, err := p.Create(ctx, spec)
			if kindOf(err) != errkind.Invalid {
				t.Fatalf("got %v (kind %s), want an invalid error", err, kindOf(err))
			}
			if srv.InstanceCount(spec.Name) != 0 {
				t.Fatal("an instance was made anyway")
			}
			if _, ok := srv.Disk(spec.Name + "-data"); ok {
				t.Fatal("a disk was made for a request that was refused")
			}
		})
	}
}

func TestCreateCapacityError(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	spec := testSpec(uuid.NewString())
	spec.GPUModel = "h100"

	// The create operation fails for lack of capacity, as Nebius reports
	// it: RESOURCE_EXHAUSTED with a NotEnoughResources detail.
	srv.SetCapacity("gpu-h100-sxm", false)
	_, err := p.Create(ctx, spec)
	if kindOf(err) != errkind.Capacity || !errkind.Retryable(err) {
		t.Fatalf("got %v (kind %s), want a retryable capacity error", err, kindOf(err))
	}
	if !strings.Contains(err.Error(), "nebius") {
		t.Fatalf("error does not name the provider: %v", err)
	}
	if srv.InstanceCount(spec.Name) != 0 {
		t.Fatal("an instance is left after the capacity failure")
	}
	for _, d := range srv.Disks() {
		t.Errorf("disk %s is left after the capacity failure", d.GetMetadata().GetName())
	}

	// The same failure reported by the call itself.
	srv.SetCapacity("gpu-h100-sxm", true)
	srv.Inject(nebiusfake.MethodInstanceCreate, 1, nebiusfake.Capacity())
	if _, err := p.Create(ctx, spec); kindOf(err) != errkind.Capacity {
		t.Fatalf("got %v (kind %s), want a capacity error", err, kindOf(err))
	}

	// Capacity is back: the host comes up.
	inst, err := p.Create(ctx, spec)
	if err != nil || inst.State != provider.StateRunning {
		t.Fatalf("Create once capacity is back: %v, state %s", err, inst.State)
	}
	if n := srv.CreatedCount(spec.Name); n != 1 {
		t.Fatalf("%d instances were made, want 1", n)
	}
}

func TestQuotaIsNotRetried(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	srv.Inject(nebiusfake.MethodInstanceCreate, 1, nebiusfake.QuotaExceeded())
	_, err := p.Create(testCtx(t), testSpec(uuid.NewString()))
	if kindOf(err) != errkind.Quota || errkind.Retryable(err) {
		t.Fatalf("got %v (kind %s), want a non-retryable quota error", err, kindOf(err))
	}
	if n := len(srv.Calls(nebiusfake.MethodInstanceCreate)); n != 1 {
		t.Fatalf("instance create was called %d times, want 1 (quota is not retried)", n)
	}
}

// A create that reaches Nebius but whose reply is lost is retried with
// the same idempotency key: one instance, not two.
func TestCreateErrorAfterCreateRetriesWithSameKey(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	spec := testSpec(uuid.NewString())
	srv.Inject(nebiusfake.MethodInstanceCreate, 1, nebiusfake.ErrorAfterCreate())
	inst, err := p.Create(testCtx(t), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	calls := srv.Calls(nebiusfake.MethodInstanceCreate)
	if len(calls) != 2 || calls[0].Key == "" || calls[0].Key != calls[1].Key {
		t.Fatalf("create calls %+v: want two with the same idempotency key", calls)
	}
	if n := srv.CreatedCount(spec.Name); n != 1 || srv.InstanceCount(spec.Name) != 1 {
		t.Fatalf("%d instances made, %d exist; want 1", n, srv.InstanceCount(spec.Name))
	}
	if inst.State != provider.StateRunning {
		t.Fatalf("state %s", inst.State)
	}
}

// Without in-call retries, the failed Create looks for the instance it
// may have made and returns it; a later Create returns the same one.
func TestCreateErrorAfterCreateFindsInstance(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", map[string]string{"retries": "0"})
	ctx := testCtx(t)
	spec := testSpec(uuid.NewString())
	srv.Inject(nebiusfake.MethodInstanceCreate, 1, nebiusfake.ErrorAfterCreate())
	first, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	again, err := p.Create(ctx, spec)
	if err != nil || again.ID != first.ID {
		t.Fatalf("second Create: %v, id %q, want %q", err, again.ID, first.ID)
	}
	if n := srv.CreatedCount(spec.Name); n != 1 {
		t.Fatalf("%d instances made, want 1", n)
	}
	if n := len(srv.Calls(nebiusfake.MethodInstanceCreate)); n != 1 {
		t.Fatalf("instance create called %d times, want 1", n)
	}
}

func TestStopStartAndStates(t *testing.T) {
	o := fastFake()
	o.StopDelay, o.BootDelay = 300*time.Millisecond, 300*time.Millisecond
	srv := startFake(t, o)
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	spec := testSpec(uuid.NewString())

	created := make(chan error, 1)
	go func() { _, err := p.Create(ctx, spec); created <- err }()
	ref := provider.Ref{HostID: spec.HostID, Name: spec.Name}
	// CREATING and STARTING are both pending to us.
	pending := waitState(t, p, ref, provider.StatePending)
	if pending.PublicIP != "" {
		t.Fatalf("a pending instance has public address %s", pending.PublicIP)
	}
	if err := <-created; err != nil {
		t.Fatalf("Create: %v", err)
	}
	running := waitState(t, p, ref, provider.StateRunning)
	ref = running.Ref(spec.HostID)

	stopped := make(chan error, 1)
	go func() { _, err := p.Stop(ctx, ref); stopped <- err }()
	waitState(t, p, ref, provider.StateStopping)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	st := waitState(t, p, ref, provider.StateStopped)
	if st.PublicIP != "" {
		t.Fatalf("a stopped instance keeps dynamic address %s", st.PublicIP)
	}
	if _, err := p.Stop(ctx, ref); err != nil {
		t.Fatalf("Stop of a stopped instance: %v", err)
	}
	if n := len(srv.Calls(nebiusfake.MethodInstanceStop)); n != 1 {
		t.Fatalf("Stop was sent %d times, want 1", n)
	}
	started, err := p.Start(ctx, ref)
	if err != nil || started.State != provider.StateRunning {
		t.Fatalf("Start: %v, state %s", err, started.State)
	}
	if started.PublicIP == "" || started.PublicIP == running.PublicIP {
		t.Fatalf("after a restart the public address is %q (was %q); Nebius gives a new dynamic one", started.PublicIP, running.PublicIP)
	}
	if _, err := p.Start(ctx, ref); err != nil {
		t.Fatalf("Start of a running instance: %v", err)
	}
	if n := len(srv.Calls(nebiusfake.MethodInstanceStart)); n != 1 {
		t.Fatalf("Start was sent %d times, want 1", n)
	}
}

func TestStateMapping(t *testing.T) {
	want := map[compute.InstanceStatus_InstanceState]provider.State{
		compute.InstanceStatus_UNSPECIFIED: provider.StatePending,
		compute.InstanceStatus_CREATING:    provider.StatePending,
		compute.InstanceStatus_UPDATING:    provider.StatePending,
		compute.InstanceStatus_STARTING:    provider.StatePending,
		compute.InstanceStatus_RUNNING:     provider.StateRunning,
		compute.InstanceStatus_STOPPING:    provider.StateStopping,
		compute.InstanceStatus_STOPPED:     provider.StateStopped,
		compute.InstanceStatus_DELETING:    provider.StateTerminating,
		compute.InstanceStatus_ERROR:       provider.StateError,
	}
	if len(want) != len(compute.InstanceStatus_InstanceState_name) {
		t.Fatalf("the SDK has %d instance states, the table %d", len(compute.InstanceStatus_InstanceState_name), len(want))
	}
	for s, w := range want {
		if got := mapState(s); got != w {
			t.Errorf("%s maps to %s, want %s", s, got, w)
		}
	}
}

func TestResizeOnlyWhileStopped(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	spec := testSpec(uuid.NewString())
	inst, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	ref := inst.Ref(spec.HostID)
	_, err = p.ResizeDisk(ctx, ref, 30)
	if kindOf(err) != errkind.Invalid || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("resize of a running instance: %v (kind %s), want an invalid error saying to stop", err, kindOf(err))
	}
	if n := len(srv.Calls(nebiusfake.MethodDiskUpdate)); n != 0 {
		t.Fatalf("the disk was updated %d times while running", n)
	}
	if _, err := p.Stop(ctx, ref); err != nil {
		t.Fatal(err)
	}
	got, err := p.ResizeDisk(ctx, ref, 30)
	if err != nil || got.DiskGB != 30 {
		t.Fatalf("resize: %v, disk %d GB", err, got.DiskGB)
	}
	d, _ := srv.Disk(spec.Name + "-data")
	if d.GetStatus().GetSizeBytes() != 30<<30 || d.GetSpec().GetType() != compute.DiskSpec_NETWORK_SSD {
		t.Fatalf("fake disk after resize: %v", d)
	}
	if _, err := p.ResizeDisk(ctx, ref, 30); err != nil {
		t.Fatalf("repeating the resize: %v", err)
	}
	if n := len(srv.Calls(nebiusfake.MethodDiskUpdate)); n != 1 {
		t.Fatalf("disk updated %d times, want 1", n)
	}
	if _, err := p.ResizeDisk(ctx, ref, 10); kindOf(err) != errkind.Invalid {
		t.Fatalf("shrinking: %v (kind %s), want invalid", err, kindOf(err))
	}
	if st, err := p.Start(ctx, ref); err != nil || st.DiskGB != 30 {
		t.Fatalf("start after resize: %v, disk %d", err, st.DiskGB)
	}
}

func TestDeleteKeepingAndRemovingTheDataDisk(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	spec := testSpec(uuid.NewString())
	first, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, first.Ref(spec.HostID), true); err != nil {
		t.Fatalf("Delete(keepDisk): %v", err)
	}
	if srv.InstanceCount(spec.Name) != 0 {
		t.Fatal("instance still exists")
	}
	if _, ok := srv.Disk(spec.Name + "-boot"); ok {
		t.Fatal("the boot disk was kept")
	}
	data, ok := srv.Disk(spec.Name + "-data")
	if !ok || data.GetStatus().GetReadWriteAttachment() != "" {
		t.Fatalf("the data disk was not kept detached: %v", data)
	}
	if _, err := p.Status(ctx, first.Ref(spec.HostID)); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("Status after delete: %v, want not found", err)
	}

	// A later Create of the same name attaches the kept disk again.
	again, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if again.DataDisk != first.DataDisk || again.ID == first.ID {
		t.Fatalf("recreated instance %s has data disk %s; want a new instance with the kept disk %s", again.ID, again.DataDisk, first.DataDisk)
	}

	if err := p.Delete(ctx, again.Ref(spec.HostID), false); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, d := range srv.Disks() {
		t.Errorf("disk %s is left after deleting without keeping the disk", d.GetMetadata().GetName())
	}
	if err := p.Delete(ctx, again.Ref(spec.HostID), false); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("second Delete: %v, want not found", err)
	}
}

// A Delete that kept the data disk, followed by one that does not, removes
// the kept disk even though no instance is left.
func TestDeleteRemovesAKeptDisk(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	spec := testSpec(uuid.NewString())
	inst, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, inst.Ref(spec.HostID), true); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, provider.Ref{HostID: spec.HostID}, false); err != nil {
		t.Fatalf("deleting the kept disk: %v", err)
	}
	if _, ok := srv.Disk(spec.Name + "-data"); ok {
		t.Fatal("the kept disk is still there")
	}
}

func TestListByDeploymentLabel(t *testing.T) {
	srv := startFake(t, fastFake())
	a := openProvider(t, srv, "alpha", nil)
	b := openProvider(t, srv, "beta", nil)
	ctx := testCtx(t)
	sa, sb := testSpec(uuid.NewString()), testSpec(uuid.NewString())
	if _, err := a.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, sb); err != nil {
		t.Fatal(err)
	}
	list, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != sa.Name || list[0].HostID != sa.HostID || list[0].DiskGB != 20 {
		t.Fatalf("alpha lists %+v, want only %s with its disk size", list, sa.Name)
	}
	// Beta's instance is not alpha's to touch even by name.
	if _, err := a.Stop(ctx, provider.Ref{Name: sb.Name}); kindOf(err) != errkind.Invalid {
		t.Fatalf("alpha stopping beta's instance: %v, want refused", err)
	}
}

func TestRateLimitHonoursRetryAfter(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	ctx := testCtx(t)
	const wait = 150 * time.Millisecond
	srv.Inject(nebiusfake.MethodInstanceGetByName, 1, nebiusfake.RateLimited(wait))
	_, err := p.Status(ctx, provider.Ref{Name: "ch-missing"})
	if !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("Status after a rate limit: %v, want not found", err)
	}
	calls := srv.Calls(nebiusfake.MethodInstanceGetByName)
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	if gap := calls[1].At.Sub(calls[0].At); gap < wait {
		t.Fatalf("retried after %s; the server asked for %s", gap, wait)
	}

	// A wait longer than max_retry_wait goes back to the caller, with
	// the delay Nebius asked for.
	q := openProvider(t, srv, "dep", map[string]string{"max_retry_wait": "50ms"})
	srv.Inject(nebiusfake.MethodInstanceGetByName, 1, nebiusfake.RateLimited(10*time.Second))
	_, err = q.Status(ctx, provider.Ref{Name: "ch-missing"})
	if kindOf(err) != errkind.RateLimited || errkind.RetryAfter(err) != 10*time.Second {
		t.Fatalf("got %v (kind %s, retry after %s), want rate limited asking for 10s", err, kindOf(err), errkind.RetryAfter(err))
	}
}

func TestTransientFailures(t *testing.T) {
	srv := startFake(t, fastFake())
	ctx := testCtx(t)
	p := openProvider(t, srv, "dep", nil)
	srv.Inject(nebiusfake.MethodInstanceList, 2, nebiusfake.Unavailable())
	if _, err := p.List(ctx); err != nil {
		t.Fatalf("List through two UNAVAILABLEs: %v", err)
	}

	once := openProvider(t, srv, "dep", map[string]string{"retries": "0", "request_timeout": "100ms"})
	for name, f := range map[string]nebiusfake.Fault{
		"unavailable":       nebiusfake.Unavailable(),
		"deadline exceeded": nebiusfake.DeadlineExceeded(),
		"hang":              nebiusfake.Hang(5 * time.Second),
	} {
		srv.Inject(nebiusfake.MethodInstanceList, 1, f)
		_, err := once.List(ctx)
		if kindOf(err) != errkind.Transient || !errkind.Retryable(err) {
			t.Errorf("%s: got %v (kind %s), want a retryable transient error", name, err, kindOf(err))
		}
	}
	srv.Clear()
	srv.Inject(nebiusfake.MethodInstanceList, 1, nebiusfake.PermissionDenied())
	if _, err := once.List(ctx); kindOf(err) != errkind.Auth {
		t.Errorf("permission denied: got %v (kind %s), want auth", err, kindOf(err))
	}
}

func TestOperationPollFaults(t *testing.T) {
	srv := startFake(t, fastFake())
	p := openProvider(t, srv, "dep", nil)
	srv.Inject(nebiusfake.MethodOperationGet, 2, nebiusfake.Unavailable())
	if _, err := p.Create(testCtx(t), testSpec(uuid.NewString())); err != nil {
		t.Fatalf("Create while operation polls fail twice: %v", err)
	}
}

// An end-to-end test can make the fake hand out a reachable address.
func TestFakeChosenPublicAddress(t *testing.T) {
	o := fastFake()
	o.PublicIP = func(name string) string { return "192.0.2.10" }
	srv := startFake(t, o)
	p := openProvider(t, srv, "dep", nil)
	inst, err := p.Create(testCtx(t), testSpec(uuid.NewString()))
	if err != nil || inst.PublicIP != "192.0.2.10" {
		t.Fatalf("Create: %v, public address %q", err, inst.PublicIP)
	}
}
