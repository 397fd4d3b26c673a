package gcp

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// dataDeviceName is the device name of the data disk inside the VM: it
// appears as /dev/disk/by-id/google-data.
const dataDeviceName = "data"

// dataDiskName is the data disk of an instance: found by this name when
// the instance is re-created after Delete(keepDisk=true).
func dataDiskName(instance string) string { return instance + "-data" }

// GCE instance statuses.
const (
	statusProvisioning = "PROVISIONING"
	statusStaging      = "STAGING"
	statusRunning      = "RUNNING"
	statusStopping     = "STOPPING"
	statusTerminated   = "TERMINATED" // stopped: only disks are billed
	statusSuspending   = "SUSPENDING"
	statusSuspended    = "SUSPENDED"
	statusRepairing    = "REPAIRING"
)

// stateOf maps a GCE status to our state set.
func stateOf(status string) provider.State {
	switch status {
	case statusProvisioning, statusStaging, statusRepairing:
		return provider.StatePending
	case statusRunning:
		return provider.StateRunning
	case statusStopping, statusSuspending:
		return provider.StateStopping
	case statusTerminated, statusSuspended:
		return provider.StateStopped
	}
	if strings.HasPrefix(status, "PENDING") {
		return provider.StatePending
	}
	return provider.StateError
}

// rctx bounds one API request.
func (p *Provider) rctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.opts.requestTimeout)
}

// listCtx bounds a paged listing, which may take several requests.
func (p *Provider) listCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 5*p.opts.requestTimeout)
}

func refName(ref provider.Ref) string {
	if ref.Name == "" && ref.HostID != "" {
		return provider.InstanceName(ref.HostID)
	}
	return ref.Name
}

func validName(op, name string) error {
	// The data disk's name adds 5 characters and must fit in 63 too.
	if !matchLen(resourceNameRE(), name, 1, 63) || len(dataDiskName(name)) > 63 {
		return provider.Errorf(errkind.Invalid, Name, op,
			"invalid instance name %q: use 1-58 lowercase letters, digits and hyphens, starting with a letter", name)
	}
	return nil
}

// ---- Create

func (p *Provider) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	const op = "create"
	name := spec.Name
	if name == "" && spec.HostID != "" {
		name = provider.InstanceName(spec.HostID)
	}
	if err := validName(op, name); err != nil {
		return provider.Instance{}, err
	}
	labels := p.labels(spec)
	if err := validLabels(labels); err != nil {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "%v", err)
	}
	if spec.MachineType == "" {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
			"no machine type given for %s; pick one from `cocalc-hosts catalog --cloud gcp`", name)
	}
	if spec.DiskGB < 0 || spec.GPUCount < 0 {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "disk size and GPU count must not be negative")
	}

	// Idempotency first: a VM with this name anywhere in the project is
	// the one an earlier attempt made.
	if existing, err := p.findInstance(ctx, op, name); err != nil {
		return provider.Instance{}, err
	} else if existing != nil {
		return p.instance(existing), nil
	}

	zone, err := p.zoneFor(op, spec)
	if err != nil {
		return provider.Instance{}, err
	}
	// A data disk kept from an earlier instance of this host decides the
	// zone: zonal disks attach only in their own zone.
	diskName := dataDiskName(name)
	kept, err := p.findDisk(ctx, op, diskName)
	if err != nil {
		return provider.Instance{}, err
	}
	// A disk that was never attached holds no data: an earlier attempt
	// made it and then failed. It may be moved to where this attempt
	// wants the VM (a fallback to another zone), and is ours to clean up.
	madeDisk := false
	if kept != nil {
		dz := lastSegment(kept.Zone)
		fresh := kept.LastAttachTimestamp == "" && len(kept.Users) == 0
		conflict := (spec.Zone != "" && spec.Zone != dz) || (spec.Region != "" && spec.Region != regionOf(dz))
		switch {
		case conflict && fresh:
			if err := p.deleteDisk(ctx, op, dz, diskName); err != nil {
				return provider.Instance{}, err
			}
			kept = nil
		case conflict:
			return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
				"the kept data disk %s of %s is in zone %s; create the host there, or delete it without keeping its disk first", diskName, name, dz)
		default:
			for _, u := range kept.Users {
				if lastSegment(u) != name {
					return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
						"the data disk %s is attached to another instance, %s", diskName, lastSegment(u))
				}
			}
			zone, madeDisk = dz, fresh
		}
	}

	mt, err := p.machineType(ctx, op, zone, spec.MachineType)
	if err != nil {
		return provider.Instance{}, err
	}
	accels, gpu, err := p.acceleratorsFor(ctx, op, zone, mt, spec)
	if err != nil {
		return provider.Instance{}, err
	}
	meta, err := p.metadata(spec)
	if err != nil {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "%v", err)
	}

	if kept == nil {
		size := p.DataDiskGB(spec.DiskGB)
		if err := p.createDisk(ctx, op, zone, diskName, int64(size), labels); err != nil {
			return provider.Instance{}, err
		}
		madeDisk = true
	}

	inst := p.instanceResource(name, zone, mt.Name, diskName, spec, labels, meta, accels, gpu)
	err = p.mutate(ctx, op, zone, http.MethodPost, p.zonePath(zone, "instances"), inst)
	if err != nil && !isAlreadyExists(err) {
		if madeDisk && (!errkind.Retryable(err) || errkind.Of(err) == errkind.Capacity) {
			// The VM was not made here, and the caller may try another
			// zone: take back the empty disk made for it. A kept disk
			// (with data) is never touched, and after a transient error
			// the VM may still appear, so its disk stays for the retry.
			p.deleteDiskQuietly(ctx, zone, diskName)
		}
		return provider.Instance{}, err
	}
	got, err := p.getInstance(ctx, op, zone, name)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instance(got), nil
}

// labels are the spec's labels plus the two that identify our VMs.
func (p *Provider) labels(spec provider.CreateSpec) map[string]string {
	out := map[string]string{}
	for k, v := range spec.Labels {
		out[k] = v
	}
	out[provider.LabelDeployment] = p.deployment
	if spec.HostID != "" {
		out[provider.LabelHost] = spec.HostID
	}
	return out
}

func (p *Provider) zoneFor(op string, spec provider.CreateSpec) (string, error) {
	switch {
	case spec.Zone != "":
		if !zoneRE().MatchString(spec.Zone) {
			return "", provider.Errorf(errkind.Invalid, Name, op, "%q is not a GCP zone such as us-central1-a", spec.Zone)
		}
		if spec.Region != "" && regionOf(spec.Zone) != spec.Region {
			return "", provider.Errorf(errkind.Invalid, Name, op, "zone %s is not in region %s", spec.Zone, spec.Region)
		}
		return spec.Zone, nil
	case spec.Region != "" && regionOf(p.opts.zone) != spec.Region:
		return "", provider.Errorf(errkind.Invalid, Name, op,
			"region %s given without a zone, and the default zone %s is elsewhere; name a zone in %s (for example %s-b)", spec.Region, p.opts.zone, spec.Region, spec.Region)
	}
	return p.opts.zone, nil
}

// metadata builds the ssh-keys and startup-script items.
func (p *Provider) metadata(spec provider.CreateSpec) (*metadata, error) {
	user := spec.SSHUser
	if user == "" {
		user = p.opts.sshUser
	}
	if !validUser(user) {
		return nil, fmt.Errorf("SSH user %q is not a valid Linux user name", user)
	}
	meta := &metadata{}
	keys, err := sshKeysValue(user, spec.SSHAuthorizedKey)
	if err != nil {
		return nil, err
	}
	if keys != "" {
		meta.Items = append(meta.Items, metadataItem{Key: metaSSHKeys, Value: keys})
	}
	script, err := startupScript(spec.HostKey)
	if err != nil {
		return nil, err
	}
	if script != "" {
		meta.Items = append(meta.Items, metadataItem{Key: metaStartupScript, Value: script})
	}
	return meta, nil
}

func (p *Provider) instanceResource(name, zone, machineType, diskName string, spec provider.CreateSpec,
	labels map[string]string, meta *metadata, accels []acceleratorConfig, gpu bool) *instance {
	image := spec.Image
	if image == "" {
		image = p.opts.image
	}
	restart, noRestart := true, false
	sched := &scheduling{ProvisioningModel: "STANDARD", OnHostMaintenance: "MIGRATE", AutomaticRestart: &restart}
	if gpu {
		// GPUs cannot live-migrate: GCE refuses a GPU VM without this.
		sched.OnHostMaintenance = "TERMINATE"
	}
	if spec.Spot {
		// Spot VMs must terminate on maintenance and cannot restart
		// themselves; STOP (not DELETE) keeps the disks when reclaimed,
		// so a preempted host is "off", not gone.
		sched.AutomaticRestart = &noRestart
		sched.ProvisioningModel = "SPOT"
		sched.OnHostMaintenance = "TERMINATE"
		sched.InstanceTerminationAction = "STOP"
	}
	nic := networkInterface{
		Network:       p.opts.network,
		Subnetwork:    p.opts.subnetwork,
		AccessConfigs: []accessConfig{{Name: "External NAT", Type: "ONE_TO_ONE_NAT"}},
	}
	return &instance{
		Name:        name,
		MachineType: "zones/" + zone + "/machineTypes/" + machineType,
		Labels:      labels,
		Disks: []attachedDisk{
			{
				Boot: true, AutoDelete: true, Type: "PERSISTENT", Mode: "READ_WRITE",
				InitializeParams: &initializeParams{
					SourceImage: image,
					DiskSizeGb:  i64(p.opts.bootDiskGB),
					DiskType:    "zones/" + zone + "/diskTypes/" + p.opts.bootDiskType,
					Labels:      labels,
				},
			},
			{
				// Not auto-deleted: deleting the VM keeps the data; Delete
				// removes the disk itself unless asked to keep it.
				Type: "PERSISTENT", Mode: "READ_WRITE", DeviceName: dataDeviceName,
				Source: "projects/" + p.opts.project + "/zones/" + zone + "/disks/" + diskName,
			},
		},
		NetworkInterfaces: []networkInterface{nic},
		Metadata:          meta,
		Scheduling:        sched,
		GuestAccelerators: accels,
	}
}

// mutate sends a mutation (body may be nil) with one requestId,
// repeating it with the same id while it fails transiently: GCE answers a
// repeated id with the first request's operation instead of acting
// twice, so a request that timed out after the VM was made cannot make a
// second one. It then waits for the zonal operation.
func (p *Provider) mutate(ctx context.Context, op, zone, method, path string, body any) error {
	requestID := uuid.NewString()
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rctx, cancel := p.rctx(ctx)
		var o operation
		err := p.compute.Do(rctx, op, method, path+"?"+query("requestId", requestID).Encode(), body, &o)
		cancel()
		if err == nil {
			return p.wait(ctx, op, zone, &o)
		}
		if isAlreadyExists(err) {
			return err
		}
		cerr := classify(op, err)
		if errkind.Of(cerr) != errkind.Transient || attempt == 3 || ctx.Err() != nil {
			return cerr
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return cerr
		case <-t.C:
		}
		backoff *= 2
	}
}

func (p *Provider) createDisk(ctx context.Context, op, zone, name string, sizeGB int64, labels map[string]string) error {
	d := &disk{
		Name:   name,
		SizeGb: i64(sizeGB),
		Type:   "zones/" + zone + "/diskTypes/" + p.opts.dataDiskType,
		Labels: labels,
	}
	err := p.mutate(ctx, op, zone, http.MethodPost, p.zonePath(zone, "disks"), d)
	if err != nil && !isAlreadyExists(err) {
		return fmt.Errorf("create data disk %s: %w", name, err)
	}
	return nil
}

// deleteDiskQuietly removes a disk this call made for a VM that did not
// come to be. Failing is acceptable: the disk carries our labels, and a
// later Create of the host reuses it.
func (p *Provider) deleteDiskQuietly(ctx context.Context, zone, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*p.opts.requestTimeout)
	defer cancel()
	_ = p.deleteDisk(ctx, "create", zone, name)
}

func (p *Provider) deleteDisk(ctx context.Context, op, zone, name string) error {
	err := p.mutate(ctx, op, zone, http.MethodDelete, p.zonePath(zone, "disks", name), nil)
	if err != nil && !errkind.Is(err, errkind.NotFound) {
		return fmt.Errorf("delete data disk %s: %w", name, err)
	}
	return nil
}

func (p *Provider) machineType(ctx context.Context, op, zone, name string) (*machineType, error) {
	rctx, cancel := p.rctx(ctx)
	defer cancel()
	mt := &machineType{}
	if err := p.compute.Do(rctx, op, http.MethodGet, p.zonePath(zone, "machineTypes", name), nil, mt); err != nil {
		err = classify(op, err)
		if errkind.Is(err, errkind.NotFound) {
			return nil, provider.Errorf(errkind.Invalid, Name, op,
				"machine type %s is not offered in zone %s; see `cocalc-hosts catalog --cloud gcp`", name, zone)
		}
		return nil, err
	}
	return mt, nil
}

// acceleratorsFor decides the GPUs: accelerator-optimized machine types
// (g2, a2, a3, ...) come with theirs; general-purpose ones (n1) get the
// requested accelerator attached. gpu reports whether the VM has GPUs.
func (p *Provider) acceleratorsFor(ctx context.Context, op, zone string, mt *machineType, spec provider.CreateSpec) ([]acceleratorConfig, bool, error) {
	want := strings.ToLower(strings.TrimSpace(spec.GPUModel))
	if b := mt.Accelerators; len(b) > 0 {
		have := gpuOf(b[0].GuestAcceleratorType)
		count := int(b[0].GuestAcceleratorCount)
		if want != "" && want != have.model && want != b[0].GuestAcceleratorType {
			return nil, false, provider.Errorf(errkind.Invalid, Name, op,
				"machine type %s comes with %d× %s, not %s", mt.Name, count, have.model, spec.GPUModel)
		}
		if spec.GPUCount > 0 && spec.GPUCount != count {
			return nil, false, provider.Errorf(errkind.Invalid, Name, op,
				"machine type %s comes with %d GPUs, not %d; pick the size that has %d", mt.Name, count, spec.GPUCount, spec.GPUCount)
		}
		return nil, true, nil
	}
	if want == "" {
		if spec.GPUCount > 0 {
			return nil, false, provider.Errorf(errkind.Invalid, Name, op, "a GPU count was given without a GPU model")
		}
		return nil, false, nil
	}
	count := max(spec.GPUCount, 1)
	rctx, cancel := p.listCtx(ctx)
	defer cancel()
	var offered []string
	var match *acceleratorType
	err := listAll(rctx, p.compute, op, p.zonePath(zone, "acceleratorTypes"), query(), func(ats []acceleratorType) error {
		for i := range ats {
			at := &ats[i]
			g := gpuOf(at.Name)
			if g.workstation {
				continue
			}
			offered = append(offered, g.model)
			if at.Name == want || (g.model == want && (match == nil || at.Name < match.Name)) {
				match = at
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if match == nil {
		sort.Strings(offered)
		return nil, false, provider.Errorf(errkind.Invalid, Name, op,
			"GPU model %s cannot be attached to %s in zone %s (attachable there: %s); accelerator-optimized types such as g2 (L4) carry their own GPUs",
			spec.GPUModel, mt.Name, zone, strings.Join(dedupe(offered), ", "))
	}
	if maxCards := int(match.MaximumCardsPerInstance); maxCards > 0 && count > maxCards {
		return nil, false, provider.Errorf(errkind.Invalid, Name, op,
			"at most %d %s GPUs fit one VM, not %d", maxCards, spec.GPUModel, count)
	}
	return []acceleratorConfig{{
		AcceleratorType:  "projects/" + p.opts.project + "/zones/" + zone + "/acceleratorTypes/" + match.Name,
		AcceleratorCount: int32(count),
	}}, true, nil
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// ---- lookups

func (p *Provider) getInstance(ctx context.Context, op, zone, name string) (*instance, error) {
	rctx, cancel := p.rctx(ctx)
	defer cancel()
	inst := &instance{}
	if err := p.compute.Do(rctx, op, http.MethodGet, p.zonePath(zone, "instances", name), nil, inst); err != nil {
		if errkind.Is(err, errkind.NotFound) {
			return nil, provider.Errorf(errkind.NotFound, Name, op, "instance %s not found in zone %s", name, zone)
		}
		return nil, err
	}
	return inst, nil
}

// findInstance looks for a VM by name in every zone; nil when none.
func (p *Provider) findInstance(ctx context.Context, op, name string) (*instance, error) {
	var found *instance
	err := p.aggregated(ctx, op, "instances", fmt.Sprintf("name = %q", name), func(l scopedList) {
		for i := range l.Instances {
			if l.Instances[i].Name == name && found == nil {
				found = &l.Instances[i]
			}
		}
	})
	return found, err
}

// findDisk looks for a disk by name in every zone; nil when none.
func (p *Provider) findDisk(ctx context.Context, op, name string) (*disk, error) {
	var found *disk
	err := p.aggregated(ctx, op, "disks", fmt.Sprintf("name = %q", name), func(l scopedList) {
		for i := range l.Disks {
			if l.Disks[i].Name == name && found == nil {
				found = &l.Disks[i]
			}
		}
	})
	return found, err
}

// aggregated lists a kind of resource in every zone (filter may be
// empty), handing each zone's part of each page to each.
func (p *Provider) aggregated(ctx context.Context, op, kind, filter string, each func(scopedList)) error {
	return p.aggregatedByZone(ctx, op, kind, filter, func(_ string, l scopedList) { each(l) })
}

// aggregatedByZone is aggregated with the zone of each part, in zone
// order.
func (p *Provider) aggregatedByZone(ctx context.Context, op, kind, filter string, each func(zone string, l scopedList)) error {
	rctx, cancel := p.listCtx(ctx)
	defer cancel()
	return listAll(rctx, p.compute, op, p.projectPath("aggregated", kind), query("filter", filter, "maxResults", "500"),
		func(items map[string]scopedList) error {
			for _, scope := range slices.Sorted(maps.Keys(items)) {
				each(lastSegment(scope), items[scope])
			}
			return nil
		})
}

// locate finds the VM a ref points at: in its zone when the ref has one,
// else in the default zone, else anywhere in the project.
func (p *Provider) locate(ctx context.Context, op string, ref provider.Ref) (*instance, error) {
	name := refName(ref)
	if err := validName(op, name); err != nil {
		return nil, err
	}
	zone := ref.Zone
	if zone == "" {
		zone = ref.Meta["zone"]
	}
	if zone != "" {
		return p.getInstance(ctx, op, zone, name)
	}
	inst, err := p.getInstance(ctx, op, p.opts.zone, name)
	if err == nil || !errkind.Is(err, errkind.NotFound) {
		return inst, err
	}
	found, err := p.findInstance(ctx, op, name)
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, provider.Errorf(errkind.NotFound, Name, op, "instance %s not found in project %s", name, p.opts.project)
	}
	return found, nil
}

// ---- the rest of the lifecycle

func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	inst, err := p.locate(ctx, "status", ref)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instance(inst), nil
}

func (p *Provider) Start(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "start"
	inst, err := p.locate(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	zone, name := lastSegment(inst.Zone), inst.Name
	var verb string
	switch inst.Status {
	case statusTerminated:
		verb = "start"
	case statusSuspended:
		verb = "resume"
	case statusStopping, statusSuspending:
		return p.instance(inst), provider.Errorf(errkind.Transient, Name, op,
			"instance %s is %s; it can be started once that finishes", name, strings.ToLower(inst.Status))
	default:
		return p.instance(inst), nil // running or on its way there
	}
	if err := p.mutate(ctx, op, zone, http.MethodPost, p.zonePath(zone, "instances", name, verb), nil); err != nil {
		return provider.Instance{}, err
	}
	return p.Status(ctx, provider.Ref{Name: name, Zone: zone})
}

func (p *Provider) Stop(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "stop"
	inst, err := p.locate(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	zone, name := lastSegment(inst.Zone), inst.Name
	switch inst.Status {
	case statusTerminated, statusSuspended, statusStopping, statusSuspending:
		return p.instance(inst), nil
	}
	err = p.mutate(ctx, op, zone, http.MethodPost, p.zonePath(zone, "instances", name, "stop"), nil)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.Status(ctx, provider.Ref{Name: name, Zone: zone})
}

// Delete removes the VM (its boot disk goes with it) and, unless keepDisk,
// its data disk. Deleting what is already gone succeeds.
func (p *Provider) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	const op = "delete"
	name := refName(ref)
	inst, err := p.locate(ctx, op, ref)
	if err != nil && !errkind.Is(err, errkind.NotFound) {
		return err
	}
	diskZone := ""
	if inst != nil {
		zone := lastSegment(inst.Zone)
		diskZone = zone
		err := p.mutate(ctx, op, zone, http.MethodDelete, p.zonePath(zone, "instances", name), nil)
		if err != nil && !errkind.Is(err, errkind.NotFound) {
			return err
		}
	}
	if keepDisk {
		return nil
	}
	diskName := dataDiskName(name)
	if diskZone == "" {
		d, err := p.findDisk(ctx, op, diskName)
		if err != nil {
			return err
		}
		if d == nil {
			return nil
		}
		diskZone = lastSegment(d.Zone)
	}
	return p.deleteDisk(ctx, op, diskZone, diskName)
}

// DataDiskGB is the size of the data disk Create makes: the spec's, or
// the data_disk_gb option when it gives none, and never below the
// smallest persistent disk GCP makes.
func (p *Provider) DataDiskGB(requested int) int {
	if requested == 0 {
		requested = p.opts.dataDiskGB
	}
	return max(requested, minPersistentGB)
}

// ResizeDisk grows the data disk; GCE does it while the VM runs (the
// filesystem inside is grown by the host agent). Disks cannot shrink.
func (p *Provider) ResizeDisk(ctx context.Context, ref provider.Ref, sizeGB int) (provider.Instance, error) {
	const op = "resize"
	inst, err := p.locate(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	zone, name := lastSegment(inst.Zone), inst.Name
	diskName := dataDiskName(name)
	for _, d := range inst.Disks {
		if d.DeviceName == dataDeviceName && !d.Boot {
			diskName = lastSegment(d.Source)
		}
	}
	rctx, cancel := p.rctx(ctx)
	var cur disk
	err = p.compute.Do(rctx, op, http.MethodGet, p.zonePath(zone, "disks", diskName), nil, &cur)
	cancel()
	if err != nil {
		return provider.Instance{}, err
	}
	switch cur := int(cur.SizeGb); {
	case sizeGB < cur:
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
			"the data disk %s is %d GB; GCP disks can only grow, not shrink to %d GB", diskName, cur, sizeGB)
	case sizeGB == cur:
		return p.instance(inst), nil
	}
	resize := struct {
		SizeGb i64 `json:"sizeGb"`
	}{i64(sizeGB)}
	err = p.mutate(ctx, op, zone, http.MethodPost, p.zonePath(zone, "disks", diskName, "resize"), resize)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.Status(ctx, provider.Ref{Name: name, Zone: zone})
}

// List returns this deployment's VMs in every zone, by label.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	filter := fmt.Sprintf("labels.%s = %q", provider.LabelDeployment, p.deployment)
	var out []provider.Instance
	err := p.aggregated(ctx, "list", "instances", filter, func(l scopedList) {
		for i := range l.Instances {
			// The filter is the server's job; checking again costs
			// nothing and keeps another deployment's VM out of reconcile
			// whatever the server does.
			if in := &l.Instances[i]; in.Labels[provider.LabelDeployment] == p.deployment {
				out = append(out, p.instance(in))
			}
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// instance converts a GCE instance to our view of it.
func (p *Provider) instance(in *instance) provider.Instance {
	zone := lastSegment(in.Zone)
	out := provider.Instance{
		ID:      strconv.FormatUint(uint64(in.ID), 10),
		Name:    in.Name,
		HostID:  in.Labels[provider.LabelHost],
		Region:  regionOf(zone),
		Zone:    zone,
		State:   stateOf(in.Status),
		SSHPort: 22,
		Labels:  map[string]string{},
		Meta: map[string]string{
			"zone":         zone,
			"status":       in.Status,
			"machine_type": lastSegment(in.MachineType),
		},
	}
	if out.HostID == "" {
		out.HostID = provider.HostIDFromName(out.Name)
	}
	for k, v := range in.Labels {
		out.Labels[k] = v
	}
	for _, nic := range in.NetworkInterfaces {
		if out.PrivateIP == "" {
			out.PrivateIP = nic.NetworkIP
		}
		for _, ac := range nic.AccessConfigs {
			if out.PublicIP == "" && ac.NatIP != "" {
				out.PublicIP = ac.NatIP
			}
		}
	}
	for _, d := range in.Disks {
		if !d.Boot && d.DeviceName == dataDeviceName {
			out.DataDisk = lastSegment(d.Source)
			out.DataDiskDevice = "/dev/disk/by-id/google-" + dataDeviceName
			out.DiskGB = int(d.DiskSizeGb)
			out.Meta["data_disk"] = out.DataDisk
		}
	}
	if in.Metadata != nil {
		for _, it := range in.Metadata.Items {
			if it.Key == metaSSHKeys {
				out.SSHUser = sshUserOf(it.Value)
			}
		}
	}
	if in.Scheduling != nil && in.Scheduling.ProvisioningModel == "SPOT" {
		out.Meta["spot"] = "true"
	}
	return out
}
