package nebiusfake

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	common "github.com/nebius/gosdk/proto/nebius/common/v1"
	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
)

const gib = int64(1) << 30

// nameRE is what the fake accepts as a resource name (lowercase, digits,
// dashes, up to 63 characters, starting with a letter).
var nameRE = lazyre.New(`^[a-z][a-z0-9-]{0,62}$`)

// ---- instances

type instance struct {
	meta      *common.ResourceMetadata
	spec      *compute.InstanceSpec
	state     compute.InstanceStatus_InstanceState
	privateIP string
	publicIP  string
	// gen changes with every transition we start, so that steps
	// scheduled for an older transition do nothing.
	gen      int
	pending  *common.Operation // the operation driving the current transition
	deleteOp *common.Operation
}

func (in *instance) view() *compute.Instance {
	st := &compute.InstanceStatus{State: in.state}
	switch in.state {
	case compute.InstanceStatus_CREATING, compute.InstanceStatus_STARTING, compute.InstanceStatus_STOPPING,
		compute.InstanceStatus_UPDATING, compute.InstanceStatus_DELETING:
		st.Reconciling = true
	}
	nic := &compute.NetworkInterfaceStatus{Index: 0, Name: "eth0", IpAddress: &compute.IPAddressStatus{Address: in.privateIP}}
	if in.publicIP != "" {
		nic.PublicIpAddress = &compute.PublicIPAddressStatus{Address: in.publicIP}
	}
	st.NetworkInterfaces = []*compute.NetworkInterfaceStatus{nic}
	return &compute.Instance{
		Metadata: proto.Clone(in.meta).(*common.ResourceMetadata),
		Spec:     proto.Clone(in.spec).(*compute.InstanceSpec),
		Status:   st,
	}
}

func (in *instance) attachedDiskIDs() []string {
	ids := []string{in.spec.GetBootDisk().GetExistingDisk().GetId()}
	for _, d := range in.spec.GetSecondaryDisks() {
		ids = append(ids, d.GetExistingDisk().GetId())
	}
	return ids
}

type instanceService struct {
	compute.UnimplementedInstanceServiceServer
	s *Server
}

func (x *instanceService) find(id string) (*instance, error) {
	return findByID(x.s.instances, "instance", id)
}

func (x *instanceService) Get(_ context.Context, req *compute.GetInstanceRequest) (*compute.Instance, error) {
	return viewByID(x.s.instances, "instance", req.GetId())
}

func (x *instanceService) GetByName(_ context.Context, req *common.GetByNameRequest) (*compute.Instance, error) {
	return viewByName(x.s, x.s.instances, "instance", req)
}

func (x *instanceService) List(_ context.Context, req *compute.ListInstancesRequest) (*compute.ListInstancesResponse, error) {
	items, next, err := listViews(x.s, x.s.instances, req.GetParentId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &compute.ListInstancesResponse{Items: items, NextPageToken: next}, nil
}

func (x *instanceService) Create(ctx context.Context, req *compute.CreateInstanceRequest) (*common.Operation, error) {
	s := x.s
	if op := s.idempotent(ctx, MethodInstanceCreate); op != nil {
		return op, nil
	}
	now := time.Now()
	md, spec := req.GetMetadata(), req.GetSpec()
	if err := s.checkParent(md.GetParentId()); err != nil {
		return nil, err
	}
	name := md.GetName()
	if err := checkNewName(s.instances, "instance", name); err != nil {
		return nil, err
	}
	if spec == nil {
		return nil, badRequest("spec", "required")
	}
	plat, _, err := s.findPreset(spec.GetResources().GetPlatform(), spec.GetResources().GetPreset())
	if err != nil {
		return nil, err
	}
	if p := spec.GetPreemptible(); p != nil {
		switch {
		case !plat.GetStatus().GetAllowedForPreemptibles():
			return nil, badRequest("spec.preemptible", fmt.Sprintf("platform %s does not allow preemptible instances", plat.GetMetadata().GetName()))
		case p.GetOnPreemption() != compute.PreemptibleSpec_STOP:
			return nil, badRequest("spec.preemptible.on_preemption", "the only supported value is STOP")
		case p.GetPriority() < 1 || p.GetPriority() > 5:
			return nil, badRequest("spec.preemptible.priority", "must be between 1 and 5")
		case spec.GetRecoveryPolicy() != compute.InstanceRecoveryPolicy_FAIL:
			return nil, badRequest("spec.recovery_policy", "preemptible instances need recovery_policy FAIL")
		}
	}
	attach := []*compute.AttachedDiskSpec{spec.GetBootDisk()}
	if spec.GetBootDisk() == nil {
		return nil, badRequest("spec.boot_disk", "required")
	}
	attach = append(attach, spec.GetSecondaryDisks()...)
	devices := map[string]bool{}
	for i, a := range attach {
		field := "spec.boot_disk"
		if i > 0 {
			field = fmt.Sprintf("spec.secondary_disks[%d]", i-1)
		}
		id := a.GetExistingDisk().GetId()
		if id == "" {
			return nil, badRequest(field+".existing_disk.id", "required")
		}
		d, ok := s.disks[id]
		if !ok {
			return nil, notFound("disk", id)
		}
		if d.state != compute.DiskStatus_READY {
			return nil, badState(id, fmt.Sprintf("disk %s is %s, not READY", id, d.state))
		}
		if d.attachedTo != "" {
			return nil, badState(id, fmt.Sprintf("disk %s is attached to instance %s", id, d.attachedTo))
		}
		if a.GetAttachMode() == compute.AttachedDiskSpec_UNSPECIFIED {
			return nil, badRequest(field+".attach_mode", "required")
		}
		if dev := a.GetDeviceId(); dev != "" {
			if devices[dev] {
				return nil, badRequest(field+".device_id", fmt.Sprintf("device id %q is used twice", dev))
			}
			devices[dev] = true
		}
	}
	if len(spec.GetNetworkInterfaces()) == 0 {
		return nil, badRequest("spec.network_interfaces", "at least one network interface is required")
	}
	for i, nic := range spec.GetNetworkInterfaces() {
		if nic.GetSubnetId() != s.opts.SubnetID {
			return nil, notFound("subnet", nic.GetSubnetId())
		}
		if nic.GetName() == "" {
			return nil, badRequest(fmt.Sprintf("spec.network_interfaces[%d].name", i), "required")
		}
	}

	id := newID("computeinstance")
	in := &instance{
		meta:      newMetadata(md, id, now),
		spec:      proto.Clone(spec).(*compute.InstanceSpec),
		state:     compute.InstanceStatus_CREATING,
		privateIP: s.privateIP(),
	}
	for _, did := range in.attachedDiskIDs() {
		s.disks[did].attachedTo = id
	}
	s.instances[id] = in
	s.created[name]++
	op := s.newOp(now, "Create instance "+name, id, req)
	in.pending = op
	gen := in.gen
	platform := spec.GetResources().GetPlatform()
	s.at(now.Add(s.opts.CreateDelay), func(t time.Time) {
		if in.gen != gen {
			return
		}
		if s.noCap[platform] {
			// Nebius gives up on an instance it cannot place: the
			// operation fails and the instance is gone.
			x.remove(in)
			in.pending = nil
			s.created[name]-- // never placed: no VM was made
			finish(op, t, notEnoughResources("instance", spec.GetResources().GetPreset()+" on "+platform))
			return
		}
		if spec.GetStopped() {
			in.state, in.pending = compute.InstanceStatus_STOPPED, nil
			finish(op, t, nil)
			return
		}
		in.state = compute.InstanceStatus_STARTING
		s.at(t.Add(s.opts.BootDelay), func(t time.Time) {
			if in.gen != gen {
				return
			}
			x.boot(in)
			finish(op, t, nil)
		})
	})
	return s.remember(ctx, MethodInstanceCreate, op), nil
}

// boot makes in RUNNING with a fresh dynamic public address.
func (x *instanceService) boot(in *instance) {
	in.state, in.pending = compute.InstanceStatus_RUNNING, nil
	if nics := in.spec.GetNetworkInterfaces(); len(nics) > 0 && nics[0].GetPublicIpAddress() != nil {
		in.publicIP = x.s.publicIP(in.meta.GetName())
	}
}

// remove deletes in and detaches its disks (they survive: they are
// existing disks, not managed ones).
func (x *instanceService) remove(in *instance) {
	for _, did := range in.attachedDiskIDs() {
		if d, ok := x.s.disks[did]; ok && d.attachedTo == in.meta.GetId() {
			d.attachedTo = ""
		}
	}
	delete(x.s.instances, in.meta.GetId())
}

func (x *instanceService) Delete(ctx context.Context, req *compute.DeleteInstanceRequest) (*common.Operation, error) {
	s := x.s
	if op := s.idempotent(ctx, MethodInstanceDelete); op != nil {
		return op, nil
	}
	in, err := x.find(req.GetId())
	if err != nil {
		return nil, err
	}
	if in.state == compute.InstanceStatus_DELETING {
		return clone(in.deleteOp), nil
	}
	now := time.Now()
	finish(in.pending, now, status.New(codes.Aborted, "aborted: the instance is being deleted"))
	in.gen++
	in.state, in.publicIP, in.pending = compute.InstanceStatus_DELETING, "", nil
	op := s.newOp(now, "Delete instance "+in.meta.GetName(), in.meta.GetId(), req)
	in.deleteOp = op
	s.at(now.Add(s.opts.DeleteDelay), func(t time.Time) {
		x.remove(in)
		finish(op, t, nil)
	})
	return s.remember(ctx, MethodInstanceDelete, op), nil
}

func (x *instanceService) Stop(ctx context.Context, req *compute.StopInstanceRequest) (*common.Operation, error) {
	s := x.s
	if op := s.idempotent(ctx, MethodInstanceStop); op != nil {
		return op, nil
	}
	in, err := x.find(req.GetId())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	switch in.state {
	case compute.InstanceStatus_STOPPED:
		return s.doneOp(now, "Stop instance "+in.meta.GetName(), in.meta.GetId(), req), nil
	case compute.InstanceStatus_STOPPING:
		return clone(in.pending), nil
	case compute.InstanceStatus_RUNNING:
	default:
		return nil, badState(in.meta.GetId(), fmt.Sprintf("cannot stop instance %s while it is %s", in.meta.GetId(), in.state))
	}
	in.gen++
	gen := in.gen
	in.state = compute.InstanceStatus_STOPPING
	op := s.newOp(now, "Stop instance "+in.meta.GetName(), in.meta.GetId(), req)
	in.pending = op
	s.at(now.Add(s.opts.StopDelay), func(t time.Time) {
		if in.gen != gen {
			return
		}
		// A dynamic public address does not survive a stop on Nebius.
		in.state, in.publicIP, in.pending = compute.InstanceStatus_STOPPED, "", nil
		finish(op, t, nil)
	})
	return s.remember(ctx, MethodInstanceStop, op), nil
}

func (x *instanceService) Start(ctx context.Context, req *compute.StartInstanceRequest) (*common.Operation, error) {
	s := x.s
	if op := s.idempotent(ctx, MethodInstanceStart); op != nil {
		return op, nil
	}
	in, err := x.find(req.GetId())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	switch in.state {
	case compute.InstanceStatus_RUNNING:
		return s.doneOp(now, "Start instance "+in.meta.GetName(), in.meta.GetId(), req), nil
	case compute.InstanceStatus_STARTING:
		return clone(in.pending), nil
	case compute.InstanceStatus_STOPPED:
	default:
		return nil, badState(in.meta.GetId(), fmt.Sprintf("cannot start instance %s while it is %s", in.meta.GetId(), in.state))
	}
	platform := in.spec.GetResources().GetPlatform()
	in.gen++
	gen := in.gen
	in.state = compute.InstanceStatus_STARTING
	op := s.newOp(now, "Start instance "+in.meta.GetName(), in.meta.GetId(), req)
	in.pending = op
	s.at(now.Add(s.opts.BootDelay), func(t time.Time) {
		if in.gen != gen {
			return
		}
		if s.noCap[platform] {
			// Starting needs capacity too; the instance stays stopped.
			in.state, in.pending = compute.InstanceStatus_STOPPED, nil
			finish(op, t, notEnoughResources("instance", in.spec.GetResources().GetPreset()+" on "+platform))
			return
		}
		x.boot(in)
		finish(op, t, nil)
	})
	return s.remember(ctx, MethodInstanceStart, op), nil
}

// ---- disks

type disk struct {
	meta       *common.ResourceMetadata
	spec       *compute.DiskSpec
	state      compute.DiskStatus_State
	sizeBytes  int64
	attachedTo string
	pending    *common.Operation
}

func (d *disk) view() *compute.Disk {
	spec := proto.Clone(d.spec).(*compute.DiskSpec)
	return &compute.Disk{
		Metadata: proto.Clone(d.meta).(*common.ResourceMetadata),
		Spec:     spec,
		Status: &compute.DiskStatus{
			State: d.state, SizeBytes: d.sizeBytes, ReadWriteAttachment: d.attachedTo,
			BlockSizeBytes: 4096, Reconciling: d.state != compute.DiskStatus_READY,
		},
	}
}

// specSize is the size a DiskSpec asks for, in bytes.
func specSize(spec *compute.DiskSpec) int64 {
	switch {
	case spec.GetSizeBytes() > 0:
		return spec.GetSizeBytes()
	case spec.GetSizeKibibytes() > 0:
		return spec.GetSizeKibibytes() << 10
	case spec.GetSizeMebibytes() > 0:
		return spec.GetSizeMebibytes() << 20
	case spec.GetSizeGibibytes() > 0:
		return spec.GetSizeGibibytes() << 30
	}
	return 0
}

type diskService struct {
	compute.UnimplementedDiskServiceServer
	s *Server
}

func (x *diskService) find(id string) (*disk, error) {
	return findByID(x.s.disks, "disk", id)
}

func (x *diskService) Get(_ context.Context, req *compute.GetDiskRequest) (*compute.Disk, error) {
	return viewByID(x.s.disks, "disk", req.GetId())
}

func (x *diskService) GetByName(_ context.Context, req *common.GetByNameRequest) (*compute.Disk, error) {
	return viewByName(x.s, x.s.disks, "disk", req)
}

func (x *diskService) List(_ context.Context, req *compute.ListDisksRequest) (*compute.ListDisksResponse, error) {
	items, next, err := listViews(x.s, x.s.disks, req.GetParentId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &compute.ListDisksResponse{Items: items, NextPageToken: next}, nil
}

func (x *diskService) Create(ctx context.Context, req *compute.CreateDiskRequest) (*common.Operation, error) {
	s := x.s
	if op := s.idempotent(ctx, MethodDiskCreate); op != nil {
		return op, nil
	}
	md, spec := req.GetMetadata(), req.GetSpec()
	if err := s.checkParent(md.GetParentId()); err != nil {
		return nil, err
	}
	name := md.GetName()
	if err := checkNewName(s.disks, "disk", name); err != nil {
		return nil, err
	}
	size := specSize(spec)
	switch {
	case size <= 0:
		return nil, badRequest("spec.size", "required")
	case size%gib != 0:
		return nil, badRequest("spec.size", "must be a whole number of GiB")
	case spec.GetType() == compute.DiskSpec_UNSPECIFIED:
		return nil, badRequest("spec.type", "required")
	}
	if fam := spec.GetSourceImageFamily(); fam != nil && fam.GetImageFamily() == "" {
		return nil, badRequest("spec.source_image_family.image_family", "required")
	}
	now := time.Now()
	id := newID("computedisk")
	d := &disk{
		meta: newMetadata(md, id, now),
		spec: proto.Clone(spec).(*compute.DiskSpec), state: compute.DiskStatus_CREATING, sizeBytes: size,
	}
	s.disks[id] = d
	op := s.newOp(now, "Create disk "+name, id, req)
	d.pending = op
	s.at(now.Add(s.opts.DiskDelay), func(t time.Time) {
		d.state, d.pending = compute.DiskStatus_READY, nil
		finish(op, t, nil)
	})
	return s.remember(ctx, MethodDiskCreate, op), nil
}

// Update replaces the disk's labels and spec. Only the size may change,
// only upwards, and only while the disk is detached or its instance is
// stopped, which is when Nebius lets a disk grow.
func (x *diskService) Update(ctx context.Context, req *compute.UpdateDiskRequest) (*common.Operation, error) {
	s := x.s
	if op := s.idempotent(ctx, MethodDiskUpdate); op != nil {
		return op, nil
	}
	md, spec := req.GetMetadata(), req.GetSpec()
	d, err := x.find(md.GetId())
	if err != nil {
		return nil, err
	}
	if v := md.GetResourceVersion(); v != 0 && v != d.meta.GetResourceVersion() {
		return nil, serviceError(codes.FailedPrecondition, "resource version mismatch",
			&common.ServiceError{Code: "ResourceConflict", Details: &common.ServiceError_ResourceConflict{
				ResourceConflict: &common.ResourceConflict{ResourceId: d.meta.GetId(), Message: "the disk changed since it was read"}}}, 0).Err()
	}
	if d.state != compute.DiskStatus_READY {
		return nil, badState(d.meta.GetId(), fmt.Sprintf("disk %s is %s, not READY", d.meta.GetId(), d.state))
	}
	if spec.GetType() != d.spec.GetType() {
		return nil, badRequest("spec.type", "cannot be changed")
	}
	size := specSize(spec)
	switch {
	case size <= 0:
		return nil, badRequest("spec.size", "required: Update replaces the whole spec")
	case size%gib != 0:
		return nil, badRequest("spec.size", "must be a whole number of GiB")
	case size < d.sizeBytes:
		return nil, serviceError(codes.InvalidArgument, "disks cannot shrink",
			&common.ServiceError{Code: "OutOfRange", Details: &common.ServiceError_OutOfRange{OutOfRange: &common.OutOfRange{
				Requested: fmt.Sprintf("%d", size/gib), Limit: fmt.Sprintf(">= %d", d.sizeBytes/gib)}}}, 0).Err()
	}
	if size > d.sizeBytes && d.attachedTo != "" {
		if in, ok := s.instances[d.attachedTo]; ok && in.state != compute.InstanceStatus_STOPPED {
			return nil, badState(d.meta.GetId(), fmt.Sprintf(
				"disk %s is attached to instance %s, which is %s: stop the instance to resize the disk", d.meta.GetId(), d.attachedTo, in.state))
		}
	}
	now := time.Now()
	d.meta.Labels = copyLabels(md.GetLabels())
	d.meta.ResourceVersion++
	d.meta.UpdatedAt = timestamppb.New(now)
	op := s.newOp(now, "Update disk "+d.meta.GetName(), d.meta.GetId(), req)
	if size == d.sizeBytes {
		finish(op, now, nil)
		return clone(op), nil
	}
	d.state, d.pending = compute.DiskStatus_UPDATING, op
	s.at(now.Add(s.opts.DiskDelay), func(t time.Time) {
		d.sizeBytes = size
		d.spec = proto.Clone(spec).(*compute.DiskSpec)
		d.state, d.pending = compute.DiskStatus_READY, nil
		finish(op, t, nil)
	})
	return s.remember(ctx, MethodDiskUpdate, op), nil
}

func (x *diskService) Delete(ctx context.Context, req *compute.DeleteDiskRequest) (*common.Operation, error) {
	s := x.s
	if op := s.idempotent(ctx, MethodDiskDelete); op != nil {
		return op, nil
	}
	d, err := x.find(req.GetId())
	if err != nil {
		return nil, err
	}
	if d.state == compute.DiskStatus_DELETING {
		return clone(d.pending), nil
	}
	if d.attachedTo != "" {
		return nil, badState(d.meta.GetId(), fmt.Sprintf("disk %s is attached to instance %s", d.meta.GetId(), d.attachedTo))
	}
	if d.spec.GetForbidDeletion() {
		return nil, badState(d.meta.GetId(), "disk deletion is forbidden by spec.forbid_deletion")
	}
	now := time.Now()
	d.state = compute.DiskStatus_DELETING
	op := s.newOp(now, "Delete disk "+d.meta.GetName(), d.meta.GetId(), req)
	d.pending = op
	s.at(now.Add(s.opts.DiskDelay), func(t time.Time) {
		delete(s.disks, d.meta.GetId())
		finish(op, t, nil)
	})
	return s.remember(ctx, MethodDiskDelete, op), nil
}

// ---- operations

type operationService struct {
	common.UnimplementedOperationServiceServer
	s *Server
}

func (x *operationService) Get(_ context.Context, req *common.GetOperationRequest) (*common.Operation, error) {
	op, ok := x.s.ops[req.GetId()]
	if !ok {
		return nil, notFound("operation", req.GetId())
	}
	return clone(op), nil
}

func (x *operationService) List(_ context.Context, req *common.ListOperationsRequest) (*common.ListOperationsResponse, error) {
	var all []*common.Operation
	for _, op := range x.s.ops {
		if op.GetResourceId() == req.GetResourceId() {
			all = append(all, op)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].GetCreatedAt().AsTime().Before(all[j].GetCreatedAt().AsTime()) })
	items, next, err := page(all, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &common.ListOperationsResponse{NextPageToken: next}
	for _, op := range items {
		resp.Operations = append(resp.Operations, clone(op))
	}
	return resp, nil
}

// ---- helpers

func (s *Server) checkParent(parent string) error {
	if parent == "" {
		return badRequest("parent_id", "required")
	}
	if parent != s.opts.ProjectID {
		return serviceError(codes.PermissionDenied, fmt.Sprintf("no access to %s", parent),
			&common.ServiceError{Code: "PermissionDenied", Details: &common.ServiceError_PermissionDenied{
				PermissionDenied: &common.PermissionDenied{ResourceId: parent}}}, 0).Err()
	}
	return nil
}

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
