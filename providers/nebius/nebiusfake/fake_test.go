package nebiusfake

import (
	"context"
	"testing"
	"time"

	"github.com/nebius/gosdk"
	"github.com/nebius/gosdk/conn"
	"github.com/nebius/gosdk/operations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	common "github.com/nebius/gosdk/proto/nebius/common/v1"
	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"
	computesvc "github.com/nebius/gosdk/services/nebius/compute/v1"
)

// client talks to srv through the real SDK, as the provider does.
type client struct {
	inst  computesvc.InstanceService
	disks computesvc.DiskService
	srv   *Server
}

func start(t *testing.T, o Options, creds gosdk.Credentials) *client {
	t.Helper()
	srv, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if creds == nil {
		creds = gosdk.IAMToken(DefaultToken)
	}
	sdk, err := gosdk.New(context.Background(),
		gosdk.WithCredentials(creds),
		gosdk.WithResolvers(conn.NewConstantResolver(conn.Address(srv.Addr()))),
		gosdk.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sdk.Close() })
	return &client{inst: sdk.Services().Compute().V1().Instance(), disks: sdk.Services().Compute().V1().Disk(), srv: srv}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wait(t *testing.T, ctx context.Context, op operations.Operation, err error) operations.Operation {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	done, err := op.Wait(ctx, operations.PollInterval(time.Millisecond))
	if err != nil {
		t.Fatalf("operation %s: %v", op.ID(), err)
	}
	return done
}

func (c *client) disk(t *testing.T, ctx context.Context, name string, gib int64) string {
	t.Helper()
	op, err := c.disks.Create(ctx, &compute.CreateDiskRequest{
		Metadata: &common.ResourceMetadata{ParentId: c.srv.ProjectID(), Name: name},
		Spec:     &compute.DiskSpec{Size: &compute.DiskSpec_SizeGibibytes{SizeGibibytes: gib}, Type: compute.DiskSpec_NETWORK_SSD},
	})
	return wait(t, ctx, op, err).ResourceID()
}

func (c *client) instanceRequest(name, boot, data string) *compute.CreateInstanceRequest {
	attach := func(id, dev string) *compute.AttachedDiskSpec {
		return &compute.AttachedDiskSpec{AttachMode: compute.AttachedDiskSpec_READ_WRITE, DeviceId: dev,
			Type: &compute.AttachedDiskSpec_ExistingDisk{ExistingDisk: &compute.ExistingDisk{Id: id}}}
	}
	return &compute.CreateInstanceRequest{
		Metadata: &common.ResourceMetadata{ParentId: c.srv.ProjectID(), Name: name},
		Spec: &compute.InstanceSpec{
			Resources:         &compute.ResourcesSpec{Platform: "cpu-d3", Size: &compute.ResourcesSpec_Preset{Preset: "2vcpu-8gb"}},
			BootDisk:          attach(boot, "boot"),
			SecondaryDisks:    []*compute.AttachedDiskSpec{attach(data, "data")},
			NetworkInterfaces: []*compute.NetworkInterfaceSpec{{Name: "eth0", SubnetId: c.srv.SubnetID(), IpAddress: &compute.IPAddress{}, PublicIpAddress: &compute.PublicIPAddress{}}},
		},
	}
}

func TestInstanceGoesThroughTheRealStates(t *testing.T) {
	c := start(t, Options{CreateDelay: 80 * time.Millisecond, BootDelay: 80 * time.Millisecond, StopDelay: 80 * time.Millisecond, DeleteDelay: 80 * time.Millisecond}, nil)
	ctx := ctxFor(t)
	req := c.instanceRequest("vm", c.disk(t, ctx, "vm-boot", 10), c.disk(t, ctx, "vm-data", 10))
	op, err := c.inst.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	id := op.ResourceID()
	if id == "" || op.Done() {
		t.Fatalf("create operation %v: want a running operation naming the instance", op.Raw())
	}
	// Poll until the operation is done, recording each state seen.
	observe := func(op operations.Operation) []string {
		var seen []string
		for !op.Done() {
			in, err := c.inst.Get(ctx, &compute.GetInstanceRequest{Id: id})
			s := in.GetStatus().GetState().String()
			if status.Code(err) == codes.NotFound {
				s = "gone"
			} else if err != nil {
				t.Fatal(err)
			}
			if len(seen) == 0 || seen[len(seen)-1] != s {
				seen = append(seen, s)
			}
			if _, err := op.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		in, err := c.inst.Get(ctx, &compute.GetInstanceRequest{Id: id})
		s := in.GetStatus().GetState().String()
		if status.Code(err) == codes.NotFound {
			s = "gone"
		}
		if seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		return seen
	}
	check := func(what string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s went through %v, want %v", what, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s went through %v, want %v", what, got, want)
			}
		}
	}
	check("create", observe(op), "CREATING", "STARTING", "RUNNING")
	in, _ := c.inst.Get(ctx, &compute.GetInstanceRequest{Id: id})
	firstIP := in.GetStatus().GetNetworkInterfaces()[0].GetPublicIpAddress().GetAddress()
	if firstIP == "" {
		t.Fatal("a running instance has no public address")
	}

	op, err = c.inst.Stop(ctx, &compute.StopInstanceRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	check("stop", observe(op), "STOPPING", "STOPPED")
	op, err = c.inst.Start(ctx, &compute.StartInstanceRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	check("start", observe(op), "STARTING", "RUNNING")
	in, _ = c.inst.Get(ctx, &compute.GetInstanceRequest{Id: id})
	if ip := in.GetStatus().GetNetworkInterfaces()[0].GetPublicIpAddress().GetAddress(); ip == "" || ip == firstIP {
		t.Fatalf("public address after restart %q (before %q): want a new dynamic one", ip, firstIP)
	}
	op, err = c.inst.Delete(ctx, &compute.DeleteInstanceRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	check("delete", observe(op), "DELETING", "gone")
	// Existing disks outlive the instance, detached.
	for _, name := range []string{"vm-boot", "vm-data"} {
		d, ok := c.srv.Disk(name)
		if !ok || d.GetStatus().GetReadWriteAttachment() != "" {
			t.Fatalf("disk %s after delete: %v", name, d)
		}
	}
}

func TestDiskResizeOnlyWhileStopped(t *testing.T) {
	c := start(t, Options{}, nil)
	ctx := ctxFor(t)
	data := c.disk(t, ctx, "vm-data", 10)
	op, err := c.inst.Create(ctx, c.instanceRequest("vm", c.disk(t, ctx, "vm-boot", 10), data))
	id := wait(t, ctx, op, err).ResourceID()
	d, err := c.disks.Get(ctx, &compute.GetDiskRequest{Id: data})
	if err != nil {
		t.Fatal(err)
	}
	grow := func(gib int64) error {
		spec := d.GetSpec()
		spec.Size = &compute.DiskSpec_SizeGibibytes{SizeGibibytes: gib}
		op, err := c.disks.Update(ctx, &compute.UpdateDiskRequest{Metadata: &common.ResourceMetadata{Id: data, ParentId: c.srv.ProjectID(), Name: "vm-data"}, Spec: spec})
		if err != nil {
			return err
		}
		_, err = op.Wait(ctx, operations.PollInterval(time.Millisecond))
		return err
	}
	if err := grow(20); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("resize while running: %v, want FAILED_PRECONDITION", err)
	}
	op, err = c.inst.Stop(ctx, &compute.StopInstanceRequest{Id: id})
	wait(t, ctx, op, err)
	if err := grow(20); err != nil {
		t.Fatalf("resize while stopped: %v", err)
	}
	if d, _ := c.srv.Disk("vm-data"); d.GetStatus().GetSizeBytes() != 20<<30 {
		t.Fatalf("size after resize: %d", d.GetStatus().GetSizeBytes())
	}
	if err := grow(5); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("shrinking: %v, want INVALID_ARGUMENT", err)
	}
	// An attached disk cannot be deleted.
	if _, err := c.disks.Delete(ctx, &compute.DeleteDiskRequest{Id: data}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("deleting an attached disk: %v, want FAILED_PRECONDITION", err)
	}
}

func TestIdempotencyKeyAndUniqueNames(t *testing.T) {
	c := start(t, Options{}, nil)
	ctx := ctxFor(t)
	req := c.instanceRequest("vm", c.disk(t, ctx, "vm-boot", 10), c.disk(t, ctx, "vm-data", 10))
	key := conn.WithIdempotencyKey("key-1")
	op1, err := c.inst.Create(ctx, req, key)
	if err != nil {
		t.Fatal(err)
	}
	op2, err := c.inst.Create(ctx, req, key)
	if err != nil {
		t.Fatalf("repeating a request with its key: %v", err)
	}
	if op1.ID() != op2.ID() || c.srv.CreatedCount("vm") != 1 {
		t.Fatalf("operations %s and %s, %d instances; want the same operation and one instance", op1.ID(), op2.ID(), c.srv.CreatedCount("vm"))
	}
	if _, err := c.inst.Create(ctx, req, conn.WithIdempotencyKey("key-2")); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("a second instance with the same name: %v, want ALREADY_EXISTS", err)
	}
}

func TestRequestsAreCheckedAgainstTheProtos(t *testing.T) {
	c := start(t, Options{}, nil)
	ctx := ctxFor(t)
	// DiskSpec.type and size are required by the published protos.
	_, err := c.disks.Create(ctx, &compute.CreateDiskRequest{
		Metadata: &common.ResourceMetadata{ParentId: c.srv.ProjectID(), Name: "d"},
		Spec:     &compute.DiskSpec{},
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("disk without size and type: %v, want INVALID_ARGUMENT", err)
	}
	if len(c.srv.Disks()) != 0 {
		t.Fatal("an invalid request made a disk")
	}
}

func TestAuthentication(t *testing.T) {
	c := start(t, Options{}, gosdk.IAMToken("wrong"))
	_, err := c.inst.List(ctxFor(t), &compute.ListInstancesRequest{ParentId: c.srv.ProjectID()})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong token: %v, want UNAUTHENTICATED", err)
	}
	c.srv.AddToken("wrong")
	if _, err := c.inst.List(ctxFor(t), &compute.ListInstancesRequest{ParentId: c.srv.ProjectID()}); err != nil {
		t.Fatalf("after AddToken: %v", err)
	}
	if _, err := c.inst.List(ctxFor(t), &compute.ListInstancesRequest{ParentId: "project-e00other"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another project: %v, want PERMISSION_DENIED", err)
	}
}

func TestPaging(t *testing.T) {
	c := start(t, Options{}, nil)
	ctx := ctxFor(t)
	for _, n := range []string{"a", "b", "c"} {
		c.disk(t, ctx, n, 1)
	}
	var names []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := c.disks.List(ctx, &compute.ListDisksRequest{ParentId: c.srv.ProjectID(), PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetItems() {
			names = append(names, d.GetMetadata().GetName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			if pages != 1 {
				t.Fatalf("%d pages, want 2", pages+1)
			}
			break
		}
	}
	if len(names) != 3 {
		t.Fatalf("listed %v", names)
	}
}

func TestFaultAfterCreate(t *testing.T) {
	c := start(t, Options{}, nil)
	ctx := ctxFor(t)
	req := c.instanceRequest("vm", c.disk(t, ctx, "vm-boot", 10), c.disk(t, ctx, "vm-data", 10))
	c.srv.Inject(MethodInstanceCreate, 1, ErrorAfterCreate())
	// The SDK's default retry repeats the call with the same idempotency
	// key; the fake answers with the operation the first call started.
	op, err := c.inst.Create(ctx, req)
	wait(t, ctx, op, err)
	calls := c.srv.Calls(MethodInstanceCreate)
	if len(calls) != 2 || calls[0].Key == "" || calls[0].Key != calls[1].Key {
		t.Fatalf("calls %+v: want the failed call repeated with its key", calls)
	}
	if c.srv.InstanceCount("vm") != 1 || c.srv.CreatedCount("vm") != 1 {
		t.Fatalf("%d instances exist, %d made; want 1", c.srv.InstanceCount("vm"), c.srv.CreatedCount("vm"))
	}
}
