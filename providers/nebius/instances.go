package nebius

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nebius/gosdk/operations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	common "github.com/nebius/gosdk/proto/nebius/common/v1"
	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// bootDiskType is the type of every host's boot disk.
const bootDiskType = compute.DiskSpec_NETWORK_SSD

const (
	bootSuffix = "-boot"
	dataSuffix = "-data"
	// dataDeviceID names the data disk inside the VM:
	// /dev/disk/by-id/virtio-<device id>.
	dataDeviceID = "cocalc-data"
	bootDeviceID = "cocalc-boot"

	// labelDisk marks our disks as "boot" or "data".
	labelDisk = "cocalc-hosts-disk"
	// labelSSHUser remembers the login user cloud-init created, because
	// the API hides user data once the instance exists.
	labelSSHUser = "cocalc-hosts-ssh-user"

	gib = int64(1) << 30
)

// DataDiskDevice is where the data disk appears inside the VM.
const DataDiskDevice = "/dev/disk/by-id/virtio-" + dataDeviceID

// nameRE's length (at most 58, leaving room for -boot/-data) is checked
// apart: a counted repetition compiles into that many copies at every
// command's start-up.
var nameRE = lazyre.New(`^[a-z][a-z0-9-]*$`)

// ---- the provider.Provider methods

// Create makes (or finds) the instance for spec: its data disk (a kept
// one is reused), its boot disk, then the instance, waiting for each
// operation. A Create that fails after Nebius made the instance is
// repaired by the next Create, which finds the instance by name.
func (p *Provider) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	const op = "create"
	name := spec.Name
	if name == "" && spec.HostID != "" {
		name = provider.InstanceName(spec.HostID)
	}
	if len(name) > 58 || !nameRE().MatchString(name) {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
			"instance name %q: want lowercase letters, digits and dashes, starting with a letter, at most 58 characters", name)
	}
	// Idempotency first: an instance of this name is the one we made.
	if in, err := p.getByName(ctx, op, name); err == nil {
		return p.existing(ctx, op, in)
	} else if !errkind.Is(err, errkind.NotFound) {
		return provider.Instance{}, err
	}

	m, err := p.resolveMachine(ctx, op, spec)
	if err != nil {
		return provider.Instance{}, err
	}
	user := p.opts.sshUser
	if spec.SSHUser != "" {
		user = spec.SSHUser
	}
	ud, err := userData(user, spec)
	if err != nil {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "cloud-init user data for %s: %v", name, err)
	}
	hostID := firstNonEmpty(spec.Labels[provider.LabelHost], spec.HostID, provider.HostIDFromName(name))
	labels := p.labels(spec.Labels, hostID)
	labels[labelSSHUser] = user

	dataGB := spec.DiskGB
	if dataGB < 0 {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "negative disk size %d GB", dataGB)
	}
	if dataGB == 0 {
		dataGB = p.opts.dataDiskGB
	}
	image := p.opts.imageFamily
	if m.gpus() > 0 {
		image = p.opts.gpuImageFamily
	}
	if spec.Image != "" {
		image = spec.Image
	}

	var fresh []*compute.Disk // disks this call made, removed again if no instance results
	data, made, err := p.ensureDisk(ctx, op, name+dataSuffix, labelsWith(labels, labelDisk, "data"), &compute.DiskSpec{
		Size: &compute.DiskSpec_SizeGibibytes{SizeGibibytes: int64(dataGB)}, Type: p.opts.diskType,
	})
	if err != nil {
		return provider.Instance{}, err
	}
	if made {
		fresh = append(fresh, data)
	}
	bootSpec := &compute.DiskSpec{Size: &compute.DiskSpec_SizeGibibytes{SizeGibibytes: int64(p.opts.bootDiskGB)}, Type: bootDiskType}
	if strings.HasPrefix(image, "computeimage-") {
		bootSpec.Source = &compute.DiskSpec_SourceImageId{SourceImageId: image}
	} else {
		bootSpec.Source = &compute.DiskSpec_SourceImageFamily{SourceImageFamily: &compute.SourceImageFamily{ImageFamily: image}}
	}
	boot, made, err := p.ensureDisk(ctx, op, name+bootSuffix, labelsWith(labels, labelDisk, "boot"), bootSpec)
	if err != nil {
		p.cleanup(ctx, fresh)
		return provider.Instance{}, err
	}
	if made {
		fresh = append(fresh, boot)
	}

	is := &compute.InstanceSpec{
		Resources: &compute.ResourcesSpec{Platform: m.platform.GetMetadata().GetName(), Size: &compute.ResourcesSpec_Preset{Preset: m.preset.GetName()}},
		BootDisk:  attached(boot, bootDeviceID),
		SecondaryDisks: []*compute.AttachedDiskSpec{
			attached(data, dataDeviceID),
		},
		NetworkInterfaces: []*compute.NetworkInterfaceSpec{p.networkInterface()},
		CloudInitUserData: ud,
		Hostname:          name,
	}
	if spec.Spot {
		// As Nebius documents for preemptible VMs: stop on preemption,
		// and no automatic recovery.
		is.Preemptible = &compute.PreemptibleSpec{OnPreemption: compute.PreemptibleSpec_STOP, Priority: 1}
		is.RecoveryPolicy = compute.InstanceRecoveryPolicy_FAIL
	}
	req := &compute.CreateInstanceRequest{
		Metadata: &common.ResourceMetadata{ParentId: p.opts.projectID, Name: name, Labels: labels},
		Spec:     is,
	}
	o, err := p.mutate(ctx, op, func(ctx context.Context, key grpc.CallOption) (operations.Operation, error) {
		return p.instances.Create(ctx, req, key)
	})
	if err != nil {
		// Maybe the instance exists anyway: someone else created it
		// (ALREADY_EXISTS), or the reply was lost after it was made.
		in, gerr := p.getByName(ctx, op, name)
		switch {
		case gerr == nil && in.GetStatus().GetState() != compute.InstanceStatus_ERROR:
			if isCode(err, codes.AlreadyExists) || errkind.Retryable(err) && errkind.Of(err) != errkind.Capacity {
				return p.existing(ctx, op, in)
			}
		case errkind.Is(gerr, errkind.NotFound):
			p.cleanup(ctx, fresh)
		}
		return provider.Instance{}, fmt.Errorf("create instance %s (%s): %w", name, m.name(), err)
	}
	in, err := p.getByID(ctx, op, o.ResourceID())
	if err != nil {
		return provider.Instance{}, err
	}
	return p.toInstance(in, data), nil
}

// existing returns the instance Create found instead of making one.
func (p *Provider) existing(ctx context.Context, op string, in *compute.Instance) (provider.Instance, error) {
	if err := p.checkOurs(op, in); err != nil {
		return provider.Instance{}, err
	}
	if in.GetStatus().GetState() == compute.InstanceStatus_DELETING {
		return provider.Instance{}, provider.Errorf(errkind.Transient, Name, op,
			"instance %s is being deleted; a new one can be created once it is gone", in.GetMetadata().GetName())
	}
	return p.toInstance(in, p.dataDiskOf(ctx, op, in)), nil
}

// Start starts a stopped instance and waits until it runs. An instance
// between states is waited for first; a running one is left as it is.
func (p *Provider) Start(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "start"
	in, err := p.settled(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	switch in.GetStatus().GetState() {
	case compute.InstanceStatus_RUNNING:
		return p.toInstance(in, p.dataDiskOf(ctx, op, in)), nil
	case compute.InstanceStatus_STOPPED:
	default:
		return provider.Instance{}, p.badState(op, in)
	}
	id := in.GetMetadata().GetId()
	if _, err := p.mutate(ctx, op, func(ctx context.Context, key grpc.CallOption) (operations.Operation, error) {
		return p.instances.Start(ctx, &compute.StartInstanceRequest{Id: id}, key)
	}); err != nil {
		return provider.Instance{}, fmt.Errorf("start instance %s: %w", in.GetMetadata().GetName(), err)
	}
	return p.status(ctx, op, id)
}

// Stop stops a running instance and waits until it is stopped: compute
// billing ends, the disks stay, the dynamic public address is released.
// An instance between states is waited for first.
func (p *Provider) Stop(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "stop"
	in, err := p.settled(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	switch in.GetStatus().GetState() {
	case compute.InstanceStatus_STOPPED:
		return p.toInstance(in, p.dataDiskOf(ctx, op, in)), nil
	case compute.InstanceStatus_RUNNING:
	default:
		return provider.Instance{}, p.badState(op, in)
	}
	id := in.GetMetadata().GetId()
	if _, err := p.mutate(ctx, op, func(ctx context.Context, key grpc.CallOption) (operations.Operation, error) {
		return p.instances.Stop(ctx, &compute.StopInstanceRequest{Id: id}, key)
	}); err != nil {
		return provider.Instance{}, fmt.Errorf("stop instance %s: %w", in.GetMetadata().GetName(), err)
	}
	return p.status(ctx, op, id)
}

// ResizeDisk grows the data disk. Nebius grows a disk only while its
// instance is stopped (Capabilities().DiskResizeRequiresStop), so a
// running instance is refused with a clear error rather than stopped
// behind the caller's back.
func (p *Provider) ResizeDisk(ctx context.Context, ref provider.Ref, sizeGB int) (provider.Instance, error) {
	const op = "resize"
	in, err := p.settled(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	name := in.GetMetadata().GetName()
	if st := in.GetStatus().GetState(); st != compute.InstanceStatus_STOPPED {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
			"instance %s is %s: Nebius resizes a disk only while its instance is stopped; stop the host first", name, st)
	}
	d := p.dataDiskOf(ctx, op, in)
	if d == nil {
		return provider.Instance{}, notFound(op, "instance %s has no data disk %s%s", name, name, dataSuffix)
	}
	cur := diskGB(d)
	switch {
	case sizeGB < cur:
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
			"the data disk of %s is %d GB; disks can only grow, not shrink to %d GB", name, cur, sizeGB)
	case sizeGB == cur:
		return p.toInstance(in, d), nil
	}
	// Update replaces the whole spec: send the disk's own spec with the
	// new size, and its resource version so a concurrent change fails
	// instead of being overwritten.
	spec := proto.Clone(d.GetSpec()).(*compute.DiskSpec)
	spec.Size = &compute.DiskSpec_SizeGibibytes{SizeGibibytes: int64(sizeGB)}
	md := proto.Clone(d.GetMetadata()).(*common.ResourceMetadata)
	md.CreatedAt, md.UpdatedAt = nil, nil
	if _, err := p.mutate(ctx, op, func(ctx context.Context, key grpc.CallOption) (operations.Operation, error) {
		return p.disks.Update(ctx, &compute.UpdateDiskRequest{Metadata: md, Spec: spec}, key)
	}); err != nil {
		return provider.Instance{}, fmt.Errorf("resize data disk of %s to %d GB: %w", name, sizeGB, err)
	}
	return p.status(ctx, op, in.GetMetadata().GetId())
}

// Delete removes the instance and its boot disk, and the data disk
// unless keepDisk. Disks left by an earlier, interrupted Delete are
// removed too. Deleting what does not exist is a NotFound error.
func (p *Provider) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	const op = "delete"
	name := refName(ref)
	in, err := p.lookup(ctx, op, ref)
	found := err == nil
	if err != nil && !errkind.Is(err, errkind.NotFound) {
		return err
	}
	if found {
		name = in.GetMetadata().GetName()
		if err := p.deleteInstance(ctx, op, in); err != nil {
			return fmt.Errorf("delete instance %s: %w", name, err)
		}
	}
	removed := found
	disks := []string{name + bootSuffix}
	if !keepDisk {
		disks = append(disks, name+dataSuffix)
	}
	for _, dn := range disks {
		existed, err := p.deleteDisk(ctx, op, dn)
		if err != nil {
			return fmt.Errorf("delete disk %s: %w", dn, err)
		}
		removed = removed || existed
	}
	if !removed {
		return notFound(op, "no instance %q in project %s", name, p.opts.projectID)
	}
	return nil
}

// Status reports the instance.
func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "status"
	in, err := p.lookup(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.toInstance(in, p.dataDiskOf(ctx, op, in)), nil
}

// List returns this deployment's instances (by label), sorted by name.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	const op = "list"
	var ours []*compute.Instance
	token := ""
	for {
		var resp *compute.ListInstancesResponse
		if err := p.do(ctx, op, func(ctx context.Context) error {
			var err error
			resp, err = p.instances.List(ctx, listInstances(p.opts.projectID, 100, token))
			return err
		}); err != nil {
			return nil, err
		}
		for _, in := range resp.GetItems() {
			if in.GetMetadata().GetLabels()[provider.LabelDeployment] == p.deployment {
				ours = append(ours, in)
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	disks, err := p.listDisks(ctx, op)
	if err != nil {
		return nil, err
	}
	out := make([]provider.Instance, 0, len(ours))
	for _, in := range ours {
		out = append(out, p.toInstance(in, disks[dataDiskID(in)]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ---- instances

func listInstances(parent string, size int64, token string) *compute.ListInstancesRequest {
	return &compute.ListInstancesRequest{ParentId: parent, PageSize: size, PageToken: token}
}

func (p *Provider) getByName(ctx context.Context, op, name string) (*compute.Instance, error) {
	var in *compute.Instance
	err := p.do(ctx, op, func(ctx context.Context) error {
		var err error
		in, err = p.instances.GetByName(ctx, &common.GetByNameRequest{ParentId: p.opts.projectID, Name: name})
		return err
	})
	return in, err
}

func (p *Provider) getByID(ctx context.Context, op, id string) (*compute.Instance, error) {
	var in *compute.Instance
	err := p.do(ctx, op, func(ctx context.Context) error {
		var err error
		in, err = p.instances.Get(ctx, &compute.GetInstanceRequest{Id: id})
		return err
	})
	return in, err
}

// lookup finds ref's instance: by id when known, else (or when that id is
// gone, as after a re-create) by name.
func (p *Provider) lookup(ctx context.Context, op string, ref provider.Ref) (*compute.Instance, error) {
	if ref.InstanceID != "" {
		in, err := p.getByID(ctx, op, ref.InstanceID)
		if err == nil {
			return in, p.checkOurs(op, in)
		}
		if !errkind.Is(err, errkind.NotFound) {
			return nil, err
		}
	}
	name := refName(ref)
	if name == "" {
		return nil, provider.Errorf(errkind.Invalid, Name, op, "the reference names no instance (no id, name or host id)")
	}
	in, err := p.getByName(ctx, op, name)
	if errkind.Is(err, errkind.NotFound) {
		return nil, notFound(op, "no instance %q in project %s", name, p.opts.projectID)
	}
	if err != nil {
		return nil, err
	}
	return in, p.checkOurs(op, in)
}

// settled is lookup, then waiting (polling) while the instance is between
// states, so Start and Stop act on RUNNING or STOPPED.
func (p *Provider) settled(ctx context.Context, op string, ref provider.Ref) (*compute.Instance, error) {
	in, err := p.lookup(ctx, op, ref)
	for err == nil && transitional(in.GetStatus().GetState()) {
		if err := p.sleep(ctx, p.opts.pollInterval); err != nil {
			return nil, classify(op, fmt.Errorf("waiting for instance %s to leave %s: %w", in.GetMetadata().GetName(), in.GetStatus().GetState(), err))
		}
		in, err = p.getByID(ctx, op, in.GetMetadata().GetId())
	}
	return in, err
}

func transitional(s compute.InstanceStatus_InstanceState) bool {
	switch s {
	case compute.InstanceStatus_UNSPECIFIED, compute.InstanceStatus_CREATING, compute.InstanceStatus_UPDATING,
		compute.InstanceStatus_STARTING, compute.InstanceStatus_STOPPING:
		return true
	}
	return false
}

func (p *Provider) badState(op string, in *compute.Instance) error {
	name, st := in.GetMetadata().GetName(), in.GetStatus().GetState()
	switch st {
	case compute.InstanceStatus_ERROR:
		return provider.Errorf(errkind.Invalid, Name, op,
			"instance %s is in state ERROR, from which Nebius cannot %s it; delete the host and create it again", name, op)
	case compute.InstanceStatus_DELETING:
		return provider.Errorf(errkind.Invalid, Name, op, "instance %s is being deleted", name)
	}
	return provider.Errorf(errkind.Invalid, Name, op, "instance %s is %s; cannot %s it", name, st, op)
}

func (p *Provider) status(ctx context.Context, op, id string) (provider.Instance, error) {
	in, err := p.getByID(ctx, op, id)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.toInstance(in, p.dataDiskOf(ctx, op, in)), nil
}

// checkOurs refuses an instance labelled for another deployment: its
// name collides with ours, but it is not ours to touch.
func (p *Provider) checkOurs(op string, in *compute.Instance) error {
	if dep := in.GetMetadata().GetLabels()[provider.LabelDeployment]; dep != p.deployment {
		return provider.Errorf(errkind.Invalid, Name, op,
			"instance %s (%s) in project %s belongs to deployment %q, not %q; refusing to touch it",
			in.GetMetadata().GetName(), in.GetMetadata().GetId(), p.opts.projectID, dep, p.deployment)
	}
	return nil
}

func (p *Provider) deleteInstance(ctx context.Context, op string, in *compute.Instance) error {
	id := in.GetMetadata().GetId()
	if in.GetStatus().GetState() != compute.InstanceStatus_DELETING {
		_, err := p.mutate(ctx, op, func(ctx context.Context, key grpc.CallOption) (operations.Operation, error) {
			return p.instances.Delete(ctx, &compute.DeleteInstanceRequest{Id: id}, key)
		})
		if err == nil || !errkind.Is(err, errkind.NotFound) {
			return err
		}
		return nil
	}
	// Someone else's delete is running: wait for it to finish.
	for {
		_, err := p.getByID(ctx, op, id)
		if errkind.Is(err, errkind.NotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := p.sleep(ctx, p.opts.pollInterval); err != nil {
			return classify(op, fmt.Errorf("waiting for instance %s to be deleted: %w", in.GetMetadata().GetName(), err))
		}
	}
}

// toInstance is the provider's view of in; data is its data disk, if
// known (for the size).
func (p *Provider) toInstance(in *compute.Instance, data *compute.Disk) provider.Instance {
	md, spec := in.GetMetadata(), in.GetSpec()
	labels := map[string]string{}
	for k, v := range md.GetLabels() {
		labels[k] = v
	}
	out := provider.Instance{
		ID: md.GetId(), Name: md.GetName(),
		HostID: firstNonEmpty(labels[provider.LabelHost], provider.HostIDFromName(md.GetName())),
		Region: p.opts.region, State: mapState(in.GetStatus().GetState()),
		DataDisk: dataDiskID(in), DataDiskDevice: DataDiskDevice,
		SSHUser: firstNonEmpty(labels[labelSSHUser], p.opts.sshUser), SSHPort: 22,
		Labels: labels,
		Meta: map[string]string{
			"platform": spec.GetResources().GetPlatform(), "preset": spec.GetResources().GetPreset(),
			"machine_type": spec.GetResources().GetPlatform() + "/" + spec.GetResources().GetPreset(),
			"boot_disk":    spec.GetBootDisk().GetExistingDisk().GetId(),
			"preemptible":  strconv.FormatBool(spec.GetPreemptible() != nil),
			"nebius_state": in.GetStatus().GetState().String(),
		},
	}
	if nics := in.GetStatus().GetNetworkInterfaces(); len(nics) > 0 {
		out.PrivateIP = stripPrefixLen(nics[0].GetIpAddress().GetAddress())
		out.PublicIP = stripPrefixLen(nics[0].GetPublicIpAddress().GetAddress())
	}
	if data != nil {
		out.DiskGB = diskGB(data)
		out.Meta["disk_gb"] = strconv.Itoa(out.DiskGB)
	}
	return out
}

// mapState normalizes a Nebius instance state.
func mapState(s compute.InstanceStatus_InstanceState) provider.State {
	switch s {
	case compute.InstanceStatus_RUNNING:
		return provider.StateRunning
	case compute.InstanceStatus_STOPPING:
		return provider.StateStopping
	case compute.InstanceStatus_STOPPED:
		return provider.StateStopped
	case compute.InstanceStatus_DELETING:
		return provider.StateTerminating
	case compute.InstanceStatus_ERROR:
		return provider.StateError
	default:
		// CREATING, STARTING, UPDATING, and UNSPECIFIED (no status yet).
		return provider.StatePending
	}
}

// stripPrefixLen turns "203.0.113.7/32", as Nebius reports addresses,
// into "203.0.113.7".
func stripPrefixLen(addr string) string {
	a, _, _ := strings.Cut(addr, "/")
	return a
}

// dataDiskID is the id of in's data disk (the secondary disk with our
// device id).
func dataDiskID(in *compute.Instance) string {
	for _, d := range in.GetSpec().GetSecondaryDisks() {
		if d.GetDeviceId() == dataDeviceID {
			return d.GetExistingDisk().GetId()
		}
	}
	return ""
}

// dataDiskOf fetches in's data disk, for its size. A failure to read it
// only leaves the size out: it must not fail a status call.
func (p *Provider) dataDiskOf(ctx context.Context, op string, in *compute.Instance) *compute.Disk {
	id := dataDiskID(in)
	if id == "" {
		return nil
	}
	d, err := p.diskByID(ctx, op, id)
	if err != nil {
		return nil
	}
	return d
}

// networkInterface is the instance's one interface: an automatic private
// address in the subnet and, unless disabled, a dynamic public one.
func (p *Provider) networkInterface() *compute.NetworkInterfaceSpec {
	nic := &compute.NetworkInterfaceSpec{Name: "eth0", SubnetId: p.opts.subnetID, IpAddress: &compute.IPAddress{}}
	if p.opts.publicIP {
		nic.PublicIpAddress = &compute.PublicIPAddress{}
	}
	return nic
}

func attached(d *compute.Disk, device string) *compute.AttachedDiskSpec {
	return &compute.AttachedDiskSpec{
		AttachMode: compute.AttachedDiskSpec_READ_WRITE,
		Type:       &compute.AttachedDiskSpec_ExistingDisk{ExistingDisk: &compute.ExistingDisk{Id: d.GetMetadata().GetId()}},
		DeviceId:   device,
	}
}

// labels are spec's labels plus ours. The deployment label is the
// provider's to set: List filters on it.
func (p *Provider) labels(spec map[string]string, hostID string) map[string]string {
	out := make(map[string]string, len(spec)+3)
	for k, v := range spec {
		out[k] = v
	}
	out[provider.LabelDeployment] = p.deployment
	if hostID != "" {
		out[provider.LabelHost] = hostID
	}
	return out
}

func labelsWith(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[k] = v
	return out
}

func refName(ref provider.Ref) string {
	if ref.Name != "" {
		return ref.Name
	}
	if ref.HostID != "" {
		return provider.InstanceName(ref.HostID)
	}
	return ""
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func isCode(err error, c codes.Code) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := e.(interface{ GRPCStatus() *status.Status }); ok && s.GRPCStatus().Code() == c {
			return true
		}
	}
	return false
}

// ---- disks

func (p *Provider) diskByName(ctx context.Context, op, name string) (*compute.Disk, error) {
	var d *compute.Disk
	err := p.do(ctx, op, func(ctx context.Context) error {
		var err error
		d, err = p.disks.GetByName(ctx, &common.GetByNameRequest{ParentId: p.opts.projectID, Name: name})
		return err
	})
	return d, err
}

func (p *Provider) diskByID(ctx context.Context, op, id string) (*compute.Disk, error) {
	var d *compute.Disk
	err := p.do(ctx, op, func(ctx context.Context) error {
		var err error
		d, err = p.disks.Get(ctx, &compute.GetDiskRequest{Id: id})
		return err
	})
	return d, err
}

func (p *Provider) listDisks(ctx context.Context, op string) (map[string]*compute.Disk, error) {
	out := map[string]*compute.Disk{}
	token := ""
	for {
		var resp *compute.ListDisksResponse
		if err := p.do(ctx, op, func(ctx context.Context) error {
			var err error
			resp, err = p.disks.List(ctx, &compute.ListDisksRequest{ParentId: p.opts.projectID, PageSize: 100, PageToken: token})
			return err
		}); err != nil {
			return nil, err
		}
		for _, d := range resp.GetItems() {
			out[d.GetMetadata().GetId()] = d
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

func diskGB(d *compute.Disk) int {
	if b := d.GetStatus().GetSizeBytes(); b > 0 {
		return int(b / gib)
	}
	if g := d.GetSpec().GetSizeGibibytes(); g > 0 {
		return int(g)
	}
	return int(d.GetSpec().GetSizeBytes() / gib)
}

// ensureDisk returns the disk called name, making it from spec if there
// is none; made says which. A disk being made is waited for; one that is
// attached elsewhere or labelled for another deployment is refused.
func (p *Provider) ensureDisk(ctx context.Context, op, name string, labels map[string]string, spec *compute.DiskSpec) (*compute.Disk, bool, error) {
	d, err := p.diskByName(ctx, op, name)
	if errkind.Is(err, errkind.NotFound) {
		req := &compute.CreateDiskRequest{
			Metadata: &common.ResourceMetadata{ParentId: p.opts.projectID, Name: name, Labels: labels},
			Spec:     spec,
		}
		o, err := p.mutate(ctx, op, func(ctx context.Context, key grpc.CallOption) (operations.Operation, error) {
			return p.disks.Create(ctx, req, key)
		})
		if err != nil && !isCode(err, codes.AlreadyExists) {
			return nil, false, fmt.Errorf("create disk %s: %w", name, err)
		}
		if err == nil {
			d, err = p.diskByID(ctx, op, o.ResourceID())
			return d, err == nil, err
		}
		// Made concurrently by someone else: use theirs.
		d, err = p.diskByName(ctx, op, name)
	}
	if err != nil {
		return nil, false, err
	}
	if dep := d.GetMetadata().GetLabels()[provider.LabelDeployment]; dep != p.deployment {
		return nil, false, provider.Errorf(errkind.Invalid, Name, op,
			"disk %s (%s) belongs to deployment %q, not %q; refusing to use it", name, d.GetMetadata().GetId(), dep, p.deployment)
	}
	for {
		switch d.GetStatus().GetState() {
		case compute.DiskStatus_READY:
			if at := d.GetStatus().GetReadWriteAttachment(); at != "" {
				return nil, false, provider.Errorf(errkind.Transient, Name, op,
					"disk %s is still attached to instance %s; retry once it is detached", name, at)
			}
			return d, false, nil
		case compute.DiskStatus_CREATING, compute.DiskStatus_UPDATING, compute.DiskStatus_UNSPECIFIED:
		case compute.DiskStatus_DELETING:
			return nil, false, provider.Errorf(errkind.Transient, Name, op, "disk %s is being deleted; retry once it is gone", name)
		default:
			return nil, false, provider.Errorf(errkind.Invalid, Name, op,
				"disk %s is %s (%s); delete it to let a new one be made", name, d.GetStatus().GetState(), d.GetStatus().GetStateDescription())
		}
		if err := p.sleep(ctx, p.opts.pollInterval); err != nil {
			return nil, false, classify(op, fmt.Errorf("waiting for disk %s: %w", name, err))
		}
		if d, err = p.diskByID(ctx, op, d.GetMetadata().GetId()); err != nil {
			return nil, false, err
		}
	}
}

// deleteDisk deletes the disk called name if it exists and is ours,
// waiting first for a just-deleted instance to let go of it.
func (p *Provider) deleteDisk(ctx context.Context, op, name string) (bool, error) {
	d, err := p.diskByName(ctx, op, name)
	if errkind.Is(err, errkind.NotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if dep := d.GetMetadata().GetLabels()[provider.LabelDeployment]; dep != p.deployment {
		return false, provider.Errorf(errkind.Invalid, Name, op,
			"disk %s (%s) belongs to deployment %q, not %q; refusing to delete it", name, d.GetMetadata().GetId(), dep, p.deployment)
	}
	id := d.GetMetadata().GetId()
	for d.GetStatus().GetReadWriteAttachment() != "" || d.GetStatus().GetState() == compute.DiskStatus_CREATING ||
		d.GetStatus().GetState() == compute.DiskStatus_UPDATING {
		if at := d.GetStatus().GetReadWriteAttachment(); at != "" {
			if _, err := p.getByID(ctx, op, at); err == nil {
				return false, provider.Errorf(errkind.Invalid, Name, op, "disk %s is attached to instance %s", name, at)
			} else if !errkind.Is(err, errkind.NotFound) {
				return false, err
			}
		}
		if err := p.sleep(ctx, p.opts.pollInterval); err != nil {
			return false, classify(op, fmt.Errorf("waiting for disk %s to be detached: %w", name, err))
		}
		if d, err = p.diskByID(ctx, op, id); errkind.Is(err, errkind.NotFound) {
			return true, nil
		} else if err != nil {
			return false, err
		}
	}
	if d.GetStatus().GetState() == compute.DiskStatus_DELETING {
		return true, p.waitDiskGone(ctx, op, id)
	}
	_, err = p.mutate(ctx, op, func(ctx context.Context, key grpc.CallOption) (operations.Operation, error) {
		return p.disks.Delete(ctx, &compute.DeleteDiskRequest{Id: id}, key)
	})
	if errkind.Is(err, errkind.NotFound) {
		return true, nil
	}
	return true, err
}

func (p *Provider) waitDiskGone(ctx context.Context, op, id string) error {
	for {
		_, err := p.diskByID(ctx, op, id)
		if errkind.Is(err, errkind.NotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := p.sleep(ctx, p.opts.pollInterval); err != nil {
			return classify(op, fmt.Errorf("waiting for disk %s to be deleted: %w", id, err))
		}
	}
}

// cleanup removes disks a failed Create made, so a host that ends up
// elsewhere leaves nothing billable behind. Best effort, and on its own
// deadline: the failure may have been the caller's context running out.
func (p *Provider) cleanup(ctx context.Context, fresh []*compute.Disk) {
	if len(fresh) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	for _, d := range fresh {
		_, _ = p.deleteDisk(ctx, "create cleanup", d.GetMetadata().GetName())
	}
}
