package lambda

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
	"github.com/sagemathinc/cocalc-hosts/providers/lambda/lambdafake"
)

func TestContract(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	providertest.RunWithOptions(t, providertest.Options{
		Deployment:   testDeployment,
		Spec:         provider.CreateSpec{Region: "us-east-1", MachineType: "gpu_1x_a10", SSHAuthorizedKey: testPubKey},
		Timeout:      20 * time.Second,
		PollInterval: 5 * time.Millisecond,
	}, func(t *testing.T) provider.Provider { return e.p })
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	spec.HostKey = &provider.HostKey{
		PrivatePEM: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY-----\n",
		Public:     "ssh-ed25519 AAAAHOSTKEY host",
	}
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != provider.StatePending || in.ID == "" || in.Name != spec.Name || in.HostID != hostID {
		t.Fatalf("Create returned %+v, want a pending instance %s of host %s", in, spec.Name, hostID)
	}
	if in.PublicIP != "" {
		t.Fatalf("a booting instance has no address yet, got %q", in.PublicIP)
	}
	// The deployment's key was registered once, under our name scheme.
	keys := e.fake.SSHKeyNames()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "cocalc-hosts-test-dep-") {
		t.Fatalf("registered SSH keys %v, want one cocalc-hosts-test-dep-<fp>", keys)
	}
	// The host key travels in cloud-init user data.
	recs := e.fake.Instances()
	if len(recs) != 1 || !strings.HasPrefix(recs[0].UserData, "#cloud-config\n") ||
		!strings.Contains(recs[0].UserData, "ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    AAAA\n") ||
		!strings.Contains(recs[0].UserData, `ed25519_public: "ssh-ed25519 AAAAHOSTKEY host"`) {
		t.Fatalf("user data does not carry the host key: %+v", recs)
	}
	run := waitState(t, e.p, in.Ref(hostID), provider.StateRunning)
	if run.PublicIP == "" || run.Region != "us-east-1" || run.SSHUser != DefaultSSHUser || run.Meta["instance_type"] != "gpu_1x_a10" {
		t.Fatalf("running instance %+v lacks address, region, user or type", run)
	}
	if run.Labels[provider.LabelDeployment] != testDeployment || run.Labels[provider.LabelHost] != hostID {
		t.Fatalf("labels %v, want deployment %s and host %s", run.Labels, testDeployment, hostID)
	}
	// Status by name alone (a ref without the instance id) finds it too.
	byName, err := e.p.Status(ctx, provider.Ref{HostID: hostID})
	if err != nil || byName.ID != in.ID {
		t.Fatalf("Status by host id: %+v, %v; want %s", byName, err, in.ID)
	}

	// List returns ours only: not a VM with our name scheme but another
	// deployment's key, nor one a person launched with their own key.
	other := provider.InstanceName(uuid.NewString())
	e.fake.AddForeignInstance(other, "us-east-1", "gpu_1x_a10", "cocalc-hosts-other-dep-0123abcd")
	e.fake.AddForeignInstance("ch-"+uuid.NewString(), "us-east-1", "gpu_1x_a10", "cocalc-hosts-test-dep-extra-0123abcd")
	e.fake.AddForeignInstance("training", "us-east-1", "gpu_1x_a10", "my-laptop")
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != in.ID {
		t.Fatalf("List = %+v, want only %s", list, in.ID)
	}
	// A foreign instance is not found by id either.
	foreign := e.fake.Instances()[1].ID
	if _, err := e.p.Status(ctx, provider.Ref{Name: other, InstanceID: foreign}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("Status of another deployment's instance: %v, want not found", err)
	}

	if err := e.p.Delete(ctx, run.Ref(hostID), false); err != nil {
		t.Fatal(err)
	}
	st, err := e.p.Status(ctx, run.Ref(hostID))
	if err == nil && st.State != provider.StateTerminating {
		t.Fatalf("just after Delete: %+v, want terminating or gone", st)
	}
	waitGone(t, e.p, run.Ref(hostID))
	if err := e.p.Delete(ctx, run.Ref(hostID), false); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("second Delete: %v, want not found", err)
	}
	if n := e.fake.Requests("POST /instance-operations/terminate"); n != 1 {
		t.Fatalf("terminate called %d times, want 1", n)
	}
}

func TestCreateCustomUserAndImage(t *testing.T) {
	e := newEnv(t, fastFake(), map[string]string{"image": "lambda-stack-22-04"})
	ctx := ctxT(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	spec.SSHUser = "cocalc"
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.SSHUser != "cocalc" {
		t.Fatalf("SSHUser = %q, want cocalc", in.SSHUser)
	}
	rec := e.fake.Instances()[0]
	if rec.Image != "lambda-stack-22-04" {
		t.Fatalf("image %q, want the configured family", rec.Image)
	}
	if !strings.Contains(rec.UserData, "- name: \"cocalc\"") || !strings.Contains(rec.UserData, testPubKey) {
		t.Fatalf("user data does not make user cocalc with the fleet key:\n%s", rec.UserData)
	}
	// The user comes back through the ref's meta on later calls.
	st, err := e.p.Status(ctx, in.Ref(hostID))
	if err != nil || st.SSHUser != "cocalc" {
		t.Fatalf("Status: %+v, %v; want user cocalc", st, err)
	}
}

func TestCreateCapacity(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)

	// A named type and region without capacity: Lambda's 400
	// insufficient-capacity is a capacity error, and nothing is made.
	spec := testSpec(uuid.NewString())
	spec.MachineType, spec.Region = "gpu_8x_a100_80gb_sxm4", "us-east-1"
	_, err := e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Capacity)
	if n := len(e.fake.Instances()); n != 0 {
		t.Fatalf("%d instances after a capacity error, want 0", n)
	}

	// With only a GPU model, the cheapest type with capacity is chosen,
	// and when its region runs out the next one is used.
	spec = testSpec(uuid.NewString())
	spec.MachineType, spec.Region, spec.GPUModel = "", "", "A10"
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.Region != "us-east-1" || in.Meta["instance_type"] != "gpu_1x_a10" {
		t.Fatalf("chose %s in %s, want gpu_1x_a10 in us-east-1", in.Meta["instance_type"], in.Region)
	}
	e.fake.SetCapacity("gpu_1x_a10", "us-west-1")
	spec = testSpec(uuid.NewString())
	spec.MachineType, spec.Region, spec.GPUModel = "", "", "a10"
	in, err = e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.Region != "us-west-1" {
		t.Fatalf("fell back to %s, want us-west-1", in.Region)
	}
	// No capacity anywhere for the GPU: a capacity error that says so.
	e.fake.SetCapacity("gpu_1x_a10")
	spec = testSpec(uuid.NewString())
	spec.MachineType, spec.Region, spec.GPUModel = "", "", "a10"
	_, err = e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Capacity)
	if !strings.Contains(err.Error(), "a10") {
		t.Fatalf("capacity error %q does not name the GPU", err)
	}
}

func TestCreateRefusesWhatLambdaCannotDo(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	for name, change := range map[string]func(*provider.CreateSpec){
		"no ssh key": func(s *provider.CreateSpec) { s.SSHAuthorizedKey = "" },
		"spot":       func(s *provider.CreateSpec) { s.Spot = true },
		"zone":       func(s *provider.CreateSpec) { s.Zone = "us-east-1a" },
		"bad name":   func(s *provider.CreateSpec) { s.Name = "Bad_Name" },
	} {
		spec := testSpec(uuid.NewString())
		change(&spec)
		_, err := e.p.Create(ctx, spec)
		if errkind.Of(err) != errkind.Invalid {
			t.Errorf("%s: got %v, want an invalid error", name, err)
		}
	}
	if n := e.fake.Requests("POST /instance-operations/launch"); n != 0 {
		t.Fatalf("%d launches for refused specs, want 0", n)
	}
	// Unknown instance type: Lambda's invalid-parameters is not retried.
	spec := testSpec(uuid.NewString())
	spec.MachineType = "gpu_1x_nonexistent"
	_, err := e.p.Create(ctx, spec)
	wantKind(t, err, errkind.Invalid)
}

// A launch that Lambda carries out but answers with a 500 (or whose reply
// never arrives) must not lead to a second instance on retry.
func TestCreateIdempotentAfterError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault lambdafake.Fault
	}{
		{"500 after launch", lambdafake.Fault{Method: "POST", Path: "/instance-operations/launch", Status: 500, AfterEffect: true}},
		{"reply lost (client timeout)", lambdafake.Fault{Method: "POST", Path: "/instance-operations/launch", Hang: 5 * time.Second, AfterEffect: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fastFake(), map[string]string{"timeout": "300ms"})
			ctx := ctxT(t)
			spec := testSpec(uuid.NewString())
			e.fake.InjectFault(tc.fault)
			_, err := e.p.Create(ctx, spec)
			wantKind(t, err, errkind.Transient)
			// The hang fault performs the launch after the client gave up.
			deadline := time.Now().Add(10 * time.Second)
			for e.fake.CountByName(spec.Name) == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := e.fake.CountByName(spec.Name); n != 1 {
				t.Fatalf("%d instances named %s after the failed launch, want 1", n, spec.Name)
			}
			in, err := e.p.Create(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if n := e.fake.Launches(spec.Name); n != 1 {
				t.Fatalf("retry launched again: %d instances named %s", n, spec.Name)
			}
			if in.ID != e.fake.Instances()[0].ID {
				t.Fatalf("retry returned %s, want the instance the failed launch made", in.ID)
			}
		})
	}
}

func TestRetryOn429HonoursRetryAfter(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	e.fake.InjectFault(lambdafake.Fault{Method: "GET", Path: "/instances", Status: 429, RetryAfter: "7", Times: 2})
	if _, err := e.p.List(ctx); err != nil {
		t.Fatalf("List through two 429s: %v", err)
	}
	if got := e.sleeps.Waits(); !slices.Equal(got, []time.Duration{7 * time.Second, 7 * time.Second}) {
		t.Fatalf("waited %v, want the 7s Retry-After twice", got)
	}
	if n := e.fake.Requests("GET /instances"); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}

	// A Retry-After longer than max_retry_wait goes back to the caller
	// (the queue), classified with the wait it asked for.
	e.fake.InjectFault(lambdafake.Fault{Method: "GET", Path: "/instances", Status: 429, RetryAfter: "120"})
	_, err := e.p.List(ctx)
	wantKind(t, err, errkind.RateLimited)
	if d := errkind.RetryAfter(err); d != 2*time.Minute {
		t.Fatalf("RetryAfter = %s, want 2m", d)
	}
	if !errkind.Retryable(err) {
		t.Fatal("a rate-limited error must be retryable")
	}
	if n := len(e.sleeps.Waits()); n != 2 {
		t.Fatalf("slept %d times in all, want no sleep for the long Retry-After", n)
	}

	// Rate limits on a launch are retried too: the launch did not happen.
	e.fake.InjectFault(lambdafake.Fault{Method: "POST", Path: "/instance-operations/launch", Status: 429, RetryAfter: "3"})
	spec := testSpec(uuid.NewString())
	if _, err := e.p.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.CountByName(spec.Name); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}
}

func TestErrorClassification(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	for _, tc := range []struct {
		fault lambdafake.Fault
		want  errkind.Kind
	}{
		{lambdafake.Fault{Status: 500}, errkind.Transient},
		{lambdafake.Fault{Status: 503}, errkind.Transient},
		{lambdafake.Fault{Status: 403, Code: "global/account-inactive"}, errkind.Auth},
		{lambdafake.Fault{Status: 400, Code: "global/quota-exceeded"}, errkind.Quota},
		{lambdafake.Fault{Status: 400, Code: "global/invalid-parameters"}, errkind.Invalid},
		{lambdafake.Fault{Status: 404, Code: "global/object-does-not-exist"}, errkind.NotFound},
		{lambdafake.Fault{Status: 400, Code: "instance-operations/launch/insufficient-capacity"}, errkind.Capacity},
	} {
		tc.fault.Method, tc.fault.Path = "GET", "/instance-types"
		e.fake.InjectFault(tc.fault)
		_, err := e.p.Catalog(ctx)
		if errkind.Of(err) != tc.want {
			t.Errorf("HTTP %d %s: got %v (kind %s), want %s", tc.fault.Status, tc.fault.Code, err, errkind.Of(err), tc.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "lambda ") {
			t.Errorf("error %q does not name the provider", err)
		}
	}
	// Status of an id Lambda does not know: not found.
	_, err := e.p.Status(ctx, provider.Ref{Name: "ch-x", InstanceID: "0123456789abcdef"})
	wantKind(t, err, errkind.NotFound)
	// A refused connection is transient.
	p, err := New(provider.Config{Deployment: "d", CredentialsFile: e.creds, Options: map[string]string{"endpoint": "http://127.0.0.1:1/api/v1"}})
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
		t.Fatalf("good key: %v", err)
	}
	open := func(creds string) *Provider {
		p, err := New(provider.Config{Deployment: "d", CredentialsFile: creds, Options: map[string]string{"endpoint": lambdafake.URL(e.srv.URL)}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("secret_not-the-key"), 0o600) //nolint:errcheck
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte(lambdafake.DefaultAPIKey), 0o644) //nolint:errcheck
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600) //nolint:errcheck
	for name, tc := range map[string]struct {
		creds, mention string
	}{
		"wrong key":  {wrong, "invalid-api-key"},
		"no file":    {filepath.Join(dir, "missing"), "providers add lambda"},
		"unset":      {"", "providers add lambda"},
		"loose mode": {loose, "chmod 600"},
		"empty file": {empty, "exactly one"},
	} {
		err := open(tc.creds).CheckCredentials(ctx)
		if errkind.Of(err) != errkind.Auth || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: got %v, want an auth error mentioning %q", name, err, tc.mention)
		}
		if err != nil && strings.Contains(err.Error(), lambdafake.DefaultAPIKey) {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}
}

func TestStopIsRefused(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	_, err := e.p.Stop(ctxT(t), provider.Ref{Name: "ch-x"})
	wantKind(t, err, errkind.Refused)
	if !strings.Contains(err.Error(), "--deprovision") {
		t.Fatalf("refusal %q does not point at stop --deprovision", err)
	}
	if c := e.p.Capabilities(); c.Stop != provider.StopNone || c.PersistentDisk || c.DiskResize || c.Spot || c.Zones || !c.Bootstrap || !c.GPU {
		t.Fatalf("capabilities %+v do not match Lambda", c)
	}
	if _, ok := any(e.p).(provider.DiskResizer); ok {
		t.Fatal("lambda cannot resize disks but implements DiskResizer")
	}
}

func TestStartRestartsUnhealthy(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	in, err := e.p.Create(ctx, testSpec(hostID))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e.p, in.Ref(hostID), provider.StateRunning)
	// Start of a running instance does nothing.
	if _, err := e.p.Start(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.Requests("POST /instance-operations/restart"); n != 0 {
		t.Fatalf("Start of a running instance restarted it (%d)", n)
	}
	e.fake.MarkUnhealthy(in.ID)
	st, err := e.p.Status(ctx, in.Ref(hostID))
	if err != nil || st.State != provider.StateError || st.Meta["status"] != "unhealthy" {
		t.Fatalf("unhealthy instance: %+v, %v; want state error", st, err)
	}
	st, err = e.p.Start(ctx, in.Ref(hostID))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != provider.StatePending {
		t.Fatalf("after restart: %s, want pending", st.State)
	}
	waitState(t, e.p, in.Ref(hostID), provider.StateRunning)
	if n := e.fake.Requests("POST /instance-operations/restart"); n != 1 {
		t.Fatalf("%d restarts, want 1", n)
	}
	// Start of a deleted instance: not found, so the caller recreates it.
	if err := e.p.Delete(ctx, in.Ref(hostID), true); err != nil {
		t.Fatal(err)
	}
	_, err = e.p.Start(ctx, in.Ref(hostID))
	wantKind(t, err, errkind.NotFound)
}

// Lambda keeps nothing after terminate, so keepDisk changes nothing and
// a later Create makes a fresh instance.
func TestDeleteKeepDiskTerminates(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	first, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.Delete(ctx, first.Ref(hostID), true); err != nil {
		t.Fatal(err)
	}
	if first.DataDisk != "" {
		t.Fatalf("lambda reports a data disk %q it cannot keep", first.DataDisk)
	}
	// While the first terminates, a new Create does not return it.
	again, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == first.ID {
		t.Fatal("Create returned the terminating instance")
	}
	if n := e.fake.CountByName(spec.Name); n != 1 {
		t.Fatalf("%d live instances named %s, want 1", n, spec.Name)
	}
}

func TestMapStatus(t *testing.T) {
	for in, want := range map[string]provider.State{
		"booting": provider.StatePending, "active": provider.StateRunning, "unhealthy": provider.StateError,
		"terminating": provider.StateTerminating, "terminated": provider.StateTerminated, "preempted": provider.StateError,
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
		{map[string]string{"regoin": "us-east-1"}, `"regoin"`},
		{map[string]string{"endpoint": "ftp://x"}, "endpoint"},
		{map[string]string{"timeout": "soon"}, "timeout"},
		{map[string]string{"max_retries": "-1"}, "max_retries"},
	} {
		_, err := New(provider.Config{Deployment: "d", Options: tc.opts})
		if err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("options %v: got %v, want an error naming %s", tc.opts, err, tc.mention)
		}
	}
	if _, err := New(provider.Config{}); err == nil {
		t.Error("New without a deployment succeeded")
	}
	p, err := provider.Open(Name, provider.Config{Deployment: "d", Options: map[string]string{"region": "us-west-1", "endpoint": "http://x/api/v1/"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.(*Provider).opts.endpoint != "http://x/api/v1" || p.(*Provider).opts.region != "us-west-1" {
		t.Fatalf("options not applied: %+v", p.(*Provider).opts)
	}
}

func TestKeyNames(t *testing.T) {
	mk := func(dep string) *Provider { return &Provider{deployment: dep} }
	a := mk("prod").keyName(testPubKey)
	if !strings.HasPrefix(a, "cocalc-hosts-prod-") || len(a) != len("cocalc-hosts-prod-")+8 {
		t.Fatalf("key name %q", a)
	}
	if b := mk("prod").keyName(testPubKey + "\n"); b != a {
		t.Fatalf("trailing newline changed the key name: %q vs %q", b, a)
	}
	long := mk(strings.Repeat("x", 100)).keyName(testPubKey)
	odd := mk("Prod Cluster/1").keyName(testPubKey)
	for _, n := range []string{long, odd} {
		if len(n) > 64 || !nameRE().MatchString(strings.ReplaceAll(n, "_", "-")) {
			t.Errorf("key name %q is not a valid Lambda key name", n)
		}
	}
	if mk("Prod").keyPrefix() == mk("prod").keyPrefix() {
		t.Error("deployments differing in case share a key prefix")
	}
}

func TestDeleteHonoursContext(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := e.p.Delete(ctx, provider.Ref{Name: "ch-x"}, false)
	if !errors.Is(err, context.Canceled) || errkind.Of(err) != errkind.Transient {
		t.Fatalf("canceled Delete: %v, want a transient error wrapping context.Canceled", err)
	}
}

// The instance id of the launch reply is the host's: a server whose
// replies call every instance by another name (a mock serving the spec's
// example, "training-node-1") neither loses the instance nor makes the
// provider blame that name (issue 8 item 11).
func TestLaunchReplyIDWinsOverReplyNames(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	spec := testSpec(uuid.NewString())
	e.fake.SetReplyName("training-node-1")
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != e.fake.Instances()[0].ID || in.Name != spec.Name || in.HostID != spec.HostID {
		t.Fatalf("created %s named %q for host %q, want %s named %s for %s", in.ID, in.Name, in.HostID, e.fake.Instances()[0].ID, spec.Name, spec.HostID)
	}
	ref := in.Ref(spec.HostID)
	got := waitState(t, e.p, ref, provider.StateRunning)
	if got.ID != in.ID || got.Name != spec.Name || got.PublicIP == "" {
		t.Fatalf("status %+v, want %s named %s with an address", got, in.ID, spec.Name)
	}
	if err := e.p.Delete(ctx, ref, false); err != nil {
		t.Fatal(err)
	}
	waitGone(t, e.p, ref)
	_, err = e.p.Status(ctx, ref)
	if !errkind.Is(err, errkind.NotFound) || strings.Contains(err.Error(), "training-node-1") {
		t.Fatalf("status after delete: %v, want not found naming our instance", err)
	}
}

// Names are at most 64 characters; the length is checked apart from the
// pattern.
func TestNameLength(t *testing.T) {
	if err := validName("op", "a"+strings.Repeat("b", 63)); err != nil {
		t.Errorf("a 64-character name was refused: %v", err)
	}
	if err := validName("op", "a"+strings.Repeat("b", 64)); err == nil {
		t.Error("a 65-character name was accepted")
	}
}
